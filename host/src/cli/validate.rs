//! `spikenas-host validate`: run a generated firmware crate in QEMU (or on a real board
//! through probe-rs) and compare with the host.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use spikenas_host::board_app::build::{self, BuildOptions};
use spikenas_host::board_app::on_device::{self, estimate_error};
use spikenas_host::board_app::CrateModel;
use spikenas_host::{latency, memory};

use super::common::BoardArgs;

/// Build, run on the emulated board, and check that every prediction and spike count
/// equals the host's; report accuracy, instructions per inference and per synaptic
/// operation, memory per region and the memory model's error.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The board: emulated boards run in QEMU, real ones through probe-rs with the test
    /// set served by semihosting.
    #[command(flatten)]
    board: BoardArgs,
    /// Real boards: the probe to use when several are attached (VID:PID or VID:PID:SERIAL).
    #[arg(long)]
    probe: Option<String>,
    /// Use only the first N images of the crate's test set.
    #[arg(long, value_parser = super::common::at_least_one)]
    samples: Option<usize>,
    /// Seconds before QEMU is stopped.
    #[arg(long, default_value_t = 300, value_parser = super::common::at_least_one_second)]
    timeout: u64,
    /// The generated crate.
    dir: PathBuf,
}

/// Validate and print the report; fails on any disagreement.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (catalog, board) = args.board.load()?;
    let board = &board;
    build::check_crate(&args.dir, board, catalog.targets())?;
    on_device::preflight(board, catalog.targets(), args.probe.as_deref())?;
    let report = build::build(
        &args.dir,
        board,
        catalog.targets(),
        &BuildOptions::default(),
    )?;
    print!("{}", report.render());
    let (run, cmp) = on_device::validate_dir_with(
        &args.dir,
        &report.elf,
        board,
        catalog.targets(),
        args.samples,
        Duration::from_secs(args.timeout),
        args.probe,
    )?;
    println!(
        "{} images in {:.1} s: class agreement {:.2}%, spike counts {}/{}, synops {}/{}",
        cmp.images,
        run.seconds,
        cmp.class_agreement_pct(),
        cmp.same_spikes,
        cmp.images,
        cmp.same_synops,
        cmp.images
    );
    println!(
        "device accuracy {:.2}%, instructions/inference {:.0}, synaptic ops/inference {:.0}, \
         instructions per synaptic op {:.2}",
        100.0 * run.correct as f64 / cmp.images.max(1) as f64,
        run.mean_instructions(),
        run.mean_synops(),
        run.instructions_per_synop()
    );
    println!("{}", run.timing_line(board.clock_hz));
    if let Some(CrateModel { arch, input }) = CrateModel::read(&args.dir)? {
        let costs = catalog
            .targets()
            .get(&board.target)
            .and_then(|t| t.latency.as_ref());
        if let (Some(costs), true) = (costs, run.mean_instructions() > 0.0) {
            let work = latency::Work::of(&arch, &input);
            let measured = run.mean_instructions();
            let exact = costs.instructions(&work, Some(run.mean_synops()));
            let before = costs.instructions(&work, None);
            println!(
                "latency model: measured {measured:.0} instructions/inference; predicted \
                 {exact:.0} ({:+.1}%) from the synaptic ops, {before:.0} ({:+.1}%) from the \
                 architecture alone (the search's estimate, activity {})",
                100.0 * (exact / measured - 1.0),
                100.0 * (before / measured - 1.0),
                costs.activity
            );
        }
        let est = memory::estimate(&arch, &input, board, catalog.targets());
        for e in estimate_error(&report, &est) {
            println!(
                "memory model, region {}: estimated {} bytes, measured {} bytes, error {:+.1}%",
                e.region, e.estimated, e.measured, e.error_pct
            );
        }
    }
    if let Some((i, h, d)) = cmp.first_mismatch {
        bail!("device disagrees with the host at image {i}: host {h:?}, device {d:?}");
    }
    Ok(())
}
