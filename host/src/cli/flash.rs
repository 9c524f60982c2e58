//! `spikenas-host flash`: run a generated firmware crate on a real board via probe-rs,
//! or (RP2040) hand its UF2 file to the BOOTSEL drive and read the results from a UART.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use spikenas_host::board_app::build::{self, BuildOptions};
use spikenas_host::board_app::flash::{self, FlashOptions, FlashOutcome};
use spikenas_host::board_app::on_device::{self, compare, DeviceRun};
use spikenas_host::board_app::serial;
use spikenas_host::board_app::TestSet;

use super::common::BoardArgs;

/// Build with the test set in flash, flash and run it with `probe-rs run`, and compare
/// every result with the host's. Needs the probe-rs CLI
/// (`cargo install --locked probe-rs-tools`) and a connected board. On the RP2040 the
/// build also writes a `.uf2` file for the BOOTSEL drive (`--uf2-copy`).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    board: BoardArgs,
    /// Build and print the probe-rs command, but do not touch the probe.
    #[arg(long)]
    dry_run: bool,
    /// Probe to use when several are attached: VID:PID or VID:PID:SERIAL (`probe-rs list`).
    #[arg(long)]
    probe: Option<String>,
    /// RP2040: copy the .uf2 onto the BOOTSEL drive mounted at this folder instead of
    /// using a probe.
    #[arg(long)]
    uf2_copy: Option<PathBuf>,
    /// RP2040 without a probe: with --uf2-copy, build the UART results transport (GP0 TX,
    /// 115200 8N1), and read and compare the results from this serial device (the USB-UART
    /// adapter or Debug Probe wired to GP0 and GND, e.g. /dev/ttyUSB0 or /dev/ttyACM0).
    #[arg(long, value_name = "DEVICE", requires = "uf2_copy")]
    serial: Option<PathBuf>,
    /// With --serial: seconds to wait for the next line before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    serial_timeout: u64,
    /// Build with defmt logging over RTT (results and timing per image) and print the
    /// logs, which `probe-rs run` decodes from the ELF's defmt table.
    #[arg(long)]
    defmt: bool,
    /// The generated crate.
    dir: PathBuf,
}

/// Build, flash, run, compare.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (catalog, board) = args.board.load()?;
    let board = &board;
    let opts = FlashOptions {
        dry_run: args.dry_run,
        probe: args.probe,
        semihosting_testset: None,
    };
    // Refuse what cannot be served before the build, not after it.
    build::check_crate(&args.dir, board, catalog.targets())?;
    flash::preflight(board, &opts, args.uf2_copy.as_deref())?;
    if let Some(device) = &args.serial {
        serial::check_device(device)?;
    }
    let options = BuildOptions {
        embedded_testset: true,
        defmt: args.defmt,
        uart: args.serial.is_some(),
        ..BuildOptions::default()
    };
    let report = build::build(&args.dir, board, catalog.targets(), &options)?;
    print!("{}", report.render());
    if let Some(drive) = &args.uf2_copy {
        let Some(uf2) = &report.uf2 else {
            bail!("the build of {} wrote no .uf2 file", args.dir.display());
        };
        if args.serial.is_none() {
            let to = flash::copy_uf2(uf2, drive)?;
            println!(
                "copied {} to {}; the Pico flashes it and restarts",
                uf2.display(),
                to.display()
            );
            return Ok(());
        }
    }
    let set = TestSet::read(&args.dir.join(on_device::TESTSET_FILE))?;
    let outcome = match (&args.uf2_copy, &args.serial, &report.uf2) {
        (Some(drive), Some(device), Some(uf2)) => {
            println!(
                "copying {} to {}, then reading the results from {}",
                uf2.display(),
                drive.display(),
                device.display()
            );
            let idle = Duration::from_secs(args.serial_timeout);
            serial::flash_uf2_serial(uf2, drive, device, set.len(), idle)?
        }
        _ => flash::flash(&report.elf, board, set.len(), &opts)?,
    };
    match outcome {
        FlashOutcome::DryRun { command } => {
            println!("dry run, would run: {}", command.join(" "));
            if let Some(uf2) = &report.uf2 {
                println!("{}", flash::uf2_instructions(uf2));
            }
        }
        FlashOutcome::Ran {
            output,
            seconds,
            log,
            ..
        } => {
            if !log.is_empty() {
                println!("device log (decoded by probe-rs):");
                for line in &log {
                    println!("  {line}");
                }
            }
            let host = on_device::read_host_results(&args.dir)?;
            let run = DeviceRun::from_output(output, seconds);
            let cmp = compare(&host, &run);
            println!(
                "{} images in {seconds:.1} s: class agreement {:.2}%, spikes {}/{}, device accuracy {:.2}%",
                cmp.images,
                cmp.class_agreement_pct(),
                cmp.same_spikes,
                cmp.images,
                100.0 * run.correct as f64 / cmp.images.max(1) as f64
            );
            println!("{}", run.timing_line(board.clock_hz));
            if let Some((i, h, d)) = cmp.first_mismatch {
                bail!("image {i}: host {h:?}, device {d:?}");
            }
        }
    }
    Ok(())
}
