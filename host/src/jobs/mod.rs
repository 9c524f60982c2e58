//! The jobs the CLI runs, one module each: load the data, do the work, write the
//! results atomically into an output folder ([`crate::output::Staged`]).
//!
//! | job | command | writes |
//! |---|---|---|
//! | [`analyze`] | `analyze-ops` | the search space (the operation impact analysis) |
//! | [`search`] | `search` (the main job) | the search report, checkpoint, `model.safetensors` and the board application |
//! | [`train`] | `train` | `checkpoint.safetensors`, `train.json` |
//! | [`quantize`] | `quantize` | `model.safetensors`, `quant.json` |
//! | [`infer`] | `infer` | nothing (accuracy and images/s) |
//! | [`generate`] | `generate` | the board application for a quantized model ([`crate::board_app`]) |
//!
//! Training in `search` and `train` can be interrupted and resumed ([`control`]).
//! Every job but the analysis fails with a [`JobError`].

pub mod analyze;
pub mod control;
pub mod generate;
pub mod infer;
pub mod quantize;
pub mod search;
pub mod train;

use std::path::{Path, PathBuf};

use crate::checkpoint::FILE as CHECKPOINT_FILE;
use crate::data::{DataError, Source, Split};

pub use control::{recorded_command, Interrupted, RunControl};

/// Errors of a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Loading the data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The search failed.
    #[error(transparent)]
    Search(#[from] crate::search::SearchError),
    /// The network cannot be built.
    #[error(transparent)]
    Network(#[from] crate::snn::network::NetworkError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    /// Reading or writing the float checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// Reading or writing the model file failed.
    #[error(transparent)]
    Export(#[from] crate::quant::export::ExportError),
    /// Writing output failed.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// A float tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Serialising a report failed.
    #[error("cannot serialise the report: {0}")]
    Json(#[from] serde_json::Error),
    /// Quantization or the integer evaluation failed.
    #[error(transparent)]
    Quant(#[from] crate::quant::QuantError),
    /// Writing the board application failed.
    #[error(transparent)]
    BoardApp(#[from] crate::board_app::BoardAppError),
    /// Reading or writing the training state failed.
    #[error(transparent)]
    Resume(#[from] crate::train::ResumeError),
    /// Stopped before the end; what was kept and how to go on.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// The float engine was asked for but the model directory has no checkpoint.
    #[error("{0} has no float checkpoint ({CHECKPOINT_FILE}); use --engine int, or quantize again (quantize copies the checkpoint)")]
    NoCheckpoint(PathBuf),
}

/// The seed to split the data with: the one `given`, else the one `recorded` in
/// `file` by the training run, else 0 (files that record none); with a warning when
/// the given one differs from the recorded one.
pub fn split_seed(given: Option<u64>, recorded: Option<u64>, file: &Path) -> (u64, Option<String>) {
    match (given, recorded) {
        (Some(g), Some(r)) if g != r => (
            g,
            Some(format!(
                "--seed {g} differs from the seed {r} that {} records for the training run's data split; the test images may overlap the training images (leave --seed out to reuse {r})",
                file.display()
            )),
        ),
        (Some(g), _) => (g, None),
        (None, r) => (r.unwrap_or(0), None),
    }
}

/// The dataset `given` on the command line, else the one the model file `named`.
fn dataset_of(given: &Option<Source>, named: &str) -> Result<Source, DataError> {
    match given {
        Some(s) => Ok(s.clone()),
        None => named.parse(),
    }
}

/// Fraction of `split` whose label is the prediction.
fn accuracy(pred: &[u32], split: &Split) -> f32 {
    if split.is_empty() {
        return 0.0;
    }
    let correct = pred
        .iter()
        .zip(&split.labels)
        .filter(|(p, l)| **p == **l as u32)
        .count();
    correct as f32 / split.len() as f32
}
