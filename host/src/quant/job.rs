//! Whole jobs the CLI runs: `quantize` (checkpoint -> model.safetensors with the
//! float / int8 / int4 comparison) and `infer` (run an exported model on a dataset).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use serde::Serialize;

use super::{agreement, evaluate_int, quantize, QuantError, QuantReport};
use crate::checkpoint::{self, CheckpointError};
use crate::data::{self, DataError, LoadOptions, Source, Split};
use crate::export::{self, ExportError, ModelInfo, MODEL_FILE};
use crate::kernels::ConvBackend;
use crate::output::{OutputError, Staged};
use crate::train;

/// The float checkpoint's file name inside a training or model directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// Errors of a quantize or infer job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Reading the float checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Reading or writing the model file failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Loading the data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Quantization or the integer evaluation failed.
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// Writing output failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// A float tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Serialising the report failed.
    #[error("cannot serialise report: {0}")]
    Json(#[from] serde_json::Error),
    /// The float engine was asked for but the model directory has no checkpoint.
    #[error("{0} has no float checkpoint ({CHECKPOINT_FILE}); use --engine int, or quantize again (quantize copies the checkpoint)")]
    NoCheckpoint(PathBuf),
}

/// What `quantize` does.
#[derive(Debug, Clone)]
pub struct QuantizeJob {
    /// The float checkpoint.
    pub checkpoint: PathBuf,
    /// The dataset; `None` takes the one named in the checkpoint.
    pub dataset: Option<Source>,
    /// How to load it (use the training run's seed so the test split is the same).
    pub load: LoadOptions,
    /// Bit width of the exported model (8 or 4); both are evaluated.
    pub bits: u8,
    /// Calibration images (the first of the training split).
    pub calibration_images: usize,
    /// Board name for the metadata.
    pub board: Option<String>,
}

/// One integer variant's figures on the test split.
#[derive(Debug, Clone, Serialize)]
pub struct VariantFigures {
    /// Weight bits.
    pub bits: u8,
    /// Test accuracy.
    pub accuracy: f32,
    /// Fraction of test images where the integer and the float prediction agree.
    pub agreement_with_float: f32,
    /// Mean spikes per image.
    pub mean_spikes: f64,
    /// Mean synaptic operations per image.
    pub mean_synops: f64,
    /// Weight bytes at this bit width.
    pub weight_bytes: usize,
    /// The calibration report.
    pub calibration: QuantReport,
}

/// The result of [`quantize_to_dir`] (also written as `quant.json`).
#[derive(Debug, Clone, Serialize)]
pub struct QuantizeOutcome {
    /// Where the model is.
    #[serde(skip)]
    pub dir: PathBuf,
    /// The architecture.
    pub arch: String,
    /// The dataset.
    pub dataset: String,
    /// Test images.
    pub test_images: usize,
    /// Float test accuracy.
    pub float_accuracy: f32,
    /// int8 and int4 figures.
    pub variants: Vec<VariantFigures>,
    /// The bit width written to model.safetensors.
    pub exported_bits: u8,
}

fn dataset_of(given: &Option<Source>, named: &str) -> Result<Source, DataError> {
    match given {
        Some(s) => Ok(s.clone()),
        None => named.parse(),
    }
}

/// Quantizes a float checkpoint to int8 and int4, evaluates both and the float network
/// on the test split, and writes `model.safetensors` (at `job.bits`), `quant.json` and a
/// copy of the float checkpoint into `out` (atomically; an existing directory only with
/// `force`).
pub fn quantize_to_dir(
    job: &QuantizeJob,
    out: &Path,
    force: bool,
) -> Result<QuantizeOutcome, JobError> {
    if job.bits != 8 && job.bits != 4 {
        return Err(QuantError::Bits(job.bits).into());
    }
    let staged = Staged::new(out, force)?;
    let device = Device::Cpu;
    let (net, varmap, info) = checkpoint::load(&job.checkpoint, &device)?;
    let source = dataset_of(&job.dataset, &info.dataset)?;
    let data = data::load(&source, &job.load)?;
    let n_cal = job.calibration_images.min(data.train.len());
    let calibration = data.train.select(&(0..n_cal).collect::<Vec<_>>());
    let float_pred = train::predict(&net, &data.test, &device, ConvBackend::default())?;
    let float_accuracy = accuracy(&float_pred, &data.test);
    let mut variants = Vec::new();
    let mut exported = None;
    for bits in [8u8, 4] {
        let (q, report) = quantize(&net, &varmap, &calibration, bits)?;
        let eval = evaluate_int(&q, &data.test)?;
        variants.push(VariantFigures {
            bits,
            accuracy: eval.accuracy,
            agreement_with_float: agreement(&eval.predictions, &float_pred),
            mean_spikes: eval.mean_spikes(),
            mean_synops: eval.mean_synops(),
            weight_bytes: q.storage().weight_bytes,
            calibration: report,
        });
        if bits == job.bits {
            exported = Some((q, eval.accuracy));
        }
    }
    let (q, int_accuracy) = exported.expect("job.bits is 8 or 4");
    let model_info = ModelInfo {
        dataset: source.to_string(),
        float_accuracy: Some(float_accuracy),
        int_accuracy: Some(int_accuracy),
        board: job.board.clone(),
        extra: Default::default(),
    };
    staged.write(MODEL_FILE, &export::to_bytes(&q, &model_info))?;
    let ckpt = std::fs::read(&job.checkpoint).map_err(|source| CheckpointError::Read {
        path: job.checkpoint.clone(),
        source,
    })?;
    staged.write(CHECKPOINT_FILE, &ckpt)?;
    let mut outcome = QuantizeOutcome {
        dir: PathBuf::new(),
        arch: q.arch.to_string(),
        dataset: source.to_string(),
        test_images: data.test.len(),
        float_accuracy,
        variants,
        exported_bits: job.bits,
    };
    staged.write(
        "quant.json",
        serde_json::to_string_pretty(&outcome)?.as_bytes(),
    )?;
    outcome.dir = staged.commit()?;
    Ok(outcome)
}

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
    /// Directory with model.safetensors (and checkpoint.safetensors for float).
    pub model_dir: PathBuf,
    /// The dataset; `None` takes the one named in the model.
    pub dataset: Option<Source>,
    /// How to load it.
    pub load: LoadOptions,
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
}

/// Runs the model in `job.model_dir` on the test split and times it. `device` is used
/// by the float engine only (the integer runtime runs on the CPU threads).
pub fn infer_dir(job: &InferJob, device: &Device) -> Result<InferOutcome, JobError> {
    let model_path = job.model_dir.join(MODEL_FILE);
    let ckpt_path = job.model_dir.join(CHECKPOINT_FILE);
    match job.engine {
        Engine::Int => {
            let (q, info) = export::load(&model_path)?;
            let test = test_split(job, &info.dataset)?;
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
            })
        }
        Engine::Float => {
            if !ckpt_path.exists() {
                return Err(JobError::NoCheckpoint(job.model_dir.clone()));
            }
            let (net, _, info) = checkpoint::load(&ckpt_path, device)?;
            let test = test_split(job, &info.dataset)?;
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
            })
        }
    }
}

fn test_split(job: &InferJob, named: &str) -> Result<Split, JobError> {
    let source = dataset_of(&job.dataset, named)?;
    let data = data::load(&source, &job.load)?;
    let n = job.samples.unwrap_or(data.test.len()).min(data.test.len());
    Ok(data.test.select(&(0..n).collect::<Vec<_>>()))
}
