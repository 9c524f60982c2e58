//! Board profiles and CPU targets: the data the memory model and the firmware build
//! need about a board.
//!
//! Two kinds of YAML file at the repository root describe them:
//!
//! - `targets.yaml`: CPU targets by name (Rust triple, core, FPU, instruction set, the QEMU
//!   machine that emulates the SoC if there is one, and the flash the runtime code takes);
//! - `boards/NAME.yaml`: one [`Profile`] per board (memory regions with addresses and
//!   sizes, probe-rs chip name, clock, runner, stack and runtime reserves).
//!
//! Every type refuses unknown fields, and every profile is checked right after parsing by
//! [`Profile::validate`], a list of small named checks. Errors ([`BoardError`]) name the
//! file, the line and column where serde_norway gives one, the field and the fix.
//!
//! ```no_run
//! use spikenas_host::boards::Catalog;
//! let catalog = Catalog::discover()?;
//! let board = catalog.board("netduinoplus2")?;
//! println!("{} has {} bytes of flash", board.name, board.flash_region().unwrap().size);
//! # Ok::<(), spikenas_host::boards::BoardError>(())
//! ```

mod catalog;
mod error;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use catalog::{Catalog, Source};
pub use error::BoardError;
pub use validate::{is_safe_identifier, Problem};

/// The model budget of a Linux board whose profile does not set `model_budget_bytes`.
pub const DEFAULT_MODEL_BUDGET_BYTES: u64 = 512 * 1024 * 1024;

/// A processor core, as `targets.yaml` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Core {
    /// Arm Cortex-M0 (ARMv6-M).
    CortexM0,
    /// Arm Cortex-M0+ (ARMv6-M).
    CortexM0plus,
    /// Arm Cortex-M4 with its single-precision FPU (ARMv7E-M).
    CortexM4f,
    /// Arm Cortex-M7 (ARMv7E-M).
    CortexM7,
    /// A 64-bit Arm application core running Linux.
    Aarch64Linux,
}

impl Core {
    /// The instruction set this core implements.
    pub fn isa(self) -> Isa {
        match self {
            Core::CortexM0 | Core::CortexM0plus => Isa::Armv6m,
            Core::CortexM4f | Core::CortexM7 => Isa::Armv7em,
            Core::Aarch64Linux => Isa::Aarch64,
        }
    }

    /// The name used in `targets.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Core::CortexM0 => "cortex-m0",
            Core::CortexM0plus => "cortex-m0plus",
            Core::CortexM4f => "cortex-m4f",
            Core::CortexM7 => "cortex-m7",
            Core::Aarch64Linux => "aarch64-linux",
        }
    }
}

/// Floating-point unit of a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fpu {
    /// No FPU: floating point is done in software.
    None,
    /// Single-precision FPU.
    Sp,
    /// Double-precision FPU.
    Dp,
}

/// Instruction set architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    /// ARMv6-M (Thumb, no DSP instructions): Cortex-M0/M0+.
    Armv6m,
    /// ARMv7E-M (Thumb-2 with DSP instructions): Cortex-M4/M7.
    Armv7em,
    /// AArch64.
    Aarch64,
}

/// A CPU target from `targets.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The target's name: its key in `targets.yaml` (filled in on load).
    #[serde(skip)]
    pub name: String,
    /// One line for people: chip family and the documents it comes from.
    pub description: String,
    /// Rust target triple the firmware is built for, e.g. `thumbv7em-none-eabihf`.
    pub triple: String,
    /// The processor core.
    pub core: Core,
    /// The core's floating-point unit.
    pub fpu: Fpu,
    /// The instruction set (must agree with `core`).
    pub isa: Isa,
    /// `qemu-system-arm -machine` name that emulates this SoC, if QEMU has one.
    #[serde(default)]
    pub qemu_machine: Option<String>,
    /// Flash taken by the runtime code (kernels, start-up, I/O), added to every model's
    /// flash estimate. A first guess until recalibrated from real ELF builds.
    pub code_reserve_bytes: u64,
    /// Calibrated instruction costs of the firmware runtime on this core (the search's
    /// latency budget); absent for targets that run no firmware.
    #[serde(default)]
    pub latency: Option<crate::latency::Costs>,
}

/// Every CPU target, by name, as read from `targets.yaml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    by_name: BTreeMap<String, Target>,
}

impl Targets {
    /// Read and check `targets.yaml` (or any file of the same form).
    pub fn from_file(path: &Path) -> Result<Targets, BoardError> {
        let text = read(path)?;
        Targets::from_yaml(&text, path)
    }

    /// Parse and check the text of a targets file; `path` is used in errors only.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Targets, BoardError> {
        let mut by_name: BTreeMap<String, Target> =
            serde_norway::from_str(text).map_err(|e| BoardError::parse(path, &e))?;
        for (name, target) in by_name.iter_mut() {
            target.name.clone_from(name);
            validate::target(target).map_err(|p| p.in_text(path, text))?;
        }
        Ok(Targets { by_name })
    }

    /// The target called `name`.
    pub fn get(&self, name: &str) -> Option<&Target> {
        self.by_name.get(name)
    }

    /// Every target name, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// Every target, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Target> {
        self.by_name.values()
    }

    /// Add or replace a target (for profiles and tests built in code).
    pub fn insert(&mut self, target: Target) {
        self.by_name.insert(target.name.clone(), target);
    }
}

/// How programs reach the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runner {
    /// A real microcontroller flashed and run through probe-rs.
    ProbeRs,
    /// A microcontroller emulated by `qemu-system-arm` (the target's `qemu_machine`).
    Qemu,
    /// A Linux computer running the f32 model (e.g. Jetson Nano).
    Linux,
}

impl Runner {
    /// The name used in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            Runner::ProbeRs => "probe-rs",
            Runner::Qemu => "qemu",
            Runner::Linux => "linux",
        }
    }
}

/// What a memory region is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionKind {
    /// Non-volatile program memory: code, weights and constants.
    Flash,
    /// General on-chip SRAM.
    Sram,
    /// Core-coupled memory (STM32F4): fast, data only, no DMA.
    Ccm,
    /// Data tightly coupled memory (Cortex-M7): zero wait-state data RAM.
    Dtcm,
    /// Instruction tightly coupled memory (Cortex-M7): RAM meant for code; the memory
    /// model places no data there.
    Itcm,
    /// External DRAM of a Linux board.
    Dram,
}

impl RegionKind {
    /// True for regions the planner may place data buffers in.
    pub fn holds_data(self) -> bool {
        matches!(
            self,
            RegionKind::Sram | RegionKind::Ccm | RegionKind::Dtcm | RegionKind::Dram
        )
    }

    /// True for the fast, core-coupled data memories (DTCM, CCM).
    pub fn is_fast_data(self) -> bool {
        matches!(self, RegionKind::Ccm | RegionKind::Dtcm)
    }

    /// The name used in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionKind::Flash => "flash",
            RegionKind::Sram => "sram",
            RegionKind::Ccm => "ccm",
            RegionKind::Dtcm => "dtcm",
            RegionKind::Itcm => "itcm",
            RegionKind::Dram => "dram",
        }
    }
}

/// One contiguous memory region of a board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Name, unique within the board (used in linker scripts and reports).
    pub name: String,
    /// What the region is.
    pub kind: RegionKind,
    /// First address.
    pub origin: u64,
    /// Size in bytes.
    pub size: u64,
}

impl Region {
    /// One past the last address, or `None` if that does not fit in 64 bits.
    pub fn end(&self) -> Option<u64> {
        self.origin.checked_add(self.size)
    }

    /// True if the two regions share an address.
    pub fn overlaps(&self, other: &Region) -> bool {
        let (a_end, b_end) = (
            self.end().unwrap_or(u64::MAX),
            other.end().unwrap_or(u64::MAX),
        );
        self.origin < b_end && other.origin < a_end
    }
}

/// RAM set aside for things other than the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reserves {
    /// Bytes of stack (main stack and interrupt handlers).
    pub stack_bytes: u64,
    /// Bytes for the runtime's own statics (I/O buffers, logger, heapless queues).
    pub runtime_bytes: u64,
    /// RAM region that holds the stack and the runtime statics; defaults to the largest
    /// `sram` region (or the largest data region if the board has no `sram`).
    #[serde(default)]
    pub region: Option<String>,
}

impl Reserves {
    /// Stack plus runtime bytes.
    pub fn total_bytes(&self) -> u64 {
        self.stack_bytes + self.runtime_bytes
    }
}

/// A board profile from `boards/NAME.yaml` (or a user's own file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Board name; for shipped profiles, the file name without `.yaml`.
    pub name: String,
    /// One line for people.
    pub description: String,
    /// Name of the CPU target in `targets.yaml`.
    pub target: String,
    /// probe-rs chip name (`probe-rs chip list`); required for runner `probe-rs`.
    #[serde(default)]
    pub probe_rs_chip: Option<String>,
    /// Core clock in Hz.
    pub clock_hz: u64,
    /// How programs reach the board.
    pub runner: Runner,
    /// Memory regions: one `flash` region and one or more RAM regions for a
    /// microcontroller, one `dram` region for a Linux board.
    pub regions: Vec<Region>,
    /// Stack and runtime reserves taken from RAM before the model.
    pub reserves: Reserves,
    /// Linux boards only: the share of DRAM the model may use (f32 weights plus
    /// activations). A user setting; [`DEFAULT_MODEL_BUDGET_BYTES`] (512 MiB) if absent.
    #[serde(default)]
    pub model_budget_bytes: Option<u64>,
    /// The file this profile was read from, if any (filled in on load).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Profile {
    /// Read a profile from `path` (a user's own, e.g. `--board-file`) and validate it
    /// against `targets`.
    pub fn from_file(path: &Path, targets: &Targets) -> Result<Profile, BoardError> {
        let text = read(path)?;
        Profile::from_yaml(&text, path, targets)
    }

    /// Parse and validate the text of a profile; `path` is used in errors only.
    pub fn from_yaml(text: &str, path: &Path, targets: &Targets) -> Result<Profile, BoardError> {
        let mut profile: Profile =
            serde_norway::from_str(text).map_err(|e| BoardError::parse(path, &e))?;
        profile.source = Some(path.to_path_buf());
        profile
            .validate(targets)
            .map_err(|p| p.in_text(path, text))?;
        Ok(profile)
    }

    /// Run every check on the profile; the first failure comes back as a
    /// [`Problem`] naming the field and the fix.
    pub fn validate(&self, targets: &Targets) -> Result<(), Problem> {
        validate::profile(self, targets)
    }

    /// True for microcontroller boards (runner `probe-rs` or `qemu`).
    pub fn is_mcu(&self) -> bool {
        self.runner != Runner::Linux
    }

    /// True if the board runs emulated in QEMU.
    pub fn is_emulated(&self) -> bool {
        self.runner == Runner::Qemu
    }

    /// The flash region (a validated microcontroller profile has exactly one).
    pub fn flash_region(&self) -> Option<&Region> {
        self.regions.iter().find(|r| r.kind == RegionKind::Flash)
    }

    /// Regions the planner may put data in, in profile order.
    pub fn data_regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter().filter(|r| r.kind.holds_data())
    }

    /// The region holding the stack and runtime reserve: the one `reserves.region` names,
    /// else the largest `sram` region, else the largest data region (first on ties).
    pub fn reserve_region(&self) -> Option<&Region> {
        if let Some(name) = &self.reserves.region {
            return self.regions.iter().find(|r| &r.name == name);
        }
        let largest = |kind_ok: &dyn Fn(RegionKind) -> bool| {
            let mut best: Option<&Region> = None;
            for r in self.data_regions().filter(|r| kind_ok(r.kind)) {
                if best.is_none_or(|b| r.size > b.size) {
                    best = Some(r);
                }
            }
            best
        };
        largest(&|k| k == RegionKind::Sram).or_else(|| largest(&|_| true))
    }

    /// Bytes the model may use in `region`: its size, or for a Linux board's DRAM the
    /// model budget if smaller.
    pub fn capacity_of(&self, region: &Region) -> u64 {
        match (self.runner, region.kind) {
            (Runner::Linux, RegionKind::Dram) => region.size.min(self.model_budget()),
            _ => region.size,
        }
    }

    /// The model budget of a Linux board (`model_budget_bytes` or the default).
    pub fn model_budget(&self) -> u64 {
        self.model_budget_bytes
            .unwrap_or(DEFAULT_MODEL_BUDGET_BYTES)
    }

    /// Total size of the data regions.
    pub fn ram_bytes(&self) -> u64 {
        self.data_regions().map(|r| r.size).sum()
    }
}

/// A size for people: `4G`, `240K`, `1.5M`, or plain bytes when not a multiple of 1 KiB.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    for (unit, suffix) in UNITS {
        if bytes >= unit && bytes % (unit / 8) == 0 {
            let value = bytes as f64 / unit as f64;
            return if bytes % unit == 0 {
                format!("{}{suffix}", bytes / unit)
            } else {
                format!("{value:.3}").trim_end_matches('0').to_string() + suffix
            };
        }
    }
    format!("{bytes}B")
}

/// The largest board or targets file read: the shipped ones are a few KB; a larger
/// one (or an endless one such as `/dev/zero`) is refused before it fills the memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

fn read(path: &Path) -> Result<String, BoardError> {
    use std::io::Read as _;
    let io = |source| BoardError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(BoardError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            ),
        ))
    })
}

#[cfg(test)]
mod tests;
