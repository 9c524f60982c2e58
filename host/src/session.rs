//! Whole jobs that the CLI runs: load data, build, train, write results.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;

use crate::arch::Arch;
use crate::checkpoint::{self, CheckpointInfo};
use crate::data::{self, Dataset, LoadOptions, Source};
use crate::output::Staged;
use crate::snn::lif::LifParams;
use crate::snn::{InputShape, Network};
use crate::train::{self, TrainConfig, TrainReport};

/// Errors of a job (the same as the main job's).
pub type SessionError = crate::pipeline::PipelineError;

/// One training job.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// The architecture.
    pub arch: Arch,
    /// The dataset.
    pub source: Source,
    /// How to load it.
    pub load: LoadOptions,
    /// How to train.
    pub config: TrainConfig,
    /// Seed of the initial weights.
    pub seed: u64,
}

/// The result of [`train_to_dir`].
#[derive(Debug)]
pub struct TrainOutcome {
    /// Where the results are.
    pub dir: PathBuf,
    /// The training report.
    pub report: TrainReport,
}

/// The network's input shape for a dataset.
pub fn input_shape(data: &Dataset) -> InputShape {
    InputShape {
        channels: data.spec.channels,
        height: data.spec.height,
        width: data.spec.width,
        classes: data.spec.classes,
    }
}

#[derive(Serialize)]
struct TrainJson<'a> {
    arch: String,
    dataset: String,
    config: &'a TrainConfig,
    report: &'a TrainReport,
}

/// Load the data, train, and write `checkpoint.safetensors` and `train.json` into
/// `out` (atomically; an existing directory only with `force`).
pub fn train_to_dir(
    job: &TrainJob,
    device: &Device,
    out: &Path,
    force: bool,
) -> Result<TrainOutcome, SessionError> {
    let staged = Staged::new(out, force)?;
    let data = data::load(&job.source, &job.load)?;
    let input = input_shape(&data);
    let (net, varmap) = Network::init(job.arch, input, LifParams::default(), device, job.seed)?;
    let report = train::train(&net, &varmap, &data, device, &job.config)?;
    let info = CheckpointInfo {
        arch: job.arch,
        input,
        dataset: job.source.to_string(),
        accuracy: report.test_accuracy,
        lif: net.lif,
        // quantize and infer reuse it, so they test on images training never saw.
        extra: [(checkpoint::DATA_SEED.to_string(), job.load.seed.to_string())].into(),
    };
    checkpoint::save(&staged.path("checkpoint.safetensors"), &varmap, &info)?;
    let json = TrainJson {
        arch: job.arch.to_string(),
        dataset: job.source.to_string(),
        config: &job.config,
        report: &report,
    };
    staged.write(
        "train.json",
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    let dir = staged.commit()?;
    Ok(TrainOutcome { dir, report })
}
