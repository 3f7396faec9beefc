//! Credentials read at start and never shown again.
//!
//! A secret is named in the suppliers file by where it lives (`*_env`: an
//! environment variable's name, `*_file`: a file's path), never written there
//! itself, so the file can be committed and the secret mounted. Its value is
//! held as a [`Secret`], whose `Debug` and `Display` print `[redacted]`, so a
//! secret cannot reach a log line, an error, `/readyz` or a metric by accident.

use std::fmt;
use std::path::Path;

/// A credential's value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (tests, and values read by [`resolve`]).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it to the partner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a secret is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An environment variable's name.
    Env(String),
    /// A file's path; surrounding whitespace (a trailing newline) is dropped.
    File(String),
}

/// Reads the secret at `source`, looking variables up with `lookup`; the error
/// names the variable or file, never the value.
pub fn resolve(source: &Source, lookup: impl Fn(&str) -> Option<String>) -> Result<Secret, String> {
    let value = match source {
        Source::Env(name) => {
            lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?
        }
        Source::File(path) => {
            read_file(Path::new(path)).map_err(|why| format!("secret file {path}: {why}"))?
        }
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(match source {
            Source::Env(name) => format!("environment variable {name} is empty"),
            Source::File(path) => format!("secret file {path} is empty"),
        });
    }
    Ok(Secret(value.to_owned()))
}

/// The secret file's text, read under the rules of every file a setting names.
fn read_file(path: &Path) -> Result<String, String> {
    let bytes = service_runtime::files::read_bounded(path)?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_errors_name_only_the_source() {
        let secret = resolve(&Source::Env("TOKEN".into()), |_| Some(" s3cret\n".into())).unwrap();
        assert_eq!(secret.expose(), "s3cret");
        assert_eq!(format!("{secret} {secret:?}"), "[redacted] [redacted]");
        let err = resolve(&Source::Env("TOKEN".into()), |_| None).unwrap_err();
        assert!(err.contains("TOKEN"), "{err}");
        assert!(resolve(&Source::Env("TOKEN".into()), |_| Some("  ".into())).is_err());
        let dir = std::env::temp_dir().join(format!("secret-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "from-file\n").unwrap();
        let path = file.to_str().unwrap().to_owned();
        assert_eq!(
            resolve(&Source::File(path), |_| None).unwrap().expose(),
            "from-file"
        );
        let err = resolve(&Source::File(dir.to_str().unwrap().into()), |_| None).unwrap_err();
        assert!(err.contains("expected a regular file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
