//! `spikenas-host train`: train one architecture on a dataset and write a checkpoint.
//!
//! Measured on 2 shared CPU cores (release build):
//! - `train --dataset digits` (defaults: 15 epochs): 98.89% test in 8.9 s of training.
//! - Fashion-MNIST, 54k train / 6k val / 10k test, T = 2, 14x14 input (pool=2):
//!   `train --dataset fashion-mnist --arch
//!   cell=0301.0003.0000.0000,ch=16,stages=2,fc=128,t=2,pool=2 --epochs 12
//!   --time-budget 1200`: 90.12% test in 498 s of training (about 37 s an epoch).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use spikenas_host::arch::Arch;
use spikenas_host::data::{self, Augment, Source};
use spikenas_host::device::DeviceChoice;
use spikenas_host::kernels::ConvBackend;
use spikenas_host::session::{self, RunControl, TrainJob};
use spikenas_host::train::{OptimizerKind, TrainConfig};

use super::common::{self, at_least_one, at_least_one_second, non_negative, positive};

/// Train an architecture (default: a small network that suits 8x8 to 32x32 images).
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Architecture encoding, as printed in a search report.
    #[arg(long, default_value_t = Arch::default())]
    arch: Arch,
    /// Dataset: fashion-mnist, digits, idx:DIR or cifar10:DIR.
    #[arg(long, default_value = "digits")]
    dataset: Source,
    /// Passes over the training split (digits: 15 reach ~99% in ~10 s on 2 cores).
    #[arg(long, default_value_t = 15, value_parser = at_least_one)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    batch_size: usize,
    /// Peak learning rate (cosine schedule).
    #[arg(long, default_value_t = 3e-3, value_parser = positive)]
    lr: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 1e-4, value_parser = non_negative)]
    weight_decay: f64,
    /// Optimiser.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adamw)]
    optimizer: OptimizerKind,
    /// Distortions of the training images: none, shift (up to 2 pixels), or
    /// shift-flip (also mirrored left-right; for clothing, not digits).
    #[arg(long, value_enum, default_value_t = Augment::None)]
    augment: Augment,
    /// Seed for splits, initialisation and batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, or cuda (needs a build with --features cuda).
    #[arg(long, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
    /// Convolution implementation on the CPU.
    #[arg(long, default_value_t = ConvBackend::default())]
    conv: ConvBackend,
    /// Use at most this many training images (quick runs).
    #[arg(long, value_parser = at_least_one)]
    max_train: Option<usize>,
    /// Stop training after this many seconds.
    #[arg(long, value_parser = at_least_one_second)]
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
    let device = args.device.open()?;
    let opts = data::LoadOptions {
        seed: args.seed,
        max_train: args.max_train,
        ..Default::default()
    };
    let job = TrainJob {
        arch: args.arch,
        source: args.dataset,
        load: opts,
        config: TrainConfig {
            epochs: args.epochs,
            batch_size: args.batch_size,
            lr: args.lr,
            weight_decay: args.weight_decay,
            optimizer: args.optimizer,
            seed: args.seed,
            conv: args.conv,
            max_steps_per_epoch: None,
            time_budget: args.time_budget.map(Duration::from_secs),
            augment: args.augment,
            progress: !args.quiet,
        },
        seed: args.seed,
    };
    let out = session::train_to_dir_with(&job, &device, &args.out, args.force, &ctl)
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
