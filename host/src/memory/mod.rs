//! The analytic memory model: flash and RAM per region for a candidate network on a
//! board, from arithmetic alone (no tensors), in microseconds per candidate.
//!
//! [`estimate`] lays the network out (the layer rows and the RAM buffers; every buffer
//! and every size formula is listed in one place, [`layout`]), places each buffer whole
//! into a RAM region of the board by the rule the firmware generator links by
//! ([`membrane_region`]), and compares every region's use with its capacity.
//!
//! On microcontrollers the RAM buffers are exactly the generated firmware's `static mut`
//! arrays ([`workspace_layout`]: the firmware's own `NetworkShape::workspace_layout` of
//! the architecture's shape, which `Network::workspace_layout()` calls too) and flash is
//! the firmware's weight storage, requantisation arrays and descriptors (`size_of` of the
//! firmware's own types on the device, `spikenas_firmware::descriptor::DEVICE`) plus the
//! target's measured code size; checked against built ELFs by tests/tests/e2e/memory_fit.rs
//! (within 2% per region on netduinoplus2 and microbit).
//!
//! Two numeric models:
//! - microcontrollers (runner `probe-rs` or `qemu`) run the integer runtime: int8 or
//!   packed int4 weights, per-channel i32 multiplier and bias plus a shift, i16 membrane
//!   potentials, bit-packed spike maps, i32 currents, u8 input; flash holds the weights,
//!   the constants and the target's code reserve;
//! - Linux boards (runner `linux`, e.g. Jetson Nano) run the f32 model: every weight,
//!   constant and activation takes 4 bytes, the weights are loaded into DRAM next to the
//!   activations, and the whole must fit the profile's model budget
//!   (`model_budget_bytes`, 512 MiB by default). Nothing is charged to flash.

pub mod layout;
mod planner;

use std::fmt::{self, Write as _};

use crate::arch::Arch;
use crate::boards::{Profile, RegionKind, Runner, Target, Targets};

pub use crate::arch::InputShape;
pub use layout::workspace_layout;
pub use planner::membrane_region;

/// Which numbers the board stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numerics {
    /// The integer runtime of the microcontroller firmware, with weights `weight_bits`
    /// wide (8, or 4 packed two per byte).
    Integer {
        /// Bits per weight.
        weight_bits: u8,
    },
    /// The f32 model on a Linux board.
    Float32,
}

/// What a RAM buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BufferKind {
    /// The input image.
    Input,
    /// Currents: stem output, node values, persistent node values, class scores.
    Current,
    /// Membrane potentials (of all LIF layers; f32: of one), kept across timesteps.
    Membrane,
    /// A bit-packed spike map (integer: one, the largest layer's; f32: one per layer).
    Spikes,
    /// Scratch shared by all layers (accumulators, pooled input, head spike counts).
    Scratch,
    /// The f32 weights of a Linux board's model.
    Weights,
    /// Stack and runtime reserve from the profile.
    Reserve,
}

impl BufferKind {
    /// A short name for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            BufferKind::Input => "input",
            BufferKind::Current => "current",
            BufferKind::Membrane => "membrane",
            BufferKind::Spikes => "spikes",
            BufferKind::Scratch => "scratch",
            BufferKind::Weights => "weights",
            BufferKind::Reserve => "reserve",
        }
    }
}

/// One RAM buffer and the region it was placed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    /// Name, e.g. `membranes` or, f32, `s0.e03.v` (see the layout docs for every name).
    pub name: String,
    /// What it holds.
    pub kind: BufferKind,
    /// Size in bytes (a multiple of 4).
    pub bytes: u64,
    /// The region it was placed in (empty if the board has no data region).
    pub region: String,
}

/// Memory of one layer of the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerRow {
    /// Layer name: `input`, `stem`, `sS.reduce`, `sS.eIJ.OP` (forward edge),
    /// `sS.bIJ.OP` (backward edge), `sS.nodes`, `head`, `head.fc`, `head.out`,
    /// `descriptors` (integer runtime), `code`.
    pub name: String,
    /// Trained parameters of the float model (weights, BN scale and shift, biases).
    pub params: u64,
    /// Flash for the weights.
    pub weight_bytes: u64,
    /// Flash for the per-channel constants.
    pub const_bytes: u64,
    /// All flash of the layer: weights + constants (the descriptors for `descriptors`,
    /// the code reserve for `code`).
    pub flash_bytes: u64,
    /// Membrane state of the layer's LIF neurons.
    pub state_bytes: u64,
    /// The layer's spike maps.
    pub spike_bytes: u64,
    /// Current buffers and the input image the layer owns.
    pub activation_bytes: u64,
    /// Scratch the layer needs while it runs (one shared buffer holds the largest).
    pub scratch_bytes: u64,
}

/// Use of one memory region of the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionUse {
    /// Region name from the profile.
    pub name: String,
    /// Region kind.
    pub kind: RegionKind,
    /// Bytes used.
    pub used: u64,
    /// Bytes available to the model (the region size; a Linux board's model budget).
    pub capacity: u64,
}

/// The first region that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overflow {
    /// Region name.
    pub region: String,
    /// Region kind.
    pub kind: RegionKind,
    /// Bytes used.
    pub used: u64,
    /// Bytes available.
    pub capacity: u64,
    /// `used - capacity`.
    pub excess: u64,
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "region `{}` ({}) needs {} bytes but holds {}: over by {} bytes",
            self.region,
            self.kind.as_str(),
            self.used,
            self.capacity,
            self.excess
        )
    }
}

/// The memory estimate of one network on one board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// The board's name.
    pub board: String,
    /// The numbers the board stores.
    pub numerics: Numerics,
    /// Per-layer rows, in network order.
    pub layers: Vec<LayerRow>,
    /// Every RAM buffer with its placement, in network order.
    pub buffers: Vec<Buffer>,
    /// Every region of the board with its use, in profile order.
    pub regions: Vec<RegionUse>,
    /// True if every region holds what it was given (and `problem` is `None`).
    pub fits: bool,
    /// Flash: weights + constants + descriptors + code reserve (0 on Linux boards).
    pub flash_bytes: u64,
    /// RAM: every buffer including the reserve (and the f32 weights on Linux boards).
    pub sram_bytes: u64,
    /// Why the network could not be laid out (a feature map shrinks to nothing, the
    /// board's target is unknown); the estimate is then empty and does not fit.
    pub problem: Option<String>,
}

impl Estimate {
    /// The first region, in profile order, that holds more than its capacity.
    pub fn first_overflow(&self) -> Option<Overflow> {
        self.regions
            .iter()
            .find(|r| r.used > r.capacity)
            .map(|r| Overflow {
                region: r.name.clone(),
                kind: r.kind,
                used: r.used,
                capacity: r.capacity,
                excess: r.used - r.capacity,
            })
    }

    /// The use of the region called `name`.
    pub fn region(&self, name: &str) -> Option<&RegionUse> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// The buffer called `name`.
    pub fn buffer(&self, name: &str) -> Option<&Buffer> {
        self.buffers.iter().find(|b| b.name == name)
    }

    /// Trained parameters of the whole network.
    pub fn params(&self) -> u64 {
        self.layers.iter().map(|l| l.params).sum()
    }

    /// A plain-text report: the layer table, the buffer placement and the region totals.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = self.write_report(&mut s);
        s
    }

    fn write_report(&self, s: &mut String) -> fmt::Result {
        let numerics = match self.numerics {
            Numerics::Integer { weight_bits } => {
                format!("integer runtime, int{weight_bits} weights")
            }
            Numerics::Float32 => "f32 model".to_string(),
        };
        writeln!(s, "board {}: {numerics}", self.board)?;
        if let Some(problem) = &self.problem {
            return writeln!(s, "cannot estimate: {problem}");
        }
        writeln!(
            s,
            "{:<22} {:>10} {:>10} {:>8} {:>10} {:>9} {:>8} {:>10} {:>8}",
            "layer",
            "params",
            "weights",
            "consts",
            "flash",
            "state",
            "spikes",
            "currents",
            "scratch"
        )?;
        let mut total = LayerRow {
            name: "total".into(),
            ..LayerRow::default()
        };
        for l in &self.layers {
            write_row(s, l)?;
            total.params += l.params;
            total.weight_bytes += l.weight_bytes;
            total.const_bytes += l.const_bytes;
            total.flash_bytes += l.flash_bytes;
            total.state_bytes += l.state_bytes;
            total.spike_bytes += l.spike_bytes;
            total.activation_bytes += l.activation_bytes;
            // One scratch buffer is shared: the total is the largest need.
            total.scratch_bytes = total.scratch_bytes.max(l.scratch_bytes);
        }
        write_row(s, &total)?;
        writeln!(
            s,
            "\n{:<22} {:<9} {:>10}  region",
            "buffer", "kind", "bytes"
        )?;
        for b in &self.buffers {
            writeln!(
                s,
                "{:<22} {:<9} {:>10}  {}",
                b.name,
                b.kind.as_str(),
                b.bytes,
                b.region
            )?;
        }
        writeln!(
            s,
            "\n{:<12} {:<6} {:>12} {:>12} {:>7}",
            "region", "kind", "used", "capacity", "use"
        )?;
        for r in &self.regions {
            let pct = if r.capacity == 0 {
                0.0
            } else {
                100.0 * r.used as f64 / r.capacity as f64
            };
            let mark = if r.used > r.capacity { "  OVER" } else { "" };
            writeln!(
                s,
                "{:<12} {:<6} {:>12} {:>12} {:>6.1}%{mark}",
                r.name,
                r.kind.as_str(),
                r.used,
                r.capacity,
                pct
            )?;
        }
        writeln!(
            s,
            "\nflash {} bytes, RAM {} bytes",
            self.flash_bytes, self.sram_bytes
        )?;
        match self.first_overflow() {
            None => writeln!(s, "fits {}", self.board),
            Some(o) => writeln!(s, "does not fit {}: {o}", self.board),
        }
    }
}

fn write_row(s: &mut String, l: &LayerRow) -> fmt::Result {
    writeln!(
        s,
        "{:<22} {:>10} {:>10} {:>8} {:>10} {:>9} {:>8} {:>10} {:>8}",
        l.name,
        l.params,
        l.weight_bytes,
        l.const_bytes,
        l.flash_bytes,
        l.state_bytes,
        l.spike_bytes,
        l.activation_bytes,
        l.scratch_bytes
    )
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// Estimate the memory of `arch` on `input` for `board`, whose target is looked up in
/// `targets` (for its code reserve). Pure arithmetic: microseconds per candidate.
pub fn estimate(arch: &Arch, input: &InputShape, board: &Profile, targets: &Targets) -> Estimate {
    match targets.get(&board.target) {
        Some(target) => estimate_for_target(arch, input, board, target),
        None => failed(
            arch,
            board,
            format!(
                "board `{}` names target `{}`, which is not known",
                board.name, board.target
            ),
        ),
    }
}

/// [`estimate`] with the board's target already looked up.
pub fn estimate_for_target(
    arch: &Arch,
    input: &InputShape,
    board: &Profile,
    target: &Target,
) -> Estimate {
    let numerics = numerics_of(arch, board);
    let code_bytes = if board.runner == Runner::Linux {
        0
    } else {
        target.code_reserve_bytes
    };
    let layout = match layout::layout(
        arch,
        input,
        numerics,
        code_bytes,
        board.reserves.total_bytes(),
    ) {
        Ok(layout) => layout,
        Err(problem) => return failed(arch, board, problem),
    };
    let (layers, mut buffers) = (layout.rows, layout.buffers);
    let flash_bytes = if board.runner == Runner::Linux {
        0
    } else {
        layers.iter().map(|l| l.flash_bytes).sum()
    };
    let sram_bytes = buffers.iter().map(|b| b.bytes).sum();
    let regions = planner::place(&mut buffers, board, flash_bytes);
    let fits = regions.iter().all(|r| r.used <= r.capacity);
    Estimate {
        board: board.name.clone(),
        numerics,
        layers,
        buffers,
        regions,
        fits,
        flash_bytes,
        sram_bytes,
        problem: None,
    }
}

fn numerics_of(arch: &Arch, board: &Profile) -> Numerics {
    match board.runner {
        Runner::Linux => Numerics::Float32,
        _ => Numerics::Integer {
            weight_bits: arch.weight_bits,
        },
    }
}

fn failed(arch: &Arch, board: &Profile, problem: String) -> Estimate {
    Estimate {
        board: board.name.clone(),
        numerics: numerics_of(arch, board),
        layers: Vec::new(),
        buffers: Vec::new(),
        regions: Vec::new(),
        fits: false,
        flash_bytes: 0,
        sram_bytes: 0,
        problem: Some(problem),
    }
}

#[cfg(test)]
mod tests;
