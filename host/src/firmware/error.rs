//! Errors of the device path, each naming the file, region or tool and the fix.

use std::path::PathBuf;

/// Anything that stops generating, building, running or validating a board application.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The network description is inconsistent.
    #[error("the network cannot be put on a device: {0}")]
    Network(#[from] spikenas_firmware::Error),
    /// The board cannot take firmware (a Linux board, or no flash/RAM region).
    #[error("board `{board}`: {why}")]
    Board {
        /// Board name.
        board: String,
        /// What is missing, and the fix.
        why: String,
    },
    /// A required tool is not installed.
    #[error("`{tool}` was not found ({why}); {fix}")]
    ToolMissing {
        /// The program.
        tool: String,
        /// The error from starting it.
        why: String,
        /// How to install it.
        fix: String,
    },
    /// `cargo build` of the generated crate failed.
    #[error("building {} failed (exit {status}); cargo said:\n{stderr}", dir.display())]
    Build {
        /// The generated crate.
        dir: PathBuf,
        /// Exit status.
        status: String,
        /// The end of cargo's output.
        stderr: String,
    },
    /// The built image does not fit one of the board's regions.
    #[error(
        "{} does not fit board `{board}`: region `{region}` needs {used} bytes but holds \
         {capacity} (over by {} bytes){detail}",
        elf.display(),
        used - capacity
    )]
    Overflow {
        /// The ELF.
        elf: PathBuf,
        /// Board name.
        board: String,
        /// Region name.
        region: String,
        /// Bytes used (sections, plus the stack reserve in the stack's region).
        used: u64,
        /// Region size.
        capacity: u64,
        /// Which sections and reserves make up `used`.
        detail: String,
    },
    /// The ELF file could not be parsed.
    #[error("{}: not a 32-bit little-endian ARM ELF: {why}", path.display())]
    Elf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A test set file is malformed or does not match the model.
    #[error("test set {}: {why}", path.display())]
    TestSet {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The board has no QEMU machine.
    #[error(
        "board `{board}` is not emulated by QEMU (its target has no qemu_machine); run it \
         on the real board: `spikenas-host flash --board {board} DIR`"
    )]
    NotEmulated {
        /// Board name.
        board: String,
    },
    /// The emulated or real device did not finish the run.
    #[error("{runner} run of {} failed: {why}\n--- device output ---\n{output}", elf.display())]
    Run {
        /// `qemu-system-arm` or `probe-rs`.
        runner: String,
        /// The ELF.
        elf: PathBuf,
        /// What went wrong (exit status, timeout, fault, protocol).
        why: String,
        /// The device's output (its end).
        output: String,
    },
    /// No debug probe is attached.
    #[error(
        "probe-rs found no debug probe (\"No debug probes were found\"): connect board `{board}` \
         over USB (ST-LINK / CMSIS-DAP / J-Link), check udev permissions, or use --dry-run"
    )]
    NoProbe {
        /// Board name.
        board: String,
    },
}

impl FirmwareError {
    /// An [`FirmwareError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> FirmwareError {
        let path = path.into();
        move |source| FirmwareError::Io { path, source }
    }
}
