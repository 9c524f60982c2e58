//! `spikenas-host train`: train one architecture on a dataset and write a checkpoint.
//!
//! Measured on 2 shared CPU cores (release build):
//! - `train --dataset digits` (defaults: 15 epochs): 98.89% test in 8.9 s of training.
//! - Fashion-MNIST, 54k train / 6k val / 10k test, T = 2, 14x14 input (pool=2):
//!   `train --dataset fashion-mnist --arch
//!   cell=0301.0003.0000.0000,ch=16,stages=2,fc=128,t=2,pool=2 --epochs 12
//!   --train-time 1200`: 90.12% test in 498 s of training (about 37 s an epoch).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use spikenas_host::arch::Arch;
use spikenas_host::data::Source;
use spikenas_host::jobs::train::TrainJob;
use spikenas_host::jobs::{self, RunControl};

use super::common::{self, at_least_one_second, TrainingArgs};

/// Train an architecture (default: a small network that suits 8x8 to 32x32 images).
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Architecture encoding, as printed in a search report.
    #[arg(long, default_value_t = Arch::default())]
    arch: Arch,
    /// Dataset: fashion-mnist, digits, idx:DIR or cifar10:DIR.
    #[arg(long, default_value = "digits")]
    dataset: Source,
    #[command(flatten)]
    training: TrainingArgs,
    /// Old name of --train-time.
    #[arg(long, hide = true, value_parser = at_least_one_second, conflicts_with = "train_time")]
    time_budget: Option<u64>,
    /// Output directory (checkpoint.safetensors, train.json).
    #[arg(long, default_value = "runs/train")]
    out: PathBuf,
    /// Replace an output folder that spikenas wrote earlier (one with a .spikenas-output
    /// marker; never the current folder, its parents or the home folder).
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Continue the interrupted run in this folder (with its own options; the training
    /// state is kept after every epoch and on Ctrl-C/SIGTERM).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
}

/// Run `train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let Some(dir) = args.resume else {
        return run_job(args, common::run_control(false, common::this_command()));
    };
    let command = common::resumed_command(&dir, "train")?;
    let super::Command::Train(mut old) = super::parse_recorded(&command)? else {
        unreachable!("resumed_command checked the subcommand");
    };
    old.quiet |= args.quiet;
    old.out = dir;
    run_job(old, common::run_control(true, command))
}

fn run_job(args: TrainArgs, ctl: RunControl) -> anyhow::Result<()> {
    let device = args.training.device.open()?;
    let mut training = args.training;
    training.train_time = training.train_time.or(args.time_budget);
    let job = TrainJob {
        arch: args.arch,
        source: args.dataset,
        load: training.load_options(),
        config: training.config(!args.quiet),
        seed: training.seed,
    };
    let out = jobs::train::train_to_dir_with(&job, &device, &args.out, args.force, &ctl)
        .context("training failed")?;
    println!(
        "test accuracy {:.2}% after {} epochs ({:.1} s of training); checkpoint {}",
        100.0 * out.report.test_accuracy,
        out.report.epochs.len(),
        out.report.train_seconds,
        out.dir.join("checkpoint.safetensors").display()
    );
    Ok(())
}
