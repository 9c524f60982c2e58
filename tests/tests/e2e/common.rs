//! Helpers the end-to-end tests share: the workspace and its Python, boards, work
//! folders, synthetic networks and their firmware crates, short search jobs and trainings.
//! Tests may panic here: a failed step names itself in the panic message.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spikenas_host::arch::{Arch, InputShape};
use spikenas_host::board_app::build::{self, BuildOptions, BuildReport};
use spikenas_host::board_app::on_device::{self, estimate_error, DeviceRun, RegionError};
use spikenas_host::board_app::synthetic::SyntheticNetwork;
use spikenas_host::board_app::{self, GeneratedCrate, TestSet};
use spikenas_host::boards::{Catalog, Profile};
use spikenas_host::data::{self, Dataset, LoadOptions, Source};
use spikenas_host::jobs::search::SearchJob;
use spikenas_host::memory::Estimate;
use spikenas_host::search::space::SearchSpace;
use spikenas_host::search::SearchConfig;
use spikenas_host::train::TrainConfig;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project's Python: `SPIKENAS_PYTHON` if set, else the virtual environment that
/// `scripts/setup` makes in `.venv` (with `nir`, `numpy`, `safetensors`). Panics with
/// the fix when it is missing: the Python checks are part of the tests, never skipped.
pub fn python() -> PathBuf {
    let path = std::env::var_os("SPIKENAS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "no Python client at {}: run scripts/setup (it makes .venv with nir, numpy and \
         safetensors), or set SPIKENAS_PYTHON to an interpreter that has them",
        path.display()
    );
    path
}

/// Runs the project's Python with `args`; panics with its stderr unless it succeeds,
/// and returns its stdout.
pub fn run_python<S: AsRef<OsStr>>(args: &[S]) -> String {
    let python = python();
    let out = Command::new(&python)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The board catalogue in effect ([`Catalog::discover`]) and a copy of the profile
/// of the board `name`.
pub fn load_board(name: &str) -> (Catalog, Profile) {
    let catalog = Catalog::discover().unwrap();
    let board = catalog.board(name).unwrap().clone();
    (catalog, board)
}

/// The tests' temporary folder in `target/` (`target/tmp`), which Cargo keeps between
/// runs.
pub fn target_tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// The folder `group/name` in [`target_tmp`]. It is kept between runs, so that a
/// firmware crate generated there again reuses its build.
pub fn work_dir(group: &str, name: &str) -> PathBuf {
    target_tmp().join(group).join(name)
}

/// `spikenas-<name>-<process id>` in the system's temporary folder, outside the
/// checkout, with whatever an earlier run left there removed. Not created: the test
/// creates it, and removes it when it passes.
pub fn fresh_temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spikenas-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A synthetic network (deterministic pseudo-random weights from `seed`) of `arch` on
/// `input` (`CxHxW`, 10 classes), with the architecture as parsed and the input shape.
pub fn synthetic(arch: &str, input: &str, seed: u64) -> (Arch, InputShape, SyntheticNetwork) {
    let arch: Arch = arch.parse().unwrap();
    let input = InputShape::parse(input, 10).unwrap();
    let net = SyntheticNetwork::new(&arch, &input, seed).unwrap();
    (arch, input, net)
}

/// Generates the board application of `net` for `board` into `dir`.
pub fn generate(
    net: &SyntheticNetwork,
    board: &Profile,
    catalog: &Catalog,
    dir: &Path,
) -> GeneratedCrate {
    net.with_network(|n| board_app::generate(n, board, catalog.targets(), dir))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Builds the firmware crate in `dir` for `board` with `options`.
pub fn build(
    dir: &Path,
    board: &Profile,
    catalog: &Catalog,
    options: &BuildOptions,
) -> BuildReport {
    build::build(dir, board, catalog.targets(), options).unwrap_or_else(|e| panic!("{e}"))
}

/// [`build`] with the default options (semihosting, no defmt).
pub fn build_plain(dir: &Path, board: &Profile, catalog: &Catalog) -> BuildReport {
    build(dir, board, catalog, &BuildOptions::default())
}

/// Runs `elf` on `board` in QEMU on every image of `set`, within `timeout`.
pub fn run_qemu(
    elf: &Path,
    board: &Profile,
    catalog: &Catalog,
    set: &TestSet,
    timeout: Duration,
) -> DeviceRun {
    on_device::run_qemu(elf, board, catalog.targets(), set, timeout)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Prints the memory model's error per region of the build `report` and returns the rows.
pub fn print_estimate_error(report: &BuildReport, estimate: &Estimate) -> Vec<RegionError> {
    let rows = estimate_error(report, estimate);
    for e in &rows {
        println!(
            "memory model {}: estimated {} measured {} error {:+.1}%",
            e.region, e.estimated, e.measured, e.error_pct
        );
    }
    rows
}

/// A search job on the digits for the board `board` of `catalog` in the shipped search
/// space: `load` of the data, `time_budget` and `latency_ms` for the search, scored in
/// batches of 16, no progress output, no training, the default recipe fit.
pub fn digits_search_job(
    catalog: &Catalog,
    board: &str,
    load: LoadOptions,
    time_budget: Duration,
    latency_ms: f64,
) -> SearchJob {
    SearchJob {
        targets: catalog.targets().clone(),
        source: Source::Digits,
        load,
        search: SearchConfig {
            time_budget,
            latency_ms: Some(latency_ms),
            score_batch: 16,
            progress: false,
            ..Default::default()
        },
        space: SearchSpace::shipped(),
        board: catalog.board(board).unwrap().clone(),
        train: None,
        fit: Default::default(),
    }
}

/// The dataset of `job`, loaded as it says.
pub fn load(job: &SearchJob) -> Dataset {
    data::load(&job.source, &job.load).unwrap()
}

/// `max_train` Fashion-MNIST training images and 1,000 test images.
pub fn fashion(max_train: usize) -> LoadOptions {
    LoadOptions {
        max_train: Some(max_train),
        max_test: Some(1000),
        ..Default::default()
    }
}

/// A training of `epochs` epochs with the default recipe and no progress output.
pub fn quiet_training(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        progress: false,
        ..Default::default()
    }
}
