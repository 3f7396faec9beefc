//! A small HTTP/1.1 client written directly on `TcpStream`.
//!
//! Thousands of idle SSE clients must cost the load generator little, so there is
//! no client framework here: a request is a formatted head, a response head is
//! parsed from one buffer, and bodies are framed by `Content-Length`, chunked
//! transfer coding ([`ChunkedDecoder`]) or the end of the connection. Keeping the
//! chunked framing visible is also what lets the SSE client tell a response that
//! *ended* (final chunk) from one that was cut off (EOF without it).

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Longest non-streaming body accepted (`/metrics` is the largest one read).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Why an exchange failed, by the kind the report counts.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TCP connection could not be opened.
    #[error("connect: {0}")]
    Connect(io::Error),
    /// Reading or writing failed (reset, broken pipe).
    #[error("i/o: {0}")]
    Io(io::Error),
    /// The peer closed the connection before the response was complete.
    #[error("connection closed before the response was complete")]
    Eof,
    /// The bytes received are not HTTP/1.1 as expected.
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// Where main-service listens, as given by `--url http://host:port`.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved address every connection goes to.
    pub addr: SocketAddr,
    /// The `Host` header, as written in the URL.
    pub host: String,
}

impl Target {
    /// Resolves an `http://host:port` URL (no path) to one address.
    pub async fn resolve(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(format!("{url}: expected http://host:port without a path"));
        }
        let with_port = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: no address"))?;
        Ok(Target {
            addr,
            host: host.to_owned(),
        })
    }
}

/// Opens a TCP connection to `addr`, from `source` (port chosen by the kernel)
/// when given, so that many connections can use several loopback source
/// addresses and so more than one ephemeral port range.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, HttpError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(HttpError::Connect)?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(HttpError::Connect)?;
    }
    let stream = socket.connect(addr).await.map_err(HttpError::Connect)?;
    stream.set_nodelay(true).map_err(HttpError::Connect)?;
    Ok(stream)
}

/// A request head, ready to write.
pub fn request_head(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body_len: usize,
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if body_len > 0 || method == "POST" {
        head.push_str(&format!("content-length: {body_len}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
}

/// How the end of a response body is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`: ends with the zero-length chunk.
    Chunked,
    /// `Content-Length`.
    Length(usize),
    /// Neither: the body ends when the server closes the connection.
    UntilClose,
}

impl ResponseHead {
    /// Parses a head from the start of `buf`. Returns the head and the number of
    /// bytes it took, or `None` when `buf` does not yet hold the whole head.
    pub fn parse(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HttpError> {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if buf.len() > MAX_HEAD {
                return Err(HttpError::Malformed("response head too long".into()));
            }
            return Ok(None);
        };
        let text = std::str::from_utf8(&buf[..end])
            .map_err(|_| HttpError::Malformed("response head is not UTF-8".into()))?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| HttpError::Malformed(format!("status line {status_line:?}")))?;
        let headers = lines
            .map(|line| {
                line.split_once(':')
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .ok_or_else(|| HttpError::Malformed(format!("header line {line:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some((ResponseHead { status, headers }, end + 4)))
    }

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// How the body that follows this head is delimited.
    pub fn framing(&self) -> Result<Framing, HttpError> {
        if self
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            return Ok(Framing::Chunked);
        }
        match self.header("content-length") {
            Some(len) => len
                .parse()
                .map(Framing::Length)
                .map_err(|_| HttpError::Malformed(format!("content-length {len:?}"))),
            None => Ok(Framing::UntilClose),
        }
    }

    /// True if and only if the connection may carry another request.
    pub fn keeps_alive(&self) -> bool {
        !self
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Reads from `stream` into `buf` until it holds a whole response head; returns
/// the head, leaving the bytes after it in `buf`.
pub async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<ResponseHead, HttpError> {
    loop {
        if let Some((head, used)) = ResponseHead::parse(buf)? {
            buf.drain(..used);
            return Ok(head);
        }
        if read_more(stream, buf).await? == 0 {
            return Err(HttpError::Eof);
        }
    }
}

/// One `read` into the spare capacity of `buf` (grown when full).
pub async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, HttpError> {
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(buf.capacity().max(1024));
    }
    stream.read_buf(buf).await.map_err(HttpError::Io)
}

/// Where a [`ChunkedDecoder`] is within the chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size; `ext` once a `;` extension started.
    Size {
        size: usize,
        digits: usize,
        ext: bool,
    },
    /// After `\r` ending the size line.
    SizeLf { size: usize },
    /// Inside chunk data, this many bytes left.
    Data(usize),
    /// Expecting the `\r` after chunk data.
    DataCr,
    /// Expecting the `\n` after chunk data.
    DataLf,
    /// Reading trailer lines after the last chunk; `empty` while the current
    /// line has no bytes yet.
    Trailer { empty: bool, cr: bool },
    /// The body ended.
    Done,
}

/// Decodes `Transfer-Encoding: chunked` incrementally.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    /// Position in the framing, kept between calls.
    state: ChunkState,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size {
                size: 0,
                digits: 0,
                ext: false,
            },
        }
    }

    /// True if and only if the final chunk and trailer were seen.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes `input`, appending payload bytes to `out`. Returns how many bytes
    /// of `input` were consumed: all of them, unless the body ended earlier.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        let bad = |what: &str| Err(HttpError::Malformed(format!("chunked body: {what}")));
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                ChunkState::Done => return Ok(i),
                ChunkState::Data(left) => {
                    let take = left.min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    if take == left {
                        self.state = ChunkState::DataCr;
                    } else {
                        self.state = ChunkState::Data(left - take);
                    }
                    continue;
                }
                ChunkState::Size { size, digits, ext } => match (b, ext) {
                    (b'\r', _) if digits > 0 => ChunkState::SizeLf { size },
                    (_, true) => ChunkState::Size { size, digits, ext },
                    (b';', false) if digits > 0 => ChunkState::Size {
                        size,
                        digits,
                        ext: true,
                    },
                    _ => match (b as char).to_digit(16) {
                        Some(d) if digits < 15 => ChunkState::Size {
                            size: size * 16 + d as usize,
                            digits: digits + 1,
                            ext,
                        },
                        _ => return bad("bad chunk size"),
                    },
                },
                ChunkState::SizeLf { size } => match (b, size) {
                    (b'\n', 0) => ChunkState::Trailer {
                        empty: true,
                        cr: false,
                    },
                    (b'\n', size) => ChunkState::Data(size),
                    _ => return bad("expected LF after chunk size"),
                },
                ChunkState::DataCr if b == b'\r' => ChunkState::DataLf,
                ChunkState::DataLf if b == b'\n' => ChunkState::Size {
                    size: 0,
                    digits: 0,
                    ext: false,
                },
                ChunkState::DataCr | ChunkState::DataLf => return bad("expected CRLF after data"),
                ChunkState::Trailer { empty, cr } => match (b, cr) {
                    (b'\r', false) => ChunkState::Trailer { empty, cr: true },
                    (b'\n', true) if empty => ChunkState::Done,
                    (b'\n', true) => ChunkState::Trailer {
                        empty: true,
                        cr: false,
                    },
                    (_, false) => ChunkState::Trailer {
                        empty: false,
                        cr: false,
                    },
                    _ => return bad("bad trailer"),
                },
            };
            i += 1;
        }
        Ok(i)
    }
}

/// A complete, non-streaming response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The whole body.
    pub body: Vec<u8>,
}

/// A keep-alive connection for short requests (POSTs, `/metrics`), reopened
/// when the server closes it or an exchange fails.
pub struct HttpConnection {
    /// Where to connect.
    target: Target,
    /// The open connection, if any.
    stream: Option<TcpStream>,
    /// Read buffer, reused across requests.
    buf: Vec<u8>,
}

impl HttpConnection {
    /// A connection to `target`, opened on first use.
    pub fn new(target: Target) -> Self {
        HttpConnection {
            target,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends one request and reads the whole response. A reused connection that
    /// the server had already closed is reopened once, transparently.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let reused = self.stream.is_some();
        match self.exchange(method, path, headers, body).await {
            Err(HttpError::Eof | HttpError::Io(_)) if reused => {
                self.exchange(method, path, headers, body).await
            }
            other => other,
        }
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let result = self.exchange_once(method, path, headers, body).await;
        if !matches!(&result, Ok((_, true))) {
            self.stream = None;
        }
        result.map(|(response, _)| response)
    }

    async fn exchange_once(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(Response, bool), HttpError> {
        if self.stream.is_none() {
            self.stream = Some(connect(self.target.addr, None).await?);
        }
        let stream = self.stream.as_mut().expect("just connected");
        let mut request =
            request_head(method, path, &self.target.host, headers, body.len()).into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request).await.map_err(HttpError::Io)?;
        self.buf.clear();
        let head = read_head(stream, &mut self.buf).await?;
        let mut body = Vec::new();
        let framing = head.framing()?;
        match framing {
            Framing::Length(len) => {
                while self.buf.len() < len {
                    if read_more(stream, &mut self.buf).await? == 0 {
                        return Err(HttpError::Eof);
                    }
                }
                body.extend_from_slice(&self.buf[..len]);
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                loop {
                    decoder.decode(&self.buf, &mut body)?;
                    self.buf.clear();
                    if decoder.is_done() {
                        break;
                    }
                    if body.len() > MAX_BODY {
                        return Err(HttpError::Malformed("body too long".into()));
                    }
                    if read_more(stream, &mut self.buf).await? == 0 {
                        return Err(HttpError::Eof);
                    }
                }
            }
            Framing::UntilClose => loop {
                body.append(&mut self.buf);
                if body.len() > MAX_BODY {
                    return Err(HttpError::Malformed("body too long".into()));
                }
                if read_more(stream, &mut self.buf).await? == 0 {
                    break;
                }
            },
        }
        let reusable = head.keeps_alive() && framing != Framing::UntilClose;
        Ok((
            Response {
                status: head.status,
                body,
            },
            reusable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head_and_its_framing() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nrest";
        let (head, used) = ResponseHead::parse(raw).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(&raw[used..], b"rest");
        assert_eq!(head.header("content-type"), Some("text/event-stream"));
        assert_eq!(head.framing().unwrap(), Framing::Chunked);
        assert!(head.keeps_alive());

        let raw = b"HTTP/1.1 202 Accepted\r\ncontent-length: 12\r\nconnection: close\r\n\r\n";
        let (head, _) = ResponseHead::parse(raw).unwrap().unwrap();
        assert_eq!(
            (head.status, head.framing().unwrap()),
            (202, Framing::Length(12))
        );
        assert!(!head.keeps_alive());
    }

    #[test]
    fn waits_for_a_whole_head_and_rejects_garbage() {
        assert!(
            ResponseHead::parse(b"HTTP/1.1 200 OK\r\n")
                .unwrap()
                .is_none()
        );
        assert!(ResponseHead::parse(b"SSH-2.0\r\n\r\n").is_err());
        assert!(ResponseHead::parse(b"HTTP/1.1 200 OK\r\nbad\r\n\r\n").is_err());
    }

    const CHUNKED: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";

    #[test]
    fn decodes_chunks_split_anywhere() {
        for split in 0..=CHUNKED.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let a = d.decode(&CHUNKED[..split], &mut out).unwrap();
            assert_eq!(a, split.min(CHUNKED.len() - 4));
            let b = d.decode(&CHUNKED[a..], &mut out).unwrap();
            assert_eq!(out, b"hello, world", "split at {split}");
            assert!(d.is_done());
            assert_eq!(&CHUNKED[a + b..], b"NEXT");
        }
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        d.decode(b"5\r\nhello\r\n", &mut out).unwrap();
        assert!(!d.is_done());
        d.decode(b"0\r\n\r\n", &mut out).unwrap();
        assert!(d.is_done());
    }

    #[test]
    fn rejects_bad_chunk_framing() {
        for bad in [&b"zz\r\n"[..], b"\r\n", b"3\r\nabcX", b"3\n"] {
            let mut out = Vec::new();
            assert!(
                ChunkedDecoder::new().decode(bad, &mut out).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn writes_a_request_head() {
        assert_eq!(
            request_head(
                "POST",
                "/x",
                "h:1",
                &[("content-type", "application/json")],
                2
            ),
            "POST /x HTTP/1.1\r\nhost: h:1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
        );
        assert_eq!(
            request_head("GET", "/s", "h", &[], 0),
            "GET /s HTTP/1.1\r\nhost: h\r\n\r\n"
        );
    }
}
