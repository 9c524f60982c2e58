//! The search space: which ops a cell may use, whether backward edges are allowed,
//! and the macro parameters. The shipped default (`host/data/search-space.json`)
//! is what `spikenas-host analyze-ops` measured; the command regenerates it.

use serde::{Deserialize, Serialize};

use crate::arch::{Arch, Cell, Op};
use crate::snn::InputShape;

/// Macro parameters the search combines with every cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacroSpace {
    /// First-stage channel counts to try.
    pub channels: Vec<usize>,
    /// Numbers of stages to try.
    pub stages: Vec<usize>,
    /// Hidden classifier widths to try (0 = a single linear layer).
    pub fc: Vec<usize>,
    /// Input pooling factors to try.
    pub input_pool: Vec<usize>,
    /// Weight bit widths to try (8 and/or 4).
    pub weight_bits: Vec<u8>,
    /// Timesteps (T does not change memory; fixed by the analysis).
    pub timesteps: usize,
    /// Output neurons per class.
    pub cluster: usize,
}

/// The whole search space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpace {
    /// Ops a cell may use (zero is always allowed).
    pub ops: Vec<Op>,
    /// Whether cells may have backward edges.
    pub backward: bool,
    /// Macro parameters.
    pub macros: MacroSpace,
    /// Where these choices came from (the analysis run that produced them).
    #[serde(default)]
    pub provenance: String,
}

/// The shipped default search space.
pub const DEFAULT_JSON: &str = include_str!("../../data/search-space.json");

/// Errors reading a search space.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    /// The file could not be read.
    #[error("cannot read search space {path}: {source}")]
    Read {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The JSON is malformed or has unknown fields.
    #[error("search space {path}: {source} (regenerate it with `spikenas-host analyze-ops`)")]
    Parse {
        /// File.
        path: String,
        /// Cause.
        source: serde_json::Error,
    },
    /// A list is empty or a value out of range.
    #[error("search space {path}: {problem}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

impl SearchSpace {
    /// The shipped default.
    pub fn shipped() -> SearchSpace {
        SearchSpace::parse(DEFAULT_JSON, "host/data/search-space.json")
            .expect("the shipped search space is valid")
    }

    /// Parse and check JSON text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<SearchSpace, SpaceError> {
        let space: SearchSpace =
            serde_json::from_str(text).map_err(|source| SpaceError::Parse {
                path: path.into(),
                source,
            })?;
        let m = &space.macros;
        let invalid = |problem: String| {
            Err(SpaceError::Invalid {
                path: path.into(),
                problem,
            })
        };
        if space.ops.iter().all(|o| matches!(o, Op::Zero)) {
            return invalid("`ops` must contain at least one non-zero op".into());
        }
        for (name, empty) in [
            ("macros.channels", m.channels.is_empty()),
            ("macros.stages", m.stages.is_empty()),
            ("macros.fc", m.fc.is_empty()),
            ("macros.input_pool", m.input_pool.is_empty()),
            ("macros.weight_bits", m.weight_bits.is_empty()),
        ] {
            if empty {
                return invalid(format!("`{name}` is empty; give at least one value"));
            }
        }
        // Every combination must be a valid architecture.
        let probe = Cell::forward([
            Op::Conv3x3,
            Op::Zero,
            Op::Zero,
            Op::Skip,
            Op::Zero,
            Op::Zero,
        ]);
        for arch in space.macro_archs(probe) {
            if let Err(e) = arch.validated() {
                return invalid(format!("macro combination {arch} is invalid: {e}"));
            }
        }
        Ok(space)
    }

    /// Read from a file.
    pub fn from_file(path: &std::path::Path) -> Result<SearchSpace, SpaceError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpaceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        SearchSpace::parse(&text, &path.display().to_string())
    }

    /// Every macro combination with `cell`.
    pub fn macro_archs(&self, cell: Cell) -> Vec<Arch> {
        let m = &self.macros;
        let mut out = Vec::new();
        for &channels in &m.channels {
            for &stages in &m.stages {
                for &fc in &m.fc {
                    for &input_pool in &m.input_pool {
                        for &weight_bits in &m.weight_bits {
                            out.push(Arch {
                                cell,
                                channels,
                                stages,
                                fc,
                                timesteps: m.timesteps,
                                input_pool,
                                cluster: m.cluster,
                                weight_bits,
                            });
                        }
                    }
                }
            }
        }
        out
    }
}

/// Multiply-accumulates per timestep (synaptic operations if every input spiked):
/// the "size" by which the search visits candidates, largest first.
pub fn macs(arch: &Arch, input: &InputShape) -> u64 {
    arch.shape(input).macs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_space_parses_and_unknown_fields_are_refused() {
        let s = SearchSpace::shipped();
        assert!(!s.macro_archs(Arch::default().cell).is_empty());
        let bad = DEFAULT_JSON.replacen("\"backward\"", "\"backwards\"", 1);
        let e = SearchSpace::parse(&bad, "x.json").unwrap_err().to_string();
        assert!(e.contains("x.json") && e.contains("backwards"), "{e}");
    }

    #[test]
    fn macs_by_hand() {
        // 1x8x8, ch 2, one stage, cell with one conv3x3 on 0->3, fc 0, 10 classes.
        let arch: Arch = "cell=0003.0000.0000.0000,ch=2,stages=1,fc=0"
            .parse()
            .unwrap();
        let input = InputShape {
            channels: 1,
            height: 8,
            width: 8,
            classes: 10,
        };
        let stem = 2 * 9 * 64;
        let cell = 2 * 2 * 9 * 64;
        let head = (2 * 4 * 4) * 10;
        assert_eq!(macs(&arch, &input), (stem + cell + head) as u64);
    }
}
