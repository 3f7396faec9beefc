//! What every request's head must satisfy, whatever its route: exactly one
//! well-formed `Host` (HTTP/1.0 may omit it) and at most one `Content-Type`.
//! A request that breaks either is answered 400 before routing.
//!
//! Both are about ambiguity: when a request can be read two ways, a proxy or
//! cache in front may read it one way and this service the other (cache
//! poisoning, routing confusion, request smuggling). RFC 9112 §3.2 makes a
//! missing, repeated or invalid `Host` a 400; a repeated singleton field such
//! as `Content-Type` has no defined meaning (RFC 9110 §5.3).

use hyper::Version;
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderValue};

use crate::answer::api_error::ApiError;

/// The 400 for a request whose head breaks a rule of the module docs.
pub(crate) fn problem(version: Version, headers: &HeaderMap) -> Option<ApiError> {
    host_problem(version, headers).or_else(|| {
        (headers.get_all(CONTENT_TYPE).iter().count() > 1).then(|| {
            ApiError::field(
                "content-type",
                "a request must carry at most one Content-Type header",
            )
        })
    })
}

/// The 400 for a request with several `Host` headers, one that is not
/// `host[:port]`, or an HTTP/1.1 one without any (HTTP/1.0 predates the
/// header and may omit it).
fn host_problem(version: Version, headers: &HeaderMap) -> Option<ApiError> {
    let mut hosts = headers.get_all(HOST).iter();
    let error = |message| Some(ApiError::field("host", message));
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => {
            error("an HTTP/1.1 request must carry a Host header")
        }
        (None, _) => None,
        (Some(_), Some(_)) => error("a request must carry at most one Host header"),
        (Some(host), None) if !is_host_and_port(host) => {
            error("must be a host name or IP address with an optional :port")
        }
        (Some(_), None) => None,
    }
}

/// True if and only if `value` is `uri-host [ ":" port ]` (RFC 9110 §7.2,
/// RFC 3986 §3.2.2): an `[IP-literal]`, or a non-empty name of unreserved
/// characters, percent escapes and sub-delimiters, then digits after a colon.
/// The comma, a sub-delimiter the grammar allows, is refused: no host name
/// has one, and `a,b` is what a proxy makes of two `Host` headers.
fn is_host_and_port(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    let (host, port) = if let Some(literal) = bytes.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let (inside, after) = (&literal[..end], &literal[end + 1..]);
        let port = match after {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return false,
        };
        if inside.is_empty() || !inside.iter().all(|&b| b == b':' || is_name_byte(b)) {
            return false;
        }
        (None, port)
    } else {
        match bytes.iter().position(|&b| b == b':') {
            Some(colon) => (Some(&bytes[..colon]), Some(&bytes[colon + 1..])),
            None => (Some(bytes), None),
        }
    };
    let host_ok = host.is_none_or(|name| !name.is_empty() && is_reg_name(name));
    let port_ok = port.is_none_or(|port| port.len() <= 5 && port.iter().all(u8::is_ascii_digit));
    host_ok && port_ok
}

/// A `reg-name` without commas: name bytes and `%XX` escapes.
fn is_reg_name(name: &[u8]) -> bool {
    let mut rest = name;
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            match tail {
                [a, b, after @ ..] if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
                    rest = after;
                }
                _ => return false,
            }
        } else if is_name_byte(first) {
            rest = tail;
        } else {
            return false;
        }
    }
    true
}

/// Unreserved characters and the sub-delimiters other than the comma.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=".contains(&b)
}

#[cfg(test)]
mod tests {
    use hyper::StatusCode;

    use super::*;

    fn with_hosts(hosts: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(HOST, HeaderValue::from_str(host).unwrap());
        }
        headers
    }

    #[test]
    fn http_1_1_needs_exactly_one_host() {
        let none = HeaderMap::new();
        let error = problem(Version::HTTP_11, &none).expect("missing Host");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert!(problem(Version::HTTP_10, &none).is_none());
        assert!(problem(Version::HTTP_11, &with_hosts(&["a.test"])).is_none());
        let two = with_hosts(&["a.test", "b.test"]);
        assert!(problem(Version::HTTP_11, &two).is_some());
        assert!(problem(Version::HTTP_10, &two).is_some());
    }

    #[test]
    fn hosts_must_be_a_name_or_address_with_an_optional_port() {
        for good in [
            "localhost",
            "localhost:8080",
            "api.example.com",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "xn--bcher-kva.example",
            "my%2Dhost",
        ] {
            assert!(
                problem(Version::HTTP_11, &with_hosts(&[good])).is_none(),
                "{good}"
            );
        }
        for bad in [
            "",
            "a b",
            "x, y",
            "x,y",
            "host:port",
            "host:123456",
            "[::1",
            "[]",
            "[::1]x",
            "user@host",
            "a/b",
            "%zz",
            ":80",
        ] {
            let error = problem(Version::HTTP_11, &with_hosts(&[bad]));
            assert_eq!(
                error.map(|e| e.status()),
                Some(StatusCode::BAD_REQUEST),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_second_content_type_is_refused() {
        let mut headers = with_hosts(&["a.test"]);
        headers.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(problem(Version::HTTP_11, &headers).is_none());
        headers.append(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let error = problem(Version::HTTP_11, &headers).expect("two Content-Type");
        let body = serde_json::to_value(error.envelope()).unwrap();
        assert_eq!(body["errors"][0]["field"], "content-type");
    }
}
