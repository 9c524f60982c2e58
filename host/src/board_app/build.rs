//! Builds a generated crate into an ELF and measures it against the board's regions.
//!
//! Cargo runs as Debian's `/usr/bin/cargo` with `RUSTC=/usr/bin/rustc` (the toolchain
//! with the library source `-Z build-std` needs), with the variables a surrounding
//! `cargo test`/`cargo run` sets removed (else: "can't find crate for core"). Before
//! cargo runs, the vendored firmware runtime is checked against its recorded SHA-256
//! sums ([`super::vendor`]). When the spikenas checkout this host was built from is still
//! there, the intermediate artifacts (core, compiler_builtins, cortex-m, the runtime) go
//! to one shared build folder per target, `target/firmware-<triple>` in it, so only the
//! first build pays for build-std; otherwise (an installed binary whose checkout is gone)
//! they stay in the crate's own `target/`, where the ELF always goes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::boards::{Profile, RegionKind, Targets};

use super::elf::Elf;
use super::BoardAppError;

/// The cargo that builds firmware (Debian's, with rust-src).
pub const CARGO: &str = "/usr/bin/cargo";
/// The matching rustc.
pub const RUSTC: &str = "/usr/bin/rustc";

/// Variables a surrounding cargo or rustup sets that would point the firmware build at
/// the wrong toolchain or folder.
const SCRUBBED_ENV: [&str; 9] = [
    "RUSTUP_TOOLCHAIN",
    "CARGO_TARGET_DIR",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "CARGO_BUILD_TARGET",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
];

/// How to build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Build `testset.bin` into flash (feature `embedded-testset`), for real boards whose
    /// probe cannot serve files.
    pub embedded_testset: bool,
    /// Log results and timing over RTT with defmt (feature `defmt`, for real boards:
    /// `probe-rs run` decodes the logs).
    pub defmt: bool,
    /// RP2040 only: send the results over UART0 (GP0 TX, GP1 RX, 115200 8N1) instead of
    /// semihosting (feature `uart`, which also builds the test set into flash), for a Pico
    /// flashed from its BOOTSEL drive with no debug probe ([`super::serial`] reads them).
    pub uart: bool,
    /// The shared build folder; default `<repository>/target/firmware-<triple>` when the
    /// checkout this host was built from exists, else none (the crate's `target/`).
    pub build_dir: Option<PathBuf>,
}

/// Use of one board region by the built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionReport {
    /// Region name from the profile.
    pub name: String,
    /// Region kind.
    pub kind: RegionKind,
    /// Bytes of the ELF's sections in the region (for flash: everything loaded from it,
    /// `.data`'s initial values included), plus the stack and runtime reserves of the
    /// profile in the stack's region.
    pub used: u64,
    /// Region size.
    pub capacity: u64,
    /// `(section, bytes)` that make up `used`; the reserves appear as `(stack)` and
    /// `(runtime)`.
    pub parts: Vec<(String, u64)>,
}

/// A built board application.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    /// The ELF.
    pub elf: PathBuf,
    /// Board name.
    pub board: String,
    /// Every region of the board, in profile order.
    pub regions: Vec<RegionReport>,
    /// Seconds cargo took.
    pub build_seconds: f64,
    /// The UF2 file written beside the ELF, for boards flashed by drag-and-drop (RP2040).
    pub uf2: Option<PathBuf>,
}

impl BuildReport {
    /// The region called `name`.
    pub fn region(&self, name: &str) -> Option<&RegionReport> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// Bytes of flash used.
    pub fn flash_bytes(&self) -> u64 {
        self.regions
            .iter()
            .filter(|r| r.kind == RegionKind::Flash)
            .map(|r| r.used)
            .sum()
    }

    /// Bytes of RAM used in all data regions (stack and runtime reserves included).
    pub fn ram_bytes(&self) -> u64 {
        self.regions
            .iter()
            .filter(|r| r.kind.holds_data())
            .map(|r| r.used)
            .sum()
    }

    /// A table: region, kind, used, capacity, share, and the sections.
    pub fn render(&self) -> String {
        let mut s = format!("{} on {}\n", self.elf.display(), self.board);
        if let Some(uf2) = &self.uf2 {
            let _ = writeln!(s, "{} (UF2, for the BOOTSEL drive)", uf2.display());
        }
        let _ = writeln!(
            s,
            "{:<10} {:<6} {:>9} {:>9} {:>6}  sections",
            "region", "kind", "used", "capacity", "use"
        );
        for r in &self.regions {
            let parts: Vec<String> = r.parts.iter().map(|(n, b)| format!("{n} {b}")).collect();
            let _ = writeln!(
                s,
                "{:<10} {:<6} {:>9} {:>9} {:>5.1}%  {}",
                r.name,
                r.kind.as_str(),
                r.used,
                r.capacity,
                100.0 * r.used as f64 / r.capacity.max(1) as f64,
                parts.join(", ")
            );
        }
        s
    }
}

/// Serialises firmware builds of this process (see [`build`]).
static BUILD_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Sets the modification time of the generated inputs and of the vendored runtime to now.
fn touch_inputs(dir: &Path, info: &super::CrateInfo) -> Result<(), BoardAppError> {
    let now = std::time::SystemTime::now();
    let vendored = info.vendor.iter().flat_map(|v| {
        v.sha256
            .keys()
            .map(move |name| Path::new(&v.dir).join(name))
    });
    let generated = ["src/main.rs", "src/model.rs", "memory.x", "testset.bin"]
        .into_iter()
        .map(PathBuf::from);
    for name in generated.chain(vendored) {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(now))
            .map_err(BoardAppError::io(&path))?;
    }
    Ok(())
}

/// The spikenas checkout this host was built from, if it is still there (its `target/`
/// holds the shared firmware build folders).
pub fn checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let is_checkout = root.join("Cargo.toml").is_file() && root.join("firmware/src").is_dir();
    is_checkout.then(|| root.canonicalize().unwrap_or(root))
}

/// Checks, without building, that `dir` is a generated crate for `board` whose vendored
/// runtime is intact; returns its canonical path, the board's target and the crate's
/// metadata.
pub fn check_crate<'t>(
    dir: &Path,
    board: &Profile,
    targets: &'t Targets,
) -> Result<(PathBuf, &'t crate::boards::Target, super::CrateInfo), BoardAppError> {
    let target = targets
        .get(&board.target)
        .ok_or_else(|| BoardAppError::Board {
            board: board.name.clone(),
            why: format!("target `{}` is not in targets.yaml", board.target),
        })?;
    let dir = dir.canonicalize().map_err(BoardAppError::io(dir))?;
    if !dir.join("src/model.rs").is_file() {
        return Err(BoardAppError::NotGenerated {
            dir,
            why: "src/model.rs is missing".into(),
        });
    }
    // A crate's memory.x and model.rs belong to one board: building it for another
    // would measure the wrong regions (or link for the wrong chip).
    let info = super::CrateInfo::read(&dir)?;
    info.check_board(&dir, board, &target.triple)?;
    info.verify_vendor(&dir)?;
    Ok((dir, target, info))
}

/// Builds the crate in `dir` (made by [`super::generate`]) for `board` in release mode,
/// then checks every region: an image that does not fit fails with
/// [`BoardAppError::Overflow`] naming the region and the excess.
pub fn build(
    dir: &Path,
    board: &Profile,
    targets: &Targets,
    options: &BuildOptions,
) -> Result<BuildReport, BoardAppError> {
    let (dir, target, info) = check_crate(dir, board, targets)?;
    let family = super::clock::Family::of_target(&board.target);
    if options.uart && family != super::clock::Family::Rp2040 {
        return Err(BoardAppError::Board {
            board: board.name.clone(),
            why: "the UART results transport (--uart, --serial) is the RP2040's UART0; \
                  other boards report over semihosting through QEMU or a debug probe: \
                  build without it"
                .into(),
        });
    }
    let build_dir = options.build_dir.clone().or_else(|| {
        checkout().map(|root| {
            root.join("target")
                .join(format!("firmware-{}", target.triple))
        })
    });
    let mut cmd = Command::new(CARGO);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.current_dir(&dir)
        .args(["build", "--release", "--quiet", "--target", &target.triple])
        .env("RUSTC", RUSTC)
        .env("CARGO_TARGET_DIR", dir.join("target"));
    if let Some(build_dir) = &build_dir {
        cmd.env("CARGO_BUILD_BUILD_DIR", build_dir);
    }
    let features: Vec<&str> = [
        (options.embedded_testset, "embedded-testset"),
        (options.defmt, "defmt"),
        (options.uart, "uart"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    // Every generated crate is the root of its own workspace, so cargo gives all of them
    // the same unit hash in the shared build folder, and judges freshness by comparing
    // this crate's file times with the last build of *any* of them. Touching the
    // generated inputs makes the app crate rebuild (a few seconds; core and the
    // dependencies stay cached), and the lock keeps another build of this process from
    // slipping in between the touch and the build.
    let _one_at_a_time = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    touch_inputs(&dir, &info)?;
    let started = Instant::now();
    let out = cmd.output().map_err(|e| BoardAppError::ToolMissing {
        tool: CARGO.into(),
        why: e.to_string(),
        fix: "run scripts/setup (installs Debian's rustc-web, cargo-web, rust-web-src and \
              binutils-arm-none-eabi)"
            .into(),
    })?;
    let build_seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        return Err(BoardAppError::Build {
            dir,
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let elf = dir
        .join("target")
        .join(&target.triple)
        .join("release")
        .join("spikenas-app");
    let report = measure(&elf, board)?;
    let uf2 = match family {
        super::clock::Family::Rp2040 => Some(super::uf2::write_beside(
            &elf,
            super::uf2::RP2040_FAMILY_ID,
        )?),
        _ => None,
    };
    Ok(BuildReport {
        build_seconds,
        uf2,
        ..report
    })
}

/// Measures a built ELF against `board`'s regions and fails on the first overflow.
pub fn measure(elf_path: &Path, board: &Profile) -> Result<BuildReport, BoardAppError> {
    let elf = Elf::read(elf_path)?;
    let mut regions: Vec<RegionReport> = board
        .regions
        .iter()
        .map(|r| RegionReport {
            name: r.name.clone(),
            kind: r.kind,
            used: 0,
            capacity: r.size,
            parts: Vec::new(),
        })
        .collect();
    let find = |addr: u64| {
        board
            .regions
            .iter()
            .position(|r| addr >= r.origin && addr < r.end().unwrap_or(u64::MAX))
    };
    for sec in &elf.sections {
        let mut charge = |at: Option<usize>| {
            if let Some(i) = at {
                regions[i].used += sec.size;
                regions[i].parts.push((sec.name.clone(), sec.size));
            }
        };
        let run = find(sec.addr);
        charge(run);
        // Initialised RAM data also takes its initial image in flash.
        if sec.has_bits && sec.load_addr != sec.addr {
            let load = find(sec.load_addr);
            if load != run {
                charge(load);
            }
        }
    }
    // cortex-m-rt puts the stack at the top of RAM (the profile's reserve region); the
    // profile's runtime reserve is kept free there too (the memory model charges both).
    if let Some(stack) = board.reserve_region() {
        if let Some(r) = regions.iter_mut().find(|r| r.name == stack.name) {
            for (part, bytes) in [
                ("(stack)", board.reserves.stack_bytes),
                ("(runtime)", board.reserves.runtime_bytes),
            ] {
                if bytes > 0 {
                    r.used += bytes;
                    r.parts.push((part.to_string(), bytes));
                }
            }
        }
    }
    if let Some(r) = regions.iter().find(|r| r.used > r.capacity) {
        let detail: Vec<String> = r.parts.iter().map(|(n, b)| format!("{n} {b}")).collect();
        return Err(BoardAppError::Overflow {
            elf: elf_path.to_path_buf(),
            board: board.name.clone(),
            region: r.name.clone(),
            used: r.used,
            capacity: r.capacity,
            detail: format!(": {}", detail.join(", ")),
        });
    }
    Ok(BuildReport {
        elf: elf_path.to_path_buf(),
        board: board.name.clone(),
        regions,
        build_seconds: 0.0,
        uf2: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Arch, InputShape};
    use crate::board_app::synthetic::SyntheticNetwork;
    use crate::boards::Catalog;

    #[test]
    fn a_crate_is_built_only_for_the_board_it_was_generated_for() {
        let catalog = Catalog::discover().unwrap();
        let arch: Arch = "cell=0003.0000.0000.0000,ch=4,stages=1,fc=0,t=2"
            .parse()
            .unwrap();
        let net =
            SyntheticNetwork::new(&arch, &InputShape::parse("1x8x8", 10).unwrap(), 3).unwrap();
        let dir = std::env::temp_dir().join(format!("spikenas-build-board-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nd = catalog.board("netduinoplus2").unwrap();
        net.with_network(|n| crate::board_app::generate(n, nd, catalog.targets(), &dir))
            .unwrap();
        let info = crate::board_app::CrateInfo::read(&dir).unwrap();
        assert!(crate::output::is_spikenas_output(&dir));
        assert_eq!(
            (info.board.as_str(), info.triple.as_str()),
            ("netduinoplus2", "thumbv7em-none-eabihf")
        );
        // Refused before cargo runs, so this needs no firmware toolchain.
        for other in ["microbit", "mps2-an386"] {
            let err = build(
                &dir,
                catalog.board(other).unwrap(),
                catalog.targets(),
                &BuildOptions::default(),
            )
            .unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, BoardAppError::WrongBoard { .. }), "{text}");
            assert!(
                text.contains("generated for board `netduinoplus2`")
                    && text.contains(&format!("not for `{other}`"))
                    && text.contains("--board netduinoplus2"),
                "{text}"
            );
        }
        // Without its metadata the folder is not taken for a generated crate.
        std::fs::remove_file(dir.join(crate::board_app::CRATE_INFO_FILE)).unwrap();
        let err = build(&dir, nd, catalog.targets(), &BuildOptions::default()).unwrap_err();
        assert!(matches!(err, BoardAppError::NotGenerated { .. }), "{err}");
        assert!(err.to_string().contains("spikenas-crate.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
