//! What training a candidate costs on the machine at hand.
//!
//! The search must not return a network the job cannot train in its time budget (a
//! 64-channel full-resolution network on a 2-core CPU trains at a few dozen images a
//! second). The cost of one training image is modelled as
//!
//! ```text
//! seconds/image = fixed + per_unit * work(arch),
//! work(arch)   = T * (MACs + NEURON_WORK * neurons)
//! ```
//!
//! MACs (convolutions and classifier) dominate large networks; the element-wise work
//! of LIF, batch-norm and pooling, per neuron and timestep, dominates small ones. The
//! two coefficients are calibrated at the start of a search by timing a few training
//! steps of the cheapest feasible candidate and of a dearer one on the actual device
//! ([`CostModel::calibrate`]), so the figures are this machine's.

use std::time::Instant;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use spikenas_firmware::shape::{LayerShape, OpShape};

use crate::arch::{Arch, InputShape};
use crate::data::Split;
use crate::kernels::ConvBackend;
use crate::snn::lif::LifParams;
use crate::snn::Network;
use crate::train::TrainConfig;

use super::feasible::{Feasible, TrainBudget};
use super::space::macs;

/// Relative cost of one neuron-timestep of element-wise work (LIF forward and
/// backward through time, batch-norm, pooling) against one multiply-accumulate of a
/// convolution, which runs as a GEMM at a far higher rate.
pub const NEURON_WORK: f64 = 32.0;

/// Neuron-sized element-wise work per timestep: every LIF, batch-norm and pooled
/// element the network touches in one step.
pub fn neurons(arch: &Arch, input: &InputShape) -> u64 {
    arch.shape(input).sum(|layer| {
        let n = match *layer {
            // BN -> LIF on the previous stage, conv -> BN -> pool to this stage.
            LayerShape::Reduction { input, out, .. } => 2 * input.n() + 2 * out.n(),
            // Each conv edge: LIF on its source, BN on its output; every edge adds into
            // a node.
            LayerShape::Edge { edge, g, .. } if edge.op != OpShape::Zero => {
                (1 + 2 * edge.kernel().is_some() as usize) * g.n()
            }
            LayerShape::Head { input } => 2 * input.n(),
            LayerShape::Hidden { outputs, .. } => outputs,
            _ => 0,
        };
        n as u64
    })
}

/// Training work of one image (all timesteps), in MAC-equivalents.
pub fn work(arch: &Arch, input: &InputShape) -> f64 {
    arch.timesteps as f64 * (macs(arch, input) as f64 + NEURON_WORK * neurons(arch, input) as f64)
}

/// Seconds per training image as a function of [`work`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// Seconds per image that do not depend on the network's size.
    pub fixed_s: f64,
    /// Seconds per image per unit of work.
    pub per_unit_s: f64,
}

impl CostModel {
    /// Seconds to train one image of `arch`.
    pub fn seconds_per_image(&self, arch: &Arch, input: &InputShape) -> f64 {
        self.fixed_s + self.per_unit_s * work(arch, input)
    }

    /// Seconds to train `images` images of `arch`.
    pub fn seconds(&self, arch: &Arch, input: &InputShape, images: u64) -> f64 {
        self.seconds_per_image(arch, input) * images as f64
    }

    /// The line through two measured points `(work, seconds per image)`; the slope
    /// and intercept are kept non-negative so that a noisy pair cannot make large
    /// networks look free.
    pub fn through(a: (f64, f64), b: (f64, f64)) -> CostModel {
        let (lo, hi) = if a.0 <= b.0 { (a, b) } else { (b, a) };
        let per_unit_s = if hi.0 > lo.0 {
            ((hi.1 - lo.1) / (hi.0 - lo.0)).max(0.0)
        } else {
            0.0
        };
        let per_unit_s = if per_unit_s == 0.0 {
            // Equal work or a noisy pair: scale the dearer point.
            hi.1 / hi.0.max(1.0)
        } else {
            per_unit_s
        };
        CostModel {
            fixed_s: (lo.1 - per_unit_s * lo.0).max(0.0),
            per_unit_s,
        }
    }

    /// Fit the model to this machine: time `steps` training steps (after one warm-up
    /// step) of the cheapest feasible candidate, then of the dearest one whose
    /// training is expected to cost at most [`calibration_target`] seconds per image,
    /// and fit the line through the two points. A line without a fixed cost per image
    /// (the dearer point timed slow) is measured again once, each point keeping its
    /// fastest time.
    ///
    /// The dearer point is bounded because the dearest feasible network of a large
    /// budget (a Jetson's 4 GB) trains at a few images a second: timing it would spend
    /// the whole search budget on calibration. The cheap point's time, charged wholly
    /// to its work, bounds the per-unit cost from above, so the bound picks a point at
    /// or beyond the target; trainability is decided near the target, inside the
    /// measured range.
    pub fn calibrate(
        feasible: &Feasible,
        budget: Option<&TrainBudget>,
        input: &InputShape,
        train: &Split,
        cfg: &TrainConfig,
        steps: usize,
        device: &Device,
    ) -> Result<CostModel, crate::search::SearchError> {
        let cheap = feasible
            .cheapest(input)
            .ok_or(crate::search::SearchError::NothingToCalibrate)?;
        let (w_lo, t_lo) = (
            work(&cheap, input),
            measure(&cheap, input, train, cfg, steps, device)?,
        );
        let per_unit_bound = t_lo / w_lo.max(1.0);
        let max_work = calibration_target(budget) / per_unit_bound.max(1e-18);
        let dear = feasible.dearest_within(input, max_work).unwrap_or(cheap);
        if dear == cheap {
            return Ok(CostModel::through((w_lo, t_lo), (w_lo, t_lo)));
        }
        let w_hi = work(&dear, input);
        let t_hi = measure(&dear, input, train, cfg, steps, device)?;
        let model = CostModel::through((w_lo, t_lo), (w_hi, t_hi));
        if model.fixed_s > 0.0 {
            return Ok(model);
        }
        // A line through the two points with no fixed cost per image: one of them was
        // timed during a slow spell of a busy machine (every step has a cost that does
        // not scale with the work: the data, the loss, the optimiser). Time both again
        // and keep each one's fastest. (One calibration put 0.134 ns per MAC and 0
        // us per image where others measured 0.055-0.073 ns and 12-16 us; it made 1,297
        // of 5,824 Fashion-MNIST networks too slow to train and changed the pick.)
        let t_lo = t_lo.min(measure(&cheap, input, train, cfg, steps, device)?);
        let t_hi = t_hi.min(measure(&dear, input, train, cfg, steps, device)?);
        Ok(CostModel::through((w_lo, t_lo), (w_hi, t_hi)))
    }
}

/// Seconds per training image the dearer calibration network should cost at most:
/// four times what the training budget allows per image (so that the trainability
/// edge lies inside the measured range), and never more than 20 ms (a calibration of
/// a few batches then takes seconds, not minutes).
pub fn calibration_target(budget: Option<&TrainBudget>) -> f64 {
    const MAX_SECONDS_PER_IMAGE: f64 = 0.02;
    budget
        .map_or(MAX_SECONDS_PER_IMAGE, |b| {
            4.0 * b.seconds / (b.images.max(1) as f64)
        })
        .min(MAX_SECONDS_PER_IMAGE)
}

/// Measured seconds per training image of `arch`: forward, backward and optimiser
/// step on batches of `cfg.batch_size` images from `train`, the fastest of `steps`
/// timed steps after one warm-up step.
pub fn measure(
    arch: &Arch,
    input: &InputShape,
    train: &Split,
    cfg: &TrainConfig,
    steps: usize,
    device: &Device,
) -> Result<f64, crate::search::SearchError> {
    let (net, varmap) = Network::init(*arch, *input, LifParams::default(), device, cfg.seed)?;
    let batch = cfg.batch_size.min(train.len()).max(1);
    let idx: Vec<usize> = (0..batch).collect();
    let (images, labels) = train.batch(&idx, device)?;
    use candle_nn::Optimizer;
    let vars = varmap.all_vars();
    let mut opt = candle_nn::AdamW::new(
        vars,
        candle_nn::ParamsAdamW {
            lr: 1e-4,
            ..Default::default()
        },
    )?;
    let mut step = || -> Result<(), crate::search::SearchError> {
        let logits = net.forward(&images, true, cfg.conv)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
        opt.backward_step(&loss)?;
        Ok(())
    };
    step()?;
    // The fastest step: what the work costs on this machine, without the slow spells
    // of a busy one. (With the median, a calibration during a neighbour's build put
    // the per-MAC cost at 0.25 ns against 0.14 idle and dropped 3,126 of 5,824
    // Fashion-MNIST networks as too slow for 900 s; the training that followed ran all
    // its 15 epochs in 819 s.)
    let mut fastest = f64::INFINITY;
    for _ in 0..steps.max(1) {
        let started = Instant::now();
        step()?;
        fastest = fastest.min(started.elapsed().as_secs_f64());
    }
    Ok(fastest / batch as f64)
}

/// How much more an image of `arch` costs in the short trainings' batches (`proxy`)
/// than `model` predicts for the recipe's batch (at least 1): one timed measurement at the proxy's batch. Small batches use the cores less
/// fully, so the plan of the short trainings charges their images at this factor,
/// which also absorbs the model's error on a network the short trainings will train.
/// (Measured on the cheapest feasible network instead, where fixed per-step costs
/// dominate, it came out about twice as large: 2.5 against 1.3 on Fashion-MNIST.)
pub fn batch_factor(
    model: &CostModel,
    arch: &Arch,
    input: &InputShape,
    train: &Split,
    proxy: &TrainConfig,
    steps: usize,
    device: &Device,
) -> Result<f64, crate::search::SearchError> {
    let at_proxy = measure(arch, input, train, proxy, steps, device)?;
    Ok((at_proxy / model.seconds_per_image(arch, input).max(1e-12)).max(1.0))
}

/// The convolution backend is part of the cost; record which one a model was
/// calibrated with.
pub fn describe(model: &CostModel, conv: ConvBackend) -> String {
    format!(
        "{:.2} us/image + {:.3} ns per MAC-equivalent ({conv} convolutions)",
        model.fixed_s * 1e6,
        model.per_unit_s * 1e9
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_through_two_points() {
        let m = CostModel::through((10.0, 2.0), (30.0, 6.0));
        assert!((m.per_unit_s - 0.2).abs() < 1e-12);
        assert!(m.fixed_s.abs() < 1e-12);
        // Order does not matter; a negative slope is refused.
        let n = CostModel::through((30.0, 6.0), (10.0, 2.0));
        assert_eq!(m, n);
        let flat = CostModel::through((10.0, 3.0), (30.0, 2.0));
        assert!(flat.per_unit_s > 0.0 && flat.fixed_s >= 0.0);
    }

    #[test]
    fn work_grows_with_size_and_timesteps() {
        let input = InputShape {
            channels: 1,
            height: 28,
            width: 28,
            classes: 10,
        };
        let small: Arch = "cell=0003.0000.0000.0000,ch=4,stages=1,fc=0,t=2"
            .parse()
            .unwrap();
        let wide = Arch {
            channels: 16,
            ..small
        };
        let longer = Arch {
            timesteps: 4,
            ..small
        };
        let pooled = Arch {
            input_pool: 2,
            ..small
        };
        assert!(work(&wide, &input) > 4.0 * work(&small, &input));
        assert!((work(&longer, &input) - 2.0 * work(&small, &input)).abs() < 1e-6);
        assert!(work(&pooled, &input) < work(&small, &input) / 3.0);
        // By hand: one conv edge at 4x28x28: LIF + BN + the edge's add, plus the head.
        let plane = 4 * 28 * 28;
        assert_eq!(neurons(&small, &input), (3 * plane + 2 * plane) as u64);
    }
}
