//! Command-line interface: one file per subcommand, each a clap struct and a `run`.

use clap::{Parser, Subcommand};

/// SpikeNAS: memory-aware architecture search for spiking neural networks on embedded boards.
#[derive(Debug, Parser)]
#[command(name = "spikenas-host", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // Subcommands are added here, one variant per file in this folder.
}

/// Parse the command line, run the subcommand, map errors to an exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {};
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
