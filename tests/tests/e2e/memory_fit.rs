//! The analytic memory model against the linker: networks are generated and built for
//! the emulated boards (netduinoplus2: Cortex-M4F, microbit: Cortex-M0) through
//! `board_app::build`, and every region's use in the ELF (sections plus the profile's
//! stack and runtime reserves) must be within [`MAX_ERROR_PCT`] of
//! `memory::estimate`'s, and the model's RAM buffers must be the firmware's `static mut`
//! arrays byte for byte.
//!
//! Builds reuse `target/firmware-<triple>` (seconds each once core is built). The output
//! (`cargo test -p spikenas-tests --test e2e -- --nocapture memory_fit::`) lists, per build,
//! the sections and the model's flash split (weights and constants, descriptors, code), so
//! `code_reserve_bytes` in targets.yaml can be recalibrated from it.

use spikenas_host::board_app::on_device::estimate_error;
use spikenas_host::memory;

use crate::common::{build_plain, generate, load_board, synthetic, work_dir};

/// Largest error allowed per region, in percent of the measured use.
const MAX_ERROR_PCT: f64 = 2.0;

/// Builds each `(arch, input)` for `board_name` and checks the estimate per region.
fn fit(board_name: &str, cases: &[(&str, &str)]) {
    let (catalog, board) = load_board(board_name);
    let mut failures = Vec::new();
    for (i, (arch, input)) in cases.iter().enumerate() {
        let (arch, input, net) = synthetic(arch, input, 40 + i as u64);
        let dir = work_dir("memory-fit", &format!("{board_name}-{i}"));
        let krate = generate(&net, &board, &catalog, &dir);
        let report = build_plain(&dir, &board, &catalog);
        let estimate = memory::estimate(&arch, &input, &board, catalog.targets());
        assert!(estimate.fits, "{}", estimate.render());

        // RAM: the buffers are the generated statics, byte for byte (before rounding).
        let l = krate.layout;
        let statics = [
            ("membranes", 2 * l.membranes_i16),
            ("currents", 4 * l.currents_i32),
            ("spikes", 4 * l.spikes_u32),
            ("scratch", 4 * l.scratch_i32),
            ("bytes", l.bytes_u8),
            ("image", krate.input_len),
        ];
        for (name, bytes) in statics {
            let b = estimate
                .buffer(name)
                .unwrap_or_else(|| panic!("no `{name}`"));
            assert_eq!(b.bytes, (bytes as u64).div_ceil(4) * 4, "{name}");
        }
        let flash_of = |name: &str| {
            estimate
                .layers
                .iter()
                .filter(|r| r.name == name)
                .map(|r| r.flash_bytes)
                .sum::<u64>()
        };
        let model_constants: u64 = estimate
            .layers
            .iter()
            .map(|r| r.weight_bytes + r.const_bytes)
            .sum();
        let descriptors = flash_of("descriptors");
        let code = flash_of("code");
        println!("== {board_name}: {arch} on {input}");
        print!("{}", report.render());
        println!(
            "model: constants {model_constants} (generated {}), descriptors {descriptors}, \
             code {code}; measured flash minus constants and descriptors: {}",
            krate.constant_bytes,
            report.flash_bytes() as i64 - model_constants as i64 - descriptors as i64
        );
        for e in estimate_error(&report, &estimate) {
            println!(
                "  {:<10} estimated {:>7} measured {:>7} error {:+.2}%",
                e.region, e.estimated, e.measured, e.error_pct
            );
            if e.error_pct.abs() > MAX_ERROR_PCT {
                failures.push(format!(
                    "{arch} on {input}, region {}: estimated {} measured {} ({:+.2}%)",
                    e.region, e.estimated, e.measured, e.error_pct
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "memory model off by more than {MAX_ERROR_PCT}%:\n{}",
        failures.join("\n")
    );
}

#[test]
fn netduinoplus2_estimate_within_two_percent() {
    fit(
        "netduinoplus2",
        &[
            ("cell=0301.0003.0000.0000,ch=8,stages=2,fc=32,t=4", "1x8x8"),
            (
                "cell=0324.0010.0001.0100,ch=8,stages=3,fc=0,t=4,bits=4,cluster=2,pool=2",
                "2x16x16",
            ),
            (
                "cell=0333.0003.0103.0000,ch=8,stages=2,fc=64,t=4,pool=2",
                "1x28x28",
            ),
        ],
    );
}

#[test]
fn microbit_estimate_within_two_percent() {
    fit(
        "microbit",
        &[
            ("cell=0301.0003.0000.0000,ch=4,stages=2,fc=32,t=4", "1x8x8"),
            (
                "cell=0301.0003.0000.0000,ch=4,stages=2,fc=32,t=4,pool=4",
                "1x28x28",
            ),
            (
                "cell=0324.0010.0001.0100,ch=4,stages=2,fc=0,t=4,bits=4,cluster=2,pool=2",
                "1x16x16",
            ),
        ],
    );
}

/// The real-hardware boards build too (none is refused), within the same tolerance.
#[test]
fn real_boards_estimate_within_two_percent() {
    for board in ["rp2040-pico", "stm32f746g-disco", "nucleo-h743zi"] {
        fit(
            board,
            &[("cell=0301.0003.0000.0000,ch=8,stages=2,fc=32,t=4", "1x8x8")],
        );
    }
}
