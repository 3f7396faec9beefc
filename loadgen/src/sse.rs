//! The `text/event-stream` body, parsed incrementally and strictly against the
//! event contract: each event is one `id:` and one `data:` line, `retry:` and
//! `: comment` lines are allowed, anything else is a protocol error. The one
//! SSE parser of the workspace: the test support's SSE client uses it too.
//!
//! Bytes may arrive split anywhere (inside a line, inside a UTF-8 sequence), so
//! the parser keeps the unfinished line and the fields of the unfinished event
//! between calls to [`SseParser::feed`].

/// Longest line accepted; a `data:` line carries one event's JSON, a few KiB.
const MAX_LINE: usize = 1 << 20;

/// One complete item of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// `retry: <ms>`.
    Retry(u64),
    /// `: <text>`, the keep-alive: its text, trimmed.
    Comment(String),
    /// An event, dispatched by the blank line that ends it.
    Event {
        /// The `id:` field: the Redis stream entry id.
        id: String,
        /// The `data:` field: the event JSON.
        data: String,
    },
}

/// The body broke the event contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line that is not UTF-8.
    #[error("SSE line is not UTF-8")]
    NotUtf8,
    /// A field other than `id`, `data`, `retry`.
    #[error("unexpected SSE field `{0}`")]
    UnknownField(String),
    /// A second `data:` line in one event.
    #[error("SSE event with more than one data line")]
    MultipleData,
    /// An event with `id:` but no `data:`, or the reverse.
    #[error("SSE event without both id and data")]
    Incomplete,
    /// `retry:` with a non-numeric value.
    #[error("SSE retry value {0:?} is not a number")]
    BadRetry(String),
    /// A line over [`MAX_LINE`] bytes.
    #[error("SSE line longer than {MAX_LINE} bytes")]
    LineTooLong,
}

/// Incremental parser state for one response body.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet ended by `\n`.
    line: Vec<u8>,
    /// `id:` of the event being read.
    id: Option<String>,
    /// `data:` of the event being read.
    data: Option<String>,
}

impl SseParser {
    /// A parser at the start of a body.
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Parses `bytes`, appending every item they complete to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseItem>) -> Result<(), SseError> {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let line = if self.line.is_empty() {
                self.parse_line(&bytes[..end], out)
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&bytes[..end]);
                let result = self.parse_line(&line, out);
                line.clear();
                self.line = line;
                result
            };
            line?;
            bytes = &bytes[end + 1..];
        }
        if self.line.len() + bytes.len() > MAX_LINE {
            return Err(SseError::LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// True if and only if the body so far ends between items, so that ending
    /// the response here loses nothing.
    pub fn at_boundary(&self) -> bool {
        self.line.is_empty() && self.id.is_none() && self.data.is_none()
    }

    fn parse_line(&mut self, line: &[u8], out: &mut Vec<SseItem>) -> Result<(), SseError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return match (self.id.take(), self.data.take()) {
                (Some(id), Some(data)) => {
                    out.push(SseItem::Event { id, data });
                    Ok(())
                }
                (None, None) => Ok(()),
                _ => Err(SseError::Incomplete),
            };
        }
        if let Some(text) = line.strip_prefix(b":") {
            out.push(SseItem::Comment(
                String::from_utf8_lossy(text).trim().to_owned(),
            ));
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "id" => self.id = Some(value.to_owned()),
            "data" if self.data.is_some() => return Err(SseError::MultipleData),
            "data" => self.data = Some(value.to_owned()),
            "retry" => {
                let ms = value
                    .parse()
                    .map_err(|_| SseError::BadRetry(value.to_owned()))?;
                out.push(SseItem::Retry(ms));
            }
            other => return Err(SseError::UnknownField(other.to_owned())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"retry: 2000\n\n: keep-alive\n\nid: 1-0\ndata: {\"a\":\"\xc3\xa9\"}\n\nid: 1-1\r\ndata: {}\r\n\r\n";

    fn expected() -> Vec<SseItem> {
        vec![
            SseItem::Retry(2000),
            SseItem::Comment("keep-alive".into()),
            SseItem::Event {
                id: "1-0".into(),
                data: "{\"a\":\"é\"}".into(),
            },
            SseItem::Event {
                id: "1-1".into(),
                data: "{}".into(),
            },
        ]
    }

    #[test]
    fn parses_a_whole_body() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(BODY, &mut out).unwrap();
        assert_eq!(out, expected());
        assert!(p.at_boundary());
    }

    #[test]
    fn any_split_gives_the_same_items() {
        for split in 0..=BODY.len() {
            let mut p = SseParser::new();
            let mut out = Vec::new();
            p.feed(&BODY[..split], &mut out).unwrap();
            p.feed(&BODY[split..], &mut out).unwrap();
            assert_eq!(out, expected(), "split at {split}");
        }
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for b in BODY {
            p.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, expected());
    }

    #[test]
    fn mid_event_is_not_a_boundary() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"id: 1-0\n", &mut out).unwrap();
        assert!(!p.at_boundary());
        p.feed(b"data: {}\n", &mut out).unwrap();
        assert!(out.is_empty() && !p.at_boundary());
        p.feed(b"\n", &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(p.at_boundary());
    }

    #[test]
    fn rejects_what_the_contract_forbids() {
        let cases: [(&[u8], SseError); 5] = [
            (b"event: x\n", SseError::UnknownField("event".into())),
            (b"data: {}\ndata: {}\n", SseError::MultipleData),
            (b"data: {}\n\n", SseError::Incomplete),
            (b"retry: soon\n", SseError::BadRetry("soon".into())),
            (b"id: \xff\n", SseError::NotUtf8),
        ];
        for (body, error) in cases {
            let mut out = Vec::new();
            assert_eq!(SseParser::new().feed(body, &mut out), Err(error));
        }
    }
}
