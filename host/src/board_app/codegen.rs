//! Stamps out the board application for one network and one board.
//!
//! The output folder is a standalone cargo crate (`spikenas-app`):
//!
//! | file | from |
//! |---|---|
//! | `Cargo.toml`, `.cargo/config.toml` | firmware/template/, `{{...}}` filled in (target triple, runner, board, chip family), each value TOML-escaped ([`super::template`]) |
//! | `vendor/spikenas-firmware/` | the firmware runtime this host computes with, vendored ([`super::vendor`]): the crate needs no spikenas checkout |
//! | `spikenas-crate.json` | written here: the board, target and triple the crate is for and the vendored runtime's SHA-256 sums ([`CrateInfo`], [`super::metadata`]) |
//! | `.spikenas-output` | the marker of a folder spikenas wrote ([`crate::output::MARKER`]) |
//! | `rust-toolchain.toml`, `build.rs`, `src/{main,clock,cycles,log}.rs`, `src/transport/{semihosting,uart}.rs` | firmware/template/, verbatim |
//! | `Cargo.lock` | firmware/template/, so every build resolves the same dependency versions |
//! | `src/model.rs` | written here: the network as `static` items and the workspace as `static mut` buffers sized by `Network::workspace_layout` |
//! | `memory.x` | written here from the board profile: MEMORY regions, and a NOLOAD `.fastdata` section in CCM/DTCM for the membranes when the board has one |
//!
//! The generator is generic over any [`Network`]: it walks the description and writes
//! what it finds; nothing in it knows how the network was made.
//!
//! Board strings reach build files that cargo runs (a linker, a runner): profile
//! validation allows only plain names, [`generate`] checks them again, and every value
//! is escaped for the place it lands in. Every file's text is made before the first one
//! is written; `spikenas-host generate` writes into a staging folder and renames it into
//! place ([`crate::output::Staged`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use spikenas_firmware::{
    ConvLayer, Decay, Lif, LinearLayer, Network, Op, Requant, Reset, Weights, WorkspaceLayout,
};

use crate::boards::{Profile, Region, Target, Targets};

use super::metadata::{CrateInfo, CRATE_INFO_FILE};
use super::template::{self, Template};
use super::vendor::{self, Vendored};
use super::BoardAppError;

/// Bytes of the RP2040's second-stage bootloader at the start of flash.
pub const BOOT2_BYTES: u64 = 256;

/// Name of the output section (in `memory.x`) that holds the membranes in CCM/DTCM.
pub const FAST_SECTION: &str = ".fastdata";

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedCrate {
    /// The crate folder.
    pub dir: PathBuf,
    /// Board name.
    pub board: String,
    /// Rust target triple.
    pub triple: String,
    /// The workspace the network needs (the `static mut` buffers).
    pub layout: WorkspaceLayout,
    /// Pixels per input image.
    pub input_len: usize,
    /// Bytes of model constants written to `model.rs` (weights, requantisation arrays).
    pub constant_bytes: u64,
    /// The CCM/DTCM region that holds the membranes, if any.
    pub fast_region: Option<String>,
}

/// Writes the board application for `net` on `board` into `out_dir` (created if
/// missing; files of an earlier generation are replaced, `target/` is kept), with the
/// [`crate::output::MARKER`] that lets `--force` replace the folder later. The template
/// is [`Template::discover`]'s.
pub fn generate(
    net: &Network<'_>,
    board: &Profile,
    targets: &Targets,
    out_dir: &Path,
) -> Result<GeneratedCrate, BoardAppError> {
    generate_with(net, board, targets, &Template::discover()?, out_dir)
}

/// [`generate`] from the files of `template`.
pub fn generate_with(
    net: &Network<'_>,
    board: &Profile,
    targets: &Targets,
    template: &Template,
    out_dir: &Path,
) -> Result<GeneratedCrate, BoardAppError> {
    let layout = net.workspace_layout()?;
    let bad = |why: String| BoardAppError::Board {
        board: board.name.clone(),
        why,
    };
    if !board.is_mcu() {
        return Err(bad(
            "a Linux board runs the f32 model, not firmware; pick a microcontroller board".into(),
        ));
    }
    let target = targets
        .get(&board.target)
        .ok_or_else(|| bad(format!("target `{}` is not in targets.yaml", board.target)))?;
    if !target.triple.starts_with("thumbv") {
        return Err(bad(format!(
            "target triple `{}` is not a Cortex-M (thumbv*) target",
            target.triple
        )));
    }
    plain_strings(board, target)?;
    let clock = super::clock::plan(board).map_err(|e| bad(e.to_string()))?;
    let input_len = net.input_len();
    let (memory_x, fast_region) = memory_x(board, layout.membranes_i16 as u64 * 2)?;
    let mut emitter = Emitter::default();
    let model = emitter.model_rs(net, &layout, fast_region.is_some(), &board.name);

    let runner = match (&target.qemu_machine, board.is_emulated()) {
        (Some(machine), true) => format!(
            "qemu-system-arm -machine {machine} -nographic \
             -semihosting-config enable=on,target=native -kernel"
        ),
        _ => format!(
            "probe-rs run --chip {}",
            board.probe_rs_chip.as_deref().unwrap_or("CHIP")
        ),
    };
    let values = [
        ("TARGET", target.triple.as_str()),
        ("RUNNER", runner.as_str()),
        ("BOARD", board.name.as_str()),
        ("FAMILY", clock.family.feature()),
    ];
    let fill = |name: &str| {
        template::fill_toml(template.file(name), &values)
            .map_err(|e| bad(format!("firmware/template/{name}: {e}")))
    };
    let verbatim = |name: &str| template.file(name).to_string();
    let runtime = vendor::files(verbatim("vendor/spikenas-firmware/Cargo.toml").as_str());
    let info = CrateInfo {
        generator: format!("spikenas-host {}", env!("CARGO_PKG_VERSION")),
        board: board.name.clone(),
        target: board.target.clone(),
        triple: target.triple.clone(),
        vendor: Some(Vendored::of(&runtime)),
    };
    let info = info.to_json()?;
    let mut files: Vec<(String, String)> = [
        (CRATE_INFO_FILE, info),
        // The crate folder is spikenas's own (also inside a search's output folder), so
        // `generate --force` may replace it.
        (
            crate::output::MARKER,
            crate::output::MARKER_TEXT.to_string(),
        ),
        ("Cargo.toml", fill("Cargo.toml")?),
        ("Cargo.lock", verbatim("Cargo.lock")),
        (".cargo/config.toml", fill(".cargo/config.toml")?),
        ("rust-toolchain.toml", verbatim("rust-toolchain.toml")),
        ("build.rs", verbatim("build.rs")),
        ("src/main.rs", verbatim("src/main.rs")),
        ("src/clock.rs", verbatim("src/clock.rs")),
        ("src/cycles.rs", verbatim("src/cycles.rs")),
        ("src/log.rs", verbatim("src/log.rs")),
        (
            "src/transport/semihosting.rs",
            verbatim("src/transport/semihosting.rs"),
        ),
        ("src/transport/uart.rs", verbatim("src/transport/uart.rs")),
        ("src/board.rs", clock.board_rs(&board.name)),
        ("src/model.rs", model),
        ("memory.x", memory_x),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_string(), text))
    .collect();
    vendor::remove_stale(out_dir, &runtime)?;
    files.extend(
        runtime
            .into_iter()
            .map(|(name, text)| (format!("{}/{name}", vendor::DIR), text)),
    );
    for (name, text) in files {
        let path = out_dir.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(BoardAppError::io(parent))?;
        }
        // Unchanged files keep their timestamps, so cargo does not rebuild for nothing.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text).map_err(BoardAppError::io(&path))?;
        }
    }
    Ok(GeneratedCrate {
        dir: out_dir.to_path_buf(),
        board: board.name.clone(),
        triple: target.triple.clone(),
        layout,
        input_len,
        constant_bytes: emitter.constant_bytes,
        fast_region,
    })
}

/// Refuses a profile or target whose strings are not plain names
/// ([`crate::boards::is_safe_identifier`]): they are written into the crate's build
/// files and the runner's command line. Loaded profiles were checked already; this guards
/// profiles built in code. The values are escaped as well, wherever they are written.
fn plain_strings(board: &Profile, target: &Target) -> Result<(), BoardAppError> {
    let mut fields: Vec<(&str, &str)> = vec![
        ("name", board.name.as_str()),
        ("target triple", target.triple.as_str()),
    ];
    if let Some(chip) = &board.probe_rs_chip {
        fields.push(("probe_rs_chip", chip.as_str()));
    }
    if let Some(machine) = &target.qemu_machine {
        fields.push(("qemu_machine", machine.as_str()));
    }
    for r in &board.regions {
        fields.push(("region name", r.name.as_str()));
    }
    match fields
        .into_iter()
        .find(|(_, v)| !crate::boards::is_safe_identifier(v))
    {
        Some((field, value)) => Err(BoardAppError::Board {
            board: board.name.clone(),
            why: format!(
                "{field} {value:?} is not a plain name (letters, digits, `_`, `.`, `-`); \
                 it would be written into the crate's build files. Fix the profile"
            ),
        }),
        None => Ok(()),
    }
}

/// Linker region name for a profile region: `FLASH` and `RAM` are the names
/// cortex-m-rt's `link.x` expects; others are the profile name in capitals.
fn linker_name(region: &Region) -> String {
    region
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// `memory.x` for `board` and the fast region chosen for `membrane_bytes` of membranes
/// (by [`crate::memory::membrane_region`]).
pub fn memory_x(
    board: &Profile,
    membrane_bytes: u64,
) -> Result<(String, Option<String>), BoardAppError> {
    let bad = |why: &str| BoardAppError::Board {
        board: board.name.clone(),
        why: why.to_string(),
    };
    let flash = board
        .flash_region()
        .ok_or_else(|| bad("no `flash` region in the profile"))?;
    let ram = board
        .reserve_region()
        .ok_or_else(|| bad("no RAM region (sram, ccm, dtcm) in the profile"))?;
    // Membranes persist over the timesteps of an image: the fast core-coupled memory
    // suits them (CCM on the STM32F405 cannot hold code or take DMA, but state is fine).
    // The memory model places them by the same rule (one function for both). QEMU 7.2
    // models no CCM/DTCM (a store to the F405's 0x1000_0000 faults), so emulated boards
    // keep everything in RAM.
    let fast = crate::memory::membrane_region(board, membrane_bytes);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "/* generated by spikenas-host from board profile {}, do not edit */",
        template::comment_text(&board.name)
    );
    s.push_str("MEMORY\n{\n");
    // The RP2040 bootrom runs the first 256 bytes of flash (boot2), which then starts the
    // vector table right after them (RP2040 datasheet 2.8.1).
    let boot2 = if board.target == "rp2040" {
        BOOT2_BYTES
    } else {
        0
    };
    if boot2 > 0 {
        let _ = writeln!(
            s,
            "  BOOT2 : ORIGIN = {:#010x}, LENGTH = {boot2} /* second-stage bootloader */",
            flash.origin
        );
    }
    let _ = writeln!(
        s,
        "  FLASH : ORIGIN = {:#010x}, LENGTH = {}",
        flash.origin + boot2,
        flash.size - boot2
    );
    let _ = writeln!(
        s,
        "  RAM : ORIGIN = {:#010x}, LENGTH = {} /* {}: stack, .data, .bss */",
        ram.origin,
        ram.size,
        template::comment_text(&ram.name)
    );
    for r in board.data_regions().filter(|r| r.name != ram.name) {
        let _ = writeln!(
            s,
            "  {} : ORIGIN = {:#010x}, LENGTH = {} /* {} ({}) */",
            linker_name(r),
            r.origin,
            r.size,
            template::comment_text(&r.name),
            r.kind.as_str()
        );
    }
    s.push_str("}\n");
    if boot2 > 0 {
        s.push_str(
            "\n/* boot2 (src/main.rs, crate rp2040-boot2) at the start of flash. */\n\
             EXTERN(BOOT2_FIRMWARE)\nSECTIONS\n{\n  .boot2 ORIGIN(BOOT2) :\n  {\n    \
             KEEP(*(.boot2));\n  } > BOOT2\n}\nINSERT BEFORE .text;\n",
        );
    }
    if let Some(fast) = fast {
        // Not `INSERT AFTER .bss`: cortex-m-rt then moves `__ebss` past this section and
        // its reset code would zero from RAM into CCM; this section is zeroed in model.rs.
        let _ = write!(
            s,
            "\n/* LIF membranes (`static mut`, zeroed by the runtime per image) in {name}. */\n\
             SECTIONS\n{{\n  {FAST_SECTION} (NOLOAD) : ALIGN(4)\n  {{\n    \
             *({FAST_SECTION} {FAST_SECTION}.*);\n    . = ALIGN(4);\n  }} > {region}\n}}\n\
             INSERT BEFORE .bss;\n",
            name = template::comment_text(&fast.name),
            region = linker_name(fast),
        );
    }
    Ok((s, fast.map(|r| r.name.clone())))
}

/// Writes `model.rs`, naming each array once.
#[derive(Debug, Default)]
struct Emitter {
    statics: String,
    next: usize,
    constant_bytes: u64,
}

fn wrap_numbers<T: std::fmt::Display>(values: &[T]) -> String {
    let mut s = String::new();
    let mut line = 0;
    for v in values {
        let item = format!("{v},");
        if line + item.len() > 96 {
            s.push_str("\n    ");
            line = 0;
        } else if line > 0 {
            s.push(' ');
            line += 1;
        }
        line += item.len();
        s.push_str(&item);
    }
    s
}

impl Emitter {
    fn array<T: std::fmt::Display>(&mut self, prefix: &str, ty: &str, values: &[T]) -> String {
        let ty = format!("[{ty}; {}]", values.len());
        self.define(prefix, &ty, ("[", "]"), values)
    }

    /// A byte array that starts on a word boundary (`Words`, see the model's header):
    /// the ARMv6-M kernels load weights a word at a time where they are aligned. Returns
    /// the expression of the array.
    fn word_aligned<T: std::fmt::Display>(
        &mut self,
        prefix: &str,
        ty: &str,
        values: &[T],
    ) -> String {
        let ty = format!("Words<[{ty}; {}]>", values.len());
        let name = self.define(prefix, &ty, ("Words([", "])"), values);
        format!("{name}.0")
    }

    /// A new static of type `ty` holding `values` between `open` and `close`; its name.
    fn define<T: std::fmt::Display>(
        &mut self,
        prefix: &str,
        ty: &str,
        (open, close): (&str, &str),
        values: &[T],
    ) -> String {
        let name = format!("{prefix}_{}", self.next);
        self.next += 1;
        self.constant_bytes += std::mem::size_of_val(values) as u64;
        let _ = write!(
            self.statics,
            "static {name}: {ty} = {open}\n    {}\n{close};\n",
            wrap_numbers(values)
        );
        name
    }

    fn weights(&mut self, w: &Weights<'_>) -> String {
        match w {
            Weights::I8(w) => format!("Weights::I8(&{})", self.word_aligned("W", "i8", w)),
            Weights::I4(w) => format!("Weights::I4(&{})", self.word_aligned("W", "u8", w)),
        }
    }

    fn requant(&mut self, r: &Requant<'_>) -> String {
        let mult = self.array("MULT", "i32", r.mult);
        let bias = self.array("BIAS", "i32", r.bias);
        format!(
            "Requant {{ mult: &{mult}, bias: &{bias}, shift: {} }}",
            r.shift
        )
    }

    fn lif(l: &Lif) -> String {
        let decay = match l.decay {
            Decay::Shift(n) => format!("Decay::Shift({n})"),
            Decay::Q15(m) => format!("Decay::Q15({m})"),
        };
        let reset = match l.reset {
            Reset::Hard => "Reset::Hard",
            Reset::Subtract => "Reset::Subtract",
        };
        format!(
            "Lif {{ decay: {decay}, threshold: {}, reset: {reset} }}",
            l.threshold
        )
    }

    fn conv(&mut self, c: &ConvLayer<'_>) -> String {
        let weights = self.weights(&c.weights);
        let requant = self.requant(&c.requant);
        format!(
            "ConvLayer {{ cin: {}, cout: {}, k: {}, weights: {weights}, requant: {requant} }}",
            c.cin, c.cout, c.k
        )
    }

    fn linear(&mut self, l: &LinearLayer<'_>) -> String {
        let weights = self.weights(&l.weights);
        let requant = self.requant(&l.requant);
        format!(
            "LinearLayer {{ inputs: {}, outputs: {}, weights: {weights}, requant: {requant} }}",
            l.inputs, l.outputs
        )
    }

    fn model_rs(
        &mut self,
        net: &Network<'_>,
        layout: &WorkspaceLayout,
        fast: bool,
        board: &str,
    ) -> String {
        let stem = self.conv(&net.stem);
        let mut stages = Vec::new();
        for (s, st) in net.stages.iter().enumerate() {
            let reduction = match &st.reduction {
                None => "None".to_string(),
                Some(r) => {
                    let bn = self.requant(&r.bn);
                    let conv = self.conv(&r.conv);
                    format!(
                        "Some(Reduction {{ bn: {bn}, lif: {}, conv: {conv} }})",
                        Self::lif(&r.lif)
                    )
                }
            };
            let mut edges = Vec::new();
            for e in st.cell.edges {
                let op = match &e.op {
                    Op::Zero => "Op::Zero".to_string(),
                    Op::Skip => "Op::Skip".to_string(),
                    Op::AvgPool3 => "Op::AvgPool3".to_string(),
                    Op::Conv { lif, conv } => {
                        format!(
                            "Op::Conv {{ lif: {}, conv: {} }}",
                            Self::lif(lif),
                            self.conv(conv)
                        )
                    }
                };
                edges.push(format!(
                    "    Edge {{ from: {}, to: {}, op: {op} }},\n",
                    e.from, e.to
                ));
            }
            let _ = write!(
                self.statics,
                "static EDGES_S{s}: [Edge<'static>; {}] = [\n{}];\n",
                edges.len(),
                edges.concat()
            );
            stages.push(format!(
                "    Stage {{ reduction: {reduction}, cell: Cell {{ edges: &EDGES_S{s} }} }},\n"
            ));
        }
        let head_bn = self.requant(&net.head.bn);
        let hidden = match &net.head.hidden {
            None => "None".to_string(),
            Some(h) => format!(
                "Some(Hidden {{ fc: {}, lif: {} }})",
                self.linear(&h.fc),
                Self::lif(&h.lif)
            ),
        };
        let output = self.linear(&net.head.output);
        let mut s = String::new();
        let _ = write!(
            s,
            "//! The network and its workspace for board {board:?}.\n\
             //!\n\
             //! generated by spikenas-host (host/src/board_app/codegen.rs), do not edit.\n\
             #![allow(clippy::all)]\n\n\
             use core::ptr::addr_of_mut;\n\n\
             use spikenas_firmware::{{\n    \
             Cell, ConvLayer, Decay, Edge, Head, Hidden, Lif, LinearLayer, Network, Op, Reduction, \
             Requant,\n    Reset, Stage, Weights, Workspace,\n}};\n\n\
             /// Weights start on a word boundary (the ARMv6-M kernels load them by words).\n\
             #[repr(C, align(4))]\n\
             struct Words<T>(T);\n\n"
        );
        s.push_str(&self.statics);
        let _ = write!(
            s,
            "\nstatic STAGES: [Stage<'static>; {}] = [\n{}];\n\n\
             /// The network.\n\
             pub static NETWORK: Network<'static> = Network {{\n    \
             channels: {},\n    height: {},\n    width: {},\n    input_pool: {},\n    \
             timesteps: {},\n    stem: {stem},\n    stages: &STAGES,\n    \
             head: Head {{ bn: {head_bn}, lif: {}, hidden: {hidden}, output: {output} }},\n    \
             classes: {},\n    cluster: {},\n}};\n",
            stages.len(),
            stages.concat(),
            net.channels,
            net.height,
            net.width,
            net.input_pool,
            net.timesteps,
            Self::lif(&net.head.lif),
            net.classes,
            net.cluster,
        );
        let fast_attr = if fast {
            format!("#[link_section = \"{FAST_SECTION}.membranes\"]\n")
        } else {
            String::new()
        };
        let _ = write!(
            s,
            "\n// Workspace: exactly `Network::workspace_layout()`.\n\
             const MEMBRANES_I16: usize = {};\n\
             const CURRENTS_I32: usize = {};\n\
             const SPIKES_U32: usize = {};\n\
             const SCRATCH_I32: usize = {};\n\
             const BYTES_U8: usize = {};\n\
             const INPUT_LEN: usize = {};\n\n\
             {fast_attr}static mut MEMBRANES: [i16; MEMBRANES_I16] = [0; MEMBRANES_I16];\n\
             static mut CURRENTS: [i32; CURRENTS_I32] = [0; CURRENTS_I32];\n\
             static mut SPIKES: [u32; SPIKES_U32] = [0; SPIKES_U32];\n\
             static mut SCRATCH: [i32; SCRATCH_I32] = [0; SCRATCH_I32];\n\
             static mut BYTES: [u8; BYTES_U8] = [0; BYTES_U8];\n\
             // On a word boundary: the input pooling reads the pixels by words.\n\
             static mut IMAGE: Words<[u8; INPUT_LEN]> = Words([0; INPUT_LEN]);\n\n\
             /// The workspace and the input image buffer.\n\
             ///\n\
             /// # Safety\n\
             ///\n\
             /// Call once: the buffers are handed out as `&'static mut`.\n\
             pub unsafe fn workspace() -> (Workspace<'static>, &'static mut [u8]) {{\n    \
             unsafe {{\n        \
             // A NOLOAD section is not zeroed at reset: zero it here.\n        \
             let membranes = &mut *addr_of_mut!(MEMBRANES);\n        \
             membranes.fill(0);\n        \
             let ws = Workspace {{\n            \
             membranes,\n            \
             currents: &mut *addr_of_mut!(CURRENTS),\n            \
             spikes: &mut *addr_of_mut!(SPIKES),\n            \
             scratch: &mut *addr_of_mut!(SCRATCH),\n            \
             bytes: &mut *addr_of_mut!(BYTES),\n        \
             }};\n        \
             (ws, &mut (*addr_of_mut!(IMAGE)).0)\n    \
             }}\n}}\n",
            layout.membranes_i16,
            layout.currents_i32,
            layout.spikes_u32,
            layout.scratch_i32,
            layout.bytes_u8,
            net.input_len(),
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Arch, InputShape};
    use crate::board_app::synthetic::SyntheticNetwork;
    use crate::boards::Catalog;

    fn net() -> SyntheticNetwork {
        let arch: Arch = "cell=0321.0010.0001.0100,ch=4,stages=2,fc=16,t=2,bits=4"
            .parse()
            .unwrap();
        SyntheticNetwork::new(&arch, &InputShape::parse("1x8x8", 10).unwrap(), 5).unwrap()
    }

    #[test]
    fn memory_x_uses_ccm_for_membranes_on_the_f405_only() {
        let catalog = Catalog::discover().unwrap();
        let f405 = &crate::boards::Profile::from_yaml(
            include_str!("../boards/testdata/f405-ccm.yaml"),
            std::path::Path::new("f405-ccm.yaml"),
            catalog.targets(),
        )
        .unwrap();
        let (text, fast) = memory_x(f405, 4096).unwrap();
        assert_eq!(fast.as_deref(), Some("ccm"));
        assert!(
            text.contains("FLASH : ORIGIN = 0x08000000, LENGTH = 1048576"),
            "{text}"
        );
        assert!(
            text.contains("RAM : ORIGIN = 0x20000000, LENGTH = 131072"),
            "{text}"
        );
        assert!(text.contains("} > CCM"), "{text}");
        // Too big for the 64 KiB CCM: everything stays in RAM.
        assert_eq!(memory_x(f405, 70_000).unwrap().1, None);
        // The emulated netduinoplus2 has no CCM (QEMU 7.2 does not model it).
        let emulated = catalog.board("netduinoplus2").unwrap();
        assert_eq!(memory_x(emulated, 4096).unwrap().1, None);
        let microbit = catalog.board("microbit").unwrap();
        let (text, fast) = memory_x(microbit, 4096).unwrap();
        assert_eq!(fast, None);
        assert!(!text.contains("SECTIONS"));
        assert!(text.contains("LENGTH = 16384"));
    }

    #[test]
    fn generates_every_file_with_the_network_and_its_workspace() {
        let catalog = Catalog::discover().unwrap();
        // A real board with core-coupled memory (the emulated F405 has no CCM in QEMU).
        let board = &crate::boards::Profile::from_yaml(
            include_str!("../boards/testdata/f405-ccm.yaml"),
            std::path::Path::new("f405-ccm.yaml"),
            catalog.targets(),
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("spikenas-codegen-{}", std::process::id()));
        let net = net();
        let krate = net
            .with_network(|n| generate(n, board, catalog.targets(), &dir))
            .unwrap();
        let model = std::fs::read_to_string(dir.join("src/model.rs")).unwrap();
        assert!(model.contains("generated by spikenas-host"), "header");
        assert!(model.contains("Weights::I4(&W_"), "int4 weights");
        assert!(
            model.contains("Edge { from: 3, to: 1, op: Op::Skip }"),
            "backward skip"
        );
        assert!(model.contains(&format!(
            "const MEMBRANES_I16: usize = {};",
            krate.layout.membranes_i16
        )));
        assert!(model.contains("#[link_section = \".fastdata.membranes\"]"));
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            !cargo.contains("{{BOARD}}") && !cargo.contains("path = \"/"),
            "{cargo}"
        );
        assert!(cargo.contains("spikenas-firmware = { path = \"vendor/spikenas-firmware\" }"));
        // The runtime is vendored, each file recorded with its checksum.
        let info = CrateInfo::read(&dir).unwrap();
        let vendored = info.vendor.as_ref().unwrap();
        assert!(vendored.sha256.contains_key("src/lib.rs"));
        assert!(vendored.sha256.contains_key("Cargo.toml"));
        info.verify_vendor(&dir).unwrap();
        let lib = std::fs::read_to_string(dir.join("vendor/spikenas-firmware/src/lib.rs")).unwrap();
        assert!(lib.contains("no_std"));
        let config = std::fs::read_to_string(dir.join(".cargo/config.toml")).unwrap();
        assert!(config.contains("target = \"thumbv7em-none-eabihf\""));
        assert!(config.contains("probe-rs run --chip STM32F405RGTx"));
        assert_eq!(krate.fast_region.as_deref(), Some("ccm"));
        assert!(krate.constant_bytes > 0);
        // Emulated: QEMU has no CCM, the membranes stay in SRAM.
        let emulated = catalog.board("netduinoplus2").unwrap();
        let krate = net
            .with_network(|n| generate(n, emulated, catalog.targets(), &dir))
            .unwrap();
        assert_eq!(krate.fast_region, None);
        let config = std::fs::read_to_string(dir.join(".cargo/config.toml")).unwrap();
        assert!(config.contains("-machine netduinoplus2"));
        // Linux boards are refused with a reason.
        let err = net
            .with_network(|n| {
                generate(
                    n,
                    catalog.board("jetson-nano").unwrap(),
                    catalog.targets(),
                    &dir,
                )
            })
            .unwrap_err();
        assert!(err.to_string().contains("f32 model"), "{err}");
        // The RP2040 gets boot2 ahead of its vector table.
        net.with_network(|n| {
            generate(
                n,
                catalog.board("rp2040-pico").unwrap(),
                catalog.targets(),
                &dir,
            )
        })
        .unwrap();
        let memory = std::fs::read_to_string(dir.join("memory.x")).unwrap();
        assert!(
            memory.contains("BOOT2 : ORIGIN = 0x10000000, LENGTH = 256")
                && memory.contains("FLASH : ORIGIN = 0x10000100, LENGTH = 2096896")
                && memory.contains("KEEP(*(.boot2))"),
            "{memory}"
        );
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("default = [\"rp2040\"]"), "{cargo}");
        let board_rs = std::fs::read_to_string(dir.join("src/board.rs")).unwrap();
        assert!(
            board_rs.contains("pub const PLL_FBDIV: u32 = 125;"),
            "{board_rs}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn strings_that_escaped_validation_are_refused_before_writing() {
        let catalog = Catalog::discover().unwrap();
        let good = crate::boards::Profile::from_yaml(
            include_str!("../boards/testdata/f405-ccm.yaml"),
            std::path::Path::new("f405-ccm.yaml"),
            catalog.targets(),
        )
        .unwrap();
        let attack = "STM32F405RGTx\"\nrustflags = [\"-C\", \"linker=/tmp/evil.sh\"]";
        let net = net();
        let dir =
            std::env::temp_dir().join(format!("spikenas-codegen-evil-{}", std::process::id()));
        let fields = [
            "name",
            "probe_rs_chip",
            "region name",
            "target triple",
            "qemu_machine",
        ];
        for field in fields {
            for a in [attack, "{{RUNNER}}", "a\\b", "x y", "../up"] {
                let (mut board, mut targets) = (good.clone(), catalog.targets().clone());
                let mut target = targets.get(&board.target).unwrap().clone();
                match field {
                    "name" => board.name = a.into(),
                    "probe_rs_chip" => board.probe_rs_chip = Some(a.into()),
                    "region name" => board.regions[1].name = a.into(),
                    "target triple" => target.triple = format!("thumbv7em-none-eabihf{a}"),
                    _ => target.qemu_machine = Some(a.into()),
                }
                targets.insert(target);
                let err = net
                    .with_network(|n| generate(n, &board, &targets, &dir))
                    .unwrap_err();
                assert!(
                    err.to_string().contains(field) && err.to_string().contains("not a plain name"),
                    "{field} = {a}: {err}"
                );
                assert!(!dir.exists(), "nothing is written for {field} = {a}");
            }
        }
    }

    #[test]
    fn comments_and_doc_lines_hold_the_board_name_inert() {
        // memory_x and model_rs take the name as it is (generate checks it first); even
        // so, a name with a newline or `*/` stays inside its comment.
        let catalog = Catalog::discover().unwrap();
        let mut board = catalog.board("netduinoplus2").unwrap().clone();
        board.name = "x */ MEMORY { EVIL : ORIGIN = 0 } /*\n//! injected".into();
        let (text, _) = memory_x(&board, 64).unwrap();
        assert!(!text.contains("EVIL : ORIGIN = 0 } /*\n"), "{text}");
        // The comment ends where it should: at the end of its (single) line.
        let line = text.lines().find(|l| l.contains("EVIL")).unwrap();
        assert_eq!(line.find("*/"), Some(line.len() - 2), "{text}");
        let net = net();
        let model = net.with_network(|n| {
            let layout = n.workspace_layout().unwrap();
            Emitter::default().model_rs(n, &layout, false, &board.name)
        });
        assert!(!model.contains("\n//! injected"), "{}", &model[..200]);
    }
}
