//! Search quality: does the search find better networks than the alternatives a user
//! has? Under one board budget and one training recipe (same epochs, seeds and data),
//! this trains and reports the test accuracy (float, and integer through the firmware
//! crate's kernels) of:
//! - the SpikeNAS pick (the search run exactly as the main job runs it);
//! - the previous search's pick (`--strategy largest`);
//! - the SNASNet pick (5,000 random cells scored in the hand-picked macro configuration,
//!   best that fits);
//! - the README's hand-picked network, where it fits;
//! - architectures drawn uniformly at random from the feasible space of the board
//!   (memory, latency, detail, training time: the set SpikeNAS ranks);
//!
//! and prints the pick's rank among the random ones, and Kendall tau and Spearman rho
//! (with 95% bootstrap intervals) of every ranking signal against trained accuracy.
//!
//! ```text
//! cargo bench -p spikenas-host --bench search_quality -- [--board netduinoplus2]
//!     [--dataset fashion-mnist] [--random 20] [--seeds 2] [--epochs 3]
//!     [--max-train 12000] [--max-test 5000] [--samples 5000] [--main-train-time 900]
//!     [--draw-seed 1] [--search-fraction 0.08] [--search-runs 3] [--out FILE.md]
//!     [--arch ARCH ...]
//! ```
//!
//! The SpikeNAS search runs `--search-runs` times: the first run's pick is the one
//! trained, the median of the runs' times is the one compared with the training time and
//! with SNASNet (one time on a shared 2-core machine is noise), and every run's time and
//! pick is listed.
//!
//! `--max-train 0` and `--max-test 0` mean the whole split. Trained results are cached
//! in the workspace's `target/search-quality-cache.json` (keyed by dataset, recipe, seed and
//! architecture), so a rerun after a change to the search trains only new picks. The search itself sees the
//! whole dataset and the main job's recipe (default epochs, `--main-train-time`), as
//! `scripts/run` gives it; the recipe above is the benchmark's, the same for everyone.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use candle_core::Device;
use spikenas_host::arch::Arch;
use spikenas_host::boards::Catalog;
use spikenas_host::data::{self, input_shape, Dataset, LoadOptions, Source};
use spikenas_host::jobs::search::{quantize_winner, search_config, search_on, SearchJob};
use spikenas_host::kernels::ConvBackend;
use spikenas_host::rng::Rng;
use spikenas_host::search::cells;
use spikenas_host::search::cost::{self, CostModel};
use spikenas_host::search::feasible::{fit_of, Feasible};
use spikenas_host::search::fidelity::{Looks, Proxy, ProxyData};
use spikenas_host::search::halving::{
    self, LOOK_AT_EIGHTHS, LOOK_EVAL_IMAGES, MAX_EVAL_IMAGES, MIN_EVAL_IMAGES,
};
use spikenas_host::search::score::score_batches;
use spikenas_host::search::space::{macs, SearchSpace};
use spikenas_host::search::{Scorer, SearchConfig, Strategy, HAND_PICKED};
use spikenas_host::snn::lif::LifParams;
use spikenas_host::snn::Network;
use spikenas_host::stats::{bootstrap_interval, kendall_tau, spearman_rho};
use spikenas_host::train::{self, TrainConfig};

struct Args {
    board: String,
    dataset: Source,
    random: usize,
    seeds: u64,
    epochs: usize,
    max_train: Option<usize>,
    max_test: Option<usize>,
    samples: usize,
    main_train_time: u64,
    draw_seed: u64,
    /// SpikeNAS's share of the training time (`search --search-fraction`).
    search_fraction: f64,
    /// Times the SpikeNAS search runs (the median time counts).
    search_runs: usize,
    out: Option<std::path::PathBuf>,
    /// Only train these architectures with the recipe (no searches, no draws).
    only: Vec<Arch>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        board: "netduinoplus2".into(),
        dataset: Source::FashionMnist,
        random: 20,
        seeds: 2,
        epochs: 3,
        max_train: Some(12_000),
        max_test: Some(5_000),
        samples: 5000,
        main_train_time: 900,
        draw_seed: 1,
        search_fraction: spikenas_host::search::DEFAULT_SEARCH_FRACTION,
        search_runs: 3,
        out: None,
        only: Vec::new(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let key = argv[i].as_str();
        if key == "--bench" {
            i += 1;
            continue;
        }
        let value = argv
            .get(i + 1)
            .with_context(|| format!("{key} needs a value"))?;
        let limit = |v: &str| -> anyhow::Result<Option<usize>> {
            let n: usize = v.parse()?;
            Ok((n > 0).then_some(n))
        };
        match key {
            "--board" => a.board = value.clone(),
            "--dataset" => a.dataset = value.parse().map_err(anyhow::Error::msg)?,
            "--random" => a.random = value.parse()?,
            "--seeds" => a.seeds = value.parse()?,
            "--epochs" => a.epochs = value.parse()?,
            "--max-train" => a.max_train = limit(value)?,
            "--max-test" => a.max_test = limit(value)?,
            "--samples" => a.samples = value.parse()?,
            "--main-train-time" => a.main_train_time = value.parse()?,
            "--draw-seed" => a.draw_seed = value.parse()?,
            "--search-fraction" => a.search_fraction = value.parse()?,
            "--search-runs" => a.search_runs = value.parse::<usize>()?.max(1),
            "--out" => a.out = Some(value.into()),
            "--arch" => a.only.push(value.parse().map_err(anyhow::Error::msg)?),
            _ => bail!("unknown argument {key}; see the doc comment of benches/search_quality.rs"),
        }
        i += 2;
    }
    if a.seeds == 0 || a.epochs == 0 || a.random < 2 {
        bail!("--seeds and --epochs must be at least 1 and --random at least 2");
    }
    Ok(a)
}

/// One architecture under test, with its signals and trained results.
struct Entry {
    name: String,
    arch: Arch,
    /// Signal name -> value.
    signals: HashMap<&'static str, f64>,
    /// (float, integer) test accuracy per seed.
    acc: Vec<(f64, f64)>,
    train_seconds: Vec<f64>,
}

impl Entry {
    fn new(name: impl Into<String>, arch: Arch) -> Self {
        Entry {
            name: name.into(),
            arch,
            signals: HashMap::new(),
            acc: Vec::new(),
            train_seconds: Vec::new(),
        }
    }
    fn mean_int(&self) -> f64 {
        self.acc.iter().map(|a| a.1).sum::<f64>() / self.acc.len().max(1) as f64
    }
    fn mean_float(&self) -> f64 {
        self.acc.iter().map(|a| a.0).sum::<f64>() / self.acc.len().max(1) as f64
    }
    fn spread_int(&self) -> f64 {
        let (lo, hi) = self
            .acc
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), a| {
                (l.min(a.1), h.max(a.1))
            });
        hi - lo
    }
}

const SIGNALS: [&str; 9] = [
    "proxy accuracy, rung 1",
    "proxy accuracy, rung 0",
    LOOK_SIGNALS[0],
    LOOK_SIGNALS[1],
    "proxy at T=1, rung 1",
    "proxy at T=1, rung 0",
    "log MACs",
    "SNASNet score",
    "est. training s",
];

/// The signals of the search's looks at a short training ([`LOOK_AT_EIGHTHS`]).
const LOOK_SIGNALS: [&str; 2] = ["rung 0 at 4/8 (look)", "rung 0 at 5/8 (look)"];

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let started = Instant::now();
    let device = Device::Cpu;
    if !args.only.is_empty() {
        return train_only(&args, &device);
    }
    let catalog = Catalog::discover()?;
    let board = catalog.board(&args.board)?.clone();
    let space = SearchSpace::shipped();
    let mut log = String::new();
    macro_rules! out {
        ($($t:tt)*) => {{
            let line = format!($($t)*);
            println!("{line}");
            let _ = writeln!(log, "{line}");
        }};
    }

    // The main job's search, on the whole dataset, as `scripts/run` runs it.
    let full = data::load(&args.dataset, &LoadOptions::default())?;
    let input = input_shape(&full);
    let mut job = SearchJob {
        board: board.clone(),
        targets: catalog.targets().clone(),
        source: args.dataset.clone(),
        load: LoadOptions::default(),
        space: space.clone(),
        search: SearchConfig {
            latency_ms: Some(1000.0),
            search_fraction: args.search_fraction,
            ..Default::default()
        },
        train: Some(TrainConfig {
            time_budget: Some(Duration::from_secs(args.main_train_time)),
            progress: false,
            ..Default::default()
        }),
        fit: spikenas_host::jobs::search::RecipeFit::ALL,
    };
    let main_cfg = search_config(&full, &job);
    let main_budget = main_cfg.train_budget.expect("a training recipe");
    let mut ours = search_on(&full, &job, &device)?;
    let mut runs = vec![(ours.seconds, ours.best)];
    job.search.progress = false;
    for _ in 1..args.search_runs {
        let again = search_on(&full, &job, &device)?;
        runs.push((again.seconds, again.best));
    }
    let mut times: Vec<f64> = runs.iter().map(|r| r.0).collect();
    times.sort_by(f64::total_cmp);
    ours.seconds = times[times.len() / 2];
    let model = ours
        .cost_model
        .context("SpikeNAS calibrates a cost model")?;
    job.search.strategy = Strategy::Largest;
    let largest = search_on(&full, &job, &device)?;
    let hand: Arch = HAND_PICKED.parse().map_err(anyhow::Error::msg)?;
    let hand = Arch {
        timesteps: space.macros.timesteps,
        ..hand
    };
    job.search.strategy = Strategy::Snasnet;
    job.search.samples = args.samples;
    job.search.baseline_macro = hand;
    job.search.time_budget = Duration::from_secs(24 * 3600);
    let snas = search_on(&full, &job, &device)?;

    out!(
        "# Search quality: {} on {} ({})\n",
        args.dataset,
        board.name,
        input_desc(&full)
    );
    out!(
        "Main job the searches chose for: {} epochs of {} images, {} s of training; search share {:.0}%.\n",
        main_cfg.recipe.epochs,
        full.train.len(),
        args.main_train_time,
        100.0 * main_cfg.search_fraction
    );
    out!("| search | pick | seconds | evaluations |\n|---|---|---|---|");
    for (name, o) in [
        ("SpikeNAS", &ours),
        ("largest (previous)", &largest),
        ("SNASNet", &snas),
    ] {
        out!(
            "| {name} | `{}` | {:.1} | {} |",
            o.best,
            o.seconds,
            o.scored
        );
    }
    // The main job's training time: its recipe for the pick at this machine's costs,
    // or the time budget where that is shorter.
    let main_train_s =
        (args.main_train_time as f64).min(model.seconds(&ours.best, &input, main_budget.images));
    let listed: Vec<String> = runs
        .iter()
        .map(|(s, a)| {
            if *a == ours.best {
                format!("{s:.2} s")
            } else {
                format!("{s:.2} s (picked `{a}`)")
            }
        })
        .collect();
    out!(
        "\nSpikeNAS search runs: {} (the median counts below; the first run's pick is trained).",
        listed.join(", ")
    );
    out!(
        "\nSpikeNAS search time: {:.1}% of the main job's training time ({:.0} s, estimated for the pick); {:.0}x faster than SNASNet's {} samples.\n",
        100.0 * ours.seconds / main_train_s,
        main_train_s,
        snas.seconds / ours.seconds.max(1e-9),
        args.samples
    );

    // The feasible space SpikeNAS ranks, with the same training-time filter.
    let cells = cells::enumerate(&space.ops, space.backward);
    let (b, t) = (&job.board, &job.targets);
    let check = |a: &Arch| fit_of(a, &input, b, t);
    let latency = spikenas_host::latency::Budget::for_board(b, t, input, main_cfg.latency_ms);
    let fits = Feasible::enumerate(&space, &cells, &input, &check, &latency);
    // The draws are filtered by training time with the cost model of the first run on
    // this board, dataset and training time (kept in the cache), so that reruns draw the
    // same networks whatever the timing noise of this run's calibration.
    let draw_key = format!("{}|{}|{}", board.name, args.dataset, args.main_train_time);
    let draw_model = Cache::draw_model(&draw_key, model)?;
    out!(
        "Draw filter's training cost: {} (this run's calibration: {}).\n",
        cost::describe(&draw_model, main_cfg.recipe.conv),
        cost::describe(&model, main_cfg.recipe.conv)
    );
    let mut feasible = fits.clone();
    feasible.restrict_to_trainable(&input, &draw_model, &main_budget, halving::TRAIN_MARGIN);
    out!(
        "Feasible space: {} candidates ({} over memory, {} over latency, {} too slow to train in {} s).\n",
        feasible.candidates.len(),
        feasible.pruned_by_memory,
        feasible.pruned_by_compute,
        feasible.pruned_by_training,
        args.main_train_time
    );
    let trainable: std::collections::HashSet<Arch> =
        feasible.candidates.iter().map(|c| c.arch).collect();

    let mut entries = vec![
        Entry::new("SpikeNAS pick", ours.best),
        Entry::new("largest pick", largest.best),
        Entry::new("SNASNet pick", snas.best),
    ];
    if check(&hand).fits {
        entries.push(Entry::new("hand-picked", hand));
    } else {
        out!(
            "The hand-picked network `{hand}` does not fit {}.\n",
            board.name
        );
    }
    let mut rng = Rng::new(args.draw_seed);
    let mut drawn = std::collections::HashSet::new();
    let want = args.random.min(feasible.candidates.len());
    // Drawn from the memory-feasible list and kept when trainable, so that the draws do
    // not move with the timing noise of the cost calibration.
    while drawn.len() < want {
        let c = &fits.candidates[rng.below(fits.candidates.len())];
        if trainable.contains(&c.arch) && drawn.insert(c.arch) {
            entries.push(Entry::new(format!("random {}", drawn.len()), c.arch));
        }
    }

    // Signals: the search's proxy at both rungs (same data, images and seed as the
    // search), MACs, SNASNet's score in the deployed configuration, training cost.
    let rung_images: Vec<usize> = ours
        .candidates
        .iter()
        .find(|c| c.arch == ours.best.to_string())
        .map(|c| c.proxy.iter().map(|p| p.images).collect())
        .unwrap_or_default();
    let proxy_data = rung_images
        .last()
        .map(|&n| ProxyData::new(&full, n, MIN_EVAL_IMAGES, MAX_EVAL_IMAGES, main_cfg.seed));
    let batches = score_batches(&full, 64, 2, 0, &device)?;
    let scorer = Scorer::new(&batches, input, device.clone(), 0, ConvBackend::default());
    for e in entries.iter_mut() {
        e.signals
            .insert("log MACs", (macs(&e.arch, &input) as f64).ln());
        e.signals.insert(
            "est. training s",
            model.seconds(&e.arch, &input, main_budget.images),
        );
        e.signals.insert(
            "SNASNet score",
            scorer.evaluate(&e.arch).unwrap_or(f64::NAN),
        );
        if let Some(pd) = &proxy_data {
            let proxy = Proxy {
                input,
                data: pd,
                recipe: spikenas_host::search::fidelity::proxy_recipe(&main_cfg.recipe),
                device: device.clone(),
            };
            // At the network's own timesteps and at one (a cheaper proxy).
            for (t, keys) in [
                (
                    e.arch.timesteps,
                    ["proxy accuracy, rung 0", "proxy accuracy, rung 1"],
                ),
                (1, ["proxy at T=1, rung 0", "proxy at T=1, rung 1"]),
            ] {
                let arch = Arch {
                    timesteps: t,
                    ..e.arch
                };
                for (rung, (&n, key)) in rung_images.iter().zip(keys).enumerate() {
                    // The looks the search takes (never stopping here), at the
                    // network's own timesteps in rung 0.
                    let looked = rung == 0 && t == e.arch.timesteps;
                    let never = |_: usize, _: f64| false;
                    let looks = Looks {
                        at: LOOK_AT_EIGHTHS.iter().map(|k| n * k / 8).collect(),
                        eval_images: LOOK_EVAL_IMAGES,
                        stop: &never,
                    };
                    let r = if looked {
                        proxy.train_with_looks(&arch, n, main_cfg.seed, &looks)?
                    } else {
                        proxy.train(&arch, n, main_cfg.seed)?
                    };
                    e.signals.insert(key, r.accuracy);
                    for (k, acc) in r.looks.iter().enumerate() {
                        e.signals.insert(LOOK_SIGNALS[k], *acc);
                    }
                }
            }
        }
        eprintln!("signals of {} ({}) done", e.name, e.arch);
    }

    // The benchmark's recipe, the same for everyone.
    let data = recipe_data(&args)?;
    let mut cache = Cache::open();
    for e in entries.iter_mut() {
        for seed in 0..args.seeds {
            let (acc, secs) = cache.train(&args, &e.arch, &data, seed, &device)?;
            eprintln!(
                "{} seed {seed}: float {:.2}% int {:.2}% ({:.0} s)  {}",
                e.name,
                100.0 * acc.0,
                100.0 * acc.1,
                secs,
                e.arch
            );
            e.acc.push(acc);
            e.train_seconds.push(secs);
        }
    }

    let recipe = bench_recipe(&data, 0, args.epochs);
    out!(
        "\nRecipe: {} epochs on {} training images (batch {}, AdamW at {}, weight decay {}, augmentation {:?}), tested on {} images, seeds 0..{}; integer accuracy through the firmware crate's kernels.\n",
        args.epochs,
        data.train.len(),
        recipe.batch_size,
        recipe.lr,
        recipe.weight_decay,
        recipe.augment,
        data.test.len(),
        args.seeds
    );
    out!("| name | architecture | int acc (mean) | spread | float acc | train s | proxy r1 | proxy r0 | T=1 r1 | T=1 r0 | log MACs | SNASNet score |");
    out!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for e in &entries {
        let sig = |k: &str| e.signals.get(k).map_or("-".into(), |v| format!("{v:.3}"));
        out!(
            "| {} | `{}` | {:.2}% | {:.2} | {:.2}% | {:.0} | {} | {} | {} | {} | {} | {} |",
            e.name,
            e.arch,
            100.0 * e.mean_int(),
            100.0 * e.spread_int(),
            100.0 * e.mean_float(),
            e.train_seconds.iter().sum::<f64>() / e.train_seconds.len().max(1) as f64,
            sig("proxy accuracy, rung 1"),
            sig("proxy accuracy, rung 0"),
            sig("proxy at T=1, rung 1"),
            sig("proxy at T=1, rung 0"),
            sig("log MACs"),
            sig("SNASNet score")
        );
    }

    let random: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.name.starts_with("random"))
        .collect();
    let best_random = random
        .iter()
        .map(|e| e.mean_int())
        .fold(f64::NEG_INFINITY, f64::max);
    out!("");
    for e in entries.iter().filter(|e| !e.name.starts_with("random")) {
        let better = random
            .iter()
            .filter(|r| r.mean_int() > e.mean_int())
            .count();
        out!(
            "{}: rank {} of {} random architectures (top {:.0}%), {:+.2} points vs the best random, {:+.2} vs the random mean",
            e.name,
            better + 1,
            random.len() + 1,
            100.0 * (better + 1) as f64 / (random.len() + 1) as f64,
            100.0 * (e.mean_int() - best_random),
            100.0 * (e.mean_int() - random.iter().map(|r| r.mean_int()).sum::<f64>() / random.len() as f64)
        );
    }
    let pick = &entries[0];
    // The search's share measured against the pick's real training speed, in this run:
    // one more training of the pick with the benchmark's recipe (seed 0, not cached),
    // right after the search runs' timing would be ideal; it runs here, after the other
    // trainings, and its accuracy must equal the cached seed-0 result (training is
    // bit-deterministic). Scaled to the main job's images. (The calibrated estimate
    // above takes the fastest of a few steps; trainings run slower than that.)
    let trained_images = (args.epochs * data.train.len()) as f64;
    let (again, pick_seconds) = train_once(&pick.arch, &data, 0, args.epochs, &device)?;
    if let Some(first) = pick.acc.first() {
        if *first != again {
            out!(
                "The pick's timed training gave {:.2}% where its cached seed-0 training gave {:.2}%: not bit-deterministic here.",
                100.0 * again.1,
                100.0 * first.1
            );
        }
    }
    if pick_seconds > 0.0 {
        let ips = trained_images / pick_seconds;
        let main_s = (args.main_train_time as f64).min(main_budget.images as f64 / ips);
        out!(
            "SpikeNAS search time against the pick's training timed in this run: {:.1}% of {:.1} s ({} images at {:.0} images/s: its {:.1} s training of {} images scaled).",
            100.0 * ours.seconds / main_s,
            main_s,
            main_budget.images,
            ips,
            pick_seconds,
            trained_images
        );
    }
    for other in entries[1..]
        .iter()
        .filter(|e| !e.name.starts_with("random"))
    {
        out!(
            "SpikeNAS pick vs {}: {:+.2} points (integer, mean over seeds)",
            other.name,
            100.0 * (pick.mean_int() - other.mean_int())
        );
    }

    out!(
        "\nRank correlation with trained integer accuracy over all {} architectures (95% bootstrap interval, 2,000 resamples):\n",
        entries.len()
    );
    out!("| signal | Kendall tau | interval | Spearman rho | interval |\n|---|---|---|---|---|");
    let acc: Vec<f64> = entries.iter().map(Entry::mean_int).collect();
    for key in SIGNALS {
        let pairs: Vec<(f64, f64)> = entries
            .iter()
            .zip(&acc)
            .filter_map(|(e, a)| {
                e.signals
                    .get(key)
                    .filter(|v| v.is_finite())
                    .map(|v| (*v, *a))
            })
            .collect();
        if pairs.len() < 3 {
            continue;
        }
        let (x, y): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
        let (tl, th) = bootstrap_interval(&x, &y, kendall_tau, 2000, 11);
        let (sl, sh) = bootstrap_interval(&x, &y, spearman_rho, 2000, 11);
        out!(
            "| {key} | {:.3} | [{tl:.3}, {th:.3}] | {:.3} | [{sl:.3}, {sh:.3}] |",
            kendall_tau(&x, &y),
            spearman_rho(&x, &y)
        );
    }
    // The looks stop a short training only far behind the best at the same look: what
    // would they stop here, judged against the best of all these networks (stricter
    // than the search, which judges against the best of its pool)?
    let mut by_acc: Vec<usize> = (0..entries.len()).collect();
    by_acc.sort_by(|&a, &b| acc[b].total_cmp(&acc[a]));
    for (k, key) in LOOK_SIGNALS.iter().enumerate() {
        let looks: Vec<Option<f64>> = entries
            .iter()
            .map(|e| e.signals.get(key).copied())
            .collect();
        let Some(best) = looks.iter().flatten().copied().reduce(f64::max) else {
            continue;
        };
        let stopped: Vec<usize> = (0..entries.len())
            .filter(|&i| {
                looks[i].is_some_and(|p| {
                    halving::look_stops(k, p, best, LOOK_EVAL_IMAGES, input.classes)
                })
            })
            .collect();
        let best_stopped = stopped
            .iter()
            .copied()
            .max_by(|&a, &b| acc[a].total_cmp(&acc[b]));
        out!(
            "
Look {} (at {}/8): it would stop {} of {} networks against the best look of all ({:.1}%){}",
            k + 1,
            LOOK_AT_EIGHTHS[k],
            stopped.len(),
            entries.len(),
            100.0 * best,
            best_stopped.map_or(".".into(), |i| format!(
                "; the best of them trains to {:.2}% (rank {} of {} by trained accuracy; the best network {:.2}%).",
                100.0 * acc[i],
                by_acc.iter().position(|&j| j == i).map_or(0, |p| p + 1),
                entries.len(),
                100.0 * acc[by_acc[0]]
            ))
        );
    }
    // How well the trained accuracy repeats itself across seeds: a signal that ranks
    // the seeds' mean cannot be expected to do much better than one seed ranks another.
    let seeds = entries.iter().map(|e| e.acc.len()).min().unwrap_or(0);
    let mut pair_taus = Vec::new();
    for i in 0..seeds {
        for j in i + 1..seeds {
            let x: Vec<f64> = entries.iter().map(|e| e.acc[i].1).collect();
            let y: Vec<f64> = entries.iter().map(|e| e.acc[j].1).collect();
            pair_taus.push(kendall_tau(&x, &y));
        }
    }
    if !pair_taus.is_empty() {
        out!(
            "\nRepeatability of the trained accuracy: Kendall tau of one seed's integer accuracy against another's, {:.3} (mean over {} pairs of seeds; min {:.3}, max {:.3}).",
            pair_taus.iter().sum::<f64>() / pair_taus.len() as f64,
            pair_taus.len(),
            pair_taus.iter().copied().fold(f64::INFINITY, f64::min),
            pair_taus.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        );
    }
    out!(
        "\nWall time of the benchmark: {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    let path = args.out.unwrap_or_else(|| {
        target_dir().join(format!(
            "search-quality-{}-{}.md",
            board.name,
            args.dataset.to_string().replace([':', '/'], "_")
        ))
    });
    std::fs::write(&path, log).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("tables written to {}", path.display());
    Ok(())
}

/// `--arch`: train the given architectures with the benchmark's recipe (cached like
/// the full run) and print their accuracies.
fn train_only(args: &Args, device: &Device) -> anyhow::Result<()> {
    let data = recipe_data(args)?;
    let mut cache = Cache::open();
    for arch in &args.only {
        let mut accs = Vec::new();
        for seed in 0..args.seeds {
            let (acc, secs) = cache.train(args, arch, &data, seed, device)?;
            println!(
                "`{arch}` seed {seed}: float {:.2}% int {:.2}% ({secs:.0} s)",
                100.0 * acc.0,
                100.0 * acc.1
            );
            accs.push(acc.1);
        }
        println!(
            "`{arch}`: integer {:.2}% (mean over {} seeds)",
            100.0 * accs.iter().sum::<f64>() / accs.len() as f64,
            accs.len()
        );
    }
    Ok(())
}

/// The data of the benchmark's recipe (`--max-train`, `--max-test`; split seed 0).
fn recipe_data(args: &Args) -> anyhow::Result<Dataset> {
    Ok(data::load(
        &args.dataset,
        &LoadOptions {
            max_train: args.max_train,
            max_test: args.max_test,
            ..Default::default()
        },
    )?)
}

/// The workspace's target folder (`cargo bench` runs in the package's folder).
fn target_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// Trained results by dataset, recipe, seed and architecture, kept on disk.
struct Cache {
    path: std::path::PathBuf,
    results: HashMap<String, ((f64, f64), f64)>,
}

impl Cache {
    /// The cost model the random draws are filtered with for `key` (board, dataset,
    /// training time): the one stored by the first run, or `model`, stored now.
    fn draw_model(key: &str, model: CostModel) -> anyhow::Result<CostModel> {
        let path = &target_dir().join("search-quality-draws.json");
        let mut models: HashMap<String, CostModel> = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if let Some(m) = models.get(key) {
            return Ok(*m);
        }
        models.insert(key.to_string(), model);
        std::fs::write(path, serde_json::to_vec_pretty(&models)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(model)
    }

    fn open() -> Self {
        let path = target_dir().join(CACHE_FILE);
        let results = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Cache { path, results }
    }

    /// (float, integer) accuracy and training seconds of `arch` with the recipe.
    fn train(
        &mut self,
        args: &Args,
        arch: &Arch,
        data: &Dataset,
        seed: u64,
        device: &Device,
    ) -> anyhow::Result<((f64, f64), f64)> {
        let key = format!(
            "{}|{:?}|{:?}|{}|{seed}|{arch}",
            args.dataset, args.max_train, args.max_test, args.epochs
        );
        if let Some(v) = self.results.get(&key) {
            return Ok(*v);
        }
        let v = train_once(arch, data, seed, args.epochs, device)?;
        self.results.insert(key, v);
        std::fs::write(&self.path, serde_json::to_vec(&self.results)?)?;
        Ok(v)
    }
}

fn input_desc(d: &Dataset) -> String {
    format!(
        "{}x{}x{}, {} classes",
        d.spec.channels, d.spec.height, d.spec.width, d.spec.classes
    )
}

/// The benchmark's training recipe, the same for every network: AdamW at a peak rate
/// of 3e-3 (cosine), weight decay 1e-4, no augmentation, in the dataset's default batch.
/// It is written out here rather than taken from `TrainConfig::default()`, so that a
/// change of the main job's defaults does not mix with the trained results cached under
/// the same key; a change here needs a new cache file ([`CACHE_FILE`]).
fn bench_recipe(data: &Dataset, seed: u64, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        seed,
        batch_size: train::default_batch_size(data.train.len()),
        lr: 3e-3,
        weight_decay: 1e-4,
        optimizer: train::OptimizerKind::Adamw,
        augment: data::Augment::None,
        progress: false,
        ..Default::default()
    }
}

/// Trained results of [`bench_recipe`], in the workspace's target folder.
const CACHE_FILE: &str = "search-quality-cache.json";

/// Train `arch` with the benchmark's recipe; (float, integer) test accuracy and the
/// training seconds.
fn train_once(
    arch: &Arch,
    data: &Dataset,
    seed: u64,
    epochs: usize,
    device: &Device,
) -> anyhow::Result<((f64, f64), f64)> {
    let input = input_shape(data);
    let (net, vars) = Network::init(*arch, input, LifParams::default(), device, seed)?;
    let cfg = bench_recipe(data, seed, epochs);
    let report = match train::train(&net, &vars, data, device, &cfg) {
        Ok(r) => r,
        Err(train::TrainError::Diverged { .. }) => return Ok(((0.0, 0.0), 0.0)),
        Err(e) => return Err(e.into()),
    };
    let (_, q) = quantize_winner(&net, &vars, data, device, cfg.conv)?;
    Ok((
        (q.float_accuracy as f64, q.int_accuracy as f64),
        report.train_seconds,
    ))
}
