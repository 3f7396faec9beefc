//! The W3C `traceparent` of a search, as it travels in its queue entry: the
//! trace it belongs to and the span that queued it.
//!
//! Only version `00` of <https://www.w3.org/TR/trace-context/> is read, in its
//! exact form (`00-` 32 hex digits `-` 16 hex digits `-` 2 hex digits,
//! lowercase, ids not all zero). Anything else is no trace context at all,
//! never an error: tracing is informational and must not fail a search.

use std::fmt;

/// A trace id, a parent span id and the trace flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace's 16-byte id, big-endian.
    pub trace_id: u128,
    /// The 8-byte id of the span that is the parent of what follows.
    pub span_id: u64,
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// Reads a `traceparent` value; `None` unless it is a valid version 00 one.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let mut parts = text.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != "00" {
            return None;
        }
        let trace_id = lower_hex(trace, 32).and_then(|t| u128::from_str_radix(t, 16).ok())?;
        let span_id = lower_hex(span, 16).and_then(|s| u64::from_str_radix(s, 16).ok())?;
        let flags = lower_hex(flags, 2).and_then(|f| u8::from_str_radix(f, 16).ok())?;
        (trace_id != 0 && span_id != 0).then_some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    /// Whether the trace is being recorded upstream.
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// `text` if it is exactly `len` lowercase hex digits.
fn lower_hex(text: &str, len: usize) -> Option<&str> {
    (text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then_some(text)
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(text).unwrap();
        assert_eq!(parsed.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parsed.span_id, 0x00f067aa0ba902b7);
        assert!(parsed.is_sampled());
        assert_eq!(parsed.to_string(), text);
    }

    #[test]
    fn anything_but_an_exact_version_00_value_is_ignored() {
        for text in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(text), None, "{text}");
        }
    }
}
