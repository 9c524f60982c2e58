//! What a generated crate's folder records about itself, each file with one typed
//! reader and writer:
//!
//! | file | struct | written by | read by |
//! |---|---|---|---|
//! | `spikenas-crate.json` ([`CRATE_INFO_FILE`]) | [`CrateInfo`]: the board, target and triple the crate is for, the vendored runtime's checksums | [`super::generate`] | `build`, `validate`, `flash` ([`super::build::check_crate`]) |
//! | `model.txt` ([`MODEL_INFO_FILE`]) | [`CrateModel`]: the network's architecture and input | `search`, `generate` | `validate` (the memory and latency models' error) |

use std::path::Path;

use crate::arch::{Arch, InputShape};
use crate::boards::Profile;

use super::vendor::Vendored;
use super::BoardAppError;

/// The generated crate's metadata file: the board and target it was generated for
/// (`build`, `validate` and `flash` refuse a crate generated for another board).
pub const CRATE_INFO_FILE: &str = "spikenas-crate.json";

/// What [`CRATE_INFO_FILE`] holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrateInfo {
    /// `spikenas-host` and its version.
    pub generator: String,
    /// The board profile's name.
    pub board: String,
    /// The board's target name in `targets.yaml`.
    pub target: String,
    /// The Rust target triple the crate builds for.
    pub triple: String,
    /// The vendored firmware runtime and its checksums (`None` in crates of older
    /// versions, which depended on a spikenas checkout; `build` refuses them).
    #[serde(default)]
    pub vendor: Option<Vendored>,
}

impl CrateInfo {
    /// The file's text (pretty JSON), as [`super::generate`] writes it.
    pub fn to_json(&self) -> Result<String, BoardAppError> {
        let json = serde_json::to_string_pretty(self).map_err(|e| BoardAppError::Board {
            board: self.board.clone(),
            why: e.to_string(),
        })?;
        Ok(json + "\n")
    }

    /// Read the metadata of the crate in `dir`.
    pub fn read(dir: &Path) -> Result<CrateInfo, BoardAppError> {
        let path = dir.join(CRATE_INFO_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| BoardAppError::NotGenerated {
            dir: dir.to_path_buf(),
            why: format!("{CRATE_INFO_FILE} cannot be read ({e})"),
        })?;
        serde_json::from_str(&text).map_err(|e| BoardAppError::NotGenerated {
            dir: dir.to_path_buf(),
            why: format!("{CRATE_INFO_FILE} is malformed ({e})"),
        })
    }

    /// Check the vendored runtime against its recorded checksums.
    pub fn verify_vendor(&self, dir: &Path) -> Result<(), BoardAppError> {
        match &self.vendor {
            Some(vendored) => vendored.verify(dir),
            None => Err(BoardAppError::NotGenerated {
                dir: dir.to_path_buf(),
                why: format!(
                    "{CRATE_INFO_FILE} records no vendored firmware runtime (an older \
                     spikenas-host made this crate depend on its own checkout)"
                ),
            }),
        }
    }

    /// Refuse `board` unless the crate was generated for it.
    pub fn check_board(
        &self,
        dir: &Path,
        board: &Profile,
        triple: &str,
    ) -> Result<(), BoardAppError> {
        if self.board != board.name || self.triple != triple {
            return Err(BoardAppError::WrongBoard {
                dir: dir.to_path_buf(),
                generated_for: self.board.clone(),
                generated_triple: self.triple.clone(),
                given: board.name.clone(),
                given_triple: triple.to_string(),
            });
        }
        Ok(())
    }
}

/// File (in a generated crate) naming the architecture and input (`arch ...`,
/// `input CxHxW`, `classes N`), for the memory-model comparison.
pub const MODEL_INFO_FILE: &str = "model.txt";

/// The network a generated crate runs, as [`MODEL_INFO_FILE`] records it: three lines,
/// `arch ARCH`, `input CxHxW` and `classes N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrateModel {
    /// The architecture.
    pub arch: Arch,
    /// The input shape and classes.
    pub input: InputShape,
}

impl CrateModel {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let i = &self.input;
        format!(
            "arch {}\ninput {}x{}x{}\nclasses {}\n",
            self.arch, i.channels, i.height, i.width, i.classes
        )
    }

    /// Parse the file's text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<CrateModel, BoardAppError> {
        let bad = |why: String| BoardAppError::ModelInfo {
            path: path.to_path_buf(),
            why,
        };
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).map(str::trim))
                .ok_or_else(|| bad(format!("no `{key}` line")))
        };
        let arch: Arch = field("arch ")?.parse().map_err(|e| bad(format!("{e}")))?;
        let classes: usize = field("classes ")?
            .parse()
            .map_err(|e| bad(format!("classes: {e}")))?;
        let input = InputShape::parse(field("input ")?, classes).map_err(bad)?;
        Ok(CrateModel { arch, input })
    }

    /// Write [`MODEL_INFO_FILE`] into the crate folder `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), BoardAppError> {
        let path = dir.join(MODEL_INFO_FILE);
        std::fs::write(&path, self.to_text()).map_err(BoardAppError::io(&path))
    }

    /// Read [`MODEL_INFO_FILE`] from the crate folder `dir`; `None` when the crate has
    /// none.
    pub fn read(dir: &Path) -> Result<Option<CrateModel>, BoardAppError> {
        let path = dir.join(MODEL_INFO_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => CrateModel::parse(&path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BoardAppError::io(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_model_round_trips_and_names_the_missing_line() {
        let model = CrateModel {
            arch: "cell=0301.0003.0000.0000,ch=8,stages=2,fc=32,t=2"
                .parse()
                .unwrap(),
            input: InputShape::parse("1x28x28", 10).unwrap(),
        };
        let text = model.to_text();
        assert!(text.starts_with("arch cell=0301.0003.0000.0000,"), "{text}");
        assert!(text.contains("\ninput 1x28x28\nclasses 10\n"), "{text}");
        let path = Path::new("model.txt");
        assert_eq!(CrateModel::parse(path, &text).unwrap(), model);
        let err = CrateModel::parse(path, "arch ch=8\ninput 1x8x8\n").unwrap_err();
        assert!(err.to_string().contains("no `classes ` line"), "{err}");
        let dir = std::env::temp_dir().join(format!("spikenas-crate-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(CrateModel::read(&dir).unwrap(), None);
        model.write(&dir).unwrap();
        assert_eq!(CrateModel::read(&dir).unwrap(), Some(model));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
