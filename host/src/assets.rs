//! The data `spikenas-host` carries inside the binary, so that an installed binary
//! (`cargo install --path host`) works from any folder:
//!
//! - the board catalogue: `targets.yaml` and `boards/*.yaml` ([`crate::boards::Catalog`]);
//! - the board application template, `firmware/template/` ([`crate::board_app::codegen`]);
//! - the firmware runtime's sources, `firmware/` ([`FIRMWARE`]), which `generate` vendors
//!   into every crate it writes.
//!
//! host/build.rs walks those folders at compile time, so a new board or kernel file is
//! picked up by the next build of the host.
//!
//! `$SPIKENAS_HOME` ([`HOME_ENV`]) overrides the catalogue and the template with a folder
//! laid out like the repository: `targets.yaml` and `boards/` (required), and
//! `firmware/template/` (optional; the built-in template when absent). The firmware
//! runtime is never taken from there: it is the code this binary computes its own
//! integer predictions with, so the device must run exactly it.

use std::path::PathBuf;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

pub use embedded::{BOARDS, FIRMWARE, TARGETS_YAML, TEMPLATE};

/// The environment variable naming a folder that replaces the built-in catalogue (and,
/// when it holds `firmware/template/`, the template).
pub const HOME_ENV: &str = "SPIKENAS_HOME";

/// The folder `$SPIKENAS_HOME` names, if it is set and not empty.
pub fn home() -> Option<PathBuf> {
    std::env::var_os(HOME_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// The embedded copies are the repository's files, and nothing was left out.
    #[test]
    fn embedded_files_are_the_repository_files() {
        let root = repo();
        assert_eq!(
            TARGETS_YAML,
            std::fs::read_to_string(root.join("targets.yaml")).unwrap()
        );
        let mut boards: Vec<String> = std::fs::read_dir(root.join("boards"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        boards.sort();
        assert_eq!(BOARDS.iter().map(|(n, _)| *n).collect::<Vec<_>>(), boards);
        for (table, dir) in [
            (TEMPLATE, root.join("firmware/template")),
            (FIRMWARE, root.join("firmware")),
        ] {
            for (name, text) in table {
                let on_disk = std::fs::read_to_string(dir.join(name)).unwrap();
                assert_eq!(*text, on_disk, "{name}");
            }
        }
        assert!(FIRMWARE.iter().any(|(n, _)| *n == "src/lib.rs"));
        assert!(TEMPLATE.iter().any(|(n, _)| *n == ".cargo/config.toml"));
        assert!(!TEMPLATE.iter().any(|(n, _)| n.starts_with("target/")));
    }
}
