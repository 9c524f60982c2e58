//! The latency model: instructions per inference of the firmware runtime, predicted from
//! the architecture alone, with per-core costs calibrated on the device
//! (`targets.yaml`, field `latency`; measured by `scripts/calibrate-latency`).
//!
//! `instructions = per_pixel_mac * stem MACs (dense, once per image: direct encoding)
//!               + per_synop * synaptic operations (spike-driven, all timesteps)
//!               + per_row * weight rows (one per input spike and kernel tap)
//!               + per_reduction_synop * synaptic operations of the reductions
//!                 (the pooled convolutions that start a stage, instead of the two
//!                 terms above: on the ARMv7E-M they add pre-summed 2x2 kernels)
//!               + per_neuron * LIF neuron updates (all timesteps)
//!               + per_pool_pixel * pixels read by the input pooling (once per image)
//!               + per_elem * elements of skip and average-pool edges (all timesteps)
//!               + per_layer * layers run (all timesteps: the fixed cost of a call)
//!               + per_channel * requantised channels (all timesteps: per-channel
//!                 constants)`
//!
//! A spike-driven layer adds, for every input spike and kernel tap, one row of
//! output-channel weights to its accumulators: `per_synop` is the cost of one weight of a
//! row, `per_row` the cost of reaching the row (decoding the spike, bounds, pointers),
//! which is what makes narrow layers dearer per synaptic operation.
//!
//! The synaptic operations are the host's exact count where the network exists (a
//! trained or synthetic model: `validate` prints the prediction beside the measurement),
//! and `activity * spike-layer MACs` before training (the search), `activity` being the
//! share of spike-layer MACs that trained networks executed; the rows scale with the
//! same share. Time is instructions over the clock: Cortex-M0+/M4/M7 execute the
//! runtime's integer code at roughly one instruction per cycle; real boards measure
//! cycles (`validate` on probe-rs).

use spikenas_firmware::shape::{EdgeShape, LayerShape, OpShape};
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
    /// Weight rows of every spike-driven layer but the reductions and the row-wise
    /// convolutions (see `row_wise`), all timesteps, if every input spiked: input neurons
    /// times kernel taps (convolutions), inputs (linear layers).
    pub spike_rows: u64,
    /// The part of `spike_macs` in the reductions (pooled convolutions).
    pub reduction_macs: u64,
    /// LIF neuron updates, all timesteps.
    pub neuron_updates: u64,
    /// Pixels the input pooling reads (once per image; 0 without pooling).
    pub pool_pixels: u64,
    /// Elements of every skip and average-pool edge (all timesteps).
    pub map_elems: u64,
    /// Layers run (all timesteps): reductions, cell edges, the head, the linear layers.
    pub layer_steps: u64,
    /// Channels requantised (all timesteps): every BatchNorm and weighted layer's
    /// output channels, each with its own constants.
    pub channel_steps: u64,
}

/// The number of terms of the latency model (see the module docs), in the order of
/// [`Work::terms`] and [`Costs::per_term`].
pub const TERMS: usize = 9;

/// The names of the model's terms, as `targets.yaml` spells the costs.
pub const TERM_NAMES: [&str; TERMS] = [
    "per_pixel_mac",
    "per_synop",
    "per_row",
    "per_reduction_synop",
    "per_neuron",
    "per_pool_pixel",
    "per_elem",
    "per_layer",
    "per_channel",
];

impl Work {
    /// The work of `arch` on `input`.
    pub fn of(arch: &Arch, input: &InputShape) -> Work {
        Work::of_shape(&arch.shape(input))
    }

    /// The work of a network of shape `shape`: the stem and the input pooling once,
    /// every other layer at each timestep.
    pub fn of_shape(shape: &NetworkShape) -> Work {
        // One pass over the layers (the search calls this for every candidate).
        let mut w = Work::default();
        let _ = shape.for_each_layer::<()>(|l| {
            if let LayerShape::Stem { .. } = l {
                w.stem_macs += l.macs();
                return Ok(());
            }
            let macs = l.macs();
            w.spike_macs += macs;
            match (l, l.weights()) {
                (LayerShape::Reduction { .. }, _) => w.reduction_macs += macs,
                (l, _) if row_wise(&l) => {}
                (_, Some((_, cols))) => w.spike_rows += macs / cols.max(1) as u64,
                _ => {}
            }
            w.neuron_updates += l.lif_neurons();
            match l {
                LayerShape::Nodes { .. } => {}
                LayerShape::Edge {
                    edge:
                        EdgeShape {
                            op: OpShape::Skip | OpShape::AvgPool3,
                            ..
                        },
                    g,
                    ..
                } => {
                    w.map_elems += g.n() as u64;
                    w.layer_steps += 1;
                }
                _ => w.layer_steps += 1,
            }
            w.channel_steps += l.requants().iter().sum::<usize>() as u64;
            Ok(())
        });
        let t = shape.timesteps.max(1) as u64;
        for per_step in [
            &mut w.spike_macs,
            &mut w.spike_rows,
            &mut w.reduction_macs,
            &mut w.neuron_updates,
            &mut w.map_elems,
            &mut w.layer_steps,
            &mut w.channel_steps,
        ] {
            *per_step *= t;
        }
        if shape.input_pool > 1 {
            w.pool_pixels = (shape.channels * shape.height * shape.width) as u64;
        }
        w
    }

    /// The model's terms for `synops` executed synaptic operations (spread over the
    /// layers in proportion to their MACs), in [`TERM_NAMES`] order.
    pub fn terms(&self, synops: f64) -> [f64; TERMS] {
        let share = |part: u64| {
            if self.spike_macs > 0 {
                synops * part as f64 / self.spike_macs as f64
            } else {
                0.0
            }
        };
        let reduction = share(self.reduction_macs);
        [
            self.stem_macs as f64,
            synops - reduction,
            share(self.spike_rows),
            reduction,
            self.neuron_updates as f64,
            self.pool_pixels as f64,
            self.map_elems as f64,
            self.layer_steps as f64,
            self.channel_steps as f64,
        ]
    }
}

/// True for the cell convolutions that ARMv7E-M scatters a spike row at a time
/// ([`spikenas_firmware::conv_spikes::row_wise`], assuming packed int8 weights, as the
/// search does): their weight rows are not counted in [`Work::spike_rows`], the nine taps
/// of a spike costing about their synaptic operations there. (ARMv6-M's fitted cost
/// per row is 0, so the split does not matter there.)
fn row_wise(l: &LayerShape) -> bool {
    match l {
        LayerShape::Edge {
            edge:
                EdgeShape {
                    op: OpShape::Conv { k },
                    ..
                },
            g,
            ..
        } => spikenas_firmware::conv_spikes::row_wise(*k, g.c, g.w, false),
        _ => false,
    }
}

/// Per-core instruction costs of the firmware runtime (`targets.yaml`, `latency`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Costs {
    /// Instructions per dense MAC of the stem on the pixels.
    pub per_pixel_mac: f64,
    /// Instructions per executed synaptic operation (one weight of a row).
    pub per_synop: f64,
    /// Instructions per weight row reached (input spike and kernel tap).
    pub per_row: f64,
    /// Instructions per synaptic operation of a reduction (rows included).
    pub per_reduction_synop: f64,
    /// Instructions per LIF neuron update (decay, threshold, reset, requantisation and
    /// the loops around them).
    pub per_neuron: f64,
    /// Instructions per pixel read by the input pooling.
    pub per_pool_pixel: f64,
    /// Instructions per element of skip and average-pool edges.
    pub per_elem: f64,
    /// Instructions per layer run (calls, loop set-up, per-layer requantisation
    /// constants).
    pub per_layer: f64,
    /// Instructions per requantised channel (its constants, its loop).
    pub per_channel: f64,
    /// Synaptic operations per spike-layer MAC of trained networks (for predictions
    /// before training).
    pub activity: f64,
    /// The command that measured these figures, and on what.
    pub measured_with: String,
}

impl Costs {
    /// The costs in [`TERM_NAMES`] order.
    pub fn per_term(&self) -> [f64; TERMS] {
        [
            self.per_pixel_mac,
            self.per_synop,
            self.per_row,
            self.per_reduction_synop,
            self.per_neuron,
            self.per_pool_pixel,
            self.per_elem,
            self.per_layer,
            self.per_channel,
        ]
    }

    /// Costs from fitted per-term values (in [`TERM_NAMES`] order).
    pub fn from_terms(c: [f64; TERMS], activity: f64, measured_with: String) -> Costs {
        Costs {
            per_pixel_mac: c[0],
            per_synop: c[1],
            per_row: c[2],
            per_reduction_synop: c[3],
            per_neuron: c[4],
            per_pool_pixel: c[5],
            per_elem: c[6],
            per_layer: c[7],
            per_channel: c[8],
            activity,
            measured_with,
        }
    }

    /// Predicted instructions per inference for `work`, with the exact synaptic
    /// operations where known, else `activity * spike_macs`.
    pub fn instructions(&self, work: &Work, synops: Option<f64>) -> f64 {
        let synops = synops.unwrap_or(self.activity * work.spike_macs as f64);
        work.terms(synops)
            .iter()
            .zip(self.per_term())
            .map(|(x, c)| x * c)
            .sum()
    }

    /// The checks `targets.yaml` values must pass: finite, non-negative, activity in 0..=1.
    pub fn check(&self) -> Result<(), String> {
        let named = TERM_NAMES
            .iter()
            .zip(self.per_term())
            .chain([(&"activity", self.activity)]);
        for (name, v) in named {
            if !v.is_finite() || v < 0.0 {
                return Err(format!(
                    "latency.{name} is {v}; it must be a finite, non-negative number"
                ));
            }
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

/// Non-negative least-squares costs (in [`TERM_NAMES`] order) over `samples`,
/// minimising the *relative* error of each network (rows weighted by 1 / measured
/// instructions, so that a large network does not drown the small ones). A term no
/// sample exercises gets cost 0; so does one whose unconstrained cost comes out negative
/// (the most negative is dropped and the rest refitted, until none is: a cost cannot be
/// negative, and a negative one only trades against a collinear term). `None` when the
/// samples do not determine the remaining costs.
pub fn fit(samples: &[Sample]) -> Option<[f64; TERMS]> {
    let mut used: Vec<usize> = (0..TERMS)
        .filter(|&j| samples.iter().any(|s| s.work.terms(s.synops)[j] > 0.0))
        .collect();
    loop {
        let costs = least_squares(samples, &used)?;
        let worst = (0..used.len())
            .filter(|&k| costs[k] < 0.0)
            .min_by(|&a, &b| costs[a].total_cmp(&costs[b]));
        match worst {
            Some(k) => {
                used.remove(k);
            }
            None => {
                let mut out = [0.0; TERMS];
                for (k, &j) in used.iter().enumerate() {
                    out[j] = costs[k];
                }
                return Some(out);
            }
        }
    }
}

/// Weighted least squares of the terms `used` (see [`fit`]); their costs in that order.
fn least_squares(samples: &[Sample], used: &[usize]) -> Option<Vec<f64>> {
    let n = used.len();
    if samples.len() < n {
        return None;
    }
    // Normal equations of the weighted problem, augmented with the right-hand side.
    let mut m = vec![vec![0.0f64; n + 1]; n];
    for s in samples {
        let w = 1.0 / s.instructions.max(1.0);
        let all = s.work.terms(s.synops);
        let x: Vec<f64> = used.iter().map(|&j| all[j] * w).collect();
        for (mi, xi) in m.iter_mut().zip(&x) {
            for (mij, xj) in mi.iter_mut().zip(&x) {
                *mij += xi * xj;
            }
            mi[n] += xi * s.instructions * w;
        }
    }
    // Gauss-Jordan with partial pivoting, on columns scaled to unit diagonal so that
    // terms of very different magnitude (MACs vs layers) pivot fairly.
    let scale: Vec<f64> = (0..n)
        .map(|j| m[j][j].sqrt().max(f64::MIN_POSITIVE))
        .collect();
    for (i, row) in m.iter_mut().enumerate() {
        for j in 0..n {
            row[j] /= scale[i] * scale[j];
        }
        row[n] /= scale[i];
    }
    for col in 0..n {
        let pivot = (col..n).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        m.swap(col, pivot);
        let p = m[col][col];
        if p.abs() < 1e-12 {
            return None;
        }
        for v in m[col].iter_mut() {
            *v /= p;
        }
        let pivot_row = m[col].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col];
                for (v, p) in row.iter_mut().zip(&pivot_row) {
                    *v -= f * p;
                }
            }
        }
    }
    Some((0..n).map(|k| m[k][n] / scale[k]).collect())
}

/// Instructions per dense MAC where a target has no calibrated costs (targets.yaml
/// `latency`): every MAC of every timestep executed, one instruction each.
pub const UNCALIBRATED_INSTRUCTIONS_PER_MAC: f64 = 1.0;

impl Costs {
    /// The stand-in for a target without calibration: one instruction per MAC, every
    /// spike-layer MAC executed, LIF updates free.
    pub fn uncalibrated() -> Costs {
        Costs {
            per_pixel_mac: UNCALIBRATED_INSTRUCTIONS_PER_MAC,
            per_synop: UNCALIBRATED_INSTRUCTIONS_PER_MAC,
            per_row: 0.0,
            per_reduction_synop: UNCALIBRATED_INSTRUCTIONS_PER_MAC,
            per_neuron: 0.0,
            per_pool_pixel: 0.0,
            per_elem: 0.0,
            per_layer: 0.0,
            per_channel: 0.0,
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

    /// `n` networks with pseudo-random work (every term exercised unless `zero`
    /// names one) and their instructions under `costs`.
    fn samples(n: usize, costs: [f64; TERMS], zero: Option<usize>) -> Vec<Sample> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |scale: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1 + (state >> 33) % scale
        };
        (0..n)
            .map(|_| {
                let mut x: Vec<u64> = (0..TERMS + 1).map(|_| next(10_000)).collect();
                if let Some(z) = zero {
                    x[z] = 0;
                }
                // synops x[1] + x[3], of which x[3] in reductions; rows x[2]; MACs
                // k = x[9] times the synops.
                let (synops, k) = (x[1] + x[3], x[9]);
                let work = Work {
                    stem_macs: x[0],
                    spike_macs: synops * k,
                    spike_rows: x[2] * k,
                    reduction_macs: x[3] * k,
                    neuron_updates: x[4],
                    pool_pixels: x[5],
                    map_elems: x[6],
                    layer_steps: x[7],
                    channel_steps: x[8],
                };
                let synops = synops as f64;
                let instructions = work
                    .terms(synops)
                    .iter()
                    .zip(costs)
                    .map(|(x, c)| x * c)
                    .sum();
                Sample {
                    work,
                    synops,
                    instructions,
                }
            })
            .collect()
    }

    #[test]
    fn fit_recovers_known_costs_and_refuses_too_few_samples() {
        let costs = [2.0, 1.5, 9.0, 4.0, 40.0, 3.0, 20.0, 100.0, 60.0];
        let all = samples(12, costs, None);
        let got = fit(&all).unwrap();
        for (g, c) in got.iter().zip(costs) {
            assert!((g - c).abs() < 1e-6 * c, "{got:?}");
        }
        assert_eq!(fit(&all[..TERMS - 1]), None, "fewer networks than costs");
        // A term no network exercises is not determined: it gets 0, the rest still fit.
        let no_pool = samples(12, costs, Some(5));
        let got = fit(&no_pool).unwrap();
        assert_eq!(got[5], 0.0);
        assert!((got[7] - 100.0).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn fit_never_returns_a_negative_cost() {
        // Instructions that a negative per-layer cost would fit best: the constrained
        // fit sets it to 0 and refits the rest.
        let mut s = samples(12, [2.0, 1.5, 9.0, 4.0, 40.0, 3.0, 20.0, 0.0, 60.0], None);
        for x in &mut s {
            x.instructions -= 50.0 * x.work.layer_steps as f64;
        }
        let got = fit(&s).unwrap();
        assert!(got.iter().all(|&c| c >= 0.0), "{got:?}");
        assert_eq!(got[7], 0.0, "{got:?}");
    }

    #[test]
    fn rows_and_elements_by_hand() {
        // Stem 1->4 on 4x4 (pool 2 of 8x8), a skip edge 0->1, 1x1 convs 0->3 and 1->3,
        // head, output 4*2*2 -> 10; T 3.
        let arch: Arch = "cell=0102.0002.0000.0000,ch=4,stages=1,fc=0,t=3,pool=2"
            .parse()
            .unwrap();
        let w = Work::of(&arch, &input(1, 8));
        assert_eq!(w.stem_macs, 4 * 9 * 16);
        // 1x1 convs: 4 inputs x 16 pixels x 1 tap each; output layer: 16 inputs.
        assert_eq!(w.spike_rows, 3 * (2 * 4 * 16 + 16));
        assert_eq!(w.spike_macs, 3 * (2 * 4 * 4 * 16 + 16 * 10));
        // 64 pixels pooled once, the skip edge's 4x4x4 elements per timestep.
        assert_eq!((w.pool_pixels, w.map_elems), (64, 3 * 64));
        // Three edges, the head and the output layer; the two convolutions' 4
        // channels, the head's BatchNorm (4) and the output's 10.
        assert_eq!((w.layer_steps, w.channel_steps), (3 * 5, 3 * 22));
    }

    #[test]
    fn row_wise_convolutions_count_no_rows() {
        // One 3x3 conv edge 0->3 on 4x4 maps (pool 2 of 8x8), output 8*2*2 -> 10; T 2.
        // With 8 channels ARMv7E-M scatters it a spike row at a time: only the output
        // layer's 32 inputs count as rows. With 12 channels it counts its 12 x 16 x 9.
        let rows = |ch: usize| {
            let arch: Arch = format!("cell=0003.0000.0000.0000,ch={ch},stages=1,fc=0,t=2,pool=2")
                .parse()
                .unwrap();
            Work::of(&arch, &input(1, 8)).spike_rows
        };
        assert_eq!(rows(8), 2 * 8 * 4);
        assert_eq!(rows(12), 2 * (12 * 16 * 9 + 12 * 4));
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
        let mut c = Costs::from_terms([1.0; TERMS], 0.2, String::new());
        assert!(c.check().is_ok());
        c.per_neuron = f64::NAN;
        assert!(c.check().unwrap_err().contains("per_neuron"));
        c.per_neuron = 1.0;
        c.activity = 1.5;
        assert!(c.check().unwrap_err().contains("at most 1"));
    }
}
