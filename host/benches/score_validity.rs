//! Score validity: Kendall tau between the training-free score and the trained
//! accuracy over random architectures, all trained with the same short recipe.
//!
//! `cargo bench -p spikenas-host --bench score_validity -- [ARCHS] [MAX_TRAIN] [EPOCHS] [DATASET]`
//! (defaults 20, 6000, 2, fashion-mnist). Cells are scored and trained in the search's
//! proxy configuration, exactly as the search ranks them.

use candle_core::Device;
use spikenas_host::arch::Arch;
use spikenas_host::data::{self, LoadOptions, Source};
use spikenas_host::kernels::ConvBackend;
use spikenas_host::pipeline::score_batches;
use spikenas_host::rng::Rng;
use spikenas_host::score::kendall_tau;
use spikenas_host::search::space::SearchSpace;
use spikenas_host::search::{proxy_arch, random_cell, Scorer};
use spikenas_host::session::input_shape;
use spikenas_host::snn::lif::LifParams;
use spikenas_host::snn::Network;
use spikenas_host::train::{self, TrainConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().map_or(Ok(20), |s| s.parse())?;
    let max_train: usize = args.get(1).map_or(Ok(6000), |s| s.parse())?;
    let epochs: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let source: Source = args
        .get(3)
        .map_or(Ok(Source::FashionMnist), |s| s.parse())?;
    let device = Device::Cpu;
    let data = data::load(
        &source,
        &LoadOptions {
            max_train: Some(max_train),
            ..Default::default()
        },
    )?;
    let input = input_shape(&data);
    let space = SearchSpace::shipped();
    let batches = score_batches(&data, 64, 2, 0, &device)?;
    let mut scorer = Scorer::new(&batches, input, device.clone(), 0, ConvBackend::default());
    let mut rng = Rng::new(2024);
    let mut seen = std::collections::HashSet::new();
    let (mut scores, mut accs) = (Vec::new(), Vec::new());
    let started = std::time::Instant::now();
    while scores.len() < n {
        let cell = random_cell(&mut rng);
        if !seen.insert(cell) {
            continue;
        }
        let arch: Arch = proxy_arch(cell, &space, &input);
        let score = scorer.score(&arch)?;
        if !score.is_finite() {
            continue;
        }
        let (net, vars) = Network::init(arch, input, LifParams::default(), &device, 0)?;
        let cfg = TrainConfig {
            epochs,
            progress: false,
            ..Default::default()
        };
        let report = train::train(&net, &vars, &data, &device, &cfg)?;
        println!(
            "{arch}  score {score:8.3}  test accuracy {:.2}%",
            100.0 * report.test_accuracy
        );
        scores.push(score);
        accs.push(report.test_accuracy as f64);
    }
    println!(
        "Kendall tau (score vs trained accuracy) over {n} architectures on {source}: {:.3}  ({:.0} s)",
        kendall_tau(&scores, &accs),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
