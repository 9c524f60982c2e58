//! `spikenas-host analyze-ops`: SpikeNAS step 1, the operation impact analysis; writes
//! the search space that `search` uses.

use std::path::PathBuf;

use clap::Args;

use spikenas_host::data::{self, LoadOptions, Source};
use spikenas_host::device::DeviceChoice;
use spikenas_host::jobs::analyze::{self, AnalysisConfig};
use spikenas_host::output::write_atomic;

use super::common::at_least_one;

/// Measure each operation's impact on accuracy by short proxy trainings and write the
/// op set, backward-edge choice and T the search uses.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Dataset the proxy trainings use.
    #[arg(long, default_value = "fashion-mnist")]
    dataset: Source,
    /// Training images used by each proxy training.
    #[arg(long, default_value_t = 4000, value_parser = at_least_one)]
    max_train: usize,
    /// Epochs of each proxy training.
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    epochs: usize,
    /// Random cells per op.
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    cells_per_op: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, or cuda (needs a build with --features cuda).
    #[arg(long, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
    /// Where to write the search space (`search --space FILE` reads it; the shipped
    /// default is host/data/search-space.json).
    #[arg(long, default_value = "runs/search-space.json")]
    out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

/// Run `analyze-ops`.
pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    // Checked before the (long) proxy trainings, so no work is lost at the end.
    let details = args.out.with_extension("analysis.json");
    for path in [&args.out, &details] {
        if path.is_dir() {
            anyhow::bail!(
                "{} is a folder; the search space is written as one file. Fix: give --out a \
                 file name, e.g. runs/search-space.json",
                path.display()
            );
        }
        if path.exists() && !args.force {
            anyhow::bail!(
                "{} already exists. Fix: choose another --out, or pass --force to replace it",
                path.display()
            );
        }
    }
    let device = args.device.open()?;
    let data = data::load(
        &args.dataset,
        &LoadOptions {
            seed: args.seed,
            max_train: Some(args.max_train),
            ..Default::default()
        },
    )?;
    let mut cfg = AnalysisConfig {
        cells_per_op: args.cells_per_op,
        seed: args.seed,
        ..Default::default()
    };
    cfg.train.epochs = args.epochs;
    cfg.train.seed = args.seed;
    let result = analyze::analyze(&data, &device, &cfg, &mut |line| eprintln!("  {line}"))?;
    for o in &result.ops {
        println!(
            "{:<11} with {:.2}%  without {:.2}%  impact {:+.2} points  {}",
            format!("{:?}", o.op),
            100.0 * o.with,
            100.0 * o.without,
            100.0 * o.impact,
            if o.kept { "kept" } else { "dropped" }
        );
    }
    println!(
        "backward    with {:.2}%  without {:.2}%  impact {:+.2} points  {}",
        100.0 * result.backward.with,
        100.0 * result.backward.without,
        100.0 * result.backward.impact,
        if result.backward.kept {
            "kept"
        } else {
            "dropped"
        }
    );
    for (t, a) in &result.timesteps {
        println!("T={t:<2}        {:.2}%", 100.0 * a);
    }
    println!(
        "chosen T = {}; {:.0} s",
        result.chosen_timesteps, result.seconds
    );
    write_atomic(
        &args.out,
        serde_json::to_string_pretty(&result.space)?.as_bytes(),
    )?;
    write_atomic(&details, serde_json::to_string_pretty(&result)?.as_bytes())?;
    println!(
        "search space written to {} (measurements in {})",
        args.out.display(),
        details.display()
    );
    Ok(())
}
