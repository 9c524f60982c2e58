//! The `train` job: load the data, train one architecture, and write
//! `checkpoint.safetensors` and `train.json`; interruptible and resumable
//! ([`RunControl`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;

use crate::arch::Arch;
use crate::checkpoint::{self, CheckpointInfo};
use crate::data::{self, input_shape, LoadOptions, Source};
use crate::output::Staged;
use crate::snn::lif::LifParams;
use crate::snn::Network;
use crate::train::{TrainConfig, TrainReport, Trained};

use super::control::{fingerprint_of, Kept, RunControl};
use super::JobError;

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
) -> Result<TrainOutcome, JobError> {
    train_to_dir_with(job, device, out, force, &RunControl::default())
}

/// [`train_to_dir`], interruptible and resumable as `ctl` says: the training state is
/// kept in the staging folder after every epoch; an interrupted run's folder (its state,
/// `train.json` not yet) is moved into place at `out`, and `ctl.resume` continues it.
pub fn train_to_dir_with(
    job: &TrainJob,
    device: &Device,
    out: &Path,
    force: bool,
    ctl: &RunControl,
) -> Result<TrainOutcome, JobError> {
    let fingerprint = serde_json::json!({
        "arch": job.arch.to_string(),
        "dataset": job.source.to_string(),
        "load": &job.load,
        "config": fingerprint_of(&job.config),
        "seed": job.seed,
    })
    .to_string();
    let staged = Staged::new(out, force || ctl.resume)?;
    let resumed = ctl.resume_state(out, &fingerprint)?;
    let data = data::load(&job.source, &job.load)?;
    let input = input_shape(&data);
    let (net, varmap) = Network::init(job.arch, input, LifParams::default(), device, job.seed)?;
    let kept = Kept {
        staged,
        ctl,
        fingerprint,
        resume_command: format!("spikenas-host train --resume {}", out.display()),
        extra_meta: BTreeMap::new(),
    };
    let report = match kept.train(&net, &varmap, &data, device, &job.config, resumed.as_ref())? {
        Trained::Finished(report) => report,
        Trained::Stopped(s) => return Err(kept.interrupted(&s, &job.config, &[])?.into()),
    };
    let staged = kept.staged;
    let info = CheckpointInfo {
        arch: job.arch,
        input,
        dataset: job.source.to_string(),
        accuracy: report.test_accuracy,
        lif: net.lif,
        // quantize and infer reuse it, so they test on images training never saw.
        extra: [(checkpoint::DATA_SEED.to_string(), job.load.seed.to_string())].into(),
    };
    checkpoint::save(&staged.path(checkpoint::FILE), &varmap, &info)?;
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
