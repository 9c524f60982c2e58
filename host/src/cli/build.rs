//! `spikenas-host build`: build a generated firmware crate and report its memory.

use std::path::PathBuf;

use spikenas_host::board_app::build::{self, BuildOptions};

use super::common::BoardArgs;

/// Build the ELF for a board (Debian's cargo with build-std) and report flash and RAM
/// per region; fails naming the region that overflows.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    board: BoardArgs,
    /// Build the test set into flash (for real boards: `flash`).
    #[arg(long)]
    embedded_testset: bool,
    /// Also log results and timing per image with defmt over RTT (real boards; `probe-rs
    /// run` decodes the logs).
    #[arg(long)]
    defmt: bool,
    /// RP2040: send the results over UART0 (GP0 TX, 115200 8N1) instead of semihosting,
    /// for a Pico without a debug probe (implies --embedded-testset).
    #[arg(long)]
    uart: bool,
    /// The generated crate.
    dir: PathBuf,
}

/// Build and print the region table.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (catalog, board) = args.board.load()?;
    let board = &board;
    let options = BuildOptions {
        embedded_testset: args.embedded_testset,
        defmt: args.defmt,
        uart: args.uart,
        ..BuildOptions::default()
    };
    let report = build::build(&args.dir, board, catalog.targets(), &options)?;
    print!("{}", report.render());
    println!("built in {:.1} s", report.build_seconds);
    Ok(())
}
