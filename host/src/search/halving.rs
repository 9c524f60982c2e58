//! SpikeNAS's fast memory-aware search, as this project does it (v2):
//!
//! 1. **Feasible space.** Every canonical cell of the analysed op set times every macro
//!    configuration (channels, stages, classifier width, input pooling, weight bits) is
//!    checked against the exact memory model, the latency budget and the detail rules
//!    (microseconds each; no tensors). 4-bit variants are dropped where the 8-bit
//!    network fits.
//! 2. **Trainable in the job's time.** The cost of a training image on this machine is
//!    calibrated on the cheapest feasible candidate and a dearer one
//!    ([`CostModel::calibrate`]); candidates whose recipe cannot finish within the
//!    training time are dropped, so a large budget (Jetson) does not yield a network
//!    that cannot be trained.
//! 3. **Candidate pool (training-free).** The feasible space is grouped by network
//!    shape (stages, input pooling, weight bits); each shape sends its candidate with the
//!    most multiply-accumulates (the most capacity the board and the training time allow
//!    for that shape), then each shape and classifier width not yet in does. Shapes differ
//!    in how they learn; within a shape, capacity is what the budgets buy.
//! 4. **Successive halving (multi-fidelity).** Every pool member is trained briefly on a
//!    fixed subset (the same images for all, in a quarter of the recipe's batch:
//!    [`fidelity::proxy_recipe`]) and evaluated on held-out images; the best third is
//!    trained again three times longer; the best of that rung wins (with three
//!    candidates or fewer, the first rung decides). Each short training is looked at
//!    after 4/8 and 5/8 of its images; one far behind the best of its rung at a look
//!    stops there, and later pool members of its shape are skipped in that rung
//!    ([`LOOK_AT_EIGHTHS`]). The final decision goes to the cheapest network within
//!    noise of the best ([`TIE_ERRORS`]). The budget of the whole search is
//!    a fixed share of the job's training time (`search_fraction`, 0.5% by default),
//!    planned with the calibrated costs; a short job whose share cannot pay for three
//!    candidates at the smallest rung gets that much, or what [`MAX_SEARCH_SHARE`] of
//!    its training pays for (then fewer candidates).
//!
//! Every candidate the search trains is recorded with its proxy accuracies, measured
//! throughput, memory per region and size, for the report's Pareto view.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::arch::Arch;

use super::cost::{self, CostModel};
use super::feasible::{Candidate, Feasible};
use super::fidelity::{self, Proxy, ProxyData, ProxyResult};
use super::space::SearchSpace;
use super::{cells, nothing_fits, CandidateRecord, SearchConfig, SearchData, SearchError};
use super::{SearchOutcome, Strategy};

/// Training steps timed per calibration network (the fastest counts).
const CALIBRATION_STEPS: usize = 5;

/// Fewest images a rung-0 short training may have (about a hundred of each of ten
/// classes): below this, accuracy says more about the initialisation than the
/// architecture. Measured over 24 networks (Kendall tau against trained accuracy, in
/// the batches of [`fidelity::proxy_batch`]): digits (batches of 8) 480 images 0.35,
/// 960 images 0.50, 1,920 images 0.47-0.57; Fashion-MNIST (batches of 16) 960 images
/// 0.68, 1,920 images 0.68-0.72; 1,920 Fashion-MNIST images in batches of 64 left most
/// networks at 10-34% accuracy.
const MIN_RUNG0_IMAGES: usize = 960;

/// Images evaluated per short training: at least this many (topped up from the
/// training split on small datasets) ...
pub const MIN_EVAL_IMAGES: usize = 500;
/// ... and at most this many. The candidates are scored on the same images, so their
/// differences are paired; 1,000 images cost about as much as 333 training images,
/// a third of the smallest rung.
pub const MAX_EVAL_IMAGES: usize = 1000;

/// Share of the training time kept free when checking trainability. The cost model
/// times the fastest of a few bare training steps; the training loop around them (batch
/// assembly, accuracy counting, validation after each epoch) and the machine's slower
/// spells make whole trainings slower than it predicts. Measured in main jobs (15
/// epochs of Fashion-MNIST, estimate against the time taken): netduinoplus2's pick 586 s
/// estimated, 874 s taken (1.49x); a Jetson pick 798 s estimated, 15 epochs at 74 s
/// each (1.39x), so that the 900 s budget cut it at 12 epochs and it ended at int8
/// 91.31%. With 0.1 kept free (the earlier margin) the pool's largest candidates sit
/// at the edge of the budget and overrun it; 0.3 keeps them within it at 1.4x.
pub const TRAIN_MARGIN: f64 = 0.3;

/// Looks at a short training, in eighths of its images: a candidate far behind the best
/// of its rung at the same look stops there ([`look_stops`]). Networks that learn slowly
/// in a short training start late, then climb: the look at 4/8 stops those still at
/// chance while the best is well above it, the look at 5/8 those that started but stay
/// far behind. A look at 3/8 was tried and dropped: on Fashion-MNIST the best of the
/// benchmark's 24 networks was at chance there in one run (13.0% where another was at
/// 41.5%) and would have been stopped. Measured (accuracy on 200 held-out images at 1/8,
/// 2/8, ... 7/8, then at the end on all of them):
/// - digits, 982 images: one stage of 8 channels 10.0, 20.0, 79.5, 86.5, 86.5, 86.5,
///   89.5, 90.8%; two stages of 4 channels 9.5, 9.5, 10.5, 9.5, 24.0, 26.0, 31.0,
///   28.2%. The two-stage trainings cost 0.5-0.6 s each, where the job's whole training
///   takes 6-7 s.
/// - Fashion-MNIST, 1,529 images: one stage, 4 channels 13.0, 33.5, 58.5, 72.5, 73.5,
///   71.5, 72.0, 74.3%; one stage, 16 channels at half resolution 13.0, 13.5, 52.5,
///   70.5, 79.5, 78.5, 79.5, 75.8%; two stages 9.0, 8.0, 8.0, 52.0, 59.5, 65.0, 64.5,
///   67.3%.
pub const LOOK_AT_EIGHTHS: [usize; 2] = [4, 5];

/// Evaluation images of a look (the first of the proxy's evaluation set).
pub const LOOK_EVAL_IMAGES: usize = 200;

/// Standard errors (of the difference of two accuracies on the look's images) that a
/// candidate must trail the best at a look by to stop.
const LOOK_STOP_ERRORS: f64 = 3.0;

/// Whether accuracy `p` at a look is hopeless against the best accuracy `best` of its
/// rung at the same look, both measured on `n` images: more than [`LOOK_STOP_ERRORS`]
/// standard errors of their difference behind.
pub fn hopeless(p: f64, best: f64, n: usize) -> bool {
    let var = |a: f64| a * (1.0 - a) / n.max(1) as f64;
    p < best - LOOK_STOP_ERRORS * (var(best) + var(p)).sqrt()
}

/// Whether look `k` stops a short training at accuracy `p` (on `n` images, `classes`
/// classes) when the best of its rung was at `best` at the same look. The first look
/// stops only a training still at chance (within [`LOOK_STOP_ERRORS`] standard errors
/// of `1 / classes`) that is [`hopeless`]: before their onset, networks differ in when
/// they start to learn by more than the noise of the images says (at 3/8 on
/// Fashion-MNIST, `hopeless` alone would have stopped the benchmark's best network at
/// 29.5% where another was at 49.5%). The later looks stop on `hopeless` alone.
pub fn look_stops(k: usize, p: f64, best: f64, n: usize, classes: usize) -> bool {
    let chance = 1.0 / classes.max(1) as f64;
    let at_chance =
        p <= chance + LOOK_STOP_ERRORS * (chance * (1.0 - chance) / n.max(1) as f64).sqrt();
    hopeless(p, best, n) && (k > 0 || at_chance)
}

/// The earlier pool member (index below `i`) of the same shape as candidate `i` whose
/// training at `rung` a look stopped, if any: `i` is then not trained at that rung.
fn stopped_sibling<S: PartialEq>(
    shapes: &[S],
    results: &[Vec<ProxyResult>],
    i: usize,
    rung: usize,
) -> Option<usize> {
    (0..i).find(|&j| shapes[j] == shapes[i] && results[j].get(rung).is_some_and(|r| r.stopped))
}

/// A candidate whose short training's speed says its recipe would take more than this
/// multiple of the training time ranks last in its rung.
const SLOW_TOLERANCE: f64 = 1.25;

/// The shape of a network that the pool must cover: how many stages, at what input
/// resolution, with what weight width. These decide how a network learns in a short
/// recipe (measured on digits: one stage on 8x8 reached 96.4-97.8%, two stages
/// 93.7-97.8% after the same training), so every one of them gets a candidate before
/// any gets a second.
fn shape(a: &Arch) -> (usize, usize, u8) {
    (a.stages, a.input_pool, a.weight_bits)
}

/// The largest candidate (most MACs; ties: smallest flash) of each group of `feasible`
/// under `key`, largest first.
fn largest_per<K: Ord>(feasible: &[Candidate], key: impl Fn(&Arch) -> K) -> Vec<Candidate> {
    let mut best: BTreeMap<K, &Candidate> = BTreeMap::new();
    for c in feasible {
        let e = best.entry(key(&c.arch)).or_insert(c);
        if (c.macs, std::cmp::Reverse(c.fit.flash_bytes))
            > (e.macs, std::cmp::Reverse(e.fit.flash_bytes))
        {
            *e = c;
        }
    }
    let mut out: Vec<Candidate> = best.into_values().cloned().collect();
    out.sort_by(|a, b| {
        b.macs
            .cmp(&a.macs)
            .then(a.fit.flash_bytes.cmp(&b.fit.flash_bytes))
    });
    out
}

/// Step 3, the candidate pool in priority order (a plan that cannot afford all of them
/// drops from the end): first the largest candidate of every network shape
/// ([`shape`]: stages, input pooling, weight bits), fewest stages and finest input
/// first, then the largest of every shape and classifier width not yet in, largest
/// first. Within a group, the largest
/// candidate is the most capacity that the memory, latency and training-time budgets
/// buy for that shape.
pub fn family_pool(feasible: &[Candidate]) -> Vec<Candidate> {
    let mut pool = largest_per(feasible, shape);
    // Shallow and full-resolution shapes first: they learn fastest in the recipes the
    // job can afford (measured: one stage beat two on digits, 97.0% against 95.4% on
    // average over the benchmark's random networks, and on Fashion-MNIST, 86.2% against
    // 82.5% for the largest networks of the two shapes).
    pool.sort_by_key(|c| {
        (
            c.arch.stages,
            c.arch.input_pool,
            std::cmp::Reverse(c.arch.weight_bits),
        )
    });
    for c in largest_per(feasible, |a| (shape(a), a.fc)) {
        if !pool.iter().any(|p| p.arch == c.arch) {
            pool.push(c);
        }
    }
    pool
}

/// The plan of the short trainings: pool size, images per rung-0 training, and the
/// growth factor between rungs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RungPlan {
    /// Candidates trained in rung 0.
    pub pool: usize,
    /// Images per candidate in rung 0.
    pub rung0_images: usize,
    /// Candidates promoted to rung 1 (`ceil(pool / eta)`; 0 when that is one: rung 0
    /// then decides).
    pub promoted: usize,
    /// Images per candidate in rung 1 (`eta` times rung 0).
    pub rung1_images: usize,
}

/// Plan two rungs within `seconds`, for candidates costing `per_image` seconds each
/// (largest pool first, shrunk until rung 0 gets at least [`MIN_RUNG0_IMAGES`]).
pub fn plan(
    per_image: &[f64],
    seconds: f64,
    eta: usize,
    batch: usize,
    eval_images: usize,
) -> Option<RungPlan> {
    let eta = eta.max(2);
    for n in (2..=per_image.len()).rev() {
        let costs = &per_image[..n];
        // With a single survivor rung 0 decides: no rung 1.
        let promoted = match n.div_ceil(eta) {
            1 => 0,
            p => p,
        };
        // Rung 1 takes the dearest `promoted` as a bound; evaluation costs about a
        // third of a training image per held-out image, charged as training images.
        let mut sorted = costs.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let rung0: f64 = costs.iter().sum();
        let rung1: f64 = sorted[..promoted].iter().sum::<f64>() * eta as f64;
        let eval = (n + promoted) as f64 * eval_images as f64 / 3.0;
        let mean = rung0 / n as f64;
        let images = (seconds / mean.max(1e-12) - eval) * mean / (rung0 + rung1);
        if images >= MIN_RUNG0_IMAGES.max(batch) as f64 {
            let rung0_images = images as usize;
            return Some(RungPlan {
                pool: n,
                rung0_images,
                promoted,
                rung1_images: rung0_images * eta,
            });
        }
    }
    None
}

/// Most of the training time the search may take to afford its smallest useful
/// comparison ([`floor_seconds`]) when `search_fraction` gives less.
pub const MAX_SEARCH_SHARE: f64 = 0.10;

/// Candidates of the smallest useful comparison.
const MIN_POOL: usize = 3;

/// Seconds of the smallest useful comparison: the first [`MIN_POOL`] candidates of the
/// pool (costs per image `per_image`), each trained [`MIN_RUNG0_IMAGES`] images and
/// evaluated, as [`plan`] charges them.
pub fn floor_seconds(per_image: &[f64], batch: usize, eval_images: usize) -> f64 {
    let costs = &per_image[..per_image.len().min(MIN_POOL)];
    let images = MIN_RUNG0_IMAGES.max(batch) as f64 + eval_images as f64 / 3.0;
    // A little over, so that `plan` (which floors the image count) affords the pool.
    costs.iter().sum::<f64>() * images * 1.02
}

/// Standard errors of the difference within which the cheaper network wins the final
/// decision ([`tie_break`]): a dearer network must lead by more, a one-sided test at
/// about 98% of the evaluation error alone (the short trainings' own spread from run to
/// run comes on top of it).
const TIE_ERRORS: f64 = 2.0;

/// The final decision among `ranked` (best short-training accuracy first, too-slow
/// candidates last): the candidate that trains fastest (`per_image`, the cost model's
/// seconds per image) among those whose accuracy is within [`TIE_ERRORS`] standard
/// errors of the best, where the standard error is that of the difference of two
/// accuracies each measured on the `n` evaluation images: `sqrt((p_best q_best + p q) /
/// n)`. The position in `ranked` of that candidate when it is not already first.
///
/// A short training on a thousand images separates networks only to about two points;
/// within that, the cheaper network is the safer choice, because the job trains it
/// through its whole recipe. Measured on Fashion-MNIST:
/// - at 1,784 images the proxy put a 16-channel network 0.5 points above a 4-channel
///   one that trains in 75% of the time; the benchmark's trainings give 86.39% and
///   86.65%;
/// - in a main job (15 epochs), a 16-channel network at half resolution led a 4-channel
///   full-resolution one by 1.8 points after 1,000 images (74.2% against 72.4%), within
///   the 1.9-point error of their difference but outside the 1.4-point error of one
///   accuracy; it then trained to 90.91% int8, and the 4-channel one to 91.57% in an
///   earlier main job (92.15% with the later weight decay);
/// - the same two networks in three searches on Fashion-MNIST: 74.2% against 72.4% at
///   1,000 images, 75.8% against 74.3% at 1,529 images, 74.1% against 71.5% at 986
///   images. The short trainings favour the half-resolution network by 1.5-2.6 points
///   where its full trainings end 1.2 points behind: a lead of one error of the
///   difference (2.0 points at 986 images) is not evidence enough to pay for a dearer
///   network;
/// - a fourth main-job search led with the half-resolution network by 3.3 points at
///   1,198 images (76.6% against 73.3%): 1.7 errors of the difference, so the tie at
///   1.5 errors took it. Four searches with other seeds put the 4-channel network 1.7 to
///   2.9 points ahead of a 16-channel half-resolution one (985-1,185 images). The lead
///   is the short training's bias towards the quicker learner, not evidence; a dearer
///   network must lead by 2 errors (3.9 points at these accuracies on 1,000 evaluation
///   images).
fn tie_break(
    ranked: &[usize],
    results: &[Vec<ProxyResult>],
    per_image: &[f64],
    eval_images: usize,
    too_slow: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let acc = |i: usize| results[i].last().map_or(0.0, |r| r.accuracy);
    let stopped = |i: usize| results[i].last().is_some_and(|r| r.stopped);
    let first = *ranked.first()?;
    if too_slow(first) || stopped(first) {
        return None;
    }
    let best = acc(first);
    let var = |p: f64| p * (1.0 - p) / eval_images.max(1) as f64;
    let within = |p: f64| p >= best - TIE_ERRORS * (var(best) + var(p)).sqrt();
    let pos = (0..ranked.len())
        .filter(|&p| !too_slow(ranked[p]) && !stopped(ranked[p]) && within(acc(ranked[p])))
        .min_by(|&a, &b| per_image[ranked[a]].total_cmp(&per_image[ranked[b]]))?;
    (pos != 0).then_some(pos)
}

/// Run the search (see the module docs).
pub fn spikenas(
    space: &SearchSpace,
    ctx: &SearchData<'_>,
    cfg: &SearchConfig,
) -> Result<SearchOutcome, SearchError> {
    let started = Instant::now();
    let input = &ctx.input;
    let cells = cells::enumerate(&space.ops, space.backward);
    let mut feasible = Feasible::enumerate(space, &cells, input, ctx.memory, ctx.latency);
    if feasible.candidates.is_empty() {
        return Err(match (feasible.smallest, feasible.fastest) {
            (None, Some((arch, instructions))) => {
                super::too_slow_error(ctx.board, arch, instructions, ctx.latency)
            }
            (smallest, _) => nothing_fits(ctx.board, smallest),
        });
    }
    let say = |msg: String| {
        if cfg.progress {
            eprintln!("search: {msg}");
        }
    };
    say(format!(
        "{} feasible of {} candidates ({} canonical cells; {} over memory, {} over latency, {} too coarse, {} int4 dominated by int8) in {:.1} s",
        feasible.candidates.len(),
        feasible.generated,
        cells.len(),
        feasible.pruned_by_memory,
        feasible.pruned_by_compute,
        feasible.pruned_by_detail,
        feasible.pruned_by_dominance,
        started.elapsed().as_secs_f64()
    ));
    // Step 2: the cost of training on this machine.
    let model = match cfg.cost_model {
        Some(m) => m,
        None => CostModel::calibrate(
            &feasible,
            cfg.train_budget.as_ref(),
            input,
            &ctx.data.train,
            &cfg.recipe,
            CALIBRATION_STEPS,
            &ctx.device,
        )?,
    };
    say(format!(
        "training cost here: {}",
        cost::describe(&model, cfg.recipe.conv)
    ));
    if let Some(budget) = &cfg.train_budget {
        feasible.restrict_to_trainable(input, &model, budget, TRAIN_MARGIN);
        if feasible.candidates.is_empty() {
            return Err(SearchError::NothingTrainable {
                board: ctx.board.into(),
                images: budget.images,
                seconds: budget.seconds,
            });
        }
        say(format!(
            "{} trainable within {:.0} s ({} images); {} too slow to train",
            feasible.candidates.len(),
            budget.seconds,
            budget.images,
            feasible.pruned_by_training
        ));
    }
    // Step 3: the pool, largest first.
    let mut pool = family_pool(&feasible.candidates);
    pool.truncate(cfg.pool.max(1));
    // The short trainings run at the network's own timesteps (measured: a proxy at one
    // timestep ranks a little worse, Kendall tau 0.780 against 0.817 on Fashion-MNIST).
    let per_image: Vec<f64> = pool
        .iter()
        .map(|c| model.seconds_per_image(&c.arch, input))
        .collect();
    // The search's share of the training it chooses for: of the time budget, or of the
    // recipe's estimated time where that is shorter (small datasets).
    let recipe_seconds = cfg.train_budget.map(|b| {
        let mut t: Vec<f64> = per_image.iter().map(|c| c * b.images as f64).collect();
        t.sort_by(f64::total_cmp);
        b.seconds.min(t[t.len() / 2])
    });
    let eval_images = ctx.data.val.len().clamp(
        MIN_EVAL_IMAGES.min(ctx.data.train.len() / 2),
        MAX_EVAL_IMAGES,
    );
    // The short trainings' recipe (smaller batches) and what an image costs in it.
    let proxy_recipe = fidelity::proxy_recipe(&cfg.recipe);
    let batch = proxy_recipe.batch_size.max(1);
    let batch_factor = if proxy_recipe.batch_size == cfg.recipe.batch_size {
        1.0
    } else {
        cost::batch_factor(
            &model,
            &pool[0].arch,
            input,
            &ctx.data.train,
            &proxy_recipe,
            CALIBRATION_STEPS,
            &ctx.device,
        )?
    };
    let proxy_cost: Vec<f64> = per_image.iter().map(|c| c * batch_factor).collect();
    let share = recipe_seconds.map_or(cfg.time_budget.as_secs_f64(), |s| s * cfg.search_fraction);
    // A short job (digits: seconds of training) still affords the smallest useful
    // comparison, or as much of it as a tenth of its training pays for (the plan then
    // trains fewer candidates), never less than its share.
    let floor = floor_seconds(&proxy_cost, batch, eval_images) + started.elapsed().as_secs_f64();
    let search_seconds = match recipe_seconds {
        Some(r) if share < floor => floor.min(MAX_SEARCH_SHARE * r).max(share),
        _ => share,
    }
    .min(cfg.time_budget.as_secs_f64());
    say(format!(
        "search budget {search_seconds:.1} s ({:.1}% of the training)",
        recipe_seconds.map_or(f64::NAN, |r| 100.0 * search_seconds / r)
    ));
    let left = (search_seconds - started.elapsed().as_secs_f64()).max(0.0);
    let mut records: Vec<CandidateRecord> = Vec::new();
    let record = |c: &Candidate, proxy: Vec<ProxyResult>| CandidateRecord {
        arch: c.arch.to_string(),
        macs: c.macs,
        instructions: Some(ctx.latency.instructions(&c.arch)),
        fit: c.fit.clone(),
        score: proxy.last().map(|p| p.accuracy),
        train_seconds: cfg
            .train_budget
            .map(|b| model.seconds(&c.arch, input, b.images)),
        proxy,
    };
    let Some(plan) = plan(&proxy_cost, left, cfg.eta, batch, eval_images) else {
        // No time for short trainings: the largest candidate of the pool.
        say(format!(
            "no time for short trainings ({left:.1} s left); taking the largest trainable candidate"
        ));
        let best = pool[0].clone();
        records.push(record(&best, Vec::new()));
        return Ok(outcome(
            best,
            f64::NAN,
            &feasible,
            cells.len(),
            space,
            records,
            started,
            "no time for short trainings: largest trainable candidate".into(),
            model,
        ));
    };
    pool.truncate(plan.pool);
    say(format!(
        "successive halving: {} candidates x {} images, best {} x {} images, in batches of {batch} ({batch_factor:.2}x the recipe's cost per image; {:.0} s planned)",
        plan.pool,
        plan.rung0_images,
        plan.promoted,
        if plan.promoted > 0 {
            plan.rung1_images
        } else {
            0
        },
        left
    ));
    let proxy_data = ProxyData::new(
        ctx.data,
        if plan.promoted > 0 {
            plan.rung1_images
        } else {
            plan.rung0_images
        },
        MIN_EVAL_IMAGES,
        MAX_EVAL_IMAGES,
        cfg.seed,
    );
    let proxy = Proxy {
        input: *input,
        data: &proxy_data,
        recipe: proxy_recipe,
        device: ctx.device.clone(),
    };
    // A wall-clock guard: the plan rests on estimated costs; never overrun it by more
    // than a quarter.
    let deadline = search_seconds * 1.25;
    let mut results: Vec<Vec<ProxyResult>> = vec![Vec::new(); pool.len()];
    let shapes: Vec<_> = pool.iter().map(|c| shape(&c.arch)).collect();
    let mut alive: Vec<usize> = (0..pool.len()).collect();
    let mut previous: Vec<usize> = Vec::new();
    let rungs: &[(usize, usize, usize)] = if plan.promoted > 0 {
        &[
            (0, plan.rung0_images, plan.promoted),
            (1, plan.rung1_images, 1),
        ]
    } else {
        &[(0, plan.rung0_images, 1)]
    };
    for &(rung, images, keep) in rungs {
        for &i in &alive {
            if started.elapsed().as_secs_f64() > deadline && results.iter().any(|r| !r.is_empty()) {
                say(format!("search budget spent: {} not trained", pool[i].arch));
                continue;
            }
            // A network of a shape that a look found far behind learns as slowly: the
            // pool's later members of a shape differ from its first only in classifier
            // width and capacity (measured on digits: two stages with fc 256 and 128
            // reached 28.2% and 22.6% where one stage reached 90.8%).
            if let Some(j) = stopped_sibling(&shapes, &results, i, rung) {
                say(format!(
                    "rung {rung}: {} not trained: {} of its shape was far behind",
                    pool[i].arch, pool[j].arch
                ));
                continue;
            }
            // The best accuracy at each look among this rung's completed trainings.
            let best_at = |k: usize| {
                results
                    .iter()
                    .filter_map(|r| r.get(rung).filter(|r| !r.stopped))
                    .filter_map(|r| r.looks.get(k).copied())
                    .reduce(f64::max)
            };
            let look_eval = LOOK_EVAL_IMAGES.min(proxy_data.eval_len());
            let stop = |k: usize, p: f64| {
                best_at(k).is_some_and(|b| look_stops(k, p, b, look_eval, input.classes))
            };
            let looks = fidelity::Looks {
                at: LOOK_AT_EIGHTHS.iter().map(|k| images * k / 8).collect(),
                eval_images: look_eval,
                stop: &stop,
            };
            let r = proxy.train_with_looks(&pool[i].arch, images, cfg.seed, &looks)?;
            let seen: Vec<String> = r
                .looks
                .iter()
                .map(|a| format!("{:.1}%", 100.0 * a))
                .collect();
            say(format!(
                "rung {rung}: {} {:.2}%{} ({:.0} img/s; {:.1} s, planned {:.1} s; looks {})",
                pool[i].arch,
                100.0 * r.accuracy,
                if r.stopped {
                    format!(" after {} images: far behind, stopped", r.images)
                } else {
                    String::new()
                },
                r.images_per_second,
                r.seconds,
                proxy_cost[i] * (images as f64 + proxy_data.eval_len() as f64 / 3.0),
                seen.join(", ")
            ));
            results[i].push(r);
        }
        // Only those trained at this rung compete in it.
        alive.retain(|&i| results[i].len() == rung + 1);
        // Rank by accuracy at this rung; a candidate whose measured speed says the
        // recipe would overrun its time by more than a quarter goes last (the cost
        // model admitted it; a smaller overrun only shortens its schedule, and the
        // speed of a short run on a busy machine is noisy).
        let too_slow = |i: usize| {
            cfg.train_budget.is_some_and(|b| {
                // Measured in the short trainings' smaller batches: at the recipe's
                // batch an image costs `batch_factor` times less.
                let ips = results[i].last().map_or(0.0, |r| r.images_per_second) * batch_factor;
                ips > 0.0 && b.images as f64 / ips > SLOW_TOLERANCE * b.seconds
            })
        };
        let stopped = |i: usize| results[i].last().is_some_and(|r| r.stopped);
        alive.sort_by(|&a, &b| {
            (too_slow(a) || stopped(a))
                .cmp(&(too_slow(b) || stopped(b)))
                .then(
                    results[b]
                        .last()
                        .map(|r| r.accuracy)
                        .partial_cmp(&results[a].last().map(|r| r.accuracy))
                        .unwrap_or(std::cmp::Ordering::Equal),
                )
        });
        if alive.is_empty() {
            // Out of time before this rung trained anything: the previous rung decides.
            alive = previous.clone();
            break;
        }
        if keep == 1 {
            if let Some(pos) = tie_break(
                &alive,
                &results,
                &per_image,
                proxy_data.eval_len(),
                &too_slow,
            ) {
                let fastest = alive.remove(pos);
                say(format!(
                    "{} is within {TIE_ERRORS} standard errors of the best short training (error of the difference) and trains fastest: it wins",
                    pool[fastest].arch
                ));
                alive.insert(0, fastest);
            }
        }
        // A training a look stopped does not go on to the next rung.
        if alive.iter().any(|&i| !stopped(i)) {
            alive.retain(|&i| !stopped(i));
        }
        alive.truncate(keep);
        previous = alive.clone();
    }
    let winner = alive[0];
    // The report lists what the search trained: a pool member skipped (its shape far
    // behind, or the budget spent) has nothing to show.
    for (i, c) in pool.iter().enumerate() {
        if !results[i].is_empty() {
            records.push(record(c, results[i].clone()));
        }
    }
    let best_acc = results[winner].last().map_or(f64::NAN, |r| r.accuracy);
    Ok(outcome(
        pool[winner].clone(),
        best_acc,
        &feasible,
        cells.len(),
        space,
        records,
        started,
        match plan.promoted {
            0 => format!(
                "short trainings: best of {} candidates at {} images",
                plan.pool, plan.rung0_images
            ),
            p => format!(
                "successive halving: {} candidates, best of {p} at {} images",
                plan.pool, plan.rung1_images
            ),
        },
        model,
    ))
}

#[allow(clippy::too_many_arguments)]
fn outcome(
    best: Candidate,
    best_score: f64,
    feasible: &Feasible,
    cells: usize,
    space: &SearchSpace,
    records: Vec<CandidateRecord>,
    started: Instant,
    stopped_by: String,
    model: CostModel,
) -> SearchOutcome {
    SearchOutcome {
        strategy: Strategy::Spikenas,
        best: best.arch,
        best_score,
        signal: "proxy accuracy (short training, held-out images)".into(),
        best_fit: best.fit,
        canonical_cells: cells,
        space_size: cells * space.macro_archs(best.arch.cell).len(),
        generated: feasible.generated,
        pruned_by_memory: feasible.pruned_by_memory,
        pruned_by_compute: feasible.pruned_by_compute,
        pruned_by_training: feasible.pruned_by_training,
        feasible: feasible.candidates.len(),
        scored: records.iter().map(|r| r.proxy.len()).sum(),
        cache_hits: 0,
        seconds: started.elapsed().as_secs_f64(),
        stopped_by,
        cost_model: Some(model),
        candidates: records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_fits_the_budget_and_shrinks_the_pool_when_short() {
        let costs = vec![1e-3; 12];
        let p = plan(&costs, 200.0, 3, 64, MAX_EVAL_IMAGES).unwrap();
        assert_eq!((p.pool, p.promoted), (12, 4));
        assert_eq!(p.rung1_images, 3 * p.rung0_images);
        let spent = 12.0 * p.rung0_images as f64 * 1e-3
            + 4.0 * p.rung1_images as f64 * 1e-3
            + 16.0 * MAX_EVAL_IMAGES as f64 / 3.0 * 1e-3;
        assert!(spent <= 200.0 + 1e-6 && spent > 195.0, "{spent}");
        // Less time: fewer candidates, never fewer than MIN_RUNG0_IMAGES images.
        let q = plan(&costs, 20.0, 3, 64, MAX_EVAL_IMAGES).unwrap();
        assert!(q.pool < 12 && q.rung0_images >= MIN_RUNG0_IMAGES, "{q:?}");
        assert!(plan(&costs, 0.5, 3, 64, MAX_EVAL_IMAGES).is_none());
    }

    #[test]
    fn within_two_standard_errors_the_cheapest_wins() {
        let r = |accuracy: f64| vec![result(accuracy, false)];
        // Candidates 0..3: accuracies .778, .773, .729; seconds per image 2, 1, 0.5.
        let results = vec![r(0.778), r(0.773), r(0.729)];
        let per_image = [2.0, 1.0, 0.5];
        let never = |_: usize| false;
        // SE at 1,000 images is 1.3 points: candidate 1 (second in the ranking) wins;
        // candidate 2 is cheaper but 4.9 points behind.
        assert_eq!(
            tie_break(&[0, 1, 2], &results, &per_image, 1000, &never),
            Some(1)
        );
        // At 100,000 images the SE is 0.13 points: the best stays.
        assert_eq!(
            tie_break(&[0, 1, 2], &results, &per_image, 100_000, &never),
            None
        );
        // The error is that of a difference: 1.8 points at 1,000 images is within it
        // (1.9 points), although outside the error of one accuracy (1.4).
        let close = vec![r(0.742), r(0.724)];
        assert_eq!(
            tie_break(&[0, 1], &close, &[2.0, 1.0], 1000, &never),
            Some(1)
        );
        // 2.6 points at 986 images: 1.3 errors of the difference (2.0), a tie; so is
        // the main job's 3.3 points after 1,198 images (1.7 errors of 1.9 on 1,000
        // evaluation images); 4.5 points at 1,000 images: 2.3 errors (2.0), no tie.
        let leads = vec![r(0.741), r(0.715)];
        assert_eq!(
            tie_break(&[0, 1], &leads, &[2.0, 1.0], 986, &never),
            Some(1)
        );
        let main_job = vec![r(0.766), r(0.733)];
        assert_eq!(
            tie_break(&[0, 1], &main_job, &[2.0, 1.0], 1000, &never),
            Some(1)
        );
        let apart = vec![r(0.742), r(0.697)];
        assert_eq!(tie_break(&[0, 1], &apart, &[2.0, 1.0], 1000, &never), None);
        // A too-slow candidate never wins the tie.
        let slow1 = |i: usize| i == 1;
        assert_eq!(
            tie_break(&[0, 1, 2], &results, &per_image, 1000, &slow1),
            None
        );
        // Nor does one that a look stopped.
        let stopped = vec![r(0.778), vec![result(0.773, true)], r(0.729)];
        assert_eq!(
            tie_break(&[0, 1, 2], &stopped, &per_image, 1000, &never),
            None
        );
    }

    fn result(accuracy: f64, stopped: bool) -> ProxyResult {
        ProxyResult {
            accuracy,
            images: 1000,
            images_per_second: 500.0,
            seconds: 2.0,
            looks: Vec::new(),
            stopped,
        }
    }

    #[test]
    fn far_behind_at_a_look_means_three_errors_of_the_difference() {
        // digits at 3/8 (200 images): two stages at chance against one stage at 79.5%.
        assert!(hopeless(0.105, 0.795, 200));
        // Fashion-MNIST at 5/8: 70.5% against 72.5% is no reason to stop.
        assert!(!hopeless(0.705, 0.725, 200));
        // The boundary: at 50% against 60% on 200 images the error of the difference is
        // 4.9 points, three of them 14.8: not hopeless; 45% against 60% is.
        assert!(!hopeless(0.50, 0.60, 200));
        assert!(hopeless(0.45, 0.60, 200));
        // More images, smaller error: 50% against 60% on 2,000 images is.
        assert!(hopeless(0.50, 0.60, 2000));
        // The best itself never is.
        assert!(!hopeless(0.60, 0.60, 200));
    }

    #[test]
    fn the_first_look_stops_only_a_training_still_at_chance() {
        // digits: two stages at 10.5% against 79.5%: at chance and far behind.
        assert!(look_stops(0, 0.105, 0.795, 200, 10));
        // Fashion-MNIST: the best network at 29.5% against 49.5% is far behind
        // but has started (chance 10%, three errors 6.4 points): it goes on ...
        assert!(!look_stops(0, 0.295, 0.495, 200, 10));
        // ... and at the second look the same gap stops it.
        assert!(look_stops(1, 0.295, 0.495, 200, 10));
        // At chance but not far behind: no stop at any look.
        assert!(!look_stops(0, 0.10, 0.14, 200, 10));
        // Two classes: 55% is still chance on 200 images.
        assert!(look_stops(0, 0.55, 0.95, 200, 2));
    }

    #[test]
    fn a_shape_found_far_behind_is_not_trained_again_in_that_rung() {
        let shapes = [(1, 1, 8), (2, 1, 8), (2, 1, 8), (2, 2, 8)];
        let done = |stopped| vec![result(0.5, stopped)];
        let results = vec![done(false), done(true), Vec::new(), Vec::new()];
        assert_eq!(stopped_sibling(&shapes, &results, 2, 0), Some(1));
        // Another shape is trained; so is the same shape at the next rung.
        assert_eq!(stopped_sibling(&shapes, &results, 3, 0), None);
        assert_eq!(stopped_sibling(&shapes, &results, 2, 1), None);
        // A sibling that completed its training does not stop the next.
        let completed = vec![done(false), done(false), Vec::new(), Vec::new()];
        assert_eq!(stopped_sibling(&shapes, &completed, 2, 0), None);
    }

    #[test]
    fn single_survivor_means_one_rung() {
        let p = plan(&[1e-3, 1e-3], 100.0, 3, 16, 100).unwrap();
        assert_eq!((p.pool, p.promoted), (2, 0));
    }

    #[test]
    fn one_representative_per_family_the_largest() {
        let mk = |s: &str, m: u64, flash: u64| Candidate {
            arch: s.parse().unwrap(),
            macs: m,
            fit: crate::search::Fit {
                fits: true,
                flash_bytes: flash,
                ram_bytes: 0,
                worst_ratio: 0.5,
                overflow: None,
                regions: Vec::new(),
            },
        };
        let pool = family_pool(&[
            mk("cell=0003.0000.0000.0000,ch=4,stages=1,fc=0", 10, 1),
            mk("cell=0003.0000.0000.0000,ch=8,stages=1,fc=0", 30, 5),
            mk("cell=0002.0000.0000.0000,ch=16,stages=1,fc=0", 30, 4),
            mk("cell=0003.0000.0000.0000,ch=4,stages=2,fc=0", 20, 1),
        ]);
        // Shapes first (one stage, then two), then no further classifier widths.
        assert_eq!(pool.len(), 2);
        // Equal MACs: the smaller flash wins.
        assert_eq!((pool[0].arch.channels, pool[0].fit.flash_bytes), (16, 4));
        assert_eq!(pool[1].arch.stages, 2);
        let wider = family_pool(&[
            mk("cell=0003.0000.0000.0000,ch=8,stages=1,fc=0", 30, 5),
            mk("cell=0003.0000.0000.0000,ch=4,stages=1,fc=64", 20, 5),
            mk("cell=0003.0000.0000.0000,ch=4,stages=2,fc=0", 10, 1),
        ]);
        let order: Vec<(usize, usize)> = wider.iter().map(|c| (c.arch.stages, c.arch.fc)).collect();
        assert_eq!(order, vec![(1, 0), (2, 0), (1, 64)]);
        // Fewer stages first even when smaller.
        let shallow_first = family_pool(&[
            mk("cell=0003.0000.0000.0000,ch=8,stages=2,fc=0", 90, 5),
            mk("cell=0003.0000.0000.0000,ch=4,stages=1,fc=0", 20, 5),
        ]);
        assert_eq!(shallow_first[0].arch.stages, 1);
    }
}
