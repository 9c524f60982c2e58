//! Flashing and running on a real board through the `probe-rs` command-line tool.
//!
//! The host does not link the probe-rs library (a heavy build for every CI run); it runs
//! `probe-rs run --non-interactive --chip CHIP ELF`, which flashes, resets, relays
//! semihosting output and returns the firmware's exit code. The test set either is built
//! into flash (`BuildOptions::embedded_testset`) or is served from the host through
//! `--semihosting-file testset.bin=PATH`, as QEMU serves it.
//! Install the tool with `cargo install --locked probe-rs-tools` (about 7.5 minutes).
//!
//! A Raspberry Pi Pico without a debug probe takes the `.uf2` file instead: copied onto
//! the `RPI-RP2` drive it shows in BOOTSEL mode ([`copy_uf2`]); its results then come
//! over a UART ([`super::serial`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::boards::Profile;

use super::on_device::{parse_output, DeviceOutput, TESTSET_FILE};
use super::BoardAppError;

/// The probe-rs command-line tool.
pub const PROBE_RS: &str = "probe-rs";

/// How to flash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlashOptions {
    /// Build the command and check the inputs, but do not touch the probe.
    pub dry_run: bool,
    /// The probe to use when several are attached: `VID:PID` or `VID:PID:SERIAL` (hex
    /// VID and PID), as probe-rs takes it ([`check_probe`]).
    pub probe: Option<String>,
    /// Serve this test set file to the firmware through semihosting
    /// (`--semihosting-file testset.bin=PATH`) instead of building it into flash.
    pub semihosting_testset: Option<PathBuf>,
}

/// Checks a `--probe` selector the way probe-rs parses it: `VID:PID` or
/// `VID:PID:SERIAL`, VID and PID hexadecimal 16-bit numbers (a bare serial does not parse).
pub fn check_probe(selector: &str) -> Result<(), String> {
    let parts: Vec<&str> = selector.splitn(3, ':').collect();
    let hex16 = |s: &str| !s.is_empty() && s.len() <= 4 && u16::from_str_radix(s, 16).is_ok();
    match parts[..] {
        [vid, pid] | [vid, pid, _] if hex16(vid) && hex16(pid) => {
            if parts.get(2).is_some_and(|serial| serial.is_empty()) {
                Err(format!("probe `{selector}`: empty serial after `VID:PID:`"))
            } else {
                Ok(())
            }
        }
        _ => Err(format!(
            "probe `{selector}` is not VID:PID or VID:PID:SERIAL (hexadecimal VID and PID, \
             e.g. 0483:374b or 2e8a:000c:E6614C311B4A5D2F); `probe-rs list` shows them"
        )),
    }
}

/// The result of [`flash`].
#[derive(Debug, Clone, PartialEq)]
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
        /// What the board printed, parsed.
        output: DeviceOutput,
        /// Wall-clock seconds (flashing included).
        seconds: f64,
        /// What the board printed besides the result protocol: with the `defmt` build,
        /// the logs probe-rs decoded.
        log: Vec<String>,
    },
}

/// The board's probe-rs chip name, or why it has none.
fn chip_of(board: &Profile) -> Result<&str, BoardAppError> {
    if !board.is_mcu() {
        return Err(BoardAppError::Board {
            board: board.name.clone(),
            why: "it is not a microcontroller board: `build`, `flash` and `validate` serve the \
                  Cortex-M boards (`spikenas-host boards`); on this board run the model with \
                  `spikenas-host infer`"
                .into(),
        });
    }
    board
        .probe_rs_chip
        .as_deref()
        .ok_or_else(|| BoardAppError::Board {
            board: board.name.clone(),
            why: "no probe_rs_chip in the profile: add the name `probe-rs chip list` gives".into(),
        })
}

/// `tool`'s path if it is an executable file on `PATH` (or a path that exists).
pub fn on_path(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Path::new(tool).is_file().then(|| PathBuf::from(tool));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// What `flash` checks before anything is built, so that a board or an option it
/// cannot serve is refused at once rather than after a firmware build: the board is a
/// microcontroller with a probe-rs chip name, the `--probe` selector parses, and
/// (unless `dry_run`) the probe-rs tool is installed. With `uf2_drive`, instead: the
/// board boots from UF2 (RP2040) and the folder is a BOOTSEL drive.
pub fn preflight(
    board: &Profile,
    options: &FlashOptions,
    uf2_drive: Option<&Path>,
) -> Result<(), BoardAppError> {
    if let Some(drive) = uf2_drive {
        if super::clock::Family::of_target(&board.target) != super::clock::Family::Rp2040 {
            return Err(BoardAppError::Board {
                board: board.name.clone(),
                why: "--uf2-copy: it has no UF2 image (only the RP2040 boots from a BOOTSEL \
                      drive). Fix: flash it through a probe (drop --uf2-copy)"
                    .into(),
            });
        }
        return check_bootsel_drive(drive);
    }
    chip_of(board)?;
    if let Some(p) = &options.probe {
        check_probe(p).map_err(|why| BoardAppError::Board {
            board: board.name.clone(),
            why,
        })?;
    }
    if !options.dry_run && on_path(PROBE_RS).is_none() {
        return Err(probe_rs_missing("not on PATH".into()));
    }
    Ok(())
}

fn probe_rs_missing(why: String) -> BoardAppError {
    BoardAppError::ToolMissing {
        tool: PROBE_RS.into(),
        why,
        fix: "install it with `cargo install --locked probe-rs-tools` (about 7.5 min), \
              or use --dry-run"
            .into(),
    }
}

/// The `probe-rs run` command for `elf` on `board`.
pub fn command(
    elf: &Path,
    board: &Profile,
    options: &FlashOptions,
) -> Result<Vec<String>, BoardAppError> {
    let chip = chip_of(board)?;
    // --non-interactive: stdin is not a terminal, so probe-rs must not ask which probe.
    let mut cmd = vec![
        PROBE_RS.to_string(),
        "run".into(),
        "--non-interactive".into(),
        "--chip".into(),
        chip.to_string(),
    ];
    if let Some(p) = &options.probe {
        check_probe(p).map_err(|why| BoardAppError::Board {
            board: board.name.clone(),
            why,
        })?;
        cmd.extend(["--probe".to_string(), p.clone()]);
    }
    if let Some(set) = &options.semihosting_testset {
        cmd.extend([
            "--semihosting-file".to_string(),
            format!("{TESTSET_FILE}={}", set.display()),
        ]);
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
) -> Result<FlashOutcome, BoardAppError> {
    let elf: PathBuf = elf.canonicalize().map_err(BoardAppError::io(elf))?;
    let command = command(&elf, board, options)?;
    if options.dry_run {
        return Ok(FlashOutcome::DryRun { command });
    }
    let started = Instant::now();
    let out = Command::new(&command[0])
        .args(&command[1..])
        .output()
        .map_err(|e| probe_rs_missing(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.contains("No debug probes were found")
        || stdout.contains("No debug probes were found")
    {
        return Err(BoardAppError::NoProbe {
            board: board.name.clone(),
        });
    }
    let failed = |why: String| BoardAppError::Run {
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
    let output = parse_output(&stdout, images).map_err(failed)?;
    Ok(FlashOutcome::Ran {
        command,
        output,
        log: super::on_device::log_lines(&stdout),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The file that marks the RP2040 bootrom's `RPI-RP2` drive (RP2040 datasheet 2.8.4).
pub const UF2_INFO_FILE: &str = "INFO_UF2.TXT";

/// Copies `uf2` onto the BOOTSEL drive mounted at `drive` (the Pico then flashes it and
/// restarts). Refuses a folder that is not such a drive.
pub fn copy_uf2(uf2: &Path, drive: &Path) -> Result<PathBuf, BoardAppError> {
    check_bootsel_drive(drive)?;
    let name = uf2
        .file_name()
        .unwrap_or_else(|| "spikenas-app.uf2".as_ref());
    let to = drive.join(name);
    std::fs::copy(uf2, &to).map_err(BoardAppError::io(&to))?;
    Ok(to)
}

/// Refuses a folder that is not the RP2040's BOOTSEL drive (it has no [`UF2_INFO_FILE`]).
pub fn check_bootsel_drive(drive: &Path) -> Result<(), BoardAppError> {
    if !drive.join(UF2_INFO_FILE).is_file() {
        return Err(BoardAppError::Board {
            board: "rp2040".into(),
            why: format!(
                "{} holds no {UF2_INFO_FILE}, so it is not a BOOTSEL drive. Fix: hold BOOTSEL \
                 while plugging the Pico in, then pass the folder where the RPI-RP2 drive \
                 is mounted",
                drive.display()
            ),
        });
    }
    Ok(())
}

/// What a person does with a `.uf2` and no debug probe.
pub fn uf2_instructions(uf2: &Path) -> String {
    format!(
        "to flash without a probe: hold BOOTSEL while plugging the Pico in, then copy {} \
         onto the RPI-RP2 drive (or pass --uf2-copy DRIVE_FOLDER). For its results without \
         a probe, wire GP0 (UART0 TX) and GND to a USB-UART adapter and add --serial \
         DEVICE (115200 8N1); with a Debug Probe, `spikenas-host validate`",
        uf2.display()
    )
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
        let mut options = FlashOptions {
            dry_run: true,
            probe: Some("0483:374b".into()),
            semihosting_testset: None,
        };
        match flash(&elf, board, 10, &options).unwrap() {
            FlashOutcome::DryRun { command } => assert_eq!(
                command,
                [
                    "probe-rs",
                    "run",
                    "--non-interactive",
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
        // The test set through semihosting, as QEMU serves it.
        options.semihosting_testset = Some("/data/testset.bin".into());
        let cmd = command(&elf, board, &options).unwrap();
        let at = cmd.iter().position(|a| a == "--semihosting-file").unwrap();
        assert_eq!(cmd[at + 1], "testset.bin=/data/testset.bin");
        // A bare serial is refused before probe-rs runs.
        options.probe = Some("E6614C311B4A5D2F".into());
        let err = command(&elf, board, &options).unwrap_err().to_string();
        assert!(err.contains("VID:PID:SERIAL"), "{err}");
    }

    #[test]
    fn probe_selectors_follow_probe_rs() {
        for ok in [
            "0483:374b",
            "2e8a:000c:E6614C311B4A5D2F",
            "1366:1015:000123:x",
        ] {
            assert_eq!(check_probe(ok), Ok(()), "{ok}");
        }
        for bad in [
            "E6614C311B4A5D2F",
            "0483",
            "0483:",
            "zz:374b",
            "12345:1",
            "0483:374b:",
        ] {
            assert!(check_probe(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uf2_goes_only_onto_a_bootsel_drive() {
        let dir = std::env::temp_dir().join(format!("spikenas-uf2-drive-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let uf2 = dir.join("app.uf2");
        std::fs::write(&uf2, [1u8; 512]).unwrap();
        let drive = dir.join("RPI-RP2");
        std::fs::create_dir_all(&drive).unwrap();
        let err = copy_uf2(&uf2, &drive).unwrap_err().to_string();
        assert!(
            err.contains("INFO_UF2.TXT") && err.contains("BOOTSEL"),
            "{err}"
        );
        std::fs::write(drive.join(UF2_INFO_FILE), "Board-ID: RPI-RP2\n").unwrap();
        let to = copy_uf2(&uf2, &drive).unwrap();
        assert_eq!(std::fs::read(to).unwrap(), [1u8; 512]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
