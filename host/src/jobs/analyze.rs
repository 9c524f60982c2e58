//! The `analyze-ops` job, SpikeNAS step 1: the operation impact analysis. Short proxy trainings measure how
//! much each cell operation, backward edges and the number of timesteps contribute to
//! accuracy. Ops whose presence does not help are dropped from the search space (a
//! smaller space is a faster search), and T is the smallest value within a tolerance
//! of the best. The result is a [`SearchSpace`] (what `search` reads) plus the
//! measurements behind it.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::arch::{Arch, Cell, Op};
use crate::data::{input_shape, Dataset};
use crate::rng::Rng;
use crate::search::space::{MacroSpace, SearchSpace};
use crate::snn::lif::LifParams;
use crate::snn::Network;
use crate::train::{self, TrainConfig};

/// How to run the analysis.
#[derive(Debug, Clone)]
pub struct AnalysisConfig {
    /// Random cells per op.
    pub cells_per_op: usize,
    /// The proxy network's macro configuration (its cell is replaced).
    pub proxy: Arch,
    /// Proxy training recipe.
    pub train: TrainConfig,
    /// An op is kept if removing it costs at least this much accuracy (fraction).
    pub keep_threshold: f32,
    /// Timesteps tried.
    pub timesteps: Vec<usize>,
    /// T is the smallest within this much (fraction) of the best accuracy.
    pub t_tolerance: f32,
    /// Seed.
    pub seed: u64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            cells_per_op: 3,
            proxy: "ch=8,stages=2,fc=0,t=4,pool=2"
                .parse()
                .expect("valid proxy"),
            train: TrainConfig {
                epochs: 2,
                progress: false,
                ..Default::default()
            },
            keep_threshold: 0.002,
            timesteps: vec![2, 4, 6],
            t_tolerance: 0.005,
            seed: 0,
        }
    }
}

/// One proxy training.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trial {
    /// The architecture trained.
    pub arch: String,
    /// Validation accuracy after the proxy training.
    pub accuracy: f32,
}

/// The effect of one op: accuracy with it and with it replaced by zero, on the same cells.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpImpact {
    /// The op.
    pub op: Op,
    /// Mean accuracy of the cells that use it.
    pub with: f32,
    /// Mean accuracy of the same cells with it removed.
    pub without: f32,
    /// `with - without`.
    pub impact: f32,
    /// Kept in the search space.
    pub kept: bool,
    /// The trainings behind the figures.
    pub trials: Vec<(Trial, Trial)>,
}

/// The whole analysis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Analysis {
    /// Dataset it ran on.
    pub dataset: String,
    /// Per-op impact.
    pub ops: Vec<OpImpact>,
    /// Accuracy with and without a backward edge (same cells).
    pub backward: OpImpact,
    /// Accuracy per T for the proxy with the first cell.
    pub timesteps: Vec<(usize, f32)>,
    /// The chosen T.
    pub chosen_timesteps: usize,
    /// The resulting search space.
    pub space: SearchSpace,
    /// Wall time.
    pub seconds: f64,
}

/// Errors of the analysis.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// Network.
    #[error(transparent)]
    Network(#[from] crate::snn::network::NetworkError),
    /// Training.
    #[error(transparent)]
    Train(#[from] train::TrainError),
    /// Tensor op.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The configuration cannot give a result.
    #[error("analysis configuration: {0}")]
    Config(String),
}

impl AnalysisConfig {
    /// Refuses settings that leave the analysis without measurements (every op needs at
    /// least one pair of trials, and T at least one candidate).
    pub fn check(&self) -> Result<(), AnalysisError> {
        if self.cells_per_op == 0 {
            return Err(AnalysisError::Config(
                "cells_per_op is 0, so no op would be measured; give at least 1 \
                 (--cells-per-op 1)"
                    .into(),
            ));
        }
        if self.timesteps.is_empty() || self.timesteps.contains(&0) {
            return Err(AnalysisError::Config(format!(
                "timesteps {:?}: give at least one, each at least 1",
                self.timesteps
            )));
        }
        if self.train.epochs == 0 {
            return Err(AnalysisError::Config(
                "0 training epochs measure nothing; give at least 1 (--epochs 1)".into(),
            ));
        }
        Ok(())
    }
}

/// A random valid forward cell that uses `op` on at least one edge.
fn cell_with(op: Op, rng: &mut Rng) -> Cell {
    loop {
        let c = crate::search::random_cell(rng);
        if c.edges().iter().any(|e| e.op == op)
            && c.edges().iter().filter(|e| e.op != op).count() > 0
        {
            return c;
        }
    }
}

/// `cell` with every edge carrying `op` replaced by `replacement` (and re-validated).
fn replace(cell: &Cell, op: Op, replacement: Op) -> Option<Cell> {
    let mut c = *cell;
    for row in c.ops.iter_mut() {
        for o in row.iter_mut() {
            if *o == op {
                *o = replacement;
            }
        }
    }
    c.validated().ok()
}

/// `cell` without `op`: replaced by zero, or where that breaks the cell (op03 must
/// not be zero), by the cheapest other op.
fn without_op(cell: &Cell, op: Op) -> Option<Cell> {
    let fallback = if op == Op::Skip {
        Op::Conv1x1
    } else {
        Op::Skip
    };
    replace(cell, op, Op::Zero).or_else(|| replace(cell, op, fallback))
}

fn trial(
    arch: Arch,
    data: &Dataset,
    device: &Device,
    cfg: &AnalysisConfig,
) -> Result<Trial, AnalysisError> {
    let (net, vars) = Network::init(
        arch,
        input_shape(data),
        LifParams::default(),
        device,
        cfg.seed,
    )?;
    train::train(&net, &vars, data, device, &cfg.train)?;
    let split = if data.val.is_empty() {
        &data.test
    } else {
        &data.val
    };
    let accuracy = train::evaluate(&net, split, device, cfg.train.conv)?;
    Ok(Trial {
        arch: arch.to_string(),
        accuracy,
    })
}

/// Trains the proxy with cell `with` and with cell `without` and reports the pair to
/// `progress` under `label`.
fn paired_trial(
    label: &str,
    with: Cell,
    without: Cell,
    data: &Dataset,
    device: &Device,
    cfg: &AnalysisConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<(Trial, Trial), AnalysisError> {
    let a = trial(
        Arch {
            cell: with,
            ..cfg.proxy
        },
        data,
        device,
        cfg,
    )?;
    let b = trial(
        Arch {
            cell: without,
            ..cfg.proxy
        },
        data,
        device,
        cfg,
    )?;
    progress(&format!(
        "{label}: {} {:.2}% vs {} {:.2}%",
        a.arch,
        100.0 * a.accuracy,
        b.arch,
        100.0 * b.accuracy
    ));
    Ok((a, b))
}

impl OpImpact {
    /// The impact of `op` from its (with, without) trial pairs; kept when the impact
    /// reaches `keep_threshold`.
    fn from_trials(op: Op, trials: Vec<(Trial, Trial)>, keep_threshold: f32) -> Self {
        let with = mean(trials.iter().map(|t| t.0.accuracy));
        let without = mean(trials.iter().map(|t| t.1.accuracy));
        let impact = with - without;
        OpImpact {
            op,
            with,
            without,
            impact,
            kept: impact >= keep_threshold,
            trials,
        }
    }
}

fn mean(xs: impl Iterator<Item = f32>) -> f32 {
    let v: Vec<f32> = xs.collect();
    v.iter().sum::<f32>() / v.len().max(1) as f32
}

/// Run the analysis on `data` (its validation split judges), reporting each trial to
/// `progress`.
pub fn analyze(
    data: &Dataset,
    device: &Device,
    cfg: &AnalysisConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Analysis, AnalysisError> {
    cfg.check()?;
    let started = std::time::Instant::now();
    let mut rng = Rng::new(cfg.seed ^ 0xa11a);
    let mut ops = Vec::new();
    for op in [Op::Skip, Op::Conv1x1, Op::Conv3x3, Op::AvgPool3x3] {
        let mut trials = Vec::new();
        while trials.len() < cfg.cells_per_op {
            let cell = cell_with(op, &mut rng);
            let Some(without) = without_op(&cell, op) else {
                continue;
            };
            if without == cell {
                continue;
            }
            let label = format!("{op:?}");
            trials.push(paired_trial(
                &label, cell, without, data, device, cfg, progress,
            )?);
        }
        ops.push(OpImpact::from_trials(op, trials, cfg.keep_threshold));
    }
    // Conv3x3 is the op that makes a cell learn; never drop it.
    if let Some(c3) = ops.iter_mut().find(|o| o.op == Op::Conv3x3) {
        c3.kept = true;
    }
    // Backward edges: the same cells with a backward edge 2->1 (node 2's previous value
    // into node 1) added where the pair (1, 2) has no forward edge.
    let mut back_trials = Vec::new();
    let mut draws = 0usize;
    while back_trials.len() < cfg.cells_per_op {
        draws += 1;
        if draws > 100_000 {
            break;
        }
        let forward = crate::search::random_cell(&mut rng);
        if forward.ops[1][2] != Op::Zero {
            continue;
        }
        let mut cell = forward;
        cell.ops[2][1] = Op::Conv3x3;
        let Ok(backward) = cell.validated() else {
            continue;
        };
        if !backward.has_backward() {
            continue;
        }
        back_trials.push(paired_trial(
            "backward", backward, forward, data, device, cfg, progress,
        )?);
    }
    let backward = OpImpact::from_trials(Op::Conv3x3, back_trials, cfg.keep_threshold);
    // Timesteps, on the first conv3x3 cell.
    let t_cell = ops
        .iter()
        .find(|o| o.op == Op::Conv3x3)
        .and_then(|o| o.trials.first())
        .and_then(|t| t.0.arch.parse::<Arch>().ok())
        .map(|a| a.cell);
    let t_cell = t_cell.unwrap_or(Arch::default().cell);
    let mut timesteps = Vec::new();
    for &t in &cfg.timesteps {
        let tr = trial(
            Arch {
                cell: t_cell,
                timesteps: t,
                ..cfg.proxy
            },
            data,
            device,
            cfg,
        )?;
        progress(&format!("T={t}: {:.2}%", 100.0 * tr.accuracy));
        timesteps.push((t, tr.accuracy));
    }
    let best = timesteps.iter().map(|x| x.1).fold(0.0f32, f32::max);
    let chosen_timesteps = timesteps
        .iter()
        .filter(|x| x.1 >= best - cfg.t_tolerance)
        .map(|x| x.0)
        .min()
        .unwrap_or(cfg.proxy.timesteps);
    let mut kept: Vec<Op> = vec![Op::Zero];
    kept.extend(ops.iter().filter(|o| o.kept).map(|o| o.op));
    let space = SearchSpace {
        ops: kept,
        backward: backward.kept,
        macros: MacroSpace {
            timesteps: chosen_timesteps,
            ..SearchSpace::shipped().macros
        },
        provenance: format!(
            "spikenas-host analyze-ops on {} (proxy {}, {} cells per op, {} epochs)",
            data.spec.name, cfg.proxy, cfg.cells_per_op, cfg.train.epochs
        ),
    };
    Ok(Analysis {
        dataset: data.spec.name.clone(),
        ops,
        backward,
        timesteps,
        chosen_timesteps,
        space,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_variants_exist_for_random_cells() {
        // The construction the analysis uses must find valid backward cells quickly.
        let mut rng = Rng::new(5);
        let mut found = 0;
        for _ in 0..2000 {
            let f = crate::search::random_cell(&mut rng);
            if f.ops[1][2] != Op::Zero {
                continue;
            }
            let mut c = f;
            c.ops[2][1] = Op::Conv3x3;
            if c.validated().is_ok_and(|b| b.has_backward()) {
                found += 1;
            }
        }
        assert!(found > 20, "{found}");
    }

    #[test]
    fn replacement_removes_the_op_and_keeps_validity() {
        let mut rng = Rng::new(3);
        for op in [Op::Skip, Op::Conv1x1, Op::Conv3x3, Op::AvgPool3x3] {
            for _ in 0..20 {
                let c = cell_with(op, &mut rng);
                assert!(c.edges().iter().any(|e| e.op == op));
                if let Some(r) = without_op(&c, op) {
                    assert!(r.edges().iter().all(|e| e.op != op), "{c} -> {r}");
                    assert_eq!(r.validated().unwrap(), r);
                }
            }
        }
    }

    #[test]
    fn a_config_that_measures_nothing_is_refused() {
        let data = crate::data::load(&crate::data::Source::Digits, &Default::default()).unwrap();
        for (cfg, needle) in [
            (
                AnalysisConfig {
                    cells_per_op: 0,
                    ..Default::default()
                },
                "cells_per_op is 0",
            ),
            (
                AnalysisConfig {
                    timesteps: vec![],
                    ..Default::default()
                },
                "timesteps",
            ),
        ] {
            let err = analyze(&data, &Device::Cpu, &cfg, &mut |_| {}).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
