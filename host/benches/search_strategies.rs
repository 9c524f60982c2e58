//! SpikeNAS against the SNASNet baseline on the same data, seed and machine, in one run:
//! search wall time (ratio) and the accuracy of each pick after the same training recipe.
//!
//! `cargo bench -p spikenas-host --bench search_strategies -- [BOARD] [SAMPLES] [EPOCHS] [DATASET]`
//! (defaults netduinoplus2, 5000, 3, fashion-mnist). The SNASNet baseline scores its
//! random cells in the macro configuration SpikeNAS deployed, so both picks are the
//! same size and only the search differs.

use std::time::Duration;

use candle_core::Device;
use spikenas_host::boards::Catalog;
use spikenas_host::data::{self, LoadOptions, Source};
use spikenas_host::pipeline::{max_macs_for_latency, search_on, SearchJob};
use spikenas_host::search::space::SearchSpace;
use spikenas_host::search::{SearchConfig, Strategy};
use spikenas_host::session::input_shape;
use spikenas_host::snn::lif::LifParams;
use spikenas_host::snn::Network;
use spikenas_host::train::{self, TrainConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let board_name = args
        .first()
        .cloned()
        .unwrap_or_else(|| "netduinoplus2".into());
    let samples: usize = args.get(1).map_or(Ok(5000), |s| s.parse())?;
    let epochs: usize = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let source: Source = args
        .get(3)
        .map_or(Ok(Source::FashionMnist), |s| s.parse())?;
    let catalog = Catalog::discover()?;
    let board = catalog.board(&board_name)?.clone();
    let device = Device::Cpu;
    let data = data::load(&source, &LoadOptions::default())?;
    let space = SearchSpace::shipped();
    let mut job = SearchJob {
        board: board.clone(),
        targets: catalog.targets().clone(),
        source: source.clone(),
        load: LoadOptions::default(),
        space: space.clone(),
        search: SearchConfig {
            time_budget: Duration::from_secs(24 * 3600),
            max_macs: Some(max_macs_for_latency(&board, space.macros.timesteps, 1000.0)),
            progress: false,
            ..Default::default()
        },
        train: None,
    };
    let ours = search_on(&data, &job, &device)?;
    println!(
        "spikenas: {} in {:.1} s ({} scored, {} canonical cells, {} pruned by memory)",
        ours.best, ours.seconds, ours.scored, ours.canonical_cells, ours.pruned_by_memory
    );
    job.search.strategy = Strategy::Snasnet;
    job.search.samples = samples;
    job.search.baseline_macro = ours.best;
    job.search.progress = true;
    let base = search_on(&data, &job, &device)?;
    println!(
        "snasnet:  {} in {:.1} s ({} scored)",
        base.best, base.seconds, base.scored
    );
    println!(
        "search speed-up (snasnet time / spikenas time): {:.1}x",
        base.seconds / ours.seconds.max(1e-9)
    );
    let input = input_shape(&data);
    for (name, arch) in [("spikenas", ours.best), ("snasnet", base.best)] {
        let (net, vars) = Network::init(arch, input, LifParams::default(), &device, 0)?;
        let cfg = TrainConfig {
            epochs,
            progress: false,
            ..Default::default()
        };
        let r = train::train(&net, &vars, &data, &device, &cfg)?;
        println!(
            "{name} pick {arch}: test accuracy {:.2}% after {epochs} epochs",
            100.0 * r.test_accuracy
        );
    }
    Ok(())
}
