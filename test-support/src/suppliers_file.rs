//! A `SUPPLIERS_FILE` written for one test: the TOML file in a directory of
//! its own, beside the files its tables name (CA, client certificate, key),
//! removed on Drop.

use std::path::PathBuf;

/// A suppliers file in a directory of its own, removed on Drop.
pub struct SuppliersFile {
    /// Holds `suppliers.toml` and the files written beside it.
    dir: PathBuf,
}

impl SuppliersFile {
    /// A file of `tables`, in which `{dir}` stands for the file's directory
    /// (where files written with [`SuppliersFile::file`] go).
    pub fn new(tables: &str) -> SuppliersFile {
        let dir = std::env::temp_dir().join(format!("suppliers-file-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the file's directory");
        let file = SuppliersFile { dir };
        let text = tables.replace("{dir}", file.dir.to_str().expect("UTF-8 path"));
        std::fs::write(file.path(), text).expect("write the suppliers file");
        file
    }

    /// The file's path: the value of `SUPPLIERS_FILE`.
    pub fn path(&self) -> String {
        self.file("suppliers.toml", None)
    }

    /// The path of `name` in the file's directory, written with `text` if given.
    pub fn file(&self, name: &str, text: Option<&str>) -> String {
        let path = self.dir.join(name);
        if let Some(text) = text {
            std::fs::write(&path, text).expect("write a file beside the suppliers file");
        }
        path.to_str().expect("UTF-8 path").to_owned()
    }
}

impl Drop for SuppliersFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `[[supplier]]` table: `code` speaking `style` at `url`, selling
/// `airlines` (a TOML array), with the answer cache off, then `extra` lines.
pub fn supplier_table(code: &str, style: &str, url: &str, airlines: &str, extra: &str) -> String {
    format!(
        "[[supplier]]\ncode = \"{code}\"\nstyle = \"{style}\"\nbase_url = \"{url}\"\n\
         airlines = {airlines}\ncache_ttl_secs = 0\n{extra}\n"
    )
}
