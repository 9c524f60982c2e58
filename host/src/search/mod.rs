//! The architecture search: SpikeNAS's fast memory-aware search, the previous
//! largest-first search, and SNASNet's random-sampling baseline, all on the same data,
//! seed and machine.
//!
//! - [`halving::spikenas`] (the default): the feasible space (exact memory model,
//!   latency, trainability in the job's time on this machine), one candidate per macro
//!   family, then successive halving with short trainings. See [`halving`].
//! - [`largest`]: every cell deployed at its largest macro configuration that fits, cells
//!   ranked by coordinate ascent on SNASNet's training-free score (kept to compare).
//! - [`snasnet`]: score `samples` random cells at one fixed macro configuration,
//!   ignoring memory, then keep the best-scoring one that fits.
//!
//! What they share: the memory check and its verdict ([`feasible`]: [`Fit`],
//! [`MemoryCheck`]), the training-free score ([`score`]: [`Scorer`]), the space of cells
//! and macro configurations ([`space`], [`cells`]).

pub mod cells;
pub mod cost;
pub mod feasible;
pub mod fidelity;
pub mod halving;
pub mod score;
pub mod space;

pub use feasible::{Fit, MemoryCheck};
pub use score::Scorer;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::arch::{Arch, Cell, Op, FORWARD_PAIRS};
use crate::data::Dataset;
use crate::kernels::ConvBackend;
use crate::latency::Budget;
use crate::rng::Rng;
use crate::snn::InputShape;
use crate::train::TrainConfig;
use cost::CostModel;
use feasible::TrainBudget;
use fidelity::ProxyResult;
use space::{macs, SearchSpace};

/// Which search to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Strategy {
    /// SpikeNAS: the feasible (memory, latency, training time) space, one candidate per
    /// macro family, successive halving with short trainings.
    Spikenas,
    /// The previous SpikeNAS search: each cell at its largest feasible configuration,
    /// cells by coordinate ascent on the training-free score.
    Largest,
    /// SNASNet: N random candidates scored without memory awareness, best that fits kept.
    Snasnet,
}

/// How to search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchConfig {
    /// The strategy.
    pub strategy: Strategy,
    /// Stop after this long (scoring stops; the best so far wins).
    pub time_budget: Duration,
    /// Largest: stop when the best score has not improved for this many candidates.
    pub patience: usize,
    /// SpikeNAS: the recipe of the final training (optimiser, learning rate, batch
    /// size, convolution backend; the short trainings use the same).
    pub recipe: TrainConfig,
    /// SpikeNAS: images and seconds of the final training (None: no time limit).
    pub train_budget: Option<TrainBudget>,
    /// SpikeNAS: share of the final training's time the search may spend.
    pub search_fraction: f64,
    /// SpikeNAS: most candidates in the successive-halving pool.
    pub pool: usize,
    /// SpikeNAS: growth of the short trainings from rung to rung (and the share kept).
    pub eta: usize,
    /// SpikeNAS: training costs to use instead of calibrating them (tests).
    #[serde(skip)]
    pub cost_model: Option<CostModel>,
    /// Milliseconds one inference may take on the board (the latency budget, checked
    /// with the target's calibrated costs: [`crate::latency::Budget`]), if any.
    pub latency_ms: Option<f64>,
    /// SNASNet: number of random candidates scored.
    pub samples: usize,
    /// SNASNet: the fixed macro configuration its cells are scored in.
    pub baseline_macro: Arch,
    /// Images per score batch.
    pub score_batch: usize,
    /// Score batches averaged (SNASNet uses 2).
    pub score_repeats: usize,
    /// Seed.
    pub seed: u64,
    /// Convolution implementation.
    #[serde(skip)]
    pub conv: ConvBackend,
    /// Show progress on stderr.
    pub progress: bool,
}

/// The README's hand-picked network (`train --arch ...`), the macro configuration
/// SNASNet's baseline scores its cells in by default.
pub const HAND_PICKED: &str = "cell=0301.0003.0000.0000,ch=16,stages=2,fc=128,t=2,pool=2";

/// Default [`SearchConfig::search_fraction`]: the search takes at most this share of the
/// training it chooses for (calibration, short trainings and evaluation together), and
/// never less than its smallest useful comparison (three candidates of 960 images each,
/// `halving::floor_seconds`). At 0.5% that floor decides on Fashion-MNIST: longer short
/// trainings did not rank better there (Kendall tau 0.70 at 985 images, 0.64-0.73 at
/// 1,088-1,350, 0.65 at 1,784), and at 1% the search took 29-38x less time than
/// SNASNet's 5,000 samples, at the edge of the 30x it should keep.
pub const DEFAULT_SEARCH_FRACTION: f64 = 0.005;

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            strategy: Strategy::Spikenas,
            time_budget: Duration::from_secs(300),
            patience: 40,
            recipe: TrainConfig::default(),
            train_budget: None,
            search_fraction: DEFAULT_SEARCH_FRACTION,
            pool: 12,
            eta: 3,
            cost_model: None,
            latency_ms: None,
            samples: 5000,
            baseline_macro: HAND_PICKED.parse().expect("a valid encoding"),
            score_batch: 64,
            score_repeats: 2,
            seed: 0,
            conv: ConvBackend::default(),
            progress: true,
        }
    }
}

/// One candidate as the search saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CandidateRecord {
    /// The encoding.
    pub arch: String,
    /// Multiply-accumulates per timestep.
    pub macs: u64,
    /// Predicted instructions per inference on the board (the latency model).
    #[serde(default)]
    pub instructions: Option<f64>,
    /// The memory verdict.
    pub fit: Fit,
    /// The value of the ranking signal: the training-free score (largest, snasnet) or
    /// the last proxy accuracy (spikenas); None if not evaluated.
    pub score: Option<f64>,
    /// SpikeNAS: estimated seconds of the final training on this machine.
    #[serde(default)]
    pub train_seconds: Option<f64>,
    /// SpikeNAS: the short trainings of this candidate, one per rung reached.
    #[serde(default)]
    pub proxy: Vec<ProxyResult>,
}

/// What a search found and what it cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchOutcome {
    /// The strategy that ran.
    pub strategy: Strategy,
    /// The chosen architecture.
    pub best: Arch,
    /// Its value of the ranking signal.
    pub best_score: f64,
    /// What ranked the candidates.
    pub signal: String,
    /// Its memory verdict.
    pub best_fit: Fit,
    /// Distinct canonical cells in the space (SpikeNAS) or distinct cells sampled (SNASNet).
    pub canonical_cells: usize,
    /// Size of the whole space: canonical cells x macro configurations.
    pub space_size: usize,
    /// (cell, macro) candidates generated (for the cells the search reached).
    pub generated: usize,
    /// Candidates rejected by the memory model.
    pub pruned_by_memory: usize,
    /// Candidates rejected by the compute limit (MACs per timestep).
    pub pruned_by_compute: usize,
    /// Candidates rejected because their training would not finish in time.
    pub pruned_by_training: usize,
    /// Candidates that passed every check (SpikeNAS).
    pub feasible: usize,
    /// Candidates scored (network forward passes).
    pub scored: usize,
    /// Score evaluations saved by the cache.
    pub cache_hits: usize,
    /// Wall time of the search.
    pub seconds: f64,
    /// Why it stopped.
    pub stopped_by: String,
    /// The training cost model calibrated on this machine (SpikeNAS).
    pub cost_model: Option<CostModel>,
    /// Every scored or trained candidate.
    pub candidates: Vec<CandidateRecord>,
}

/// Errors from the search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Nothing fits.
    #[error("no architecture in the search space fits board `{board}`: the smallest candidate {smallest} needs {needs}; choose a larger board, a smaller dataset input, or widen the search space (smaller channels, input pooling, 4-bit weights)")]
    NothingFits {
        /// Board name.
        board: String,
        /// The smallest candidate's encoding.
        smallest: String,
        /// What it needs and where.
        needs: String,
    },
    /// Candidates fit the board but none can be trained in the time given.
    #[error("architectures fit board `{board}`, but none can train {images} images within {seconds:.0} s on this machine; give more --train-time, fewer --epochs or --max-train")]
    NothingTrainable {
        /// Board name.
        board: String,
        /// Images the recipe trains.
        images: u64,
        /// The training time.
        seconds: f64,
    },
    /// The training cost was asked of an empty feasible space.
    #[error(
        "no feasible candidate to time training steps on; the board's budgets admit no network"
    )]
    NothingToCalibrate,
    /// A training step failed.
    #[error(transparent)]
    Train(Box<crate::train::TrainError>),
    /// No candidate could be scored (e.g. all singular kernels).
    #[error(
        "no candidate could be scored within the time budget of {0:?}; give a larger --search-time"
    )]
    NothingScored(Duration),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Building a candidate network failed.
    #[error(transparent)]
    Network(#[from] crate::snn::network::NetworkError),
}

impl From<crate::train::TrainError> for SearchError {
    fn from(e: crate::train::TrainError) -> Self {
        SearchError::Train(Box::new(e))
    }
}

/// What a search works on: the data, the board's memory model and the device.
pub struct SearchData<'a> {
    /// The dataset (the short trainings use its training and validation splits).
    pub data: &'a Dataset,
    /// The network input.
    pub input: InputShape,
    /// The board's name (for errors).
    pub board: &'a str,
    /// The memory model.
    pub memory: &'a dyn MemoryCheck,
    /// The latency model and budget.
    pub latency: &'a Budget,
    /// Where to train and score.
    pub device: Device,
}

/// What a candidate must meet on the board: the part of [`SearchData`] the
/// training-free strategies need.
#[derive(Clone, Copy)]
pub struct Limits<'a> {
    /// The network input.
    pub input: &'a InputShape,
    /// The board's name (for errors).
    pub board: &'a str,
    /// The memory model.
    pub memory: &'a dyn MemoryCheck,
    /// The latency model and budget.
    pub latency: &'a Budget,
}

impl SearchData<'_> {
    /// The board's limits.
    pub fn limits(&self) -> Limits<'_> {
        Limits {
            input: &self.input,
            board: self.board,
            memory: self.memory,
            latency: self.latency,
        }
    }
}

impl std::fmt::Debug for Limits<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("input", self.input)
            .field("board", &self.board)
            .field("latency", self.latency)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SearchData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchData")
            .field("dataset", &self.data.spec.name)
            .field("input", &self.input)
            .field("board", &self.board)
            .finish_non_exhaustive()
    }
}

fn progress(total: u64, show: bool, what: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} [{{elapsed_precise}}] {{msg}}"
        ))
        .expect("static template"),
    );
    bar
}

/// Run the configured search.
pub fn search(
    space: &SearchSpace,
    ctx: &SearchData<'_>,
    scorer: &mut Scorer<'_>,
    cfg: &SearchConfig,
) -> Result<SearchOutcome, SearchError> {
    match cfg.strategy {
        Strategy::Spikenas => halving::spikenas(space, ctx, cfg),
        Strategy::Largest => largest(space, &ctx.limits(), scorer, cfg),
        Strategy::Snasnet => snasnet(&ctx.limits(), scorer, cfg),
    }
}

/// The error for a search whose every memory-feasible candidate is over the latency
/// budget: the fastest of them and what it needs.
fn too_slow_error(board: &str, fastest: Arch, instructions: f64, latency: &Budget) -> SearchError {
    SearchError::NothingFits {
        board: board.into(),
        smallest: fastest.to_string(),
        needs: latency.over_budget(instructions),
    }
}

fn nothing_fits(board: &str, smallest: Option<(Arch, Fit)>) -> SearchError {
    match smallest {
        Some((arch, fit)) => SearchError::NothingFits {
            board: board.into(),
            smallest: arch.to_string(),
            needs: fit
                .overflow
                .unwrap_or_else(|| format!("{} B flash, {} B RAM", fit.flash_bytes, fit.ram_bytes)),
        },
        None => SearchError::NothingFits {
            board: board.into(),
            smallest: "-".into(),
            needs: "an empty search space".into(),
        },
    }
}

/// The architecture a cell is scored in during the cell search: the same small
/// macro configuration for every cell, so scores compare cells, not sizes.
pub fn proxy_arch(cell: Cell, space: &SearchSpace, input: &InputShape) -> Arch {
    let base = Arch {
        cell,
        channels: 8,
        stages: 2,
        fc: 0,
        timesteps: space.macros.timesteps,
        input_pool: 1,
        cluster: space.macros.cluster,
        weight_bits: 8,
    };
    if input.head_features(&base) > 0 {
        base
    } else {
        Arch { stages: 1, ..base }
    }
}

/// Smallest image side input pooling may leave: pooling an 8x8 digit to 4x4 saves
/// memory but destroys the classes (measured: about 30% on digits after the same
/// training that reaches 97% unpooled).
pub const MIN_POOLED_SIDE: usize = 12;

/// Smallest feature-map side the last stage may work at: a third reduction of an 8x8
/// input leaves 2x2 maps and trains poorly in short recipes (measured on digits).
pub const MIN_LAST_STAGE_SIDE: usize = 4;

/// True if `arch` keeps enough spatial detail: input pooling leaves at least
/// [`MIN_POOLED_SIDE`] pixels a side (or does not pool), and the last stage works on
/// maps of at least [`MIN_LAST_STAGE_SIDE`] a side.
pub fn pooling_keeps_detail(arch: &Arch, input: &InputShape) -> bool {
    let shape = arch.shape(input);
    let pooled = shape.stem_geometry();
    let pooled_ok = arch.input_pool == 1 || pooled.h.min(pooled.w) >= MIN_POOLED_SIDE;
    let last = shape.last_geometry();
    pooled_ok && last.h.min(last.w) >= MIN_LAST_STAGE_SIDE
}

/// The largest (by MACs) macro configuration of `cell` that fits memory and the
/// latency budget, with the number of configurations each check rejected.
fn largest_feasible(
    cell: Cell,
    space: &SearchSpace,
    input: &InputShape,
    memory: &dyn MemoryCheck,
    latency: &Budget,
    tally: &mut Tally,
) -> Option<(Arch, u64, Fit)> {
    let mut archs: Vec<(Arch, u64)> = space
        .macro_archs(cell)
        .into_iter()
        .filter(|a| input.head_features(a) > 0 && pooling_keeps_detail(a, input))
        .map(|a| (a, macs(&a, input)))
        .collect();
    tally.generated += archs.len();
    // Largest first; among equal sizes prefer 8-bit weights (more accurate).
    archs.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.weight_bits.cmp(&a.0.weight_bits)));
    for (arch, m) in archs {
        if !latency.allows(&arch) {
            tally.pruned_by_compute += 1;
            continue;
        }
        let fit = memory.check(&arch);
        if fit.fits {
            // The cell's smaller configurations are dominated: never visited.
            return Some((arch, m, fit));
        }
        tally.pruned_by_memory += 1;
        keep_smallest(&mut tally.smallest, arch, fit);
    }
    None
}

/// Keep in `slot` whichever of it and `(arch, fit)` needs less memory (flash + RAM):
/// what a "nothing fits" error names.
fn keep_smallest(slot: &mut Option<(Arch, Fit)>, arch: Arch, fit: Fit) {
    if slot
        .as_ref()
        .is_none_or(|(_, f)| fit.flash_bytes + fit.ram_bytes < f.flash_bytes + f.ram_bytes)
    {
        *slot = Some((arch, fit));
    }
}

#[derive(Debug, Default)]
struct Tally {
    generated: usize,
    pruned_by_memory: usize,
    pruned_by_compute: usize,
    smallest: Option<(Arch, Fit)>,
}

/// The previous SpikeNAS search (kept to compare against).
///
/// 1. Every canonical cell is paired with its largest feasible macro configuration
///    (memory model and compute limit, microseconds each); cells with none are out.
/// 2. Cell search by coordinate ascent on the training-free score, as LightSNN prunes
///    edge by edge: starting from the feasible cell with the most convolutions, each
///    edge in turn takes every op of the op set (others fixed) and keeps the best,
///    until a full pass changes nothing. Cells are scored in the common proxy
///    configuration ([`proxy_arch`]) and each at most once (cache): on the order of
///    edges x ops evaluations instead of thousands.
/// 3. The winning cell is deployed in its largest feasible configuration.
pub fn largest(
    space: &SearchSpace,
    limits: &Limits<'_>,
    scorer: &mut Scorer<'_>,
    cfg: &SearchConfig,
) -> Result<SearchOutcome, SearchError> {
    let Limits {
        input,
        board,
        memory,
        latency,
    } = *limits;
    let started = Instant::now();
    let cells = cells::enumerate(&space.ops, space.backward);
    let mut tally = Tally::default();
    // Each cell's deployment is worked out when the search first reaches it.
    let mut deploy: HashMap<Cell, Option<(Arch, u64, Fit)>> = HashMap::new();
    let mut deployment = |cell: Cell, tally: &mut Tally| -> Option<(Arch, u64, Fit)> {
        deploy
            .entry(cell)
            .or_insert_with(|| largest_feasible(cell, space, input, memory, latency, tally))
            .clone()
    };
    // Start from the feasible cell with the most convolutions (ties: canonical order).
    let mut by_convs: Vec<&Cell> = cells.iter().collect();
    by_convs.sort_by(|a, b| {
        cells::conv_edges(b)
            .cmp(&cells::conv_edges(a))
            .then(a.cmp(b))
    });
    let Some(start) = by_convs
        .into_iter()
        .copied()
        .find(|c| deployment(*c, &mut tally).is_some())
    else {
        return Err(nothing_fits(board, tally.smallest));
    };
    let bar = progress(
        (FORWARD_PAIRS.len() * space.ops.len() * 2) as u64,
        cfg.progress,
        "search",
    );
    let mut records: Vec<CandidateRecord> = Vec::new();
    let mut scored: HashMap<Cell, f64> = HashMap::new();
    let mut evaluate = |cell: Cell,
                        scorer: &mut Scorer<'_>,
                        records: &mut Vec<CandidateRecord>,
                        scored: &mut HashMap<Cell, f64>,
                        tally: &mut Tally|
     -> Result<Option<f64>, SearchError> {
        let Some((arch, m, fit)) = deployment(cell, tally) else {
            return Ok(None);
        };
        if let Some(s) = scored.get(&cell) {
            return Ok(Some(*s));
        }
        let s = scorer.score(&proxy_arch(cell, space, input))?;
        scored.insert(cell, s);
        records.push(CandidateRecord {
            arch: arch.to_string(),
            macs: m,
            instructions: Some(latency.instructions(&arch)),
            fit,
            score: Some(s),
            train_seconds: None,
            proxy: Vec::new(),
        });
        bar.inc(1);
        Ok(Some(s))
    };
    let mut best_cell = start;
    let mut best = evaluate(start, scorer, &mut records, &mut scored, &mut tally)?
        .unwrap_or(f64::NEG_INFINITY);
    let mut since_best = 0usize;
    let mut stopped_by = "converged (a full pass over the edges changed nothing)".to_string();
    let options: Vec<Op> = std::iter::once(Op::Zero)
        .chain(space.ops.iter().copied().filter(|o| *o != Op::Zero))
        .collect();
    'passes: loop {
        let mut changed = false;
        for &(i, j) in FORWARD_PAIRS.iter() {
            let directions: &[bool] = if space.backward && i > 0 {
                &[false, true]
            } else {
                &[false]
            };
            for &backward in directions {
                for &op in &options {
                    if started.elapsed() >= cfg.time_budget {
                        stopped_by = format!("time budget ({:?})", cfg.time_budget);
                        break 'passes;
                    }
                    if since_best >= cfg.patience {
                        stopped_by = format!("no improvement for {} candidates", cfg.patience);
                        break 'passes;
                    }
                    let mut c = best_cell;
                    c.ops[i][j] = Op::Zero;
                    c.ops[j][i] = Op::Zero;
                    if backward {
                        c.ops[j][i] = op
                    } else {
                        c.ops[i][j] = op
                    }
                    let Ok(valid) = c.validated() else { continue };
                    let cand = cells::canonical(&valid);
                    if cand == best_cell || scored.contains_key(&cand) {
                        continue;
                    }
                    match evaluate(cand, scorer, &mut records, &mut scored, &mut tally)? {
                        Some(s) if s.is_finite() && s > best => {
                            best = s;
                            best_cell = cand;
                            since_best = 0;
                            changed = true;
                        }
                        Some(_) => since_best += 1,
                        None => {}
                    }
                    bar.set_message(format!("best {best:.2}"));
                }
            }
        }
        if !changed {
            break;
        }
    }
    bar.finish_and_clear();
    if !best.is_finite() {
        return Err(SearchError::NothingScored(cfg.time_budget));
    }
    let (arch, _, fit) = deployment(best_cell, &mut tally).expect("scored cells are feasible");
    let deploy_count = deploy.values().filter(|d| d.is_some()).count();
    Ok(SearchOutcome {
        strategy: Strategy::Largest,
        best: arch,
        best_score: best,
        signal: "training-free score (SNASNet)".into(),
        best_fit: fit,
        canonical_cells: cells.len(),
        space_size: cells.len() * space.macro_archs(start).len(),
        generated: tally.generated,
        pruned_by_memory: tally.pruned_by_memory,
        pruned_by_compute: tally.pruned_by_compute,
        pruned_by_training: 0,
        feasible: deploy_count,
        scored: records.len(),
        cache_hits: scorer.hits,
        seconds: started.elapsed().as_secs_f64(),
        stopped_by,
        cost_model: None,
        candidates: records,
    })
}

/// A uniformly random valid forward cell (SNASNet samples op indices per edge and
/// re-draws invalid ones).
pub fn random_cell(rng: &mut Rng) -> Cell {
    loop {
        let mut ops = [Op::Zero; 6];
        for op in ops.iter_mut() {
            *op = Op::ALL[rng.below(Op::ALL.len())];
        }
        if let Ok(c) = Cell::forward(ops).validated() {
            debug_assert_eq!(FORWARD_PAIRS.len(), 6);
            return c;
        }
    }
}

/// SNASNet's baseline: score `samples` random cells at the fixed macro
/// configuration, then keep the best-scoring one that fits.
pub fn snasnet(
    limits: &Limits<'_>,
    scorer: &mut Scorer<'_>,
    cfg: &SearchConfig,
) -> Result<SearchOutcome, SearchError> {
    let Limits {
        input,
        board,
        memory,
        latency,
    } = *limits;
    let started = Instant::now();
    let mut rng = Rng::new(cfg.seed ^ 0x736e_6173);
    let bar = progress(cfg.samples as u64, cfg.progress, "snasnet");
    let mut records: Vec<(Arch, CandidateRecord)> = Vec::new();
    let mut stopped_by = format!("{} samples scored", cfg.samples);
    for _ in 0..cfg.samples {
        if started.elapsed() >= cfg.time_budget {
            stopped_by = format!("time budget ({:?})", cfg.time_budget);
            break;
        }
        let arch = Arch {
            cell: random_cell(&mut rng),
            ..cfg.baseline_macro
        };
        // SNASNet scores every sample, repeated draws included: no cache here, so the
        // baseline's cost is faithful.
        let s = scorer.evaluate(&arch)?;
        records.push((
            arch,
            CandidateRecord {
                arch: arch.to_string(),
                macs: macs(&arch, input),
                instructions: Some(latency.instructions(&arch)),
                fit: memory.check(&arch),
                score: Some(s),
                train_seconds: None,
                proxy: Vec::new(),
            },
        ));
        bar.inc(1);
        if cfg.progress && bar.is_hidden() && records.len() % 500 == 0 {
            eprintln!(
                "snasnet: {} / {} scored in {:.0} s",
                records.len(),
                cfg.samples,
                started.elapsed().as_secs_f64()
            );
        }
    }
    bar.finish_and_clear();
    let scored = records.len();
    let distinct: std::collections::HashSet<Cell> = records.iter().map(|(a, _)| a.cell).collect();
    let mut order: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].1.score.is_some_and(f64::is_finite))
        .collect();
    order.sort_by(|&a, &b| {
        records[b]
            .1
            .score
            .partial_cmp(&records[a].1.score)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let pruned = records.iter().filter(|(_, r)| !r.fit.fits).count();
    let too_slow = records
        .iter()
        .filter(|(a, r)| r.fit.fits && !latency.allows(a))
        .count();
    let pick = order
        .iter()
        .find(|&&i| records[i].1.fit.fits && latency.allows(&records[i].0))
        .copied();
    let Some(pi) = pick else {
        let smallest = records
            .iter()
            .min_by_key(|(_, r)| r.fit.flash_bytes + r.fit.ram_bytes)
            .map(|(a, r)| (*a, r.fit.clone()));
        let fastest = records
            .iter()
            .filter(|(_, r)| r.fit.fits)
            .filter_map(|(a, r)| Some((*a, r.instructions?)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        return Err(match fastest {
            _ if scored == 0 => SearchError::NothingScored(cfg.time_budget),
            Some((arch, instructions)) => too_slow_error(board, arch, instructions, latency),
            None => nothing_fits(board, smallest),
        });
    };
    Ok(SearchOutcome {
        strategy: Strategy::Snasnet,
        best: records[pi].0,
        best_score: records[pi].1.score.unwrap_or(f64::NAN),
        signal: "training-free score (SNASNet)".into(),
        best_fit: records[pi].1.fit.clone(),
        canonical_cells: distinct.len(),
        space_size: scored,
        generated: scored,
        pruned_by_memory: pruned,
        pruned_by_compute: too_slow,
        pruned_by_training: 0,
        feasible: scored - pruned - too_slow,
        scored,
        cache_hits: 0,
        seconds: started.elapsed().as_secs_f64(),
        stopped_by,
        cost_model: None,
        candidates: records.into_iter().map(|(_, r)| r).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    fn tiny_space() -> SearchSpace {
        SearchSpace {
            ops: vec![Op::Skip, Op::Conv3x3],
            backward: false,
            macros: space::MacroSpace {
                channels: vec![2, 4],
                stages: vec![1],
                fc: vec![0],
                input_pool: vec![1],
                weight_bits: vec![8],
                timesteps: 2,
                cluster: 1,
            },
            provenance: "test".into(),
        }
    }

    fn setup() -> (Vec<Tensor>, InputShape) {
        let dev = Device::Cpu;
        let batches = vec![Tensor::rand(0f32, 1f32, (8, 1, 6, 6), &dev).unwrap()];
        (
            batches,
            InputShape {
                channels: 1,
                height: 6,
                width: 6,
                classes: 3,
            },
        )
    }

    fn limits<'a>(
        input: &'a InputShape,
        memory: &'a dyn MemoryCheck,
        latency: &'a Budget,
    ) -> Limits<'a> {
        Limits {
            input,
            board: "fake",
            memory,
            latency,
        }
    }

    /// A fake memory model: a candidate fits when its MACs are below a limit.
    fn limit(input: InputShape, max_macs: u64) -> impl Fn(&Arch) -> Fit {
        move |a: &Arch| {
            let m = macs(a, &input);
            Fit {
                fits: m <= max_macs,
                flash_bytes: m,
                ram_bytes: 0,
                worst_ratio: m as f64 / max_macs as f64,
                overflow: (m > max_macs).then(|| format!("flash: {} B over", m - max_macs)),
                regions: Vec::new(),
            }
        }
    }

    #[test]
    fn largest_only_scores_feasible_and_picks_within_budget() {
        let (batches, input) = setup();
        let mut scorer = Scorer::new(&batches, input, Device::Cpu, 1, ConvBackend::default());
        let cap = 6000;
        let cfg = SearchConfig {
            progress: false,
            patience: 1000,
            ..Default::default()
        };
        let out = largest(
            &tiny_space(),
            &limits(&input, &limit(input, cap), &Budget::unlimited(input)),
            &mut scorer,
            &cfg,
        )
        .unwrap();
        assert!(out.best_fit.fits && macs(&out.best, &input) <= cap);
        assert!(out.candidates.iter().all(|c| c.fit.fits));
        assert!(
            out.pruned_by_memory > 0,
            "the cap should reject the 4-channel variants of some cells"
        );
        assert_eq!(out.scored, out.canonical_cells.min(out.candidates.len()));
    }

    #[test]
    fn nothing_fits_names_the_smallest_need() {
        let (batches, input) = setup();
        let mut scorer = Scorer::new(&batches, input, Device::Cpu, 1, ConvBackend::default());
        let cfg = SearchConfig {
            progress: false,
            ..Default::default()
        };
        let e = largest(
            &tiny_space(),
            &limits(&input, &limit(input, 10), &Budget::unlimited(input)),
            &mut scorer,
            &cfg,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("board `fake`") && msg.contains("flash:"),
            "{msg}"
        );
    }

    #[test]
    fn snasnet_scores_all_samples_and_keeps_best_that_fits() {
        let (batches, input) = setup();
        let mut scorer = Scorer::new(&batches, input, Device::Cpu, 1, ConvBackend::default());
        let base: Arch = "ch=2,stages=1,fc=0,t=2".parse().unwrap();
        let cfg = SearchConfig {
            strategy: Strategy::Snasnet,
            samples: 6,
            baseline_macro: base,
            progress: false,
            ..Default::default()
        };
        let unlimited = Budget::unlimited(input);
        let fits_all = limit(input, u64::MAX);
        let out = snasnet(&limits(&input, &fits_all, &unlimited), &mut scorer, &cfg).unwrap();
        assert_eq!(out.scored, 6);
        let best = out
            .candidates
            .iter()
            .filter_map(|c| c.score)
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(out.best_score, best);
        // Best that fits: with the top-scoring cell refused by the memory check, the
        // pick is the best-scoring of the others, not the top one.
        let top = out.best;
        let refuse_top = |a: &Arch| Fit {
            fits: a.cell != top.cell,
            ..limit(input, u64::MAX)(a)
        };
        let again = snasnet(&limits(&input, &refuse_top, &unlimited), &mut scorer, &cfg).unwrap();
        let runner_up = again
            .candidates
            .iter()
            .filter(|c| c.fit.fits)
            .filter_map(|c| c.score)
            .fold(f64::NEG_INFINITY, f64::max);
        assert_ne!(again.best.cell, top.cell);
        assert_eq!(again.best_score, runner_up);
        assert!(again.candidates.iter().any(|c| !c.fit.fits));
    }
}
