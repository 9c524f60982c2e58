//! Output directories written atomically: files go to a staging directory beside the
//! target and the whole directory is renamed into place at the end, so a crash never
//! leaves a half-written result, and an earlier run's directory is only replaced when
//! the user says `--force`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors writing output.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The directory exists and `--force` was not given.
    #[error(
        "output directory {0} already exists; choose another --out or pass --force to replace it"
    )]
    Exists(PathBuf),
    /// A filesystem operation failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A directory being written; call [`Staged::commit`] to move it into place.
#[derive(Debug)]
pub struct Staged {
    target: PathBuf,
    staging: PathBuf,
    force: bool,
    committed: bool,
}

impl Staged {
    /// Start writing `target`. Fails at once if it exists and `force` is false, so no
    /// work is wasted.
    pub fn new(target: &Path, force: bool) -> Result<Self, OutputError> {
        if target.exists() && !force {
            return Err(OutputError::Exists(target.to_path_buf()));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(io(parent))?;
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        fs::create_dir_all(&staging).map_err(io(&staging))?;
        Ok(Staged {
            target: target.to_path_buf(),
            staging,
            force,
            committed: false,
        })
    }

    /// Where a file named `name` is being written.
    pub fn path(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// The final location.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Write a whole file into the staging directory.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, OutputError> {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut f = fs::File::create(&path).map_err(io(&path))?;
        f.write_all(bytes).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        Ok(path)
    }

    /// Move the staging directory into place (replacing an old one only with force).
    pub fn commit(mut self) -> Result<PathBuf, OutputError> {
        if self.target.exists() {
            if !self.force {
                return Err(OutputError::Exists(self.target.clone()));
            }
            fs::remove_dir_all(&self.target).map_err(io(&self.target))?;
        }
        fs::rename(&self.staging, &self.target).map_err(io(&self.target))?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Write one file atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("spikenas-output-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn refuses_existing_without_force_and_replaces_with_force() {
        let dir = tmp("force");
        let s = Staged::new(&dir, false).unwrap();
        s.write("a.txt", b"one").unwrap();
        s.commit().unwrap();
        assert!(matches!(
            Staged::new(&dir, false),
            Err(OutputError::Exists(_))
        ));
        let s = Staged::new(&dir, true).unwrap();
        s.write("b.txt", b"two").unwrap();
        // Until commit, the old result is untouched.
        assert_eq!(fs::read(dir.join("a.txt")).unwrap(), b"one");
        s.commit().unwrap();
        assert!(!dir.join("a.txt").exists());
        assert_eq!(fs::read(dir.join("b.txt")).unwrap(), b"two");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dropped_stage_leaves_nothing() {
        let dir = tmp("drop");
        {
            let s = Staged::new(&dir, false).unwrap();
            s.write("x", b"1").unwrap();
        }
        assert!(!dir.exists());
        let leftovers = fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("output-drop")
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
