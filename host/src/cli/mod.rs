//! Command-line interface: one file per subcommand, each a clap struct and a `run`.

use clap::{Parser, Subcommand};

mod train;

/// SpikeNAS: memory-aware architecture search for spiking neural networks on embedded boards.
#[derive(Debug, Parser)]
#[command(name = "spikenas-host", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train one architecture on a dataset and write a checkpoint.
    Train(train::TrainArgs),
}

/// Parse the command line, run the subcommand, map errors to an exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Train(args) => train::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
