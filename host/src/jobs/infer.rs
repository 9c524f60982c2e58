//! The `infer` job: run an exported model (the integer runtime) or its float
//! checkpoint on a dataset's test split, for accuracy and images per second.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use serde::Serialize;

use crate::checkpoint;
use crate::data::{self, LoadOptions, Source, Split};
use crate::kernels::ConvBackend;
use crate::quant::evaluate_int;
use crate::quant::export::{self, MODEL_FILE};
use crate::train;

use super::{accuracy, dataset_of, split_seed, JobError};

/// Which network `infer` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Engine {
    /// The integer runtime (the firmware crate's kernels), from model.safetensors.
    Int,
    /// The float network in candle, from checkpoint.safetensors.
    Float,
}

/// What `infer` does.
#[derive(Debug, Clone)]
pub struct InferJob {
    /// Directory with model.safetensors (and checkpoint.safetensors for float), or the
    /// model.safetensors file itself (its folder is then the directory).
    pub model_dir: PathBuf,
    /// The dataset; `None` takes the one named in the model.
    pub dataset: Option<Source>,
    /// How to load it; its `seed` is replaced by the choice of [`split_seed`].
    pub load: LoadOptions,
    /// Seed of the data splits; `None` reuses the one the model records.
    pub seed: Option<u64>,
    /// Which engine.
    pub engine: Engine,
    /// Use the first N test images.
    pub samples: Option<usize>,
}

/// The result of [`infer_dir`].
#[derive(Debug, Clone, Serialize)]
pub struct InferOutcome {
    /// The engine.
    pub engine: Engine,
    /// The architecture.
    pub arch: String,
    /// Images run.
    pub images: usize,
    /// Accuracy on them.
    pub accuracy: f32,
    /// Wall time of the inference (data loading excluded).
    pub seconds: f64,
    /// Throughput.
    pub images_per_second: f64,
    /// Mean spikes per image (integer engine).
    pub mean_spikes: Option<f64>,
    /// The seed the data was split with.
    pub seed: u64,
    /// Things the user should know (e.g. a seed other than the training run's).
    pub warnings: Vec<String>,
}

/// Runs the model in `job.model_dir` on the test split and times it. `device` is used
/// by the float engine only (the integer runtime runs on the CPU threads).
pub fn infer_dir(job: &InferJob, device: &Device) -> Result<InferOutcome, JobError> {
    let (model_path, dir) = if job.model_dir.is_file() {
        let dir = job.model_dir.parent().unwrap_or(Path::new("."));
        (job.model_dir.clone(), dir.to_path_buf())
    } else {
        (job.model_dir.join(MODEL_FILE), job.model_dir.clone())
    };
    let ckpt_path = dir.join(checkpoint::FILE);
    match job.engine {
        Engine::Int => {
            let (q, info) = export::load(&model_path)?;
            let (seed, warning) = split_seed(job.seed, info.data_seed(), &model_path);
            let test = test_split(job, &info.dataset, seed)?;
            let start = Instant::now();
            let eval = evaluate_int(&q, &test)?;
            let seconds = start.elapsed().as_secs_f64();
            Ok(InferOutcome {
                engine: job.engine,
                arch: q.arch.to_string(),
                images: test.len(),
                accuracy: eval.accuracy,
                seconds,
                images_per_second: test.len() as f64 / seconds,
                mean_spikes: Some(eval.mean_spikes()),
                seed,
                warnings: warning.into_iter().collect(),
            })
        }
        Engine::Float => {
            if !ckpt_path.exists() {
                return Err(JobError::NoCheckpoint(dir));
            }
            let (net, _, info) = checkpoint::load(&ckpt_path, device)?;
            let (seed, warning) = split_seed(job.seed, info.data_seed(), &ckpt_path);
            let test = test_split(job, &info.dataset, seed)?;
            let start = Instant::now();
            let pred = train::predict(&net, &test, device, ConvBackend::default())?;
            let seconds = start.elapsed().as_secs_f64();
            Ok(InferOutcome {
                engine: job.engine,
                arch: net.arch.to_string(),
                images: test.len(),
                accuracy: accuracy(&pred, &test),
                seconds,
                images_per_second: test.len() as f64 / seconds,
                mean_spikes: None,
                seed,
                warnings: warning.into_iter().collect(),
            })
        }
    }
}

fn test_split(job: &InferJob, named: &str, seed: u64) -> Result<Split, JobError> {
    let source = dataset_of(&job.dataset, named)?;
    let load = LoadOptions {
        seed,
        ..job.load.clone()
    };
    let data = data::load(&source, &load)?;
    let n = job.samples.unwrap_or(data.test.len()).min(data.test.len());
    Ok(data.test.select(&(0..n).collect::<Vec<_>>()))
}
