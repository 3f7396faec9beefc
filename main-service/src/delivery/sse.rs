//! Server-Sent Events framing: the exact bytes of each piece of an event stream.
//!
//! Frames are built once per stored entry and shared by every client of the
//! search, so this module only turns values into bytes; it knows nothing about
//! connections.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use contract::EntryId;

/// `Content-Type` of an event stream.
pub const CONTENT_TYPE: &str = "text/event-stream";

/// The comment sent while a stream is idle.
pub const KEEP_ALIVE: Bytes = Bytes::from_static(b": keep-alive\n\n");

/// `retry: <ms>\n\n`, the reconnect delay EventSource should use.
pub fn retry(delay: Duration) -> Bytes {
    Bytes::from(format!("retry: {}\n\n", delay.as_millis()))
}

/// `id: <id>\ndata: <data>\n\n`.
///
/// `data` is forwarded as stored. A line break inside it would end the `data:`
/// field early, so each line becomes its own `data:` field, which EventSource
/// joins back with `\n`: compact JSON never has one, but a hand-written entry
/// must not be able to break the framing of the events after it.
pub fn event(id: EntryId, data: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(data.len() + 48);
    frame.put_slice(b"id: ");
    frame.put_slice(id.to_string().as_bytes());
    frame.put_u8(b'\n');
    // `contains` on bytes is std's memchr: events can be large, and this check
    // is all that compact JSON ever needs.
    if data.contains(&b'\n') || data.contains(&b'\r') {
        for line in lines(data) {
            put_data_line(&mut frame, line);
        }
    } else {
        put_data_line(&mut frame, data);
    }
    frame.put_u8(b'\n');
    frame.freeze()
}

/// `data: <line>\n`.
fn put_data_line(frame: &mut BytesMut, line: &[u8]) {
    frame.put_slice(b"data: ");
    frame.put_slice(line);
    frame.put_u8(b'\n');
}

/// Splits at `\r\n`, `\r` or `\n`, the line ends SSE recognises.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.iter().position(|&b| b == b'\n' || b == b'\r') {
            None => {
                rest = None;
                Some(text)
            }
            Some(end) => {
                let skip = if text[end..].starts_with(b"\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&text[end + skip..]);
                Some(&text[..end])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> EntryId {
        "1700000000000-3".parse().unwrap()
    }

    #[test]
    fn an_event_is_its_id_and_one_data_line() {
        let frame = event(id(), br#"{"status":"processing","results":[]}"#);
        assert_eq!(
            &frame[..],
            b"id: 1700000000000-3\ndata: {\"status\":\"processing\",\"results\":[]}\n\n"
        );
    }

    #[test]
    fn line_breaks_in_data_become_separate_data_fields() {
        let frame = event(id(), b"{\n\"a\":1\r\n}\rx");
        assert_eq!(
            &frame[..],
            b"id: 1700000000000-3\ndata: {\ndata: \"a\":1\ndata: }\ndata: x\n\n"
        );
        assert_eq!(&event(id(), b"")[..], b"id: 1700000000000-3\ndata: \n\n");
    }

    #[test]
    fn retry_and_keep_alive() {
        assert_eq!(&retry(Duration::from_millis(2000))[..], b"retry: 2000\n\n");
        assert_eq!(&KEEP_ALIVE[..], b": keep-alive\n\n");
    }
}
