//! Command-line interface: one file per subcommand, each a clap struct and a `run`.

use clap::{Parser, Subcommand};

mod boards;
mod estimate;
mod infer;
mod quantize;
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
    /// List the board profiles: core, flash, RAM per region, runner, emulation.
    Boards(boards::Args),
    /// Estimate flash and RAM per region of an architecture on a board.
    Estimate(estimate::Args),
    /// Train one architecture on a dataset and write a checkpoint.
    Train(train::TrainArgs),
    /// Quantize a checkpoint to model.safetensors; compare float, int8 and int4.
    Quantize(quantize::QuantizeArgs),
    /// Run an exported model on a dataset: accuracy and images/s.
    Infer(infer::InferArgs),
}

/// Parse the command line, run the subcommand, map errors to an exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Boards(args) => boards::run(args),
        Command::Estimate(args) => estimate::run(args),
        Command::Train(args) => train::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Infer(args) => infer::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
