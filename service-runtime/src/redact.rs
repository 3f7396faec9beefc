//! Keeping credentials out of output.
//!
//! A Redis URL may carry a password in its userinfo (`redis://user:password@host`).
//! Every place that shows a URL (configuration errors, logs, `Debug` output) shows
//! [`redact_url`] of it instead, so the password never reaches a terminal, a log
//! collector or a crash report.

/// What a password is replaced with.
const MASK: &str = "***";

/// Returns `url` with the password in its userinfo replaced by `***`; the user
/// name stays, so a log still says who connected. Works on text that is not a
/// valid URL too, since a malformed value is exactly what an error message shows:
/// the userinfo is taken to end at the last `@` (a host, port, path or query
/// never contains one), and a userinfo without `:` is masked whole, because
/// `redis://s3cret@host` is a common way to mistype a password-only URL.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = rest.split_at(at);
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:{MASK}"),
        None if userinfo.is_empty() => String::new(),
        None => MASK.to_owned(),
    };
    format!("{scheme}{user}{host}")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_masked_and_user_names_kept() {
        let cases = [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("rediss://:s3cret@h:6380/2", "rediss://:***@h:6380/2"),
            ("redis://app:s3cret@h:6379", "redis://app:***@h:6379"),
            ("redis://s3cret@h", "redis://***@h"),
            ("redis://@h", "redis://@h"),
            // Not valid URLs, still masked: raw `@`, `/` and `:` inside the password.
            ("redis://app:s3@c/r:et@h:1", "redis://app:***@h:1"),
            ("rediss://:s3cret@h:notaport", "rediss://:***@h:notaport"),
            ("app:s3cret@h:6379", "app:***@h:6379"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
