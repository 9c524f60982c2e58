//! Resumable training: where a run stands after a step ([`TrainState`]) with the
//! tensors it needs to go on ([`Snapshot`]: weights, batch-norm statistics, optimiser
//! moments), kept as one file, [`FILE`], in the output's staging folder at the end of
//! every epoch and when training is interrupted. A run continued from a snapshot gives
//! the same weights, bit for bit, as one that was never stopped (same seed, device and
//! thread count).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use super::EpochStats;
use crate::integrity::{self, ChecksumError};

/// The file name of a training state.
pub const FILE: &str = "resume.safetensors";
/// The `spikenas.format` of a training state.
const FORMAT: &str = "training-state";
/// The metadata key of the [`TrainState`] (JSON).
const STATE_KEY: &str = "spikenas.train_state";
/// The largest training state read (weights and moments of the largest network).
const MAX_BYTES: u64 = 2 << 30;

/// Where a training run stands. Floats that must come back exactly are kept as their
/// bits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The 1-based epoch in progress (one past the last when all are done).
    pub epoch: usize,
    /// Steps of that epoch already taken.
    pub epoch_step: usize,
    /// Optimiser steps taken in all.
    pub steps: usize,
    /// The batch-order generator's state before this epoch's shuffle.
    pub order_rng: u64,
    /// The augmentation generator's state now.
    pub augment_rng: u64,
    /// Seconds of training so far (the time budget's schedule goes on from here).
    #[serde(with = "f64_bits")]
    pub elapsed_seconds: f64,
    /// Sum of the epoch's losses so far (weighted by batch size).
    #[serde(with = "f64_bits")]
    pub loss_sum: f64,
    /// Correct training predictions of the epoch so far.
    pub correct: usize,
    /// Training images of the epoch so far.
    pub seen: usize,
    /// Seconds spent in the epoch so far.
    #[serde(with = "f64_bits")]
    pub epoch_seconds: f64,
    /// The finished epochs' reports.
    pub epochs: Vec<EpochStats>,
}

/// A [`TrainState`] with every tensor it needs: `weights/NAME` for the network's
/// variables and the optimiser's (`adamw.m/NAME`, `adamw.v/NAME`, `sgd.momentum/NAME`).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Where the run stands.
    pub state: TrainState,
    /// `(name, shape, values)`, sorted by name.
    pub tensors: Vec<integrity::NamedF32>,
}

/// Errors reading or writing a training state.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The file cannot be read.
    #[error(
        "cannot read the training state {}: {source}. Fix: give --resume the folder of an \
         interrupted run (it holds {FILE})",
        path.display()
    )]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a training state (truncated, corrupt or another kind of file).
    #[error(
        "{} is not a readable training state: {problem}. Fix: start the run again \
         without --resume",
        path.display()
    )]
    Format {
        /// File.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A tensor's bytes differ from their checksum.
    #[error(
        "{}: {source}; the training state is damaged. Fix: start the run again without \
         --resume",
        path.display()
    )]
    Damaged {
        /// File.
        path: PathBuf,
        /// Which tensor.
        source: ChecksumError,
    },
    /// The state does not fit the network or optimiser it is put into.
    #[error(
        "the training state does not fit this network: {0}. Fix: resume with the options \
         of the interrupted run, or start again without --resume"
    )]
    Fit(String),
    /// The state was saved by another job.
    #[error(
        "{} was saved by another job: its {field} is `{recorded}`, this run's is `{now}`. \
         Fix: resume with the options of the interrupted run, or start again without --resume",
        path.display()
    )]
    OtherJob {
        /// File.
        path: PathBuf,
        /// What differs.
        field: String,
        /// In the file.
        recorded: String,
        /// In this run.
        now: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] crate::output::OutputError),
}

impl Snapshot {
    /// The values of tensor `name`, if the snapshot has it.
    pub fn tensor(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, v)| (s.as_slice(), v.as_slice()))
    }

    /// The file's bytes, with `meta` (keys as given) beside the state.
    pub fn to_bytes(&self, meta: &BTreeMap<String, String>) -> Result<Vec<u8>, ResumeError> {
        let mut all: HashMap<String, String> = meta.clone().into_iter().collect();
        all.insert("spikenas.format".into(), FORMAT.into());
        all.insert(
            STATE_KEY.into(),
            serde_json::to_string(&self.state).expect("plain data serialises"),
        );
        integrity::serialize_f32(&self.tensors, all).map_err(|e| ResumeError::Format {
            path: PathBuf::from("<memory>"),
            problem: e.to_string(),
        })
    }

    /// Writes the file atomically (a crash leaves the previous one whole).
    pub fn save(&self, path: &Path, meta: &BTreeMap<String, String>) -> Result<(), ResumeError> {
        crate::output::write_atomic(path, &self.to_bytes(meta)?)?;
        Ok(())
    }

    /// Reads a file [`Snapshot::save`] wrote; returns the snapshot and the rest of its
    /// metadata.
    pub fn read(path: &Path) -> Result<(Snapshot, BTreeMap<String, String>), ResumeError> {
        let read_err = |source| ResumeError::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_BYTES {
            return Err(ResumeError::Format {
                path: path.to_path_buf(),
                problem: format!("{size} bytes, more than any training state ({MAX_BYTES})"),
            });
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses the bytes of a file (`path` names it in errors).
    pub fn from_bytes(
        path: &Path,
        bytes: &[u8],
    ) -> Result<(Snapshot, BTreeMap<String, String>), ResumeError> {
        let format = |problem: String| ResumeError::Format {
            path: path.to_path_buf(),
            problem,
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| format(e.to_string()))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| format(e.to_string()))?;
        let mut meta: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        match meta.remove("spikenas.format") {
            Some(f) if f == FORMAT => {}
            Some(f) => {
                return Err(format(format!(
                    "its format is `{f}`, not `{FORMAT}` (a checkpoint or model cannot be resumed)"
                )))
            }
            None => return Err(format("it has no `spikenas.format`".into())),
        }
        let sums = meta
            .remove(&format!("spikenas.{}", integrity::FIELD))
            .ok_or_else(|| format("it has no checksums".into()))?;
        integrity::verify(&sums, &st).map_err(|source| ResumeError::Damaged {
            path: path.to_path_buf(),
            source,
        })?;
        let state = meta
            .remove(STATE_KEY)
            .ok_or_else(|| format(format!("it has no `{STATE_KEY}`")))?;
        let state: TrainState = serde_json::from_str(&state)
            .map_err(|e| format(format!("`{STATE_KEY}` is unreadable ({e})")))?;
        let mut names = st.names();
        names.sort();
        let mut tensors = Vec::with_capacity(names.len());
        for name in names {
            let view = st.tensor(name).map_err(|e| format(e.to_string()))?;
            if view.dtype() != Dtype::F32 {
                return Err(format(format!(
                    "tensor `{name}` is {:?}, not F32",
                    view.dtype()
                )));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.push((name.to_string(), view.shape().to_vec(), values));
        }
        Ok((Snapshot { state, tensors }, meta))
    }
}

/// Compares the job description `now` with the one a state file recorded under `key`.
pub fn same_job(
    path: &Path,
    meta: &BTreeMap<String, String>,
    key: &str,
    now: &str,
) -> Result<(), ResumeError> {
    let recorded = meta.get(key).map(String::as_str).unwrap_or("(none)");
    if recorded != now {
        return Err(ResumeError::OtherJob {
            path: path.to_path_buf(),
            field: key.trim_start_matches("spikenas.").to_string(),
            recorded: recorded.to_string(),
            now: now.to_string(),
        });
    }
    Ok(())
}

/// Serde for `f64` as its bits, so that a value read back is the value written.
mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(x.to_bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        u64::deserialize(d).map(f64::from_bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            state: TrainState {
                epoch: 2,
                epoch_step: 3,
                steps: 13,
                order_rng: u64::MAX - 5,
                augment_rng: 7,
                elapsed_seconds: 0.1 + 0.2,
                loss_sum: 1.0 / 3.0,
                correct: 4,
                seen: 48,
                epoch_seconds: 0.7,
                epochs: vec![EpochStats {
                    epoch: 1,
                    loss: 0.123_456_79,
                    train_accuracy: 0.5,
                    val_accuracy: Some(0.25),
                    seconds: 1.5,
                    images_per_second: 1e3 / 7.0,
                }],
            },
            tensors: vec![
                ("adamw.m/w".into(), vec![2], vec![0.5, -1e-30]),
                ("weights/w".into(), vec![2], vec![f32::MIN_POSITIVE, 3.0]),
            ],
        }
    }

    #[test]
    fn a_snapshot_reads_back_exactly() {
        let s = sample();
        let meta: BTreeMap<String, String> = [("spikenas.job".to_string(), "x".to_string())].into();
        let bytes = s.to_bytes(&meta).unwrap();
        let (back, m) = Snapshot::from_bytes(Path::new("r"), &bytes).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            back.state.elapsed_seconds.to_bits(),
            (0.1f64 + 0.2).to_bits()
        );
        assert_eq!(m, meta);
        same_job(Path::new("r"), &m, "spikenas.job", "x").unwrap();
        let e = same_job(Path::new("r"), &m, "spikenas.job", "y").unwrap_err();
        assert!(
            e.to_string().contains("its job is `x`, this run's is `y`"),
            "{e}"
        );
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        let bytes = sample().to_bytes(&BTreeMap::new()).unwrap();
        let mut damaged = bytes.clone();
        integrity::testing::flip_middle(&mut damaged, 4);
        let e = Snapshot::from_bytes(Path::new("r"), &damaged).unwrap_err();
        assert!(matches!(e, ResumeError::Damaged { .. }), "{e}");
        let e = Snapshot::from_bytes(Path::new("r"), &bytes[..bytes.len() - 3]).unwrap_err();
        assert!(
            e.to_string().contains("not a readable training state"),
            "{e}"
        );
        let other = integrity::testing::set_meta(&bytes, "spikenas.format", "float32-checkpoint");
        let e = Snapshot::from_bytes(Path::new("r"), &other).unwrap_err();
        assert!(e.to_string().contains("cannot be resumed"), "{e}");
    }
}
