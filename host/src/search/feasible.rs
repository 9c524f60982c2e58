//! The feasible space of a board: every (canonical cell, macro configuration) pair
//! that fits the board's memory (the exact memory model), its latency budget, keeps
//! enough spatial detail, and can be trained in the job's time on this machine.
//!
//! The search ranks only these; the search-quality benchmark draws its random
//! architectures uniformly from the same set. [`fit_of`] is the memory check the
//! search applies to a candidate on a board, [`Fit`] its verdict and [`MemoryCheck`]
//! the form every strategy takes it in (the latency check is
//! [`crate::latency::Budget`]).

use serde::{Deserialize, Serialize};

use crate::arch::{Arch, Cell, InputShape};
use crate::boards::{Profile, Targets};
use crate::latency::Budget;
use crate::memory;

use super::cost::CostModel;
use super::pooling_keeps_detail;
use super::space::{macs, SearchSpace};

/// The memory verdict on one candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// True if every region fits.
    pub fits: bool,
    /// Flash (or, on Linux boards, model RAM) bytes.
    pub flash_bytes: u64,
    /// RAM bytes over all RAM regions.
    pub ram_bytes: u64,
    /// Largest used/capacity ratio over the regions.
    pub worst_ratio: f64,
    /// The first region over budget and by how much, if any.
    pub overflow: Option<String>,
    /// Per region: (name, used bytes, capacity bytes).
    #[serde(default)]
    pub regions: Vec<(String, u64, u64)>,
}

/// Decides whether a candidate fits the board (the memory model, in microseconds).
pub trait MemoryCheck: Sync {
    /// The verdict for `arch`.
    fn check(&self, arch: &Arch) -> Fit;
}

impl<F: Fn(&Arch) -> Fit + Sync> MemoryCheck for F {
    fn check(&self, arch: &Arch) -> Fit {
        self(arch)
    }
}

/// The memory model's verdict as the search sees it.
pub fn fit_of(arch: &Arch, input: &InputShape, board: &Profile, targets: &Targets) -> Fit {
    let e = memory::estimate(arch, input, board, targets);
    let worst_ratio = e
        .regions
        .iter()
        .filter(|r| r.capacity > 0)
        .map(|r| r.used as f64 / r.capacity as f64)
        .fold(0.0, f64::max);
    Fit {
        fits: e.fits,
        flash_bytes: e.flash_bytes,
        ram_bytes: e.sram_bytes,
        worst_ratio,
        overflow: e
            .first_overflow()
            .map(|o| o.to_string())
            .or(e.problem.clone()),
        regions: e
            .regions
            .iter()
            .map(|r| (r.name.clone(), r.used, r.capacity))
            .collect(),
    }
}

/// The final training the search chooses for: how many images it will see and in
/// how much time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainBudget {
    /// Images the recipe trains (epochs x training images).
    pub images: u64,
    /// Seconds the training may take (the job's `--train-time`).
    pub seconds: f64,
}

/// One feasible candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The architecture.
    pub arch: Arch,
    /// Multiply-accumulates per timestep.
    pub macs: u64,
    /// The memory verdict (fits).
    pub fit: Fit,
}

/// The feasible candidates and what each check rejected.
#[derive(Debug, Clone, Default)]
pub struct Feasible {
    /// Candidates that pass every check, in enumeration order.
    pub candidates: Vec<Candidate>,
    /// (cell, macro) pairs generated.
    pub generated: usize,
    /// Rejected: pooling leaves too little detail or the classifier sees nothing.
    pub pruned_by_detail: usize,
    /// Rejected by the latency budget (MACs per timestep).
    pub pruned_by_compute: usize,
    /// Rejected by the memory model.
    pub pruned_by_memory: usize,
    /// Rejected because 8-bit weights of the same network fit (int8 is more accurate
    /// at the same training cost).
    pub pruned_by_dominance: usize,
    /// Rejected because the recipe would not finish in the training time.
    pub pruned_by_training: usize,
    /// The candidate that needs least memory among those rejected by memory.
    pub smallest: Option<(Arch, Fit)>,
    /// The candidate with the fewest predicted instructions among those rejected by
    /// the latency budget, and that number.
    pub fastest: Option<(Arch, f64)>,
}

impl Feasible {
    /// Every candidate of `space` over `cells` that passes the memory, latency and
    /// detail checks, with 4-bit variants dropped where the 8-bit one fits.
    pub fn enumerate(
        space: &SearchSpace,
        cells: &[Cell],
        input: &InputShape,
        memory: &dyn MemoryCheck,
        latency: &Budget,
    ) -> Feasible {
        use rayon::prelude::*;
        // Each cell on its own (in parallel: the search waits for this), then merged
        // in cell order, so that the candidates come in the same order as one pass
        // over the cells would give.
        let per_cell: Vec<(Feasible, Vec<Candidate>)> = cells
            .par_iter()
            .map(|&cell| Feasible::enumerate_cell(space, cell, input, memory, latency))
            .collect();
        let mut out = Feasible::default();
        let mut fours = Vec::new();
        for (part, four) in per_cell {
            out.generated += part.generated;
            out.pruned_by_detail += part.pruned_by_detail;
            out.pruned_by_compute += part.pruned_by_compute;
            out.pruned_by_memory += part.pruned_by_memory;
            if let Some((arch, fit)) = part.smallest {
                super::keep_smallest(&mut out.smallest, arch, fit);
            }
            if let Some((arch, instructions)) = part.fastest {
                if out.fastest.is_none_or(|(_, f)| instructions < f) {
                    out.fastest = Some((arch, instructions));
                }
            }
            out.candidates.extend(part.candidates);
            fours.extend(four);
        }
        let fits8: std::collections::HashSet<Arch> =
            out.candidates.iter().map(|c| c.arch).collect();
        for c in fours {
            if fits8.contains(&Arch {
                weight_bits: 8,
                ..c.arch
            }) {
                out.pruned_by_dominance += 1;
            } else {
                out.candidates.push(c);
            }
        }
        out
    }

    /// The checks of [`Feasible::enumerate`] on one cell: the 8-bit candidates that
    /// pass, with the tallies, and the 4-bit ones (judged against every cell's 8-bit
    /// ones afterwards).
    fn enumerate_cell(
        space: &SearchSpace,
        cell: Cell,
        input: &InputShape,
        memory: &dyn MemoryCheck,
        latency: &Budget,
    ) -> (Feasible, Vec<Candidate>) {
        let mut out = Feasible::default();
        let mut fours = Vec::new();
        for arch in space.macro_archs(cell) {
            out.generated += 1;
            if input.head_features(&arch) == 0 || !pooling_keeps_detail(&arch, input) {
                out.pruned_by_detail += 1;
                continue;
            }
            let m = macs(&arch, input);
            let instructions = latency.instructions(&arch);
            if instructions > latency.max_instructions {
                out.pruned_by_compute += 1;
                if out.fastest.is_none_or(|(_, f)| instructions < f) {
                    out.fastest = Some((arch, instructions));
                }
                continue;
            }
            let fit = memory.check(&arch);
            if !fit.fits {
                out.pruned_by_memory += 1;
                super::keep_smallest(&mut out.smallest, arch, fit);
                continue;
            }
            let c = Candidate { arch, macs: m, fit };
            if arch.weight_bits == 8 {
                out.candidates.push(c);
            } else {
                fours.push(c);
            }
        }
        (out, fours)
    }

    /// Keep the candidates whose whole recipe trains within `budget` at the costs of
    /// `model` (with `margin` of the time spare for evaluation and noise).
    pub fn restrict_to_trainable(
        &mut self,
        input: &InputShape,
        model: &CostModel,
        budget: &TrainBudget,
        margin: f64,
    ) {
        let before = self.candidates.len();
        let limit = budget.seconds * (1.0 - margin);
        self.candidates
            .retain(|c| model.seconds(&c.arch, input, budget.images) <= limit);
        self.pruned_by_training += before - self.candidates.len();
    }

    /// The candidate with the least training work.
    pub fn cheapest(&self, input: &InputShape) -> Option<Arch> {
        let key = |c: &&Candidate| super::cost::work(&c.arch, input);
        let lo = self
            .candidates
            .iter()
            .min_by(|a, b| key(a).total_cmp(&key(b)))?;
        Some(lo.arch)
    }

    /// The candidate with the most training work at or below `max_work` (the cheapest
    /// where none is).
    pub fn dearest_within(&self, input: &InputShape, max_work: f64) -> Option<Arch> {
        let key = |c: &&Candidate| super::cost::work(&c.arch, input);
        self.candidates
            .iter()
            .filter(|c| key(c) <= max_work)
            .max_by(|a, b| key(a).total_cmp(&key(b)))
            .map(|c| c.arch)
            .or_else(|| self.cheapest(input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Op;
    use crate::search::cells;
    use crate::search::cost::work;
    use crate::search::space::MacroSpace;

    fn space() -> SearchSpace {
        SearchSpace {
            ops: vec![Op::Conv1x1, Op::Conv3x3],
            backward: false,
            macros: MacroSpace {
                channels: vec![4, 8, 16],
                stages: vec![1, 2],
                fc: vec![0, 32],
                input_pool: vec![1, 2],
                weight_bits: vec![8, 4],
                timesteps: 2,
                cluster: 1,
            },
            provenance: "test".into(),
        }
    }

    const INPUT: InputShape = InputShape {
        channels: 1,
        height: 28,
        width: 28,
        classes: 10,
    };

    /// A fake memory model: flash is the weight count at its bit width, capped.
    fn cap(limit: u64) -> impl Fn(&Arch) -> Fit {
        move |a: &Arch| {
            let bytes = macs(a, &INPUT) / 50 * a.weight_bits as u64 / 8;
            Fit {
                fits: bytes <= limit,
                flash_bytes: bytes,
                ram_bytes: 0,
                worst_ratio: bytes as f64 / limit as f64,
                overflow: None,
                regions: Vec::new(),
            }
        }
    }

    #[test]
    fn every_candidate_passes_every_check_and_counts_add_up() {
        let s = space();
        let cells = cells::enumerate(&s.ops, false);
        let latency = Budget {
            max_instructions: 4e6,
            ..Budget::unlimited(INPUT)
        };
        let f = Feasible::enumerate(&s, &cells, &INPUT, &cap(20_000), &latency);
        assert!(!f.candidates.is_empty());
        for c in &f.candidates {
            assert!(c.fit.fits && latency.allows(&c.arch));
            if c.arch.weight_bits == 4 {
                // Only where the 8-bit twin does not fit.
                assert!(
                    !cap(20_000)(&Arch {
                        weight_bits: 8,
                        ..c.arch
                    })
                    .fits
                );
            }
        }
        assert!(f.pruned_by_memory > 0 && f.pruned_by_compute > 0 && f.pruned_by_dominance > 0);
        assert_eq!(
            f.generated,
            f.candidates.len()
                + f.pruned_by_detail
                + f.pruned_by_compute
                + f.pruned_by_memory
                + f.pruned_by_dominance
        );
        assert_eq!(f.generated, cells.len() * s.macro_archs(cells[0]).len());
    }

    #[test]
    fn candidates_come_in_cell_order_as_one_pass_gives_them() {
        // The benchmark draws by index from this list: the parallel enumeration must
        // give the order of a plain loop over the cells and their macro configurations.
        let s = space();
        let cells = cells::enumerate(&s.ops, false);
        let latency = Budget {
            max_instructions: 4e6,
            ..Budget::unlimited(INPUT)
        };
        let memory = cap(20_000);
        let f = Feasible::enumerate(&s, &cells, &INPUT, &memory, &latency);
        let fits = |a: &Arch| {
            a.weight_bits == 8
                || !memory(&Arch {
                    weight_bits: 8,
                    ..*a
                })
                .fits
        };
        let input_ok = |a: &Arch| INPUT.head_features(a) > 0 && pooling_keeps_detail(a, &INPUT);
        let passes = |a: &Arch| input_ok(a) && latency.allows(a) && memory(a).fits && fits(a);
        let all: Vec<Arch> = cells.iter().flat_map(|&c| s.macro_archs(c)).collect();
        let mut expected: Vec<Arch> = all
            .iter()
            .filter(|a| a.weight_bits == 8 && passes(a))
            .copied()
            .collect();
        expected.extend(all.iter().filter(|a| a.weight_bits == 4 && passes(a)));
        let got: Vec<Arch> = f.candidates.iter().map(|c| c.arch).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn training_budget_removes_the_dear_candidates() {
        let s = space();
        let cells = cells::enumerate(&s.ops, false);
        let mut f = Feasible::enumerate(
            &s,
            &cells,
            &INPUT,
            &cap(u64::MAX),
            &Budget::unlimited(INPUT),
        );
        let lo = f.cheapest(&INPUT).unwrap();
        let hi = f.dearest_within(&INPUT, f64::INFINITY).unwrap();
        assert!(work(&lo, &INPUT) < work(&hi, &INPUT));
        let mid = f.dearest_within(&INPUT, work(&hi, &INPUT) - 1.0).unwrap();
        assert!(work(&mid, &INPUT) < work(&hi, &INPUT) && work(&mid, &INPUT) >= work(&lo, &INPUT));
        assert_eq!(f.dearest_within(&INPUT, 0.0), Some(lo));
        let model = CostModel {
            fixed_s: 0.0,
            per_unit_s: 1e-9,
        };
        let budget = TrainBudget {
            images: 1000,
            seconds: model.seconds(&hi, &INPUT, 1000) / 2.0,
        };
        let n = f.candidates.len();
        f.restrict_to_trainable(&INPUT, &model, &budget, 0.0);
        assert!(f.pruned_by_training > 0 && f.candidates.len() + f.pruned_by_training == n);
        assert!(f.candidates.iter().any(|c| c.arch == lo));
        assert!(f.candidates.iter().all(|c| c.arch != hi));
    }
}
