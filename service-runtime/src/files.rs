//! Files named by settings and read at start (CA bundles, client certificates
//! and keys, and any later file a setting points at), read through one gate.
//!
//! A setting may name anything the process can open: `/dev/zero` or `/dev/urandom`,
//! which never end, a FIFO, whose `open` blocks until a writer appears, a
//! directory, or a regular file far larger than any certificate. Reading such
//! a thing whole grows the process without bound or hangs it before it logs a
//! line. [`read_bounded`] therefore takes only a regular file (symbolic
//! links followed) of at most [`MAX_SETTING_FILE_BYTES`], checked before it is
//! opened, and never reads more than that, so a file that grows between the
//! check and the read is refused too. Anything else stops the service with one
//! line naming the variable and the file.

use std::io::Read;
use std::path::Path;

/// The largest file a setting may name: 1 MiB, far above any PEM bundle of
/// certificates or keys (the Mozilla root store is about 220 KiB).
pub const MAX_SETTING_FILE_BYTES: u64 = 1024 * 1024;

/// Reads the file at `path` whole: a regular file of at most
/// [`MAX_SETTING_FILE_BYTES`]. The error is the reason alone; the caller names
/// the file (a variable, through [`crate::config::read_setting_file`], or the
/// file that names it).
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    // `metadata` follows links and never blocks, unlike opening a FIFO.
    let metadata = std::fs::metadata(path).map_err(|e| format!("cannot read the file: {e}"))?;
    check_kind_and_size(&metadata)?;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_SETTING_FILE_BYTES.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.len() as u64 > MAX_SETTING_FILE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Why a file with `metadata` may not be read as a setting, if it may not.
fn check_kind_and_size(metadata: &std::fs::Metadata) -> Result<(), String> {
    if !metadata.is_file() {
        let kind = if metadata.is_dir() {
            "a directory"
        } else {
            "a device, FIFO or socket"
        };
        return Err(format!("expected a regular file, found {kind}"));
    }
    if metadata.len() > MAX_SETTING_FILE_BYTES {
        return Err(too_large());
    }
    Ok(())
}

/// The reason for a file over the bound.
fn too_large() -> String {
    format!(
        "the file is larger than {MAX_SETTING_FILE_BYTES} bytes (1 MiB), the most a setting file may hold"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own for one test, removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("setting-files-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str, bytes: &[u8]) -> String {
            let path = self.0.join(name);
            std::fs::write(&path, bytes).unwrap();
            path.display().to_string()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_small_regular_file_is_read_whole() {
        let scratch = Scratch::new("small");
        let path = scratch.file("ca.pem", b"-----BEGIN CERTIFICATE-----\n");
        assert_eq!(
            read_bounded(Path::new(&path)).unwrap(),
            b"-----BEGIN CERTIFICATE-----\n"
        );
        let limit = usize::try_from(MAX_SETTING_FILE_BYTES).unwrap();
        let at_limit = scratch.file("at-limit.pem", &vec![b'a'; limit]);
        assert_eq!(read_bounded(Path::new(&at_limit)).unwrap().len(), limit);
    }

    #[test]
    fn devices_directories_and_large_files_are_refused_with_the_reason() {
        let scratch = Scratch::new("refused");
        let limit = usize::try_from(MAX_SETTING_FILE_BYTES).unwrap();
        let large = scratch.file("large.pem", &vec![b'a'; limit + 1]);
        let dir = scratch.0.display().to_string();
        for (path, reason) in [
            (
                "/dev/zero",
                "expected a regular file, found a device, FIFO or socket",
            ),
            (dir.as_str(), "expected a regular file, found a directory"),
            (large.as_str(), "larger than 1048576 bytes"),
            ("/nonexistent/ca.pem", "cannot read the file"),
        ] {
            let error = read_bounded(Path::new(path)).unwrap_err();
            assert!(error.contains(reason), "{path}: {error}");
        }
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let scratch = Scratch::new("fifo");
        let fifo = scratch.0.join("ca.pem");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Opening a FIFO for reading blocks until a writer comes: were it
        // opened, this test would hang instead of failing.
        let error = read_bounded(&fifo).unwrap_err();
        assert!(error.contains("FIFO"), "{error}");
    }
}
