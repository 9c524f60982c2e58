//! The `quantize` job: a float checkpoint to `model.safetensors`, with the float /
//! int8 / int4 comparison on the test split (`quant.json`).

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;

use crate::checkpoint::{self, CheckpointError};
use crate::data::{self, LoadOptions, Source};
use crate::kernels::ConvBackend;
use crate::output::Staged;
use crate::quant::export::{self, ModelInfo, MODEL_FILE};
use crate::quant::{agreement, evaluate_int, quantize, QuantError, QuantReport};
use crate::train;

use super::{accuracy, dataset_of, split_seed, JobError};

/// What `quantize` does.
#[derive(Debug, Clone)]
pub struct QuantizeJob {
    /// The float checkpoint: the file, or a directory holding `checkpoint.safetensors`.
    pub checkpoint: PathBuf,
    /// The dataset; `None` takes the one named in the checkpoint.
    pub dataset: Option<Source>,
    /// How to load it; its `seed` is replaced by the choice of [`split_seed`].
    pub load: LoadOptions,
    /// Seed of the data splits; `None` reuses the one the checkpoint records.
    pub seed: Option<u64>,
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
    /// The seed the data was split with.
    pub seed: u64,
    /// Things the user should know (e.g. a seed other than the training run's).
    #[serde(skip)]
    pub warnings: Vec<String>,
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
    let ckpt_path = if job.checkpoint.is_dir() {
        job.checkpoint.join(checkpoint::FILE)
    } else {
        job.checkpoint.clone()
    };
    let (net, varmap, info) = checkpoint::load(&ckpt_path, &device)?;
    let source = dataset_of(&job.dataset, &info.dataset)?;
    let (seed, warning) = split_seed(job.seed, info.data_seed(), &ckpt_path);
    let load = LoadOptions {
        seed,
        ..job.load.clone()
    };
    let data = data::load(&source, &load)?;
    same_input(&data, &info)?;
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
        extra: [(checkpoint::DATA_SEED.to_string(), seed.to_string())].into(),
    };
    staged.write(MODEL_FILE, &export::to_bytes(&q, &model_info))?;
    let ckpt = std::fs::read(&ckpt_path).map_err(|source| CheckpointError::Read {
        path: ckpt_path.clone(),
        source,
    })?;
    staged.write(checkpoint::FILE, &ckpt)?;
    let mut outcome = QuantizeOutcome {
        dir: PathBuf::new(),
        arch: q.arch.to_string(),
        dataset: source.to_string(),
        test_images: data.test.len(),
        float_accuracy,
        variants,
        exported_bits: job.bits,
        seed,
        warnings: warning.into_iter().collect(),
    };
    staged.write(
        "quant.json",
        serde_json::to_string_pretty(&outcome)?.as_bytes(),
    )?;
    outcome.dir = staged.commit()?;
    Ok(outcome)
}

/// Refuses a dataset whose images or classes are not the checkpoint's (the float
/// network would fail deep inside a matrix product).
fn same_input(data: &data::Dataset, info: &checkpoint::CheckpointInfo) -> Result<(), QuantError> {
    let found = data::input_shape(data);
    if found != info.input {
        let show = |i: &crate::snn::InputShape, what: &str| {
            format!(
                "{}x{}x{} with {} classes ({what})",
                i.channels, i.height, i.width, i.classes
            )
        };
        return Err(QuantError::Input {
            expected: show(&info.input, &format!("trained on {}", info.dataset)),
            found: show(&found, &data.spec.name),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::arch::{Arch, InputShape};
    use crate::checkpoint::CheckpointInfo;
    use crate::jobs::infer::{infer_dir, Engine, InferJob};
    use crate::snn::lif::LifParams;
    use crate::snn::Network;

    #[test]
    fn quantize_and_infer_reuse_the_training_seed_and_warn_on_another() {
        let dir = std::env::temp_dir().join(format!("spikenas-job-seed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let arch: Arch = "ch=4,stages=1,fc=8,t=2".parse().unwrap();
        let input = InputShape {
            channels: 1,
            height: 8,
            width: 8,
            classes: 10,
        };
        let (_, varmap) =
            Network::init(arch, input, LifParams::default(), &Device::Cpu, 1).unwrap();
        let info = CheckpointInfo {
            arch,
            input,
            dataset: "digits".into(),
            accuracy: 0.1,
            lif: LifParams::default(),
            extra: HashMap::from([(checkpoint::DATA_SEED.to_string(), "7".to_string())]),
        };
        let ckpt = dir.join(checkpoint::FILE);
        checkpoint::save(&ckpt, &varmap, &info).unwrap();
        let mut job = QuantizeJob {
            checkpoint: ckpt.clone(),
            dataset: None,
            load: LoadOptions {
                max_test: Some(40),
                ..Default::default()
            },
            seed: None,
            bits: 8,
            calibration_images: 16,
            board: None,
        };
        let out = dir.join("q");
        let q = quantize_to_dir(&job, &out, false).unwrap();
        assert_eq!(q.seed, 7);
        assert!(q.warnings.is_empty(), "{:?}", q.warnings);
        let (_, model) = export::load(&out.join(MODEL_FILE)).unwrap();
        assert_eq!(model.data_seed(), Some(7));

        job.seed = Some(3);
        let q = quantize_to_dir(&job, &dir.join("q3"), false).unwrap();
        assert_eq!(q.seed, 3);
        assert!(
            q.warnings.len() == 1
                && q.warnings[0].contains("--seed 3")
                && q.warnings[0].contains("overlap"),
            "{:?}",
            q.warnings
        );

        let mut infer = InferJob {
            model_dir: out.clone(),
            dataset: None,
            load: LoadOptions::default(),
            seed: None,
            engine: Engine::Int,
            samples: Some(10),
        };
        for engine in [Engine::Int, Engine::Float] {
            infer.engine = engine;
            infer.seed = None;
            let r = infer_dir(&infer, &Device::Cpu).unwrap();
            assert_eq!(r.seed, 7);
            assert!(r.warnings.is_empty());
            infer.seed = Some(0);
            let r = infer_dir(&infer, &Device::Cpu).unwrap();
            assert_eq!(r.seed, 0);
            assert!(r.warnings[0].contains("overlap"), "{:?}", r.warnings);
        }
        // A file or its folder, either way.
        infer.model_dir = out.join(MODEL_FILE);
        infer.seed = None;
        assert_eq!(infer_dir(&infer, &Device::Cpu).unwrap().seed, 7);
        job.checkpoint = dir.clone();
        job.seed = None;
        assert_eq!(
            quantize_to_dir(&job, &dir.join("qd"), false).unwrap().seed,
            7
        );
        // A file from before the seed was recorded: 0, as before, and no warning.
        assert_eq!(split_seed(None, None, &ckpt), (0, None));
        assert_eq!(split_seed(Some(5), None, &ckpt), (5, None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
