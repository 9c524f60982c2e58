//! End to end on the device: a network description -> generated board application ->
//! ELF (Debian's toolchain, build-std) -> QEMU (netduinoplus2: Cortex-M4F, microbit:
//! Cortex-M0) -> every prediction, spike count and synaptic-operation count equal to the
//! host's `Network::infer` on the same images.
//!
//! The networks have deterministic pseudo-random weights (`firmware::synthetic`) and
//! realistic shapes: 2 stages, a cell with two conv3x3 edges and a skip edge, a hidden
//! layer of 32. The first run builds core for each target (about a minute each); later
//! runs reuse `target/firmware-<triple>` and take seconds.
//!
//! Hardware (opt-in, never in the default run): with a board attached and the probe-rs
//! CLI installed (`cargo install --locked probe-rs-tools`),
//! `SPIKENAS_HW_BOARD=nucleo-h743zi cargo test -p spikenas-tests --test device -- --ignored`
//! flashes the same kind of network and checks the board's results against the host.

use std::path::PathBuf;
use std::time::Duration;

use spikenas_host::arch::{Arch, InputShape};
use spikenas_host::boards::Catalog;
use spikenas_host::firmware::build::{self, BuildOptions};
use spikenas_host::firmware::flash::{self, FlashOptions, FlashOutcome};
use spikenas_host::firmware::synthetic::{self, SyntheticNetwork};
use spikenas_host::firmware::validate::{self, compare, estimate_error};
use spikenas_host::firmware::{self, FirmwareError};
use spikenas_host::memory;

const IMAGES: usize = 200;
const CELL: &str = "cell=0301.0003.0000.0000";

fn work_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("device")
        .join(name)
}

/// Generates, builds and validates one network on one emulated board; prints the
/// figures the report needs.
fn check(board_name: &str, arch: &str, input: &str, seed: u64) {
    check_cell(board_name, CELL, arch, input, seed, "");
}

/// [`check`] with another cell; `tag` tells the work folders apart.
fn check_cell(board_name: &str, cell: &str, arch: &str, input: &str, seed: u64, tag: &str) {
    let catalog = Catalog::discover().unwrap();
    let board = catalog.board(board_name).unwrap();
    let arch: Arch = format!("{cell},{arch}").parse().unwrap();
    let input = InputShape::parse(input, 10).unwrap();
    let net = SyntheticNetwork::new(&arch, &input, seed).unwrap();
    let set = synthetic::images(&input, IMAGES, seed);
    let dir = work_dir(&format!(
        "{board_name}-{}x{}{tag}",
        input.height, input.width
    ));
    let (krate, host) = net.with_network(|n| {
        let krate = firmware::generate(n, board, catalog.targets(), &dir).unwrap();
        (krate, validate::host_run(n, &set).unwrap())
    });
    let report = build::build(&dir, board, catalog.targets(), &BuildOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let run = validate::run_qemu(
        &report.elf,
        board,
        catalog.targets(),
        &set,
        Duration::from_secs(240),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cmp = compare(&host, &run);
    let estimate = memory::estimate(&arch, &input, board, catalog.targets());
    println!("== {board_name}, {arch}, input {input:?}");
    print!("{}", report.render());
    println!(
        "workspace {} bytes, model constants {} bytes",
        krate.layout.bytes(),
        krate.constant_bytes
    );
    for e in estimate_error(&report, &estimate) {
        println!(
            "memory model {}: estimated {} measured {} error {:+.1}%",
            e.region, e.estimated, e.measured, e.error_pct
        );
    }
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

    // The same ELF measured against a board with less RAM fails naming the region.
    let mut small = board.clone();
    let ram = small.reserve_region().unwrap().name.clone();
    let used = report.region(&ram).unwrap().used;
    for r in small.regions.iter_mut().filter(|r| r.name == ram) {
        r.size = used - 4;
    }
    match build::measure(&report.elf, &small) {
        Err(FirmwareError::Overflow {
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
    };
    match flash::flash(&report.elf, &real, IMAGES, &options).unwrap() {
        FlashOutcome::DryRun { command } => {
            assert_eq!(command[..3], ["probe-rs", "run", "--chip"]);
            assert_eq!(&command[3], board.probe_rs_chip.as_ref().unwrap());
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
    let catalog = Catalog::discover().unwrap();
    let board = catalog.board("nucleo-h743zi").unwrap();
    let set = synthetic::images(&InputShape::parse("1x8x8", 10).unwrap(), 1, 1);
    let err = validate::run_qemu(
        std::path::Path::new("/nonexistent.elf"),
        board,
        catalog.targets(),
        &set,
        Duration::from_secs(5),
    )
    .unwrap_err();
    assert!(matches!(err, FirmwareError::NotEmulated { .. }));
    assert!(err
        .to_string()
        .contains("spikenas-host flash --board nucleo-h743zi"));
}

/// Opt-in: flashes a board named by `SPIKENAS_HW_BOARD` through probe-rs and compares
/// every result with the host.
#[test]
#[ignore = "needs a real board, a debug probe and the probe-rs CLI"]
fn hardware_board_agrees_with_host() {
    let name = std::env::var("SPIKENAS_HW_BOARD").expect("set SPIKENAS_HW_BOARD=<board name>");
    let catalog = Catalog::discover().unwrap();
    let board = catalog.board(&name).unwrap();
    let arch: Arch = format!("{CELL},ch=4,stages=2,fc=32,t=4").parse().unwrap();
    let input = InputShape::parse("1x8x8", 10).unwrap();
    let net = SyntheticNetwork::new(&arch, &input, 21).unwrap();
    let set = synthetic::images(&input, 50, 21);
    let dir = work_dir(&format!("hw-{name}"));
    let host = net.with_network(|n| {
        firmware::generate(n, board, catalog.targets(), &dir).unwrap();
        validate::write_test_data(&dir, n, &set).unwrap()
    });
    let options = BuildOptions {
        embedded_testset: true,
        ..BuildOptions::default()
    };
    let report = build::build(&dir, board, catalog.targets(), &options).unwrap();
    match flash::flash(&report.elf, board, set.len(), &FlashOptions::default()) {
        Ok(FlashOutcome::Ran { results, .. }) => assert_eq!(results, host),
        Ok(other) => panic!("{other:?}"),
        Err(e) => panic!("{e}"),
    }
}
