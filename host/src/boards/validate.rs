//! The checks run on every target and profile right after parsing. Each check is a small
//! named function that returns the first [`Problem`] it finds.

use std::fmt;
use std::path::Path;

use super::{BoardError, Core, Fpu, Profile, RegionKind, Runner, Target, Targets};

/// A broken rule: the field at fault, what is wrong, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field at fault as a path (`regions[2]`, `reserves.region`).
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

impl Problem {
    fn new(field: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// The problem as an error about the file `path` (no line known).
    pub fn at(self, path: &Path) -> BoardError {
        self.at_line(path, None)
    }

    /// The problem as an error about the file `path`, with the line of the field found
    /// in `text` (the file's contents) where possible.
    pub fn in_text(self, path: &Path, text: &str) -> BoardError {
        let line = line_of(text, &self.field);
        self.at_line(path, line)
    }

    fn at_line(self, path: &Path, line: Option<u32>) -> BoardError {
        BoardError::Invalid {
            path: path.to_path_buf(),
            line,
            field: self.field,
            problem: self.problem,
            fix: self.fix,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}. Fix: {}", self.field, self.problem, self.fix)
    }
}

type Check = Result<(), Problem>;

/// The 1-based line of a field path such as `reserves.region`, `regions[2].size` or
/// `stm32f405.fpu` in a block-style YAML text: each path segment is looked for below the
/// previous one; `[i]` picks the i-th `- ` item of a list. Best effort: `None` when the
/// text is laid out otherwise.
fn line_of(text: &str, field: &str) -> Option<u32> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |i: usize| lines[i].len() - lines[i].trim_start().len();
    let is_item = |i: usize| lines[i].trim_start().starts_with("- ");
    let is_key = |i: usize, key: &str| {
        let body = lines[i].trim_start().trim_start_matches("- ");
        body.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with(':'))
    };
    // Search window: lines after `from` whose indent is within `depth` (top level: 0).
    let (mut from, mut depth) = (0usize, None::<usize>);
    let mut found = None;
    for segment in field.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((key, rest)) => (key, Some(rest.trim_end_matches(']').parse::<usize>().ok()?)),
            None => (segment, None),
        };
        let at = (from..lines.len()).find(|&i| {
            let ok_indent = match depth {
                None => indent(i) == 0,
                Some(d) => indent(i) >= d,
            };
            ok_indent && is_key(i, key)
        })?;
        found = Some(at);
        (from, depth) = (at + 1, Some(indent(at) + 1));
        if let Some(index) = index {
            let first = (from..lines.len()).find(|&i| is_item(i))?;
            let items: Vec<usize> = (first..lines.len())
                .filter(|&i| is_item(i) && indent(i) == indent(first))
                .collect();
            let item = *items.get(index)?;
            found = Some(item);
            (from, depth) = (item, Some(indent(item)));
        }
    }
    found.and_then(|i| u32::try_from(i + 1).ok())
}

/// Every check on a target.
pub(super) fn target(t: &Target) -> Check {
    target_strings_are_safe(t)?;
    isa_matches_core(t)?;
    fpu_matches_core(t)?;
    triple_matches_isa(t)?;
    latency_costs_are_valid(t)?;
    Ok(())
}

fn latency_costs_are_valid(t: &Target) -> Check {
    match &t.latency {
        Some(costs) => costs.check().map_err(|problem| Problem {
            field: format!("{}.latency", t.name),
            problem,
            fix: "measure them again with scripts/calibrate-latency".into(),
        }),
        None => Ok(()),
    }
}

/// Every check on a profile, in the order a reader would fix them.
pub(super) fn profile(p: &Profile, targets: &Targets) -> Check {
    name_is_set(p)?;
    name_is_safe(p)?;
    chip_is_safe(p)?;
    clock_is_positive(p)?;
    regions_not_empty(p)?;
    region_sizes_positive(p)?;
    regions_fit_32_bit(p)?;
    region_names_unique(p)?;
    region_names_are_safe(p)?;
    regions_do_not_overlap(p)?;
    target_exists(p, targets)?;
    runner_matches_target(p, targets)?;
    qemu_runner_has_machine(p, targets)?;
    probe_rs_runner_has_chip(p)?;
    mcu_has_one_flash(p)?;
    linux_has_one_dram(p)?;
    has_data_region(p)?;
    model_budget_only_on_linux(p)?;
    reserves_fit(p)?;
    Ok(())
}

fn isa_matches_core(t: &Target) -> Check {
    if t.core.isa() != t.isa {
        return Err(Problem::new(
            format!("{}.isa", t.name),
            format!(
                "core {} implements {:?}, not {:?}",
                t.core.as_str(),
                t.core.isa(),
                t.isa
            ),
            format!(
                "set isa to {:?} (lowercase) or change the core",
                t.core.isa()
            ),
        ));
    }
    Ok(())
}

fn fpu_matches_core(t: &Target) -> Check {
    let has_no_fpu = matches!(t.core, Core::CortexM0 | Core::CortexM0plus);
    if has_no_fpu && t.fpu != Fpu::None {
        return Err(Problem::new(
            format!("{}.fpu", t.name),
            format!("core {} has no FPU", t.core.as_str()),
            "set fpu: none",
        ));
    }
    if t.core == Core::CortexM4f && t.fpu != Fpu::Sp {
        return Err(Problem::new(
            format!("{}.fpu", t.name),
            "the Cortex-M4F FPU is single precision",
            "set fpu: sp",
        ));
    }
    Ok(())
}

fn triple_matches_isa(t: &Target) -> Check {
    let prefix = match (t.isa, t.fpu) {
        (super::Isa::Armv6m, _) => "thumbv6m-",
        (super::Isa::Armv7em, Fpu::None) => "thumbv7em-none-eabi",
        (super::Isa::Armv7em, _) => "thumbv7em-none-eabihf",
        (super::Isa::Aarch64, _) => "aarch64-",
    };
    if !t.triple.starts_with(prefix) {
        return Err(Problem::new(
            format!("{}.triple", t.name),
            format!(
                "triple `{}` does not match isa {:?} with fpu {:?}",
                t.triple, t.isa, t.fpu
            ),
            format!("use a triple starting with `{prefix}`"),
        ));
    }
    Ok(())
}

fn name_is_set(p: &Profile) -> Check {
    // The characters allowed are checked by `name_is_safe`.
    if p.name.trim().is_empty() {
        return Err(Problem::new(
            "name",
            "the board name is empty",
            "give a name of letters, digits, `_`, `.` and `-`, e.g. my-board",
        ));
    }
    Ok(())
}

/// The characters a value may have when it reaches a generated file (the firmware crate's
/// `Cargo.toml`, `.cargo/config.toml`, `memory.x`, `model.rs`), a command line (the QEMU
/// or probe-rs runner) or a path (`runs/NAME-...`): letters, digits, `_`, `.` and `-`,
/// not starting with `.` or `-` (no hidden files, no options), at most 64 of them.
/// Codegen escapes every value as well; this keeps the values plain to begin with.
pub fn is_safe_identifier(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && !value.starts_with(['.', '-'])
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The first character of `value` that [`is_safe_identifier`] refuses, described for an
/// error message.
fn unsafe_part(value: &str) -> String {
    if value.is_empty() {
        return "it is empty".into();
    }
    if value.len() > 64 {
        return format!("it is {} characters long (at most 64)", value.len());
    }
    if value.starts_with(['.', '-']) {
        return format!("it starts with `{}`", &value[..1]);
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        Some(c) => format!("it contains {c:?}"),
        None => "it is not a plain name".into(),
    }
}

/// `value` for an error message: quoted, and cut short when long (a value can be as
/// long as the file).
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!(
            "{:?}... ({} characters)",
            &value[..cut],
            value.chars().count()
        ),
    }
}

fn safe(field: impl Into<String>, what: &str, value: &str, example: &str) -> Check {
    if is_safe_identifier(value) {
        return Ok(());
    }
    Err(Problem::new(
        field,
        format!(
            "{what} {} is refused: {}; it is written into generated files, \
             commands and paths",
            shown(value),
            unsafe_part(value)
        ),
        format!(
            "use only letters, digits, `_`, `.` and `-` (not first), at most 64 characters, \
             e.g. {example}"
        ),
    ))
}

fn name_is_safe(p: &Profile) -> Check {
    safe("name", "board name", &p.name, "my-board")
}

fn chip_is_safe(p: &Profile) -> Check {
    match &p.probe_rs_chip {
        Some(chip) if !chip.is_empty() => safe(
            "probe_rs_chip",
            "chip name",
            chip,
            "STM32F405RGTx (as `probe-rs chip list` spells it)",
        ),
        _ => Ok(()),
    }
}

fn region_names_are_safe(p: &Profile) -> Check {
    for (i, r) in p.regions.iter().enumerate() {
        safe(
            format!("regions[{i}].name"),
            "region name",
            &r.name,
            "sram1",
        )?;
    }
    if let Some(region) = &p.reserves.region {
        safe("reserves.region", "region name", region, "sram1")?;
    }
    Ok(())
}

fn target_strings_are_safe(t: &Target) -> Check {
    safe(t.name.clone(), "target name", &t.name, "stm32f405")?;
    safe(
        format!("{}.triple", t.name),
        "target triple",
        &t.triple,
        "thumbv7em-none-eabihf",
    )?;
    if let Some(machine) = &t.qemu_machine {
        safe(
            format!("{}.qemu_machine", t.name),
            "QEMU machine",
            machine,
            "netduinoplus2",
        )?;
    }
    Ok(())
}

fn clock_is_positive(p: &Profile) -> Check {
    if p.clock_hz == 0 {
        return Err(Problem::new(
            "clock_hz",
            "clock is 0 Hz",
            "give the core clock in Hz",
        ));
    }
    Ok(())
}

fn regions_not_empty(p: &Profile) -> Check {
    if p.regions.is_empty() {
        return Err(Problem::new(
            "regions",
            "no memory regions",
            "list the board's flash and RAM regions with name, kind, origin and size",
        ));
    }
    Ok(())
}

fn region_sizes_positive(p: &Profile) -> Check {
    for (i, r) in p.regions.iter().enumerate() {
        if r.size == 0 {
            return Err(Problem::new(
                format!("regions[{i}].size"),
                format!("region `{}` has size 0", r.name),
                "give its size in bytes, or remove the region",
            ));
        }
        if r.end().is_none() {
            return Err(Problem::new(
                format!("regions[{i}]"),
                format!(
                    "region `{}` runs past the end of the 64-bit address space",
                    r.name
                ),
                "check origin and size",
            ));
        }
    }
    Ok(())
}

/// A microcontroller's regions lie in its 32-bit address space (Cortex-M: 4 GiB).
fn regions_fit_32_bit(p: &Profile) -> Check {
    const SPACE: u64 = 1 << 32;
    if !p.is_mcu() {
        return Ok(());
    }
    for (i, r) in p.regions.iter().enumerate() {
        let end = r.end().unwrap_or(u64::MAX);
        if end > SPACE {
            return Err(Problem::new(
                format!("regions[{i}]"),
                format!(
                    "region `{}` (origin 0x{:x}, size 0x{:x}) ends at 0x{end:x}, past the \
                     4 GiB (0x1_0000_0000) address space of a 32-bit microcontroller",
                    r.name, r.origin, r.size
                ),
                "check origin and size against the reference manual's memory map (a size \
                 of 1 MiB is 0x100000)",
            ));
        }
    }
    Ok(())
}

fn region_names_unique(p: &Profile) -> Check {
    for (i, r) in p.regions.iter().enumerate() {
        if r.name.is_empty() {
            return Err(Problem::new(
                format!("regions[{i}].name"),
                "empty name",
                "name it",
            ));
        }
        if let Some(j) = p.regions[..i].iter().position(|o| o.name == r.name) {
            return Err(Problem::new(
                format!("regions[{i}].name"),
                format!("`{}` is also the name of regions[{j}]", r.name),
                "give every region its own name",
            ));
        }
    }
    Ok(())
}

fn regions_do_not_overlap(p: &Profile) -> Check {
    for (i, a) in p.regions.iter().enumerate() {
        for (j, b) in p.regions.iter().enumerate().skip(i + 1) {
            if a.overlaps(b) {
                return Err(Problem::new(
                    format!("regions[{j}]"),
                    format!(
                        "`{}` (0x{:x}..0x{:x}) overlaps regions[{i}] `{}` (0x{:x}..0x{:x})",
                        b.name,
                        b.origin,
                        b.end().unwrap_or(u64::MAX),
                        a.name,
                        a.origin,
                        a.end().unwrap_or(u64::MAX)
                    ),
                    "check origin and size against the reference manual's memory map",
                ));
            }
        }
    }
    Ok(())
}

fn target_exists(p: &Profile, targets: &Targets) -> Check {
    if targets.get(&p.target).is_none() {
        return Err(Problem::new(
            "target",
            format!("no target {} in targets.yaml", shown(&p.target)),
            format!("use one of: {}", targets.names().join(", ")),
        ));
    }
    Ok(())
}

fn runner_matches_target(p: &Profile, targets: &Targets) -> Check {
    let Some(t) = targets.get(&p.target) else {
        return Ok(());
    };
    let linux_target = t.core == Core::Aarch64Linux;
    if (p.runner == Runner::Linux) != linux_target {
        return Err(Problem::new(
            "runner",
            format!(
                "runner {} does not suit target `{}` ({})",
                p.runner.as_str(),
                t.name,
                t.core.as_str()
            ),
            "use runner linux with a Linux target, probe-rs or qemu with a microcontroller",
        ));
    }
    Ok(())
}

fn qemu_runner_has_machine(p: &Profile, targets: &Targets) -> Check {
    let Some(t) = targets.get(&p.target) else {
        return Ok(());
    };
    if p.runner == Runner::Qemu && t.qemu_machine.is_none() {
        let emulable: Vec<&str> = targets
            .iter()
            .filter(|t| t.qemu_machine.is_some())
            .map(|t| t.name.as_str())
            .collect();
        return Err(Problem::new(
            "runner",
            format!("runner qemu, but target `{}` has no qemu_machine", t.name),
            format!(
                "use runner probe-rs, or an emulable target: {}",
                emulable.join(", ")
            ),
        ));
    }
    Ok(())
}

fn probe_rs_runner_has_chip(p: &Profile) -> Check {
    if p.runner == Runner::ProbeRs && p.probe_rs_chip.as_deref().is_none_or(str::is_empty) {
        return Err(Problem::new(
            "probe_rs_chip",
            "runner probe-rs needs the chip name",
            "add probe_rs_chip as `probe-rs chip list` spells it, e.g. STM32F405RGTx",
        ));
    }
    Ok(())
}

fn count(p: &Profile, kind: RegionKind) -> usize {
    p.regions.iter().filter(|r| r.kind == kind).count()
}

fn mcu_has_one_flash(p: &Profile) -> Check {
    let n = count(p, RegionKind::Flash);
    if p.is_mcu() && n != 1 {
        return Err(Problem::new(
            "regions",
            format!("a microcontroller board needs exactly one flash region, found {n}"),
            "describe the flash the firmware is linked into as one region of kind flash",
        ));
    }
    if !p.is_mcu() && n != 0 {
        return Err(Problem::new(
            "regions",
            "a Linux board keeps its model in DRAM and has no flash region",
            "remove the flash region",
        ));
    }
    Ok(())
}

fn linux_has_one_dram(p: &Profile) -> Check {
    let n = count(p, RegionKind::Dram);
    if !p.is_mcu() && (n != 1 || p.regions.len() != 1) {
        return Err(Problem::new(
            "regions",
            format!(
                "a Linux board needs exactly one region, of kind dram; found {} regions",
                p.regions.len()
            ),
            "describe the board's memory as one dram region",
        ));
    }
    if p.is_mcu() && n != 0 {
        return Err(Problem::new(
            "regions",
            "dram regions are for Linux boards",
            "use kind sram for on-chip RAM (external SDRAM is not used by the firmware)",
        ));
    }
    Ok(())
}

fn has_data_region(p: &Profile) -> Check {
    if p.data_regions().next().is_none() {
        return Err(Problem::new(
            "regions",
            "no RAM region for data (kinds sram, ccm, dtcm, dram)",
            "add the board's RAM",
        ));
    }
    Ok(())
}

fn model_budget_only_on_linux(p: &Profile) -> Check {
    match (p.runner, p.model_budget_bytes) {
        (Runner::Linux, Some(0)) => Err(Problem::new(
            "model_budget_bytes",
            "a model budget of 0 bytes fits no model",
            "give the share of DRAM the model may use, e.g. 0x20000000 (512 MiB)",
        )),
        (Runner::Linux, _) | (_, None) => Ok(()),
        (_, Some(_)) => Err(Problem::new(
            "model_budget_bytes",
            "only Linux boards take a model budget; a microcontroller's budget is its regions",
            "remove model_budget_bytes",
        )),
    }
}

fn reserves_fit(p: &Profile) -> Check {
    let Some(region) = p.reserve_region() else {
        let name = p.reserves.region.as_deref().unwrap_or("");
        let data: Vec<&str> = p.data_regions().map(|r| r.name.as_str()).collect();
        return Err(Problem::new(
            "reserves.region",
            format!("no region `{name}`"),
            format!("name one of the data regions: {}", data.join(", ")),
        ));
    };
    if !region.kind.holds_data() {
        return Err(Problem::new(
            "reserves.region",
            format!(
                "`{}` is a {} region, which holds no data",
                region.name,
                region.kind.as_str()
            ),
            "name a RAM region (sram, ccm, dtcm, dram)",
        ));
    }
    let capacity = p.capacity_of(region);
    if p.reserves.total_bytes() > capacity {
        return Err(Problem::new(
            "reserves",
            format!(
                "stack {} + runtime {} bytes exceed region `{}` ({capacity} bytes)",
                p.reserves.stack_bytes, p.reserves.runtime_bytes, region.name
            ),
            "lower the reserves or put them in a larger region with reserves.region",
        ));
    }
    Ok(())
}
