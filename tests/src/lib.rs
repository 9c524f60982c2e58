//! Shared helpers for the end-to-end tests in `tests/tests/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project's Python: `SPIKENAS_PYTHON` if set, else the virtual environment that
/// `scripts/setup` makes in `.venv` (with `nir`, `numpy`, `safetensors`). Panics with
/// the fix when it is missing: the Python checks are part of the tests, never skipped.
pub fn python() -> PathBuf {
    let path = std::env::var_os("SPIKENAS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "no Python client at {}: run scripts/setup (it makes .venv with nir, numpy and \
         safetensors), or set SPIKENAS_PYTHON to an interpreter that has them",
        path.display()
    );
    path
}

/// Runs the project's Python with `args`; panics with its stderr unless it succeeds,
/// and returns its stdout.
pub fn run_python<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let python = python();
    let out = Command::new(&python)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
