//! Command-line interface: one file per subcommand, each a clap struct and a `run`.

use clap::{Parser, Subcommand};

mod analyze_ops;
mod boards;
mod build;
mod common;
mod estimate;
mod export;
mod flash;
mod generate;
mod infer;
mod quantize;
mod search;
mod train;
mod validate;

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
    /// Measure each cell operation's impact on accuracy and write the search space.
    AnalyzeOps(analyze_ops::AnalyzeArgs),
    /// Search the SNN that fits a board's memory, train it and write the report (the main job).
    Search(search::SearchArgs),
    /// Train one architecture on a dataset and write a checkpoint.
    Train(train::TrainArgs),
    /// Write the board application (firmware crate) for a network.
    Generate(generate::Args),
    /// Build a generated firmware crate and report flash and RAM per region.
    Build(build::Args),
    /// Run a generated firmware crate in QEMU and compare every result with the host.
    Validate(validate::Args),
    /// Flash and run a generated firmware crate on a real board through probe-rs.
    Flash(flash::Args),
    /// Quantize a checkpoint to model.safetensors; compare float, int8 and int4.
    Quantize(quantize::QuantizeArgs),
    /// Run an exported model on a dataset: accuracy and images/s.
    Infer(infer::InferArgs),
    /// Export a float checkpoint as a NIR graph (HDF5) for other SNN frameworks.
    Export(export::ExportArgs),
}

/// Parse the command line, run the subcommand, map errors to an exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Boards(args) => boards::run(args),
        Command::Estimate(args) => estimate::run(args),
        Command::AnalyzeOps(args) => analyze_ops::run(args),
        Command::Search(args) => search::run(args),
        Command::Train(args) => train::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Build(args) => build::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Flash(args) => flash::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Infer(args) => infer::run(args),
        Command::Export(args) => export::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if interruption(&e).is_some() => {
            let stop = interruption(&e).expect("checked");
            eprintln!("{stop}");
            // As a shell reports a process ended by the signal: 128 + its number.
            std::process::ExitCode::from(128 + stop.signal.unwrap_or(2).clamp(1, 127) as u8)
        }
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The subcommand of a recorded command line (`--resume`).
fn parse_recorded(command: &[String]) -> anyhow::Result<Command> {
    Ok(Cli::try_parse_from(command)?.command)
}

/// The interruption `e` reports, if it is one (a job stopped with its work kept).
fn interruption(e: &anyhow::Error) -> Option<&spikenas_host::jobs::Interrupted> {
    use spikenas_host::jobs::{Interrupted, JobError};
    e.chain().find_map(|c| {
        c.downcast_ref::<Interrupted>()
            .or_else(|| match c.downcast_ref::<JobError>() {
                Some(JobError::Interrupted(i)) => Some(i),
                _ => None,
            })
    })
}

/// The error and its causes, skipping a cause whose text the message before already
/// contains (typed errors often quote their source).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_chain_skips_quoted_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(io).context("cannot read x: gone");
        assert_eq!(super::error_chain(&e), "cannot read x: gone");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::error_chain(&e), "outer: inner");
    }
}
