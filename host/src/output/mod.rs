//! Output folders written atomically, and replaced only when that is safe.
//!
//! Files go to a staging folder beside the target (`.NAME.partial-PID-N`), which is
//! renamed into place at the end, so a crash never leaves a half-written result. Every
//! output folder holds a marker file, [`MARKER`]; `--force` replaces only a folder that
//! carries it (spikenas wrote it), never `/`, the home folder, the current folder or one
//! of its parents, and never a file or a symbolic link. The old folder stays whole until
//! the new one is complete: it is renamed away (`.NAME.old-PID-N`), the new one renamed
//! in, and only then is the old one deleted.
//!
//! Every check runs in [`Staged::new`], before any long work, and again in
//! [`Staged::commit`]. Staging and old folders left by processes that died are cleaned
//! up by the next [`Staged::new`] for the same target (only folders that carry the
//! marker; an old folder whose target is missing is put back). A staging folder that
//! holds a training state ([`RESUMABLE`]) is work to keep, not litter: it is moved into
//! place when the target is missing (an interrupted run, resumable with `--resume`) and
//! otherwise left alone.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The file that marks a folder as written by spikenas (so `--force` may replace it).
pub const MARKER: &str = ".spikenas-output";

/// What the [`MARKER`] file says.
pub const MARKER_TEXT: &str = "This folder was written by spikenas-host; `--force` may replace it \
                           as a whole. Remove this file to protect the folder.\n";

/// The file that makes an output folder an interrupted run's, to continue with
/// `--resume` (the training state).
pub const RESUMABLE: &str = crate::train::resume::FILE;

/// Errors writing output.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The folder exists and `--force` was not given.
    #[error(
        "output folder {} already exists. Fix: choose another --out, or pass --force to \
         replace it",
        .0.display()
    )]
    Exists(PathBuf),
    /// The folder holds an interrupted run and `--force` was not given.
    #[error(
        "output folder {} holds an interrupted run (its training state, {RESUMABLE}). Fix: \
         continue it with --resume {}, or pass --force to start over",
        .0.display(),
        .0.display()
    )]
    Interrupted(PathBuf),
    /// The path exists but is not a folder spikenas wrote.
    #[error(
        "{} already exists and was not written by spikenas (it has no {MARKER} marker), \
         so spikenas will not replace it, even with --force. Fix: choose a new path for \
         the output, or move it away yourself",
        .0.display()
    )]
    NotOurs(PathBuf),
    /// A single-file output exists and `--force` was not given.
    #[error(
        "{} already exists. Fix: choose another file name, or pass --force to replace it",
        .0.display()
    )]
    FileExists(PathBuf),
    /// The path is a file, a link or something else that is not a folder.
    #[error(
        "{} is an existing {kind}; spikenas writes its output as a new folder and never \
         replaces a {kind}, even with --force. Fix: choose another path for the output",
        path.display()
    )]
    NotAFolder {
        /// The path as given.
        path: PathBuf,
        /// What is there: `file`, `symbolic link`, ...
        kind: &'static str,
    },
    /// A folder that must never be replaced, even with `--force`.
    #[error(
        "{} ({}) is {what}, which spikenas never replaces, even with --force. Fix: give \
         the output a new folder of its own, e.g. runs/my-run",
        path.display(),
        resolved.display()
    )]
    Protected {
        /// The path as given.
        path: PathBuf,
        /// The path with links and `.`/`..` resolved.
        resolved: PathBuf,
        /// `the current folder`, `your home folder`, ...
        what: &'static str,
    },
    /// The path cannot name an output folder.
    #[error("{} cannot be an output folder: {why}. Fix: {fix}", path.display())]
    BadPath {
        /// The path as given.
        path: PathBuf,
        /// What is wrong.
        why: String,
        /// How to fix it.
        fix: String,
    },
    /// A filesystem operation failed.
    #[error("cannot write {}: {source}", path.display())]
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

/// Makes staging and old-folder names unique within this process (tests stage in
/// parallel threads).
static SEQUENCE: AtomicUsize = AtomicUsize::new(0);

/// A folder being written; call [`Staged::commit`] to move it into place.
#[derive(Debug)]
pub struct Staged {
    /// The target as the user gave it (for messages and [`Staged::target`]).
    target: PathBuf,
    /// The target resolved: an existing parent folder, canonical, joined with the name.
    dest: PathBuf,
    staging: PathBuf,
    force: bool,
    committed: bool,
}

impl Staged {
    /// Start writing `target`. Fails at once, before any work is done, if the target
    /// exists and cannot be replaced: without `force` whenever it exists; with `force`
    /// when it is not a folder spikenas wrote, or is `/`, the home folder, the current
    /// folder or a parent of it.
    pub fn new(target: &Path, force: bool) -> Result<Self, OutputError> {
        let dest = resolve(target)?;
        let (parent, name) = split(&dest);
        // First, so that a result a dead process had moved aside is back in place and
        // judged like any other.
        clean_stale(&parent, &name);
        check_replaceable(target, &dest, force)?;
        let staging = parent.join(format!(
            ".{name}.partial-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&staging).map_err(io(&staging))?;
        let staged = Staged {
            target: target.to_path_buf(),
            dest,
            staging,
            force,
            committed: false,
        };
        staged.write(MARKER, MARKER_TEXT.as_bytes())?;
        Ok(staged)
    }

    /// Where a file named `name` is being written.
    pub fn path(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// The staging folder itself (for writers that fill a folder).
    pub fn dir(&self) -> &Path {
        &self.staging
    }

    /// The final location, as given.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Write a whole file into the staging folder.
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

    /// Removes `name` from the staging folder, if it is there.
    pub fn remove(&self, name: &str) -> Result<(), OutputError> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Move the staging folder into place. An old folder (only with force, and only
    /// one spikenas wrote) is renamed away first and deleted once the new one is in.
    pub fn commit(mut self) -> Result<PathBuf, OutputError> {
        check_replaceable(&self.target, &self.dest, self.force)?;
        if fs::symlink_metadata(&self.dest).is_ok() {
            let (parent, name) = split(&self.dest);
            let old = parent.join(format!(
                ".{name}.old-{}-{}",
                std::process::id(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            ));
            fs::rename(&self.dest, &old).map_err(io(&self.dest))?;
            if let Err(e) = fs::rename(&self.staging, &self.dest) {
                // Put the old result back: the user keeps what they had.
                let _ = fs::rename(&old, &self.dest);
                return Err(io(&self.dest)(e));
            }
            self.committed = true;
            // A failure here leaves a marked `.NAME.old-*` folder that the next run
            // for this target removes.
            let _ = fs::remove_dir_all(&old);
        } else {
            fs::rename(&self.staging, &self.dest).map_err(io(&self.dest))?;
            self.committed = true;
        }
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

/// Cleans up what dead processes left for `target` (as [`Staged::new`] does first):
/// a killed run's training state is moved into place at `target` when it is free, so
/// that `--resume TARGET` finds it.
pub fn recover(target: &Path) {
    if let Ok(dest) = resolve(target) {
        let (parent, name) = split(&dest);
        clean_stale(&parent, &name);
    }
}

/// Refuses `out` as an output folder if the input file or folder `input` (`what` names
/// it, e.g. `the model --model reads`) lies inside it: replacing `out` would delete the
/// input. Call it before [`Staged::new`]; an `out` or `input` that does not exist
/// passes.
pub fn refuse_if_inside(out: &Path, input: &Path, what: &str) -> Result<(), OutputError> {
    let (Ok(out_real), Ok(input_real)) = (out.canonicalize(), input.canonicalize()) else {
        return Ok(());
    };
    if input_real.starts_with(&out_real) {
        return Err(OutputError::BadPath {
            path: out.to_path_buf(),
            why: format!(
                "it holds {what} ({}), which replacing the folder would delete",
                input.display()
            ),
            fix: "write the output to another folder".into(),
        });
    }
    Ok(())
}

/// True if `dir` is a real folder (not a link) holding the [`MARKER`] file.
pub fn is_spikenas_output(dir: &Path) -> bool {
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
        && fs::symlink_metadata(dir.join(MARKER)).is_ok_and(|m| m.is_file())
}

/// `target` made absolute, with its parent folder canonical (links and `.`/`..`
/// resolved) and its last component kept as it is (so a link there is seen as a link).
/// `.`, `..`, `/` and `DIR/.` resolve to the folder they name.
fn resolve(target: &Path) -> Result<PathBuf, OutputError> {
    if target.as_os_str().is_empty() {
        return Err(OutputError::BadPath {
            path: target.to_path_buf(),
            why: "the path is empty".into(),
            fix: "give a folder name, e.g. runs/my-run".into(),
        });
    }
    let ends_in_dots = matches!(
        target.components().next_back(),
        Some(Component::CurDir | Component::ParentDir | Component::RootDir)
    );
    if ends_in_dots || target.file_name().is_none() {
        // `.`, `..`, `/`, `a/..`: the folder itself, whatever its name.
        return target.canonicalize().map_err(|source| OutputError::Io {
            path: target.to_path_buf(),
            source,
        });
    }
    let name = target.file_name().expect("checked above");
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io(parent))?;
    let parent = parent.canonicalize().map_err(io(parent))?;
    Ok(parent.join(name))
}

/// The parent folder and the name of a resolved path (`/` has neither: it exists and
/// is refused by [`check_replaceable`] before this is needed).
fn split(dest: &Path) -> (PathBuf, String) {
    let parent = dest.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    (parent, name)
}

/// What `meta` (from `symlink_metadata`) describes, in words for errors: `symbolic
/// link`, `file`, `folder` or `special file`.
fn kind_of(meta: &fs::Metadata) -> &'static str {
    if meta.file_type().is_symlink() {
        "symbolic link"
    } else if meta.is_file() {
        "file"
    } else if meta.is_dir() {
        "folder"
    } else {
        "special file"
    }
}

/// Whether `dest` (resolved from `target`) may be written: free, or replaceable with
/// `force`.
fn check_replaceable(target: &Path, dest: &Path, force: bool) -> Result<(), OutputError> {
    let meta = match fs::symlink_metadata(dest) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(target)(e)),
    };
    let kind = kind_of(&meta);
    if kind != "folder" {
        return Err(OutputError::NotAFolder {
            path: target.to_path_buf(),
            kind,
        });
    }
    if let Some(what) = protected(dest) {
        return Err(OutputError::Protected {
            path: target.to_path_buf(),
            resolved: dest.to_path_buf(),
            what,
        });
    }
    if !is_spikenas_output(dest) {
        return Err(OutputError::NotOurs(target.to_path_buf()));
    }
    if !force && dest.join(RESUMABLE).is_file() {
        return Err(OutputError::Interrupted(target.to_path_buf()));
    }
    if !force {
        return Err(OutputError::Exists(target.to_path_buf()));
    }
    Ok(())
}

/// Why the existing folder `dest` must never be replaced, if it must not.
fn protected(dest: &Path) -> Option<&'static str> {
    let dest = dest.canonicalize().ok()?;
    if dest.parent().is_none() {
        return Some("the root folder");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .and_then(|h| h.canonicalize().ok());
    if home.as_deref() == Some(dest.as_path()) {
        return Some("your home folder");
    }
    if let Some(cwd) = std::env::current_dir()
        .ok()
        .and_then(|c| c.canonicalize().ok())
    {
        if cwd == dest {
            return Some("the current folder");
        }
        if cwd.starts_with(&dest) {
            return Some("a parent of the current folder");
        }
    }
    None
}

/// Removes the staging folders (`.NAME.partial-PID-N`) and old folders
/// (`.NAME.old-PID-N`) that dead processes left in `parent` for `name`. Only real
/// folders that carry the [`MARKER`] are touched; an old folder whose target is missing
/// (the process died between its two renames) is renamed back into place.
fn clean_stale(parent: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let partial = format!(".{name}.partial-");
    let old = format!(".{name}.old-");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let (is_old, rest) = if let Some(rest) = file_name.strip_prefix(&partial) {
            (false, rest)
        } else if let Some(rest) = file_name.strip_prefix(&old) {
            (true, rest)
        } else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let path = entry.path();
        if process_alive(pid) || !is_spikenas_output(&path) {
            continue;
        }
        let target = parent.join(name);
        let target_missing = fs::symlink_metadata(&target).is_err();
        let resumable = !is_old && path.join(RESUMABLE).is_file();
        if (is_old || resumable) && target_missing {
            let _ = fs::rename(&path, &target);
        } else if !resumable {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// True unless the process `pid` surely no longer exists (our own counts as alive).
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    // SAFETY: signal 0 sends nothing; kill only checks that the process exists.
    let status = unsafe { libc::kill(pid, 0) };
    status == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Without a way to ask, every process counts as alive (nothing is cleaned).
#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

/// Write one file atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_dir() {
            return Err(OutputError::BadPath {
                path: path.to_path_buf(),
                why: "it is an existing folder, and this output is one file".into(),
                fix: "give a file name, e.g. runs/search-space.json".into(),
            });
        }
    }
    let tmp = temp_beside(path)?;
    {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    rename_into_place(&tmp, path)
}

/// A fresh temporary name in `path`'s folder (created if missing): `.NAME.tmp-PID-N`.
fn temp_beside(path: &Path) -> Result<PathBuf, OutputError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    Ok(dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )))
}

fn rename_into_place(tmp: &Path, path: &Path) -> Result<(), OutputError> {
    fs::rename(tmp, path).map_err(|e| {
        let _ = fs::remove_file(tmp);
        io(path)(e)
    })
}

/// Writes the single-file output `path` through `write`, which is given a temporary
/// path beside it: the file appears whole (renamed into place) or not at all. Checked
/// before `write` runs: an existing file is replaced only with `force`, and a folder or
/// a symbolic link never.
pub fn write_new_file_with<E: From<OutputError>>(
    path: &Path,
    force: bool,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        let kind = kind_of(&meta);
        if kind != "file" {
            return Err(OutputError::BadPath {
                path: path.to_path_buf(),
                why: format!("it is an existing {kind}, and this output is one file"),
                fix: "give a new file name, e.g. runs/model.nir".into(),
            }
            .into());
        }
        if !force {
            return Err(OutputError::FileExists(path.to_path_buf()).into());
        }
    }
    let tmp = temp_beside(path)?;
    if let Err(e) = write(&tmp) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(rename_into_place(&tmp, path)?)
}

#[cfg(test)]
mod tests;
