//! End to end on the host: for every board profile, the search returns an architecture
//! whose memory estimate fits every region; an impossible budget says what the smallest
//! candidate needs; the main job writes its results atomically and refuses to overwrite.

use std::time::Duration;

use candle_core::Device;
use spikenas_host::boards::Catalog;
use spikenas_host::data::input_shape;
use spikenas_host::data::LoadOptions;
use spikenas_host::jobs::search::{self, search_on, SearchJob};
use spikenas_host::memory;
use spikenas_host::train::TrainConfig;

use crate::common::{digits_search_job, fresh_temp_dir, load, quiet_training};

/// A 5-second search on 300 training and 100 test digits for `board`, with a latency
/// budget of 1,000 ms.
fn job(board: &str, catalog: &Catalog) -> SearchJob {
    let load = LoadOptions {
        max_train: Some(300),
        max_test: Some(100),
        ..Default::default()
    };
    // No training, but a search chosen for the recipe fitted to the digits.
    SearchJob {
        fit: search::RecipeFit::ALL,
        ..digits_search_job(catalog, board, load, Duration::from_secs(5), 1000.0)
    }
}

#[test]
fn every_board_gets_an_architecture_that_fits() {
    let catalog = Catalog::discover().unwrap();
    let names: Vec<String> = catalog.names().into_iter().map(str::to_string).collect();
    assert!(names.len() >= 8, "{names:?}");
    let data = load(&job(&names[0], &catalog));
    let input = input_shape(&data);
    for name in names {
        let job = job(&name, &catalog);
        let out = search_on(&data, &job, &Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        let estimate = memory::estimate(&out.best, &input, &job.board, &job.targets);
        assert!(
            estimate.fits,
            "{name}: {} does not fit:\n{}",
            out.best,
            estimate.render()
        );
        for r in &estimate.regions {
            assert!(r.used <= r.capacity, "{name}: region {} over", r.name);
        }
        assert!(out.feasible >= 1 && out.best_fit.fits);
    }
}

#[test]
fn impossible_budget_names_the_smallest_need() {
    let catalog = Catalog::discover().unwrap();
    let mut job = job("microbit", &catalog);
    // The 1x8x8 digits fit the 16 KB micro:bit, but no network runs in 1 us: the error
    // names the fastest candidate and what it needs, and points at --latency-ms.
    job.search.latency_ms = Some(0.001);
    let data = load(&job);
    let e = search_on(&data, &job, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("microbit"), "{e}");
    assert!(e.contains("smallest candidate"), "{e}");
    assert!(e.contains("--latency-ms"), "{e}");
}

#[test]
fn main_job_writes_reports_and_refuses_to_overwrite() {
    let catalog = Catalog::discover().unwrap();
    let mut job = job("netduinoplus2", &catalog);
    // A training time the search must respect, and most of it for the short trainings
    // of this tiny job. 30 s: the cost calibration times training steps on this machine,
    // and with the other end-to-end tests building and training beside it, 15 s once left
    // no candidate trainable (`NothingTrainable`).
    job.train = Some(TrainConfig {
        batch_size: 16,
        time_budget: Some(Duration::from_secs(30)),
        ..quiet_training(20)
    });
    job.search.search_fraction = 0.9;
    job.search.time_budget = Duration::from_secs(20);
    let out = fresh_temp_dir("e2e-search");
    let run = search::run(&job, &Device::Cpu, &out, false).unwrap();
    for f in [
        "report.json",
        "report.md",
        "candidates.svg",
        "checkpoint.safetensors",
    ] {
        assert!(run.dir.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(md.contains(&run.report.search.best.to_string()));
    // The Pareto view lists what the search trained, the pick marked.
    let s = &run.report.search;
    assert!(
        md.contains("Pareto view") && md.contains("**chosen**"),
        "{md}"
    );
    assert!(
        s.candidates.iter().all(|c| !c.proxy.is_empty()),
        "{:?}",
        s.candidates
    );
    assert!(s.candidates.len() >= 2 && s.feasible >= s.candidates.len());
    let e = search::run(&job, &Device::Cpu, &out, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already exists") && e.contains("--force"), "{e}");
    std::fs::remove_dir_all(&out).unwrap();
}
