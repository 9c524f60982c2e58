//! The latency model: instructions per inference of the firmware runtime, predicted from
//! the architecture alone, with per-core costs calibrated on the device
//! (`targets.yaml`, field `latency`; measured by `scripts/calibrate-latency`).
//!
//! `instructions = per_pixel_mac * stem MACs (dense, once per image: direct encoding)
//!               + per_synop * synaptic operations (spike-driven, all timesteps)
//!               + per_neuron * LIF neuron updates (all timesteps)`
//!
//! The synaptic operations are the host's exact count where the network exists (a
//! trained or synthetic model: `validate` prints the prediction beside the measurement),
//! and `activity * spike-layer MACs` before training (the search), `activity` being the
//! share of spike-layer MACs that trained networks executed. Time is instructions over
//! the clock: Cortex-M0+/M4/M7 execute the runtime's integer code at roughly one
//! instruction per cycle; real boards measure cycles (`validate` on probe-rs).

use spikenas_firmware::NetworkShape;

use crate::arch::{Arch, InputShape};
use crate::boards::Profile;

/// Work of one inference, counted from the architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Work {
    /// MACs of the stem convolution on the pixels (once per image).
    pub stem_macs: u64,
    /// MACs of every spike-driven layer (convolutions and linear layers), all timesteps:
    /// the synaptic operations if every input spiked.
    pub spike_macs: u64,
    /// LIF neuron updates, all timesteps.
    pub neuron_updates: u64,
}

impl Work {
    /// The work of `arch` on `input`.
    pub fn of(arch: &Arch, input: &InputShape) -> Work {
        Work::of_shape(&arch.shape(input))
    }

    /// The work of a network of shape `shape`: the stem once, every other layer's MACs
    /// and every LIF neuron at each timestep.
    pub fn of_shape(shape: &NetworkShape) -> Work {
        let stem_macs = shape.stem_macs();
        let t = shape.timesteps.max(1) as u64;
        Work {
            stem_macs,
            spike_macs: (shape.macs() - stem_macs) * t,
            neuron_updates: shape.lif_neurons() * t,
        }
    }
}

/// Per-core instruction costs of the firmware runtime (`targets.yaml`, `latency`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Costs {
    /// Instructions per executed synaptic operation (int8 weights).
    pub per_synop: f64,
    /// Instructions per LIF neuron update (decay, threshold, reset, requantisation and
    /// the loops around them).
    pub per_neuron: f64,
    /// Instructions per dense MAC of the stem on the pixels.
    pub per_pixel_mac: f64,
    /// Synaptic operations per spike-layer MAC of trained networks (for predictions
    /// before training).
    pub activity: f64,
    /// The command that measured these figures, and on what.
    pub measured_with: String,
}

impl Costs {
    /// Predicted instructions per inference for `work`, with the exact synaptic
    /// operations where known, else `activity * spike_macs`.
    pub fn instructions(&self, work: &Work, synops: Option<f64>) -> f64 {
        let synops = synops.unwrap_or(self.activity * work.spike_macs as f64);
        self.per_pixel_mac * work.stem_macs as f64
            + self.per_synop * synops
            + self.per_neuron * work.neuron_updates as f64
    }

    /// The checks `targets.yaml` values must pass: finite, non-negative, activity in 0..=1.
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("per_synop", self.per_synop),
            ("per_neuron", self.per_neuron),
            ("per_pixel_mac", self.per_pixel_mac),
            ("activity", self.activity),
        ];
        if let Some((name, v)) = fields.iter().find(|(_, v)| !v.is_finite() || *v < 0.0) {
            return Err(format!(
                "latency.{name} is {v}; it must be a finite, non-negative number"
            ));
        }
        if self.activity > 1.0 {
            return Err(format!(
                "latency.activity is {}; it is a share of MACs, at most 1",
                self.activity
            ));
        }
        Ok(())
    }
}

/// One calibration measurement: a network's work, its synaptic operations and the
/// instructions `validate` counted, per inference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The network's work.
    pub work: Work,
    /// Measured synaptic operations per inference.
    pub synops: f64,
    /// Measured instructions per inference.
    pub instructions: f64,
}

/// Least-squares `(per_pixel_mac, per_synop, per_neuron)` over `samples` (normal
/// equations; `None` when the samples do not determine the three costs).
pub fn fit(samples: &[Sample]) -> Option<[f64; 3]> {
    let row = |s: &Sample| {
        [
            s.work.stem_macs as f64,
            s.synops,
            s.work.neuron_updates as f64,
        ]
    };
    let mut m = [[0.0f64; 4]; 3];
    for s in samples {
        let x = row(s);
        for (mi, xi) in m.iter_mut().zip(x) {
            for (mij, xj) in mi.iter_mut().zip(x) {
                *mij += xi * xj;
            }
            mi[3] += xi * s.instructions;
        }
    }
    // Gauss-Jordan with partial pivoting.
    for col in 0..3 {
        let pivot = (col..3).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        m.swap(col, pivot);
        let p = m[col][col];
        if p.abs() < 1e-9 {
            return None;
        }
        for v in m[col].iter_mut() {
            *v /= p;
        }
        let pivot_row = m[col];
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col];
                for (v, p) in row.iter_mut().zip(pivot_row) {
                    *v -= f * p;
                }
            }
        }
    }
    Some([m[0][3], m[1][3], m[2][3]])
}

/// Instructions per dense MAC where a target has no calibrated costs (targets.yaml
/// `latency`): every MAC of every timestep executed, one instruction each.
pub const UNCALIBRATED_INSTRUCTIONS_PER_MAC: f64 = 1.0;

impl Costs {
    /// The stand-in for a target without calibration: one instruction per MAC, every
    /// spike-layer MAC executed, LIF updates free.
    pub fn uncalibrated() -> Costs {
        Costs {
            per_synop: UNCALIBRATED_INSTRUCTIONS_PER_MAC,
            per_neuron: 0.0,
            per_pixel_mac: UNCALIBRATED_INSTRUCTIONS_PER_MAC,
            activity: 1.0,
            measured_with: "not calibrated: one instruction per MAC".into(),
        }
    }
}

/// The search's latency model and budget on one board: the costs that predict the
/// instructions of one inference (the target's calibration, or
/// [`Costs::uncalibrated`]) and the most one inference may take.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// The target's calibrated costs (or the uncalibrated stand-in).
    pub costs: Costs,
    /// False when the target has no calibration in targets.yaml.
    pub calibrated: bool,
    /// Instructions one inference may take (`clock_hz * ms`, one instruction per
    /// cycle); infinite without a budget.
    pub max_instructions: f64,
    /// The budget in milliseconds, if any.
    pub ms: Option<f64>,
    /// The board's clock in Hz (0 if unknown).
    pub clock_hz: u64,
    /// The input the candidates read.
    pub input: InputShape,
}

impl Budget {
    /// The budget of `latency_ms` per inference on `board` for `input`, with `costs`.
    pub fn new(board: &Profile, costs: Costs, input: InputShape, latency_ms: f64) -> Budget {
        Budget {
            max_instructions: board.clock_hz as f64 * latency_ms / 1000.0,
            costs,
            calibrated: true,
            ms: Some(latency_ms),
            clock_hz: board.clock_hz,
            input,
        }
    }

    /// `board`'s latency model from its target's calibration in `targets` (or the
    /// uncalibrated stand-in), with a budget of `latency_ms` per inference if given.
    pub fn for_board(
        board: &Profile,
        targets: &crate::boards::Targets,
        input: InputShape,
        latency_ms: Option<f64>,
    ) -> Budget {
        let calibrated = targets.get(&board.target).and_then(|t| t.latency.clone());
        let mut b = Budget::new(
            board,
            calibrated.clone().unwrap_or_else(Costs::uncalibrated),
            input,
            latency_ms.unwrap_or(f64::INFINITY),
        );
        b.calibrated = calibrated.is_some();
        b.ms = latency_ms;
        b
    }

    /// No budget, uncalibrated costs: every candidate allowed (tests, search without a
    /// board).
    pub fn unlimited(input: InputShape) -> Budget {
        Budget {
            costs: Costs::uncalibrated(),
            calibrated: false,
            max_instructions: f64::INFINITY,
            ms: None,
            clock_hz: 0,
            input,
        }
    }

    /// Predicted instructions per inference of `arch` (before training).
    pub fn instructions(&self, arch: &Arch) -> f64 {
        self.costs.instructions(&Work::of(arch, &self.input), None)
    }

    /// Milliseconds of `instructions` at the board's clock (one instruction per
    /// cycle); None without a clock.
    pub fn ms_of(&self, instructions: f64) -> Option<f64> {
        (self.clock_hz > 0).then(|| instructions * 1000.0 / self.clock_hz as f64)
    }

    /// True if `arch` is predicted to run within the budget.
    pub fn allows(&self, arch: &Arch) -> bool {
        self.instructions(arch) <= self.max_instructions
    }

    /// Why `instructions` (of the fastest candidate) is over the budget, and the fix.
    pub fn over_budget(&self, instructions: f64) -> String {
        let ms = self
            .ms_of(instructions)
            .map_or(String::new(), |ms| format!(" ({ms:.2} ms)"));
        format!(
            "{instructions:.0} instructions per inference{ms}, but the latency budget of \
             {} ms allows {:.0} ({}); give a larger --latency-ms",
            self.ms.unwrap_or(f64::INFINITY),
            self.max_instructions,
            if self.calibrated {
                "calibrated costs of the target"
            } else {
                "uncalibrated: one instruction per MAC"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(c: usize, hw: usize) -> InputShape {
        InputShape::parse(&format!("{c}x{hw}x{hw}"), 10).unwrap()
    }

    #[test]
    fn work_by_hand() {
        // 1x8x8, ch 8, one conv3x3 edge, fc 256, T 2 (the microbit main job's shape).
        let arch: Arch = "cell=0003.0000.0000.0000,ch=8,stages=1,fc=256,t=2"
            .parse()
            .unwrap();
        let w = Work::of(&arch, &input(1, 8));
        assert_eq!(w.stem_macs, 8 * 9 * 64);
        let per_step = 8 * 8 * 9 * 64 + (8 * 4 * 4) * 256 + 256 * 10;
        assert_eq!(w.spike_macs, 2 * per_step);
        // The edge's LIF (8x8x8), the head's LIF (8x8x8), the hidden layer's (256).
        assert_eq!(w.neuron_updates, 2 * (512 + 512 + 256));
    }

    #[test]
    fn fit_recovers_known_costs_and_refuses_too_few_samples() {
        let costs = [2.0, 5.0, 40.0];
        let works = [
            (100, 1_000, 10),
            (400, 3_000, 90),
            (50, 9_000, 30),
            (900, 500, 200),
        ];
        let samples: Vec<Sample> = works
            .iter()
            .map(|&(stem, syn, neur)| {
                let work = Work {
                    stem_macs: stem,
                    spike_macs: 4 * syn,
                    neuron_updates: neur,
                };
                Sample {
                    work,
                    synops: syn as f64,
                    instructions: costs[0] * stem as f64
                        + costs[1] * syn as f64
                        + costs[2] * neur as f64,
                }
            })
            .collect();
        let got = fit(&samples).unwrap();
        for (g, c) in got.iter().zip(costs) {
            assert!((g - c).abs() < 1e-6, "{got:?}");
        }
        assert_eq!(fit(&samples[..1]), None);
    }

    #[test]
    fn budget_uses_activity_before_training() {
        let catalog = crate::boards::Catalog::discover().unwrap();
        let board = catalog.board("microbit").unwrap();
        let costs = catalog
            .targets()
            .get(&board.target)
            .unwrap()
            .latency
            .clone()
            .expect("nrf51 is calibrated");
        costs.check().unwrap();
        let arch: Arch = "cell=0003.0000.0000.0000,ch=8,stages=1,fc=256,t=2"
            .parse()
            .unwrap();
        let budget = Budget::new(board, costs.clone(), input(1, 8), 1000.0);
        let w = Work::of(&arch, &input(1, 8));
        let expected = costs.instructions(&w, Some(costs.activity * w.spike_macs as f64));
        assert_eq!(budget.instructions(&arch), expected);
        assert!(budget.allows(&arch));
        // 16 MHz for 1 ms: 16,000 instructions, far too few.
        assert!(!Budget::new(board, costs, input(1, 8), 1.0).allows(&arch));
    }

    #[test]
    fn bad_costs_are_named() {
        let mut c = Costs {
            per_synop: 1.0,
            per_neuron: 1.0,
            per_pixel_mac: 1.0,
            activity: 0.2,
            measured_with: String::new(),
        };
        assert!(c.check().is_ok());
        c.per_neuron = f64::NAN;
        assert!(c.check().unwrap_err().contains("per_neuron"));
        c.per_neuron = 1.0;
        c.activity = 1.5;
        assert!(c.check().unwrap_err().contains("at most 1"));
    }
}
