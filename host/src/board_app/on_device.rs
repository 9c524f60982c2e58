//! On-device validation (the `validate` and `flash` commands): the device's class and
//! spike count for every image must equal the host's `Network::infer` (the same integer
//! code, compiled for x86 and for Cortex-M), with no tolerance. Also measures
//! instructions per inference (QEMU) and compares the built image with the memory
//! model.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use spikenas_firmware::Network;

use crate::boards::{Profile, Targets};
use crate::memory::Estimate;

use super::build::BuildReport;
use super::{qemu, BoardAppError, TestSet};

/// File (in a generated crate) with the test set the device reads.
pub const TESTSET_FILE: &str = "testset.bin";
/// File (in a generated crate) with the host's result per image: `class spikes synops`.
pub const HOST_RESULTS_FILE: &str = "host-results.txt";

/// What one inference reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageResult {
    /// Predicted class.
    pub class: usize,
    /// Spikes of every LIF layer over all timesteps.
    pub spikes: u64,
    /// Synaptic operations executed.
    pub synops: u64,
}

/// What the device reported for a test set.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRun {
    /// Predicted class per image.
    pub predictions: Vec<usize>,
    /// Spike count per image.
    pub spikes: Vec<u64>,
    /// Synaptic operations per image.
    pub synops: Vec<u64>,
    /// Instructions executed per image (from `spikenas_infer_begin` to
    /// `spikenas_infer_end`: the whole `Network::infer` call); empty when not counted.
    pub instructions_per_inference: Vec<u64>,
    /// Cycles per image, measured on real boards (DWT, SysTick or TIMER0); empty in QEMU.
    pub cycles_per_inference: Vec<u64>,
    /// The clock the device reported (`CLOCK` line), if it did.
    pub clock: Option<DeviceClock>,
    /// Images whose prediction equals the label.
    pub correct: usize,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
}

/// The clock a device reported running at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceClock {
    /// Hz.
    pub hz: u64,
    /// `pll`, `fixed`, `reset` (emulated: not set up) or `failed-<step>`.
    pub how: String,
}

/// What the firmware printed, parsed ([`parse_output`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceOutput {
    /// One result per image.
    pub results: Vec<ImageResult>,
    /// Images whose prediction equals the label.
    pub correct: usize,
    /// Cycles per image (real boards; empty when the device printed none).
    pub cycles: Vec<u64>,
    /// The `CLOCK` line.
    pub clock: Option<DeviceClock>,
}

impl DeviceRun {
    /// A run from the firmware's parsed output (no instruction counts).
    pub fn from_output(out: DeviceOutput, seconds: f64) -> DeviceRun {
        DeviceRun {
            predictions: out.results.iter().map(|r| r.class).collect(),
            spikes: out.results.iter().map(|r| r.spikes).collect(),
            synops: out.results.iter().map(|r| r.synops).collect(),
            instructions_per_inference: Vec::new(),
            cycles_per_inference: out.cycles,
            clock: out.clock,
            correct: out.correct,
            seconds,
        }
    }

    /// Mean cycles per inference (0 when not measured).
    pub fn mean_cycles(&self) -> f64 {
        mean(&self.cycles_per_inference)
    }

    /// One line on time per inference: measured cycles and ms at the reported clock (real
    /// boards), or instructions and ms at `clock_hz` for one instruction per cycle (QEMU,
    /// which models no cycles).
    pub fn timing_line(&self, clock_hz: u64) -> String {
        let hz = clock_hz.max(1) as f64;
        match &self.clock {
            Some(c) if !self.cycles_per_inference.is_empty() => format!(
                "cycles/inference {:.0}, {:.3} ms at the clock in effect ({} Hz, {})",
                self.mean_cycles(),
                1000.0 * self.mean_cycles() / c.hz.max(1) as f64,
                c.hz,
                c.how
            ),
            _ => format!(
                "instructions/inference {:.0} (QEMU counts instructions, not cycles): {:.3} ms \
                 at the profile's {clock_hz} Hz if one instruction took one cycle{}",
                self.mean_instructions(),
                1000.0 * self.mean_instructions() / hz,
                self.clock
                    .as_ref()
                    .map(|c| format!("; the device reported CLOCK {} ({})", c.hz, c.how))
                    .unwrap_or_default()
            ),
        }
    }

    /// Result of image `i`.
    pub fn image(&self, i: usize) -> ImageResult {
        ImageResult {
            class: self.predictions[i],
            spikes: self.spikes[i],
            synops: self.synops[i],
        }
    }

    /// Mean instructions per inference (0 when not counted).
    pub fn mean_instructions(&self) -> f64 {
        mean(&self.instructions_per_inference)
    }

    /// Mean synaptic operations per inference.
    pub fn mean_synops(&self) -> f64 {
        mean(&self.synops)
    }

    /// Instructions per executed synaptic accumulate, over the whole run: all
    /// instructions of `infer` (LIF, requantisation and control included) divided by
    /// all synaptic operations.
    pub fn instructions_per_synop(&self) -> f64 {
        let synops: u64 = self.synops.iter().sum();
        self.instructions_per_inference.iter().sum::<u64>() as f64 / synops.max(1) as f64
    }
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

/// Runs `net` on the host on every image of `set`.
pub fn host_run(net: &Network<'_>, set: &TestSet) -> Result<Vec<ImageResult>, BoardAppError> {
    let mut buf = crate::quant::WorkspaceBuf::new(&net.workspace_layout()?);
    let mut ws = buf.view();
    (0..set.len())
        .map(|i| {
            let r = net.infer(set.image(i), &mut ws)?;
            Ok(ImageResult {
                class: r.class,
                spikes: r.spikes,
                synops: r.synops,
            })
        })
        .collect()
}

/// Writes `set` and the host's results on it into the generated crate `dir`, so that
/// [`validate_dir`] (and `spikenas-host validate`) can check the device later without
/// the network at hand.
pub fn write_test_data(
    dir: &Path,
    net: &Network<'_>,
    set: &TestSet,
) -> Result<Vec<ImageResult>, BoardAppError> {
    if set.image_len != net.input_len() {
        return Err(BoardAppError::TestSet {
            path: dir.join(TESTSET_FILE),
            why: format!(
                "images of {} pixels, the network reads {}",
                set.image_len,
                net.input_len()
            ),
        });
    }
    let host = host_run(net, set)?;
    set.write(&dir.join(TESTSET_FILE))?;
    let mut text = String::from("# class spikes synops, one line per image of testset.bin\n");
    for r in &host {
        let _ = writeln!(text, "{} {} {}", r.class, r.spikes, r.synops);
    }
    let path = dir.join(HOST_RESULTS_FILE);
    std::fs::write(&path, text).map_err(BoardAppError::io(&path))?;
    Ok(host)
}

/// Reads the host results written by [`write_test_data`].
pub fn read_host_results(dir: &Path) -> Result<Vec<ImageResult>, BoardAppError> {
    let path = dir.join(HOST_RESULTS_FILE);
    let text = std::fs::read_to_string(&path).map_err(BoardAppError::io(&path))?;
    let bad = |n: usize| BoardAppError::TestSet {
        path: path.clone(),
        why: format!("line {n} is not `class spikes synops`"),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
        .map(|(n, l)| {
            let v: Vec<u64> = l
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| bad(n + 1))?;
            match v[..] {
                [class, spikes, synops] => Ok(ImageResult {
                    class: class as usize,
                    spikes,
                    synops,
                }),
                _ => Err(bad(n + 1)),
            }
        })
        .collect()
}

/// The first words of the firmware's protocol lines (firmware/template/src/main.rs).
pub const PROTOCOL_WORDS: [&str; 5] = ["CLOCK", "SPIKENAS", "R", "DONE", "ERROR"];

/// The lines of a device's output that are not protocol lines ([`PROTOCOL_WORDS`]): with
/// the `defmt` build, the logs `probe-rs run` decoded.
pub fn log_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| {
            let first = line.split_whitespace().next();
            first.is_some_and(|w| !PROTOCOL_WORDS.contains(&w))
        })
        .map(str::to_string)
        .collect()
}

/// Parses the firmware's protocol (see firmware/template/src/main.rs) for `count`
/// images.
pub fn parse_output(text: &str, count: usize) -> Result<DeviceOutput, String> {
    let mut results = Vec::with_capacity(count);
    let mut cycles = Vec::new();
    let mut clock = None;
    let mut done = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first().copied() {
            Some("ERROR") => return Err(format!("the device reported: {line}")),
            Some("CLOCK") => {
                let hz = f.get(1).and_then(|v| v.parse().ok());
                match (hz, f.get(2)) {
                    (Some(hz), Some(how)) => {
                        clock = Some(DeviceClock {
                            hz,
                            how: how.to_string(),
                        })
                    }
                    _ => return Err(format!("malformed line `{line}`")),
                }
            }
            Some("R") => {
                let v: Vec<u64> = f[1..]
                    .iter()
                    .map(|x| x.parse())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("malformed line `{line}`"))?;
                let (index, class, spikes, synops) = match v[..] {
                    [index, class, spikes, synops, _label] => (index, class, spikes, synops),
                    [index, class, spikes, synops, _label, c] => {
                        cycles.push(c);
                        (index, class, spikes, synops)
                    }
                    _ => return Err(format!("malformed line `{line}`")),
                };
                if index as usize != results.len() {
                    return Err(format!("line `{line}` out of order"));
                }
                results.push(ImageResult {
                    class: class as usize,
                    spikes,
                    synops,
                });
            }
            Some("DONE") => done = f.get(2).and_then(|c| c.parse::<usize>().ok()),
            _ => {}
        }
    }
    let correct = done.ok_or("the device never printed DONE (did it crash or hang?)")?;
    if results.len() != count {
        return Err(format!(
            "the device reported {} images, expected {count}",
            results.len()
        ));
    }
    if !cycles.is_empty() && cycles.len() != count {
        return Err(format!(
            "the device reported cycles for {} of {count} images",
            cycles.len()
        ));
    }
    Ok(DeviceOutput {
        results,
        correct,
        cycles,
        clock,
    })
}

/// What `validate` checks before anything is built, so that a board it cannot serve
/// is refused at once: an emulated board needs its QEMU machine (targets.yaml) and
/// `qemu-system-arm`; a real board what `flash` needs ([`super::flash::preflight`]).
pub fn preflight(
    board: &Profile,
    targets: &Targets,
    probe: Option<&str>,
) -> Result<(), BoardAppError> {
    if !board.is_emulated() {
        let options = super::flash::FlashOptions {
            probe: probe.map(str::to_string),
            ..Default::default()
        };
        return super::flash::preflight(board, &options, None);
    }
    targets
        .get(&board.target)
        .and_then(|t| t.qemu_machine.as_ref())
        .ok_or_else(|| BoardAppError::NotEmulated {
            board: board.name.clone(),
        })?;
    if super::flash::on_path(qemu::QEMU).is_none() {
        return Err(qemu::qemu_missing("not on PATH".into()));
    }
    Ok(())
}

/// Runs the ELF in QEMU on `set` (written to a fresh folder the emulator reads it
/// from), counting instructions per inference.
pub fn run_qemu(
    elf: &Path,
    board: &Profile,
    targets: &Targets,
    set: &TestSet,
    timeout: Duration,
) -> Result<DeviceRun, BoardAppError> {
    let machine = targets
        .get(&board.target)
        .and_then(|t| t.qemu_machine.clone())
        .ok_or_else(|| BoardAppError::NotEmulated {
            board: board.name.clone(),
        })?;
    let work = tempdir(&board.name)?;
    set.write(&work.join(TESTSET_FILE))?;
    let result = qemu::run(elf, &machine, &work, true, timeout);
    let _ = std::fs::remove_dir_all(&work);
    let run = result?;
    let out = parse_output(&run.stdout, set.len()).map_err(|why| BoardAppError::Run {
        runner: qemu::QEMU.into(),
        elf: elf.to_path_buf(),
        why,
        output: run
            .stdout
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n"),
    })?;
    if run.windows.len() != set.len() {
        return Err(BoardAppError::Run {
            runner: qemu::QEMU.into(),
            elf: elf.to_path_buf(),
            why: format!(
                "the instruction counter saw {} inferences, expected {}",
                run.windows.len(),
                set.len()
            ),
            output: String::new(),
        });
    }
    Ok(DeviceRun {
        instructions_per_inference: run.windows,
        ..DeviceRun::from_output(out, run.seconds)
    })
}

fn tempdir(tag: &str) -> Result<std::path::PathBuf, BoardAppError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "spikenas-qemu-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(BoardAppError::io(&dir))?;
    Ok(dir)
}

/// Host and device side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Images compared.
    pub images: usize,
    /// Images whose class agrees.
    pub same_class: usize,
    /// Images whose spike count agrees.
    pub same_spikes: usize,
    /// Images whose synaptic-operation count agrees.
    pub same_synops: usize,
    /// The first image that differs in anything: `(index, host, device)`.
    pub first_mismatch: Option<(usize, ImageResult, ImageResult)>,
}

impl Comparison {
    /// True when every image agrees in class, spikes and synaptic operations.
    pub fn all_agree(&self) -> bool {
        self.first_mismatch.is_none()
    }

    /// Share of images whose class agrees, in percent.
    pub fn class_agreement_pct(&self) -> f64 {
        100.0 * self.same_class as f64 / self.images.max(1) as f64
    }
}

/// Compares host results with a device run, image by image.
pub fn compare(host: &[ImageResult], device: &DeviceRun) -> Comparison {
    let n = host.len().min(device.predictions.len());
    let mut c = Comparison {
        images: n,
        same_class: 0,
        same_spikes: 0,
        same_synops: 0,
        first_mismatch: None,
    };
    for (i, h) in host.iter().enumerate().take(n) {
        let d = device.image(i);
        c.same_class += (h.class == d.class) as usize;
        c.same_spikes += (h.spikes == d.spikes) as usize;
        c.same_synops += (h.synops == d.synops) as usize;
        if *h != d && c.first_mismatch.is_none() {
            c.first_mismatch = Some((i, *h, d));
        }
    }
    if host.len() != device.predictions.len() && c.first_mismatch.is_none() {
        c.first_mismatch = Some((
            n,
            host.get(n).copied().unwrap_or(ImageResult {
                class: usize::MAX,
                spikes: 0,
                synops: 0,
            }),
            ImageResult {
                class: usize::MAX,
                spikes: 0,
                synops: 0,
            },
        ));
    }
    c
}

/// Measured against estimated use of one region.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionError {
    /// Region name.
    pub region: String,
    /// Bytes in the built image (stack reserve included).
    pub measured: u64,
    /// Bytes the memory model estimated.
    pub estimated: u64,
    /// `(estimated - measured) / measured`, percent (positive: the model overestimates).
    pub error_pct: f64,
}

/// Name of the extra row of [`estimate_error`] that sums every RAM region.
pub const RAM_TOTAL: &str = "ram-total";

fn region_error(region: &str, measured: u64, estimated: u64) -> RegionError {
    RegionError {
        region: region.to_string(),
        measured,
        estimated,
        error_pct: match (measured, estimated) {
            (0, 0) => 0.0,
            (0, _) => f64::INFINITY,
            _ => 100.0 * (estimated as f64 - measured as f64) / measured as f64,
        },
    }
}

/// The memory model's error per region against a build, then one [`RAM_TOTAL`] row
/// over all data regions (placement aside: the model may put a buffer in CCM that the
/// build keeps in SRAM).
pub fn estimate_error(build: &BuildReport, estimate: &Estimate) -> Vec<RegionError> {
    let mut rows: Vec<RegionError> = build
        .regions
        .iter()
        .filter_map(|r| {
            Some(region_error(
                &r.name,
                r.used,
                estimate.region(&r.name)?.used,
            ))
        })
        .collect();
    let estimated_ram = estimate
        .regions
        .iter()
        .filter(|r| r.kind.holds_data())
        .map(|r| r.used)
        .sum();
    rows.push(region_error(RAM_TOTAL, build.ram_bytes(), estimated_ram));
    rows
}

/// Validates a generated crate with its own test set (`testset.bin`, `host-results.txt`
/// written by [`write_test_data`]) on an emulated board, on the first `samples` images.
pub fn validate_dir(
    dir: &Path,
    elf: &Path,
    board: &Profile,
    targets: &Targets,
    samples: Option<usize>,
    timeout: Duration,
) -> Result<(DeviceRun, Comparison), BoardAppError> {
    validate_dir_with(dir, elf, board, targets, samples, timeout, None)
}

/// [`validate_dir`] on any microcontroller board: emulated ones in QEMU, real ones through
/// `probe-rs run` (on `probe`, if given) with the test set served by semihosting, as
/// QEMU serves it.
pub fn validate_dir_with(
    dir: &Path,
    elf: &Path,
    board: &Profile,
    targets: &Targets,
    samples: Option<usize>,
    timeout: Duration,
    probe: Option<String>,
) -> Result<(DeviceRun, Comparison), BoardAppError> {
    let set = TestSet::read(&dir.join(TESTSET_FILE))?;
    let set = samples.map_or(set.clone(), |n| set.take(n));
    let host = read_host_results(dir)?;
    let run = if board.is_emulated() {
        run_qemu(elf, board, targets, &set, timeout)?
    } else {
        let work = tempdir(&board.name)?;
        let file = work.join(TESTSET_FILE);
        set.write(&file)?;
        let options = super::flash::FlashOptions {
            dry_run: false,
            probe,
            semihosting_testset: Some(file),
        };
        let result = super::flash::flash(elf, board, set.len(), &options);
        let _ = std::fs::remove_dir_all(&work);
        match result? {
            super::flash::FlashOutcome::Ran {
                output, seconds, ..
            } => DeviceRun::from_output(output, seconds),
            super::flash::FlashOutcome::DryRun { .. } => unreachable!("dry_run is false"),
        }
    };
    let cmp = compare(&host[..set.len().min(host.len())], &run);
    Ok((run, cmp))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the `defmt` build, probe-rs interleaves the decoded logs with the semihosting
    /// lines: the protocol still parses, and the logs come apart.
    #[test]
    fn defmt_logs_pass_through_beside_the_protocol() {
        let text = "CLOCK 216000000 pll\n\
                    [INFO ] clock 216000000 Hz (pll) (spikenas_app src/log.rs:15)\n\
                    SPIKENAS 1 64\n\
                    R 0 3 120 4000 3 5000\n\
                    [INFO ] image 0: class 3 (label 3), 120 spikes, 4000 synops, 5000 cycles\n\
                    DONE 1 1\n\
                    [INFO ] done: 1 of 1 images correct\n";
        let out = parse_output(text, 1).unwrap();
        assert_eq!(
            (out.results.len(), out.correct, &out.cycles[..]),
            (1, 1, &[5000][..])
        );
        let log = log_lines(text);
        assert_eq!(log.len(), 3, "{log:?}");
        assert!(log.iter().all(|l| l.starts_with("[INFO ]")), "{log:?}");
        assert!(log_lines("R 0 1 2 3 4\nDONE 1 0\n\n").is_empty());
    }

    #[test]
    fn parses_the_protocol_and_its_failures() {
        let text = "SPIKENAS 2 64\nR 0 3 120 4000 3\nR 1 1 99 3500 2\nDONE 2 1\n";
        let out = parse_output(text, 2).unwrap();
        let (r, correct) = (&out.results, out.correct);
        assert_eq!(correct, 1);
        assert!(out.cycles.is_empty() && out.clock.is_none());
        // A real board adds its clock and the cycles of every image.
        let text = "CLOCK 216000000 pll\nR 0 3 120 4000 3 5000\nR 1 1 99 3500 2 4000\nDONE 2 1\n";
        let out = parse_output(text, 2).unwrap();
        assert_eq!(out.cycles, [5000, 4000]);
        assert_eq!(
            out.clock.as_ref().map(|c| (c.hz, c.how.as_str())),
            Some((216_000_000, "pll"))
        );
        let run = DeviceRun::from_output(out, 1.0);
        assert!(
            run.timing_line(1)
                .contains("cycles/inference 4500, 0.021 ms"),
            "{}",
            run.timing_line(1)
        );
        assert!(parse_output("CLOCK x\nDONE 0 0\n", 0)
            .unwrap_err()
            .contains("malformed"));
        assert!(parse_output("R 0 1 2 3 4 9\nR 1 1 2 3 4\nDONE 2 0\n", 2)
            .unwrap_err()
            .contains("cycles for 1 of 2"));
        assert_eq!(
            r[1],
            ImageResult {
                class: 1,
                spikes: 99,
                synops: 3500
            }
        );
        assert!(parse_output(text, 3).unwrap_err().contains("expected 3"));
        assert!(parse_output("R 0 1 2 3 4\n", 1)
            .unwrap_err()
            .contains("never printed DONE"));
        let err = parse_output("ERROR HardFault at pc 0x0\n", 1).unwrap_err();
        assert!(err.contains("HardFault"));
        assert!(parse_output("R 1 1 2 3 4\nDONE 1 0\n", 1)
            .unwrap_err()
            .contains("out of order"));
    }

    #[test]
    fn compare_finds_the_first_mismatch() {
        let host = vec![
            ImageResult {
                class: 1,
                spikes: 10,
                synops: 100,
            };
            3
        ];
        let mut dev = DeviceRun {
            predictions: vec![1, 1, 2],
            spikes: vec![10, 11, 10],
            synops: vec![100, 100, 100],
            instructions_per_inference: vec![400, 400, 400],
            cycles_per_inference: Vec::new(),
            clock: None,
            correct: 0,
            seconds: 0.0,
        };
        let c = compare(&host, &dev);
        assert_eq!((c.same_class, c.same_spikes, c.same_synops), (2, 2, 3));
        assert_eq!(c.first_mismatch.unwrap().0, 1);
        assert!(!c.all_agree());
        dev.predictions[2] = 1;
        dev.spikes[1] = 10;
        assert!(compare(&host, &dev).all_agree());
        assert_eq!(dev.instructions_per_synop(), 4.0);
    }
}
