//! The firmware runtime vendored into every generated crate, so the crate builds on its
//! own, anywhere (another machine, CI, a colleague's folder), with no path back to the
//! spikenas checkout.
//!
//! `generate` writes `vendor/spikenas-firmware/`: the manifest from the template
//! (`firmware/template/vendor/spikenas-firmware/Cargo.toml`: the runtime's own manifest
//! inherits from the spikenas workspace, which a lone crate does not have) and every file
//! of `firmware/src/` as this binary was built with it ([`crate::assets::FIRMWARE`]): the
//! very kernels the host computes its integer predictions with. The SHA-256 of each file
//! goes into the crate's metadata ([`super::CrateInfo::vendor`]); `build` checks them
//! before cargo runs, so an edited or damaged runtime cannot make the device disagree
//! with the host unnoticed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::BoardAppError;

/// Where the runtime goes, relative to the crate.
pub const DIR: &str = "vendor/spikenas-firmware";

/// The vendored runtime as recorded in the crate's metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vendored {
    /// The folder, relative to the crate ([`DIR`]).
    pub dir: String,
    /// SHA-256 (hex) of every file, by its path relative to `dir`.
    pub sha256: BTreeMap<String, String>,
}

/// SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The runtime's files, `(path relative to [`DIR`], text)`: `manifest` as `Cargo.toml`
/// and the embedded `src/` files.
pub fn files(manifest: &str) -> Vec<(String, String)> {
    let mut out = vec![("Cargo.toml".to_string(), manifest.to_string())];
    out.extend(
        crate::assets::FIRMWARE
            .iter()
            .filter(|(name, _)| name.starts_with("src/"))
            .map(|(name, text)| (name.to_string(), text.to_string())),
    );
    out
}

impl Vendored {
    /// The record of `files` (from [`files`]).
    pub fn of(files: &[(String, String)]) -> Vendored {
        Vendored {
            dir: DIR.to_string(),
            sha256: files
                .iter()
                .map(|(name, text)| (name.clone(), sha256_hex(text.as_bytes())))
                .collect(),
        }
    }

    /// Checks the vendored runtime of the crate in `krate`: every recorded file is there
    /// with its checksum, and no other file is.
    pub fn verify(&self, krate: &Path) -> Result<(), BoardAppError> {
        let dir = krate.join(&self.dir);
        let bad = |file: &Path, why: String| BoardAppError::Vendor {
            file: file.to_path_buf(),
            why,
        };
        for (name, expected) in &self.sha256 {
            let path = dir.join(name);
            let bytes =
                std::fs::read(&path).map_err(|e| bad(&path, format!("it cannot be read ({e})")))?;
            let found = sha256_hex(&bytes);
            if &found != expected {
                return Err(bad(
                    &path,
                    format!(
                        "its SHA-256 is {found}, but {} records {expected}",
                        super::CRATE_INFO_FILE
                    ),
                ));
            }
        }
        for path in walk(&dir)? {
            let name = relative(&dir, &path);
            if !self.sha256.contains_key(&name) {
                return Err(bad(
                    &path,
                    format!(
                        "it is not part of the vendored runtime ({} lists no such file)",
                        super::CRATE_INFO_FILE
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Removes the files under `krate/`[`DIR`] that `keep` does not list (a runtime file of
/// an earlier generation that the current runtime no longer has).
pub fn remove_stale(krate: &Path, keep: &[(String, String)]) -> Result<(), BoardAppError> {
    let dir = krate.join(DIR);
    if !dir.is_dir() {
        return Ok(());
    }
    for path in walk(&dir)? {
        let name = relative(&dir, &path);
        if !keep.iter().any(|(k, _)| *k == name) {
            std::fs::remove_file(&path).map_err(BoardAppError::io(&path))?;
        }
    }
    Ok(())
}

/// `path` relative to `dir`, with `/` separators.
fn relative(dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every file under `dir` (none if it is missing), `target/` skipped.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, BoardAppError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BoardAppError::io(&d)(e)),
        };
        for entry in entries {
            let path = entry.map_err(BoardAppError::io(&d))?.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    stack.push(path);
                }
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_inputs() {
        // FIPS 180-2, appendix B.1, and the empty string.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_runtime_source_file_is_vendored() {
        let files = files("[package]\n");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware");
        let on_disk = walk(&root.join("src")).unwrap();
        assert_eq!(files.len(), on_disk.len() + 1);
        for path in on_disk {
            let name = format!("src/{}", relative(&root.join("src"), &path));
            let (_, text) = files.iter().find(|(n, _)| *n == name).unwrap();
            assert_eq!(*text, std::fs::read_to_string(&path).unwrap(), "{name}");
        }
    }

    #[test]
    fn an_edited_missing_or_extra_file_is_named() {
        let krate = std::env::temp_dir().join(format!("spikenas-vendor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&krate);
        let files = vec![
            ("Cargo.toml".to_string(), "[package]\n".to_string()),
            ("src/lib.rs".to_string(), "pub fn f() {}\n".to_string()),
        ];
        for (name, text) in &files {
            let path = krate.join(DIR).join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let record = Vendored::of(&files);
        record.verify(&krate).unwrap();

        let lib = krate.join(DIR).join("src/lib.rs");
        std::fs::write(&lib, "pub fn f() { loop {} }\n").unwrap();
        let err = record.verify(&krate).unwrap_err().to_string();
        assert!(
            err.contains(&lib.display().to_string())
                && err.contains("SHA-256")
                && err.contains("generate"),
            "{err}"
        );
        std::fs::remove_file(&lib).unwrap();
        let err = record.verify(&krate).unwrap_err().to_string();
        assert!(
            err.contains("src/lib.rs") && err.contains("cannot be read"),
            "{err}"
        );

        std::fs::write(&lib, "pub fn f() {}\n").unwrap();
        let extra = krate.join(DIR).join("src/extra.rs");
        std::fs::write(&extra, "").unwrap();
        let err = record.verify(&krate).unwrap_err().to_string();
        assert!(
            err.contains("src/extra.rs") && err.contains("not part"),
            "{err}"
        );
        remove_stale(&krate, &files).unwrap();
        assert!(!extra.exists());
        record.verify(&krate).unwrap();
        std::fs::remove_dir_all(&krate).unwrap();
    }
}
