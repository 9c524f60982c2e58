//! `spikenas-host estimate`: the memory model for one architecture on one board.

use super::common::BoardArgs;
use anyhow::bail;
use spikenas_host::arch::Arch;
use spikenas_host::memory::{self, InputShape};

/// Estimate flash and RAM per region for an architecture on a board; exits non-zero
/// when it does not fit.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    board: BoardArgs,
    /// Architecture encoding, e.g. cell=0301.0003.0000.0000,ch=16,stages=2,fc=128,bits=8.
    #[arg(long)]
    arch: String,
    /// Input shape as CxHxW.
    #[arg(long, default_value = "1x28x28")]
    input: String,
    /// Number of classes.
    #[arg(long, default_value_t = 10)]
    classes: usize,
}

/// Print the estimate; fail naming the region and the overflow if it does not fit.
pub fn run(args: Args) -> anyhow::Result<()> {
    let arch: Arch = args.arch.parse()?;
    let input = InputShape::parse(&args.input, args.classes).map_err(anyhow::Error::msg)?;
    let (catalog, board) = args.board.load()?;
    let estimate = memory::estimate(&arch, &input, &board, catalog.targets());
    println!("arch {arch}, input {input}");
    print!("{}", estimate.render());
    if let Some(problem) = &estimate.problem {
        bail!("{arch} cannot be laid out on {input}: {problem}");
    }
    if let Some(overflow) = estimate.first_overflow() {
        bail!("{arch} does not fit {}: {overflow}", board.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(board: &str, arch: &str) -> Args {
        Args {
            board: BoardArgs {
                board: Some(board.into()),
                board_file: None,
            },
            arch: arch.into(),
            input: "1x28x28".into(),
            classes: 10,
        }
    }

    #[test]
    fn fitting_network_succeeds_and_overflow_names_the_region() {
        run(args(
            "netduinoplus2",
            "cell=0301.0003.0000.0000,ch=16,stages=2,fc=128,pool=2",
        ))
        .unwrap();
        let e = run(args("microbit", "ch=32,stages=2,fc=256"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not fit microbit") && e.contains("`flash`"),
            "{e}"
        );
        let e = run(args("nope", "ch=4")).unwrap_err().to_string();
        assert!(e.contains("microbit"), "{e}");
    }
}
