//! Flashing and running on a real board through the `probe-rs` command-line tool.
//!
//! The host does not link the probe-rs library (a heavy build for every CI run); it runs
//! `probe-rs run --chip CHIP ELF`, which flashes, resets, relays semihosting output
//! and returns the firmware's exit code. The firmware must be built with the test set in
//! flash (`BuildOptions::embedded_testset`), since a probe serves no files.
//! Install the tool with `cargo install --locked probe-rs-tools` (about 7.5 minutes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::boards::Profile;

use super::validate::{parse_output, ImageResult};
use super::FirmwareError;

/// The probe-rs command-line tool.
pub const PROBE_RS: &str = "probe-rs";

/// How to flash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlashOptions {
    /// Build the command and check the inputs, but do not touch the probe.
    pub dry_run: bool,
    /// Serial number or `VID:PID` of the probe to use when several are attached.
    pub probe: Option<String>,
}

/// The result of [`flash`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlashOutcome {
    /// `--dry-run`: the exact command that would have run.
    DryRun {
        /// Program and arguments.
        command: Vec<String>,
    },
    /// The board ran the test set.
    Ran {
        /// The command that ran.
        command: Vec<String>,
        /// Per-image results the board printed.
        results: Vec<ImageResult>,
        /// Images whose prediction equals the label.
        correct: usize,
        /// Wall-clock seconds (flashing included).
        seconds: u64,
    },
}

/// The `probe-rs run` command for `elf` on `board`.
pub fn command(
    elf: &Path,
    board: &Profile,
    options: &FlashOptions,
) -> Result<Vec<String>, FirmwareError> {
    let chip = board
        .probe_rs_chip
        .as_deref()
        .ok_or_else(|| FirmwareError::Board {
            board: board.name.clone(),
            why: "no probe_rs_chip in the profile: add the name `probe-rs chip list` gives".into(),
        })?;
    let mut cmd = vec![
        PROBE_RS.to_string(),
        "run".into(),
        "--chip".into(),
        chip.to_string(),
    ];
    if let Some(p) = &options.probe {
        cmd.extend(["--probe".to_string(), p.clone()]);
    }
    cmd.push(elf.display().to_string());
    Ok(cmd)
}

/// Flashes `elf` (built with the embedded test set of `images` images) to `board` and
/// collects its results; with `dry_run`, returns the command only.
pub fn flash(
    elf: &Path,
    board: &Profile,
    images: usize,
    options: &FlashOptions,
) -> Result<FlashOutcome, FirmwareError> {
    let elf: PathBuf = elf.canonicalize().map_err(FirmwareError::io(elf))?;
    let command = command(&elf, board, options)?;
    if options.dry_run {
        return Ok(FlashOutcome::DryRun { command });
    }
    let started = Instant::now();
    let out = Command::new(&command[0])
        .args(&command[1..])
        .output()
        .map_err(|e| FirmwareError::ToolMissing {
            tool: PROBE_RS.into(),
            why: e.to_string(),
            fix: "install it with `cargo install --locked probe-rs-tools` (about 7.5 min), \
                  or use --dry-run"
                .into(),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.contains("No debug probes were found")
        || stdout.contains("No debug probes were found")
    {
        return Err(FirmwareError::NoProbe {
            board: board.name.clone(),
        });
    }
    let failed = |why: String| FirmwareError::Run {
        runner: PROBE_RS.into(),
        elf: elf.clone(),
        why,
        output: format!("{stdout}{stderr}")
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"),
    };
    if !out.status.success() {
        return Err(failed(format!("exited with {}", out.status)));
    }
    let (results, correct) = parse_output(&stdout, images).map_err(failed)?;
    Ok(FlashOutcome::Ran {
        command,
        results,
        correct,
        seconds: started.elapsed().as_secs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boards::Catalog;

    #[test]
    fn dry_run_gives_the_exact_command() {
        let catalog = Catalog::discover().unwrap();
        let board = catalog.board("nucleo-h743zi").unwrap();
        let elf = std::env::current_exe().unwrap();
        let options = FlashOptions {
            dry_run: true,
            probe: Some("0483:374b".into()),
        };
        match flash(&elf, board, 10, &options).unwrap() {
            FlashOutcome::DryRun { command } => assert_eq!(
                command,
                [
                    "probe-rs",
                    "run",
                    "--chip",
                    "STM32H743ZITx",
                    "--probe",
                    "0483:374b",
                    &elf.canonicalize().unwrap().display().to_string()
                ]
            ),
            other => panic!("{other:?}"),
        }
        let mut no_chip = board.clone();
        no_chip.probe_rs_chip = None;
        let err = flash(&elf, &no_chip, 10, &options).unwrap_err();
        assert!(err.to_string().contains("probe_rs_chip"), "{err}");
        let err = flash(Path::new("/no/such.elf"), board, 10, &options).unwrap_err();
        assert!(err.to_string().contains("/no/such.elf"), "{err}");
    }
}
