//! End to end on the device: a network description -> generated board application ->
//! ELF (Debian's toolchain, build-std) -> QEMU (netduinoplus2: Cortex-M4F, microbit:
//! Cortex-M0) -> every prediction, spike count and synaptic-operation count equal to the
//! host's `Network::infer` on the same images.
//!
//! The networks have deterministic pseudo-random weights (`board_app::synthetic`) and
//! realistic shapes: 2 stages, a cell with two conv3x3 edges and a skip edge, a hidden
//! layer of 32. The first run builds core for each target (about a minute each); later
//! runs reuse `target/firmware-<triple>` and take seconds.
//!
//! Hardware (opt-in, never in the default run): with a board attached and the probe-rs
//! CLI installed (`cargo install --locked probe-rs-tools`),
//! `SPIKENAS_HW_BOARD=nucleo-h743zi cargo test -p spikenas-tests --test e2e -- --ignored
//! device::hardware_board`
//! flashes the same kind of network and checks the board's results against the host; a
//! Pico without a probe reports over a UART instead (`hardware_pico_over_uart_agrees_with_host`,
//! which names its variables).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spikenas_host::arch::InputShape;
use spikenas_host::board_app::build::{self, BuildOptions};
use spikenas_host::board_app::elf::Elf;
use spikenas_host::board_app::flash::{self, FlashOptions, FlashOutcome};
use spikenas_host::board_app::on_device::{self, compare};
use spikenas_host::board_app::synthetic::{self, SyntheticNetwork};
use spikenas_host::board_app::uf2;
use spikenas_host::board_app::{BoardAppError, TestSet};
use spikenas_host::boards::{Catalog, Profile};
use spikenas_host::{latency, memory};

use crate::common::{
    build, build_plain, fresh_temp_dir, generate, load_board, print_estimate_error, repo_root,
    run_qemu, synthetic,
};

const IMAGES: usize = 200;
/// Largest relative error of the latency model on these networks (their shapes are in
/// the calibration set of `scripts/calibrate-latency`, with other weights and images).
const LATENCY_TOLERANCE: f64 = 0.15;
const CELL: &str = "cell=0301.0003.0000.0000";
/// The small 8x8 network of the real-board tests (after [`CELL`]).
const SMALL: &str = "ch=4,stages=2,fc=32,t=4";

fn work_dir(name: &str) -> PathBuf {
    crate::common::work_dir("device", name)
}

/// Generates, builds and validates one network on one emulated board; prints the
/// figures the report needs.
fn check(board_name: &str, arch: &str, input: &str, seed: u64) {
    check_cell(board_name, CELL, arch, input, seed, "");
}

/// [`check`] with another cell; `tag` tells the work folders apart.
fn check_cell(board_name: &str, cell: &str, arch: &str, input: &str, seed: u64, tag: &str) {
    let (catalog, board) = load_board(board_name);
    let (arch, input, net) = synthetic(&format!("{cell},{arch}"), input, seed);
    let set = synthetic::images(&input, IMAGES, seed);
    let dir = work_dir(&format!(
        "{board_name}-{}x{}{tag}",
        input.height, input.width
    ));
    let krate = generate(&net, &board, &catalog, &dir);
    let host = net.with_network(|n| on_device::host_run(n, &set).unwrap());
    let report = build_plain(&dir, &board, &catalog);
    let run = run_qemu(
        &report.elf,
        &board,
        &catalog,
        &set,
        Duration::from_secs(240),
    );
    let cmp = compare(&host, &run);
    let estimate = memory::estimate(&arch, &input, &board, catalog.targets());
    println!("== {board_name}, {arch}, input {input:?}");
    print!("{}", report.render());
    println!(
        "workspace {} bytes, model constants {} bytes",
        krate.layout.bytes(),
        krate.constant_bytes
    );
    print_estimate_error(&report, &estimate);
    println!(
        "{} images in {:.1} s: class {}/{}, spikes {}/{}, synops {}/{}; instructions/inference \
         {:.0}, synops/inference {:.0}, instructions/synop {:.2}, spikes/inference {:.0}",
        cmp.images,
        run.seconds,
        cmp.same_class,
        cmp.images,
        cmp.same_spikes,
        cmp.images,
        cmp.same_synops,
        cmp.images,
        run.mean_instructions(),
        run.mean_synops(),
        run.instructions_per_synop(),
        run.spikes.iter().sum::<u64>() as f64 / run.spikes.len() as f64,
    );
    assert_eq!(cmp.images, IMAGES);
    assert!(
        cmp.all_agree(),
        "device differs from host: {:?}",
        cmp.first_mismatch
    );
    // The networks must exercise the device: spikes vary, synops are counted.
    assert!(run.spikes.iter().any(|&s| s != run.spikes[0]));
    assert!(run.instructions_per_inference.iter().all(|&n| n > 0));
    // The latency model (targets.yaml `latency`) predicts an int8 network's count from
    // its synaptic operations: a kernel change without a new calibration fails here.
    if arch.weight_bits == 8 {
        let costs = catalog
            .targets()
            .get(&board.target)
            .and_then(|t| t.latency.as_ref())
            .expect("every emulated target is calibrated");
        let work = latency::Work::of(&arch, &input);
        let predicted = costs.instructions(&work, Some(run.mean_synops()));
        let error = predicted / run.mean_instructions() - 1.0;
        println!(
            "latency model: {predicted:.0} instructions/inference predicted ({:+.1}%)",
            100.0 * error
        );
        assert!(
            error.abs() <= LATENCY_TOLERANCE,
            "latency model off by {:+.1}% on {arch} ({board_name}); re-run scripts/calibrate-latency and update targets.yaml",
            100.0 * error
        );
    }

    // The same ELF measured against a board with less RAM fails naming the region.
    let mut small = board.clone();
    let ram = small.reserve_region().unwrap().name.clone();
    let used = report.region(&ram).unwrap().used;
    for r in small.regions.iter_mut().filter(|r| r.name == ram) {
        r.size = used - 4;
    }
    match build::measure(&report.elf, &small) {
        Err(BoardAppError::Overflow {
            region, used: u, ..
        }) => {
            assert_eq!((region.as_str(), u), (ram.as_str(), used));
        }
        other => panic!("expected an overflow of {ram}: {other:?}"),
    }
    // The flash path up to the probe.
    let mut real = board.clone();
    real.runner = spikenas_host::boards::Runner::ProbeRs;
    let options = FlashOptions {
        dry_run: true,
        probe: None,
        semihosting_testset: None,
    };
    match flash::flash(&report.elf, &real, IMAGES, &options).unwrap() {
        FlashOutcome::DryRun { command } => {
            assert_eq!(
                command[..4],
                ["probe-rs", "run", "--non-interactive", "--chip"]
            );
            assert_eq!(&command[4], board.probe_rs_chip.as_ref().unwrap());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn netduinoplus2_8x8() {
    check("netduinoplus2", "ch=8,stages=2,fc=32,t=4", "1x8x8", 11);
}

#[test]
fn netduinoplus2_28x28() {
    check(
        "netduinoplus2",
        "ch=8,stages=2,fc=32,t=4,pool=2",
        "1x28x28",
        12,
    );
}

#[test]
fn microbit_8x8() {
    check("microbit", "ch=4,stages=2,fc=32,t=4", "1x8x8", 13);
}

#[test]
fn microbit_28x28() {
    check("microbit", "ch=4,stages=2,fc=32,t=4,pool=4", "1x28x28", 14);
}

/// Every op (conv3x3, conv1x1, skip, avgpool3x3), a backward edge, int4 weights, no
/// hidden layer and a population of 2 per class.
#[test]
fn netduinoplus2_every_op_int4() {
    check_cell(
        "netduinoplus2",
        "cell=0324.0010.0001.0100",
        "ch=8,stages=2,fc=0,t=4,bits=4,cluster=2",
        "2x8x8",
        15,
        "-int4",
    );
}

#[test]
fn boards_without_qemu_are_refused_with_the_fix() {
    let (catalog, board) = load_board("nucleo-h743zi");
    let set = synthetic::images(&InputShape::parse("1x8x8", 10).unwrap(), 1, 1);
    let err = on_device::run_qemu(
        Path::new("/nonexistent.elf"),
        &board,
        catalog.targets(),
        &set,
        Duration::from_secs(5),
    )
    .unwrap_err();
    assert!(matches!(err, BoardAppError::NotEmulated { .. }));
    assert!(err
        .to_string()
        .contains("spikenas-host flash --board nucleo-h743zi"));
}

/// Generates the small 8x8 network of the real-board tests (weights from `seed`) for
/// `board` into work folder `name`.
fn small_crate(
    catalog: &Catalog,
    board: &Profile,
    seed: u64,
    name: &str,
) -> (PathBuf, SyntheticNetwork) {
    let (_, _, net) = synthetic(&format!("{CELL},{SMALL}"), "1x8x8", seed);
    let dir = work_dir(name);
    generate(&net, board, catalog, &dir);
    (dir, net)
}

/// Writes `count` synthetic test images (from `seed`) and the host's results on them
/// into the crate `dir` of `net`, for the build to carry or the runner to serve.
fn write_test_images(dir: &Path, net: &SyntheticNetwork, count: usize, seed: u64) -> TestSet {
    let set = synthetic::images(net.input(), count, seed);
    net.with_network(|n| on_device::write_test_data(dir, n, &set).unwrap());
    set
}

/// The opt-in hardware tests' crate: the small network for `board` with 50 test
/// images, in the work folder `tag`.
fn hardware_crate(board: &Profile, catalog: &Catalog, tag: &str) -> (PathBuf, TestSet) {
    let (dir, net) = small_crate(catalog, board, 21, tag);
    let set = write_test_images(&dir, &net, 50, 21);
    (dir, set)
}

/// The options of the Pico's `uart` build: results and panics over UART0, no semihosting.
fn uart_build() -> BuildOptions {
    BuildOptions {
        uart: true,
        ..BuildOptions::default()
    }
}

/// Opt-in: flashes a board named by `SPIKENAS_HW_BOARD` through probe-rs and compares
/// every result with the host.
#[test]
#[ignore = "needs a real board, a debug probe and the probe-rs CLI"]
fn hardware_board_agrees_with_host() {
    let name = std::env::var("SPIKENAS_HW_BOARD").expect("set SPIKENAS_HW_BOARD=<board name>");
    let (catalog, board) = load_board(&name);
    let (dir, set) = hardware_crate(&board, &catalog, &format!("hw-{name}"));
    let report = build_plain(&dir, &board, &catalog);
    // The test set is served through probe-rs's --semihosting-file, as QEMU serves it.
    let (run, cmp) = on_device::validate_dir_with(
        &dir,
        &report.elf,
        &board,
        catalog.targets(),
        None,
        Duration::from_secs(600),
        std::env::var("SPIKENAS_HW_PROBE").ok(),
    )
    .unwrap();
    assert!(cmp.all_agree(), "{:?}", cmp.first_mismatch);
    let clock = run.clock.clone().expect("the board reports its clock");
    assert_eq!((clock.hz, clock.how.as_str()), (board.clock_hz, "pll"));
    assert_eq!(run.cycles_per_inference.len(), set.len());
    assert!(run.cycles_per_inference.iter().all(|&c| c > 0));
    println!("{}", run.timing_line(board.clock_hz));
}

/// Opt-in: a Pico with no debug probe, flashed from its BOOTSEL drive, reports over UART0
/// to a USB-UART adapter (GP0 to its RX, GND to GND), and every result equals the host's.
/// `SPIKENAS_HW_BOARD=rp2040-pico SPIKENAS_HW_UF2_DRIVE=/media/$USER/RPI-RP2
/// SPIKENAS_HW_SERIAL=/dev/ttyUSB0 cargo test -p spikenas-tests --test e2e -- --ignored
/// device::hardware_pico_over_uart` (the Pico in BOOTSEL mode when it starts).
#[test]
#[ignore = "needs a Pico in BOOTSEL mode and a USB-UART adapter on GP0/GND"]
fn hardware_pico_over_uart_agrees_with_host() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("set {name}"));
    let name = var("SPIKENAS_HW_BOARD");
    let (drive, device) = (var("SPIKENAS_HW_UF2_DRIVE"), var("SPIKENAS_HW_SERIAL"));
    let (catalog, board) = load_board(&name);
    let (dir, set) = hardware_crate(&board, &catalog, &format!("hw-uart-{name}"));
    let options = uart_build();
    let report = build(&dir, &board, &catalog, &options);
    let outcome = spikenas_host::board_app::serial::flash_uf2_serial(
        report.uf2.as_ref().unwrap(),
        Path::new(&drive),
        Path::new(&device),
        set.len(),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let FlashOutcome::Ran {
        output, seconds, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    let run = on_device::DeviceRun::from_output(output, seconds);
    let host = on_device::read_host_results(&dir).unwrap();
    let cmp = compare(&host, &run);
    assert!(cmp.all_agree(), "{:?}", cmp.first_mismatch);
    let clock = run.clock.clone().expect("the board reports its clock");
    assert_eq!((clock.hz, clock.how.as_str()), (board.clock_hz, "pll"));
    println!("{}", run.timing_line(board.clock_hz));
}

/// CRC-32 as the RP2040 bootrom checks boot2 (polynomial 0x04C11DB7, initial value
/// 0xFFFFFFFF, not reflected, no final xor), written independently of rp2040-boot2.
fn boot2_crc(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The RP2040 image: boot2 with a valid CRC at the start of flash, the vector table after
/// it, and a UF2 file whose blocks (magic numbers, family ID, 256-byte payloads) hold
/// exactly the ELF's loadable bytes at their addresses.
#[test]
fn rp2040_image_has_boot2_and_a_matching_uf2() {
    let (catalog, board) = load_board("rp2040-pico");
    let (dir, _) = small_crate(&catalog, &board, 22, "rp2040-uf2");
    let report = build_plain(&dir, &board, &catalog);
    let elf = Elf::read(&report.elf).unwrap();
    let flash = elf
        .loads
        .iter()
        .find(|l| l.addr == 0x1000_0000)
        .expect("boot2 at 0x10000000");
    let boot2 = &flash.data[..256];
    let stored = u32::from_le_bytes(boot2[252..].try_into().unwrap());
    assert_eq!(boot2_crc(&boot2[..252]), stored, "boot2 CRC");
    assert_eq!(
        elf.sections
            .iter()
            .find(|s| s.name == ".vector_table")
            .unwrap()
            .addr,
        0x1000_0100
    );
    let bytes = std::fs::read(report.uf2.as_ref().expect("a .uf2 beside the ELF")).unwrap();
    let blocks = uf2::parse(&bytes).unwrap();
    let mut image = std::collections::BTreeMap::new();
    for b in &blocks {
        assert_eq!(
            (b.flags, b.family, b.data.len()),
            (uf2::FLAG_FAMILY_ID, uf2::RP2040_FAMILY_ID, 256)
        );
        assert_eq!(b.addr % 256, 0);
        for (i, &v) in b.data.iter().enumerate() {
            image.insert(u64::from(b.addr) + i as u64, v);
        }
    }
    for load in &elf.loads {
        for (i, &v) in load.data.iter().enumerate() {
            assert_eq!(
                image.get(&(load.addr + i as u64)),
                Some(&v),
                "byte {:#x}",
                load.addr + i as u64
            );
        }
    }
    // Second opinion: binutils' own view of the program headers.
    if let Ok(out) = Command::new("arm-none-eabi-readelf")
        .arg("-lW")
        .arg(&report.elf)
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("0x10000000 0x10000000 0x00100"), "{text}");
    }
}

/// Semihosting calls in an image's code, as binutils disassembles it: Thumb `bkpt 0xab`
/// (ARM semihosting), which faults on a board with no debugger attached.
fn semihosting_calls(elf: &Path) -> usize {
    let out = Command::new("arm-none-eabi-objdump")
        .arg("-d")
        .arg(elf)
        .output()
        .expect("arm-none-eabi-objdump (scripts/setup installs binutils-arm-none-eabi)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("bkpt") && l.contains("0x00ab"))
        .count()
}

/// The Pico's `uart` build (compile only; no hardware): it links and fits, gets its UF2
/// and carries the test set; it makes no semihosting call (its results and panics go over
/// UART0), whereas the plain build does; and other boards refuse the feature by name.
#[test]
fn rp2040_uart_build_has_a_uf2_and_no_semihosting() {
    let (catalog, board) = load_board("rp2040-pico");
    let (dir, net) = small_crate(&catalog, &board, 25, "rp2040-uart");
    write_test_images(&dir, &net, 20, 25);
    let options = uart_build();
    let report = build(&dir, &board, &catalog, &options);
    let bytes = std::fs::read(report.uf2.as_ref().expect("a .uf2 beside the ELF")).unwrap();
    let blocks = uf2::parse(&bytes).unwrap();
    assert!(blocks.iter().any(|b| b.addr == 0x1000_0000), "boot2 block");
    let elf = Elf::read(&report.elf).unwrap();
    let rodata = elf.sections.iter().find(|s| s.name == ".rodata").unwrap();
    let testset_bytes = std::fs::metadata(dir.join(on_device::TESTSET_FILE))
        .unwrap()
        .len();
    assert!(rodata.size >= testset_bytes, "the test set is in flash");
    assert_eq!(
        semihosting_calls(&report.elf),
        0,
        "the UART build must not need a debugger"
    );
    // The UART0 set-up writes the divisors the host computed for 125 MHz (board.rs).
    let board_rs = std::fs::read_to_string(dir.join("src/board.rs")).unwrap();
    assert!(
        board_rs.contains("pub const UART_IBRD: u32 = 67;"),
        "{board_rs}"
    );
    let plain = build_plain(&dir, &board, &catalog);
    assert!(
        semihosting_calls(&plain.elf) > 0,
        "the check finds semihosting calls"
    );
    let other = catalog.board("stm32f746g-disco").unwrap();
    let (dir, _) = small_crate(&catalog, other, 25, "uart-refused");
    let err = build::build(&dir, other, catalog.targets(), &options).unwrap_err();
    assert!(matches!(err, BoardAppError::Board { .. }), "{err}");
    assert!(err.to_string().contains("RP2040's UART0"), "{err}");
}

/// Copies `from` into `to` (folders recursively), leaving out `target/`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&src, &dst);
            }
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A generated crate is self-contained: copied into a fresh folder outside the checkout,
/// it builds there with a plain `cargo build --release` (its rust-toolchain.toml picks
/// Debian's toolchain; nothing of the workspace's environment is passed on), no file of
/// it names the checkout, and the ELF it makes agrees with the host on every image.
#[test]
fn a_generated_crate_builds_on_its_own_outside_the_checkout() {
    let (catalog, board) = load_board("microbit");
    let (_, input, net) = synthetic(&format!("{CELL},ch=4,stages=1,fc=16,t=2"), "1x8x8", 23);
    let set = synthetic::images(&input, 20, 23);
    let generated = work_dir("standalone-src");
    generate(&net, &board, &catalog, &generated);
    let host = net.with_network(|n| on_device::host_run(n, &set).unwrap());
    let checkout = repo_root().canonicalize().unwrap();
    let elsewhere = fresh_temp_dir("standalone");
    assert!(!elsewhere.starts_with(&checkout));
    copy_tree(&generated, &elsewhere);
    let mut names_checkout = Vec::new();
    let mut stack = vec![elsewhere.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read_to_string(&path)
                .is_ok_and(|t| t.contains(checkout.to_str().unwrap()))
            {
                names_checkout.push(path);
            }
        }
    }
    assert!(
        names_checkout.is_empty(),
        "{names_checkout:?} name {checkout:?}"
    );

    // What a user does: `cargo build --release` in the folder, with their own PATH/HOME.
    let mut cargo = Command::new("cargo");
    cargo.env_clear().current_dir(&elsewhere);
    for var in ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME"] {
        if let Some(value) = std::env::var_os(var) {
            cargo.env(var, value);
        }
    }
    let out = cargo
        .args(["build", "--release", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo build in {}: {}",
        elsewhere.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let elf = elsewhere.join("target/thumbv6m-none-eabi/release/spikenas-app");
    let run = run_qemu(&elf, &board, &catalog, &set, Duration::from_secs(120));
    let cmp = compare(&host, &run);
    assert!(
        cmp.all_agree() && cmp.images == set.len(),
        "{:?}",
        cmp.first_mismatch
    );

    // spikenas-host's own build checks the vendored runtime first, naming an edited file.
    let lib = elsewhere.join("vendor/spikenas-firmware/src/lif.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, text.replace("pub fn", "pub  fn")).unwrap();
    let err = build::build(
        &elsewhere,
        &board,
        catalog.targets(),
        &BuildOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, BoardAppError::Vendor { .. }), "{err}");
    assert!(err.to_string().contains("src/lif.rs"), "{err}");
    std::fs::remove_dir_all(&elsewhere).unwrap();
}

/// The `defmt` build of a real board (compile only; no hardware): the image carries
/// defmt's table for probe-rs to decode and the RTT control block it logs through, and
/// still fits the board.
#[test]
fn defmt_build_for_a_real_board() {
    let (catalog, board) = load_board("stm32f746g-disco");
    let (dir, _) = small_crate(&catalog, &board, 24, "defmt");
    let options = BuildOptions {
        defmt: true,
        ..BuildOptions::default()
    };
    let report = build(&dir, &board, &catalog, &options);
    let elf = Elf::read(&report.elf).unwrap();
    assert!(elf.symbol("_SEGGER_RTT").is_some(), "no RTT control block");
    // defmt's table (an info section the loader skips), as binutils sees it.
    let out = Command::new("arm-none-eabi-readelf")
        .arg("-SW")
        .arg(&report.elf)
        .output()
        .expect("arm-none-eabi-readelf (scripts/setup installs binutils-arm-none-eabi)");
    let sections = String::from_utf8_lossy(&out.stdout);
    assert!(sections.contains(" .defmt "), "{sections}");
    // The plain build has neither.
    let plain = build_plain(&dir, &board, &catalog);
    let elf = Elf::read(&plain.elf).unwrap();
    assert!(elf.symbol("_SEGGER_RTT").is_none());
}
