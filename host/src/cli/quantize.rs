//! `spikenas-host quantize`: a float checkpoint to `model.safetensors` (int8 or int4),
//! with float / int8 / int4 test accuracy and float-vs-integer agreement.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use spikenas_host::data::{LoadOptions, Source};
use spikenas_host::jobs::quantize::{self, QuantizeJob};

use super::common::at_least_one;

/// Quantize a trained checkpoint and compare float, int8 and int4 on the test split.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The float checkpoint: checkpoint.safetensors of a training run, or its folder.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset (default: the one the checkpoint was trained on).
    #[arg(long)]
    dataset: Option<Source>,
    /// Weight bits of the exported model: 8 or 4 (both are evaluated).
    #[arg(long, default_value_t = 8)]
    bits: u8,
    /// Calibration images (the first of the training split).
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    calibration: usize,
    /// Seed of the data splits (default: the training run's, recorded in the file, so
    /// the test images are ones training never saw).
    #[arg(long)]
    seed: Option<u64>,
    /// Use at most this many test images (stratified subsample).
    #[arg(long, value_parser = at_least_one)]
    max_test: Option<usize>,
    /// The board recorded in the model's metadata (optional; checked like everywhere).
    #[command(flatten)]
    board: super::common::BoardArgs,
    /// Output directory (model.safetensors, quant.json, checkpoint.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Replace an output folder that spikenas wrote earlier (one with a .spikenas-output
    /// marker; never the current folder, its parents or the home folder).
    #[arg(long)]
    force: bool,
}

/// Run `quantize`.
pub fn run(args: QuantizeArgs) -> anyhow::Result<()> {
    let job = QuantizeJob {
        checkpoint: args.checkpoint,
        dataset: args.dataset,
        load: LoadOptions {
            max_test: args.max_test,
            ..Default::default()
        },
        bits: args.bits,
        seed: args.seed,
        calibration_images: args.calibration,
        board: args.board.load_optional()?.map(|(_, p)| p.name),
    };
    let out =
        quantize::quantize_to_dir(&job, &args.out, args.force).context("quantization failed")?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{} on {} ({} test images)",
        out.arch, out.dataset, out.test_images
    );
    println!("float  accuracy {:6.2}%", 100.0 * out.float_accuracy);
    for v in &out.variants {
        println!(
            "int{}   accuracy {:6.2}%  agreement with float {:6.2}%  {:.0} spikes/image  {:.0} synops/image  {} weight bytes",
            v.bits,
            100.0 * v.accuracy,
            100.0 * v.agreement_with_float,
            v.mean_spikes,
            v.mean_synops,
            v.weight_bytes
        );
        for l in &v.calibration.layers {
            println!(
                "  {:16} {:7} neurons  rate float {:>8}  int {:.4}",
                l.name,
                l.neurons,
                l.float_rate.map_or("-".into(), |r| format!("{r:.4}")),
                l.int_rate
            );
        }
        for w in &v.calibration.warnings {
            println!("  warning: {w}");
        }
    }
    println!(
        "wrote int{} model {}",
        out.exported_bits,
        out.dir
            .join(spikenas_host::quant::export::MODEL_FILE)
            .display()
    );
    Ok(())
}
