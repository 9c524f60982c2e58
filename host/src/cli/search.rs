//! `spikenas-host search`: the main job. Find the SNN that fits a board, train it and
//! write the report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::common::{
    self, at_least_one, at_least_one_second, non_negative, BoardArgs, TrainingArgs,
};
use spikenas_host::data::Source;
use spikenas_host::jobs;
use spikenas_host::jobs::search::{RecipeFit, SearchJob};
use spikenas_host::search::space::SearchSpace;
use spikenas_host::search::{SearchConfig, Strategy, DEFAULT_SEARCH_FRACTION};

/// Search the architecture with the best expected accuracy that fits the board's memory.
#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    board: BoardArgs,
    /// Dataset: fashion-mnist, digits, idx:DIR or cifar10:DIR.
    #[arg(long, default_value = "fashion-mnist")]
    dataset: Source,
    /// spikenas (memory- and training-time-aware, short trainings), largest (the previous
    /// search: largest configuration per cell, training-free score) or snasnet (the
    /// baseline).
    #[arg(long, value_enum, default_value_t = Strategy::Spikenas)]
    strategy: Strategy,
    /// Most seconds the search may take, whatever its share of the training.
    #[arg(long, alias = "time-budget", default_value_t = 300, value_parser = at_least_one_second)]
    search_time: u64,
    /// spikenas: share of the training time the search may spend (its short trainings
    /// included).
    #[arg(long, default_value_t = DEFAULT_SEARCH_FRACTION)]
    search_fraction: f64,
    /// spikenas: most candidates in the successive-halving pool.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..))]
    pool: u64,
    /// largest: stop when the best score has not improved for this many candidates.
    #[arg(long, default_value_t = 40, value_parser = at_least_one)]
    patience: usize,
    /// Latency budget per inference in milliseconds on the board's clock, checked with
    /// the target's calibrated instruction costs (targets.yaml `latency`); 0 = no limit.
    #[arg(long, default_value_t = 1000.0, value_parser = non_negative)]
    latency_ms: f64,
    /// snasnet: random candidates scored.
    #[arg(long, default_value_t = 5000, value_parser = at_least_one)]
    samples: usize,
    /// Images per score batch.
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    score_batch: usize,
    /// A search space file (default: the shipped analysis result).
    #[arg(long)]
    space: Option<PathBuf>,
    #[command(flatten)]
    training: TrainingArgs,
    /// Search only: write the search report, train nothing.
    #[arg(long)]
    no_train: bool,
    /// Output directory (default runs/BOARD-DATASET).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace an earlier spikenas output at --out (kept until the new one is complete).
    #[arg(long)]
    force: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Continue the interrupted training of the search run in this folder (with its own
    /// options; the search is not run again).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
}

/// Run `search`.
pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let Some(dir) = args.resume else {
        return run_job(args, common::run_control(false, common::this_command()));
    };
    let command = common::resumed_command(&dir, "search")?;
    let super::Command::Search(mut old) = super::parse_recorded(&command)? else {
        unreachable!("resumed_command checked the subcommand");
    };
    old.quiet |= args.quiet;
    old.out = Some(dir);
    run_job(old, common::run_control(true, command))
}

fn run_job(args: SearchArgs, ctl: jobs::RunControl) -> anyhow::Result<()> {
    let (catalog, board) = args.board.load()?;
    let device = args.training.device.open()?;
    let space = match &args.space {
        Some(p) => SearchSpace::from_file(p)?,
        None => SearchSpace::shipped(),
    };
    let dataset_tag = args.dataset.to_string().replace([':', '/'], "_");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}-{}", board.name, dataset_tag)));
    let job = SearchJob {
        board,
        targets: catalog.targets().clone(),
        source: args.dataset.clone(),
        load: args.training.load_options(),
        space,
        search: SearchConfig {
            strategy: args.strategy,
            time_budget: Duration::from_secs(args.search_time),
            patience: args.patience,
            search_fraction: args.search_fraction,
            pool: args.pool as usize,
            latency_ms: (args.latency_ms > 0.0).then_some(args.latency_ms),
            samples: args.samples,
            score_batch: args.score_batch,
            seed: args.training.seed,
            conv: args.training.conv,
            progress: !args.quiet,
            // With --no-train, the search still chooses for the training these
            // options describe.
            recipe: args.training.config(false),
            ..Default::default()
        },
        fit: RecipeFit {
            batch_size: args.training.batch_size.is_none(),
            epochs: args.training.epochs.is_none(),
        },
        train: (!args.no_train).then(|| args.training.config(!args.quiet)),
    };
    if !(args.search_fraction > 0.0 && args.search_fraction < 1.0) {
        anyhow::bail!(
            "--search-fraction {} is out of range: give a share of the training time between 0 and 1, e.g. 0.02",
            args.search_fraction
        );
    }
    let run =
        jobs::search::run_with(&job, &device, &out, args.force, &ctl).context("search failed")?;
    let r = &run.report;
    let s = &r.search;
    println!("board {}: chosen {}", r.board, s.best);
    println!(
        "  {} {:.3}; {} canonical cells, {} generated, {} pruned by memory, {} by latency, {} by training time, {} evaluations in {:.1} s ({})",
        s.signal,
        s.best_score,
        s.canonical_cells,
        s.generated,
        s.pruned_by_memory,
        s.pruned_by_compute,
        s.pruned_by_training,
        s.scored,
        s.seconds,
        s.stopped_by
    );
    for (name, used, cap) in &r.regions {
        println!(
            "  {name}: {used} / {cap} bytes ({:.1}%)",
            100.0 * *used as f64 / (*cap).max(1) as f64
        );
    }
    if let Some(t) = &r.training {
        println!(
            "  test accuracy {:.2}% after {} epochs ({:.1} s)",
            100.0 * t.test_accuracy,
            t.epochs.len(),
            t.train_seconds
        );
    }
    println!("  results in {}", run.dir.display());
    Ok(())
}
