//! `spikenas-host infer`: run an exported model on a dataset (integer runtime by
//! default, or the float checkpoint with candle) and report accuracy and images/s.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use spikenas_host::data::{LoadOptions, Source};
use spikenas_host::device::DeviceChoice;
use spikenas_host::jobs::infer::{self, Engine, InferJob};

use super::common::at_least_one;

/// Run an exported model (a `quantize` output directory) on the test split.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// Directory with model.safetensors (and checkpoint.safetensors for --engine float),
    /// or the model.safetensors file itself.
    #[arg(long)]
    model: PathBuf,
    /// Dataset (default: the one named in the model).
    #[arg(long)]
    dataset: Option<Source>,
    /// int: the integer runtime (firmware kernels); float: candle.
    #[arg(long, value_enum, default_value_t = Engine::Int)]
    engine: Engine,
    /// Device of the float engine: cpu, or cuda (needs a build with --features cuda;
    /// the integer engine runs on the CPU only).
    #[arg(long, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
    /// Use the first N test images.
    #[arg(long, value_parser = at_least_one)]
    samples: Option<usize>,
    /// Seed of the data splits (default: the training run's, recorded in the file, so
    /// the test images are ones training never saw).
    #[arg(long)]
    seed: Option<u64>,
}

/// Run `infer`.
pub fn run(args: InferArgs) -> anyhow::Result<()> {
    if args.engine == Engine::Int && args.device != DeviceChoice::Cpu {
        // Never a silent CPU run when a GPU was asked for.
        anyhow::bail!(
            "--device {} runs the float engine only: the integer engine is the firmware \
             crate's kernels, on the CPU. Fix: add --engine float (needs \
             checkpoint.safetensors beside the model), or leave --device out",
            args.device
        );
    }
    let device = args.device.open()?;
    let job = InferJob {
        model_dir: args.model,
        dataset: args.dataset,
        load: LoadOptions {
            ..Default::default()
        },
        engine: args.engine,
        seed: args.seed,
        samples: args.samples,
    };
    let out = infer::infer_dir(&job, &device).context("inference failed")?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{:?} engine, {}: {} images, accuracy {:.2}%, {:.1} images/s ({:.2} s){}",
        out.engine,
        out.arch,
        out.images,
        100.0 * out.accuracy,
        out.images_per_second,
        out.seconds,
        out.mean_spikes
            .map_or(String::new(), |s| format!(", {s:.0} spikes/image"))
    );
    Ok(())
}
