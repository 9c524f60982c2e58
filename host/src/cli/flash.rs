//! `spikenas-host flash`: run a generated firmware crate on a real board via probe-rs.

use std::path::PathBuf;

use anyhow::bail;
use spikenas_host::boards::Catalog;
use spikenas_host::firmware::build::{self, BuildOptions};
use spikenas_host::firmware::flash::{self, FlashOptions, FlashOutcome};
use spikenas_host::firmware::validate::{self, compare, DeviceRun};
use spikenas_host::firmware::TestSet;

/// Build with the test set in flash, flash and run it with `probe-rs run`, and compare
/// every result with the host's. Needs the probe-rs CLI
/// (`cargo install --locked probe-rs-tools`) and a connected board.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Board name (see `spikenas-host boards`).
    #[arg(long)]
    board: String,
    /// Build and print the probe-rs command, but do not touch the probe.
    #[arg(long)]
    dry_run: bool,
    /// Probe to use (`VID:PID` or serial) when several are attached.
    #[arg(long)]
    probe: Option<String>,
    /// The generated crate.
    dir: PathBuf,
}

/// Build, flash, run, compare.
pub fn run(args: Args) -> anyhow::Result<()> {
    let catalog = Catalog::discover()?;
    let board = catalog.board(&args.board)?;
    let options = BuildOptions {
        embedded_testset: true,
        ..BuildOptions::default()
    };
    let report = build::build(&args.dir, board, catalog.targets(), &options)?;
    print!("{}", report.render());
    let set = TestSet::read(&args.dir.join(validate::TESTSET_FILE))?;
    let opts = FlashOptions {
        dry_run: args.dry_run,
        probe: args.probe,
    };
    match flash::flash(&report.elf, board, set.len(), &opts)? {
        FlashOutcome::DryRun { command } => {
            println!("dry run, would run: {}", command.join(" "));
        }
        FlashOutcome::Ran {
            results,
            correct,
            seconds,
            ..
        } => {
            let host = validate::read_host_results(&args.dir)?;
            let run = DeviceRun {
                predictions: results.iter().map(|r| r.class).collect(),
                spikes: results.iter().map(|r| r.spikes).collect(),
                synops: results.iter().map(|r| r.synops).collect(),
                instructions_per_inference: Vec::new(),
                correct,
                seconds: seconds as f64,
            };
            let cmp = compare(&host, &run);
            println!(
                "{} images in {seconds} s: class agreement {:.2}%, spikes {}/{}, device accuracy {:.2}%",
                cmp.images,
                cmp.class_agreement_pct(),
                cmp.same_spikes,
                cmp.images,
                100.0 * correct as f64 / cmp.images.max(1) as f64
            );
            if let Some((i, h, d)) = cmp.first_mismatch {
                bail!("image {i}: host {h:?}, device {d:?}");
            }
        }
    }
    Ok(())
}
