//! Networks of any architecture with deterministic pseudo-random integer parameters.
//!
//! They are not trained (their accuracy is chance): they exist to check the device path
//! (code generation, toolchain, instruction set, memory layout) on realistic shapes
//! before a quantized model is at hand. Requantisation scales are chosen from the
//! expected accumulator spread so that currents sit around the firing threshold and
//! every LIF layer spikes.

use std::cell::RefCell;
use std::convert::Infallible;

use spikenas_firmware::requant::quantize_multiplier;
use spikenas_firmware::weights::{self, pack_i4};
use spikenas_firmware::{Lif, Network, ONE_Q12};

use crate::arch::{Arch, InputShape};
use crate::quant::assemble::{assemble, LayerSource};
use crate::quant::{QConv, QHead, QLinear, QReduction, QRequant, QWeights, QuantizedNetwork};
use crate::rng::Rng;

use super::TestSet;

/// A network with pseudo-random parameters, owning its data; borrow it as a
/// [`Network`] with [`SyntheticNetwork::with_network`].
#[derive(Debug, Clone)]
pub struct SyntheticNetwork {
    net: QuantizedNetwork,
}

/// Spread of the weights: standard deviation of a uniform integer in `-lim..=lim`.
fn weight_std(bits: u8) -> f64 {
    weights::limit(bits) as f64 / 3f64.sqrt()
}

/// The layers' parameters, drawn in the order [`assemble`] asks for them.
struct Maker {
    rng: Rng,
    bits: u8,
}

impl Maker {
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.rng.f32() as f64
    }

    fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + self.rng.below((hi - lo + 1) as usize) as i32
    }

    /// Per-channel `(mult, shift)` for scales `real` (one shift shared by all channels)
    /// and biases in Q12.
    fn requant(&mut self, real: &[f64], bias_q12: (f64, f64)) -> QRequant {
        let max = real.iter().fold(0f64, |m, r| m.max(r.abs()));
        let (_, shift) = quantize_multiplier(max).expect("finite scale");
        let mult = real
            .iter()
            .map(|r| (r * (1u64 << shift) as f64).round() as i32)
            .collect();
        let bias = real
            .iter()
            .map(|_| (self.uniform(bias_q12.0, bias_q12.1) * ONE_Q12 as f64) as i32)
            .collect();
        QRequant { mult, bias, shift }
    }

    /// Weights of `rows` inputs of `cout` outputs and a requantisation whose
    /// accumulator, for inputs of mean square `x_sq`, maps to currents of about 1.2
    /// thresholds.
    fn layer(&mut self, rows: usize, cout: usize, x_sq: f64) -> (QWeights, QRequant) {
        let lim = weights::limit(self.bits) as i32;
        let w8: Vec<i8> = (0..rows * cout)
            .map(|_| self.int(-lim, lim) as i8)
            .collect();
        let weights = if self.bits == 4 {
            let mut packed = vec![0u8; rows * cout.div_ceil(2)];
            pack_i4(&w8, cout, &mut packed).expect("weights in -7..=7");
            QWeights::I4(packed)
        } else {
            QWeights::I8(w8)
        };
        let acc_std = (rows as f64 * x_sq).sqrt() * weight_std(self.bits);
        let base = 1.2 * ONE_Q12 as f64 / acc_std.max(1.0);
        let real: Vec<f64> = (0..cout).map(|_| base * self.uniform(0.6, 1.4)).collect();
        let requant = self.requant(&real, (-0.2, 0.6));
        (weights, requant)
    }

    fn conv(&mut self, (cin, cout, k): (usize, usize, usize), x_sq: f64) -> QConv {
        let (weights, requant) = self.layer(cin * k * k, cout, x_sq);
        QConv {
            cin,
            cout,
            k,
            weights,
            requant,
        }
    }

    fn linear(&mut self, inputs: usize, outputs: usize, x_sq: f64) -> QLinear {
        let (weights, requant) = self.layer(inputs, outputs, x_sq);
        QLinear {
            inputs,
            outputs,
            weights,
            requant,
        }
    }

    /// A BatchNorm affine on currents: scale about 1, small bias.
    fn bn(&mut self, channels: usize) -> QRequant {
        let real: Vec<f64> = (0..channels).map(|_| self.uniform(0.7, 1.5)).collect();
        self.requant(&real, (-0.1, 0.5))
    }
}

/// Mean square of a binary spike input (firing rate about 0.2).
const SPIKE_SQ: f64 = 0.2;
/// Mean square of a 2x2 spike count (0..=4).
const COUNT_SQ: f64 = 1.0;
/// Mean square of a u8 pixel of the synthetic images.
const PIXEL_SQ: f64 = 12000.0;

/// Every LIF of a synthetic network is SNASNet's.
const LIF: Lif = Lif::SNASNET;

impl LayerSource for RefCell<Maker> {
    type Error = Infallible;

    fn stem(&self, dims: (usize, usize, usize)) -> Result<QConv, Infallible> {
        Ok(self.borrow_mut().conv(dims, PIXEL_SQ))
    }

    fn reduction(&self, _: &str, dims: (usize, usize, usize)) -> Result<QReduction, Infallible> {
        let m = &mut *self.borrow_mut();
        let bn = m.bn(dims.0);
        // The reduction's requant applies to the 2x2 *sum*: fold the 1/4 in.
        let mut conv = m.conv(dims, SPIKE_SQ);
        for v in &mut conv.requant.mult {
            *v /= 4;
        }
        Ok(QReduction { bn, lif: LIF, conv })
    }

    fn conv_edge(&self, _: &str, dims: (usize, usize, usize)) -> Result<(Lif, QConv), Infallible> {
        Ok((LIF, self.borrow_mut().conv(dims, SPIKE_SQ)))
    }

    fn head(
        &self,
        channels: usize,
        features: usize,
        fc: usize,
        outputs: usize,
    ) -> Result<QHead, Infallible> {
        let m = &mut *self.borrow_mut();
        let bn = m.bn(channels);
        let (hidden, output) = if fc > 0 {
            let hidden = m.linear(features, fc, COUNT_SQ);
            (Some((hidden, LIF)), m.linear(fc, outputs, SPIKE_SQ))
        } else {
            (None, m.linear(features, outputs, COUNT_SQ))
        };
        Ok(QHead {
            bn,
            lif: LIF,
            hidden,
            output,
        })
    }
}

impl SyntheticNetwork {
    /// A network of architecture `arch` on `input` with parameters drawn from `seed`.
    /// The architecture is validated (dead nodes removed) first.
    pub fn new(arch: &Arch, input: &InputShape, seed: u64) -> Result<SyntheticNetwork, String> {
        let arch = arch.validated().map_err(|e| e.to_string())?;
        let maker = RefCell::new(Maker {
            rng: Rng::new(seed),
            bits: arch.weight_bits,
        });
        let net = match assemble(arch, *input, arch.weight_bits, &maker) {
            Ok(net) => SyntheticNetwork { net },
            Err(never) => match never {},
        };
        net.with_network(|n| n.validate())
            .map_err(|e| format!("{arch} on {input:?}: {e}"))?;
        Ok(net)
    }

    /// The architecture (validated).
    pub fn arch(&self) -> &Arch {
        &self.net.arch
    }

    /// The input shape.
    pub fn input(&self) -> &InputShape {
        &self.net.input
    }

    /// The network with owned tensors.
    pub fn quantized(&self) -> &QuantizedNetwork {
        &self.net
    }

    /// Calls `f` with the network borrowed as the firmware's description
    /// ([`QuantizedNetwork::with_firmware`]).
    pub fn with_network<R>(&self, f: impl FnOnce(&Network<'_>) -> R) -> R {
        self.net.with_firmware(f)
    }
}

/// `count` pseudo-random images for `input` (blobs of varying density and brightness,
/// so spike counts vary from image to image) with pseudo-random labels.
pub fn images(input: &InputShape, count: usize, seed: u64) -> TestSet {
    let mut rng = Rng::new(seed ^ 0x1A6E);
    let len = input.channels * input.height * input.width;
    let mut pixels = Vec::with_capacity(count * len);
    let mut labels = Vec::with_capacity(count);
    for _ in 0..count {
        let density = 0.1 + 0.8 * rng.f32();
        let bright = 64 + rng.below(192);
        for _ in 0..len {
            let on = rng.f32() < density;
            pixels.push(if on { rng.below(bright + 1) as u8 } else { 0 });
        }
        labels.push(rng.below(input.classes.min(256)) as u8);
    }
    TestSet::new(len, pixels, labels).expect("sizes agree")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer_all(net: &Network<'_>, set: &TestSet) -> Vec<(usize, u64, u64)> {
        crate::board_app::on_device::host_run(net, set)
            .unwrap()
            .into_iter()
            .map(|r| (r.class, r.spikes, r.synops))
            .collect()
    }

    #[test]
    fn deterministic_valid_and_spiking() {
        let arch: Arch = "cell=0301.0003.0000.0000,ch=4,stages=2,fc=32,t=3"
            .parse()
            .unwrap();
        let input = InputShape::parse("1x8x8", 10).unwrap();
        let a = SyntheticNetwork::new(&arch, &input, 7).unwrap();
        let b = SyntheticNetwork::new(&arch, &input, 7).unwrap();
        let c = SyntheticNetwork::new(&arch, &input, 8).unwrap();
        let set = images(&input, 20, 1);
        let ra = a.with_network(|n| infer_all(n, &set));
        assert_eq!(ra, b.with_network(|n| infer_all(n, &set)));
        assert_ne!(ra, c.with_network(|n| infer_all(n, &set)));
        // Every image spikes, and spike counts differ between images.
        assert!(ra.iter().all(|r| r.1 > 0), "{ra:?}");
        let mut spikes: Vec<u64> = ra.iter().map(|r| r.1).collect();
        spikes.dedup();
        assert!(spikes.len() > 5, "{ra:?}");
    }

    #[test]
    fn int4_and_backward_edges() {
        let arch: Arch = "cell=0321.0010.0001.0100,ch=4,stages=2,fc=0,t=2,bits=4,cluster=2"
            .parse()
            .unwrap();
        let input = InputShape::parse("2x8x8", 3).unwrap();
        let net = SyntheticNetwork::new(&arch, &input, 3).unwrap();
        let backward = net.with_network(|n| {
            n.stages
                .iter()
                .all(|s| s.cell.edges.iter().any(|e| e.from > e.to))
        });
        assert!(backward, "every stage keeps its backward edge 3 -> 1");
        let set = images(&input, 5, 2);
        let r = net.with_network(|n| infer_all(n, &set));
        assert!(r.iter().all(|r| r.0 < 3 && r.2 > 0));
    }

    #[test]
    fn storage_counts_every_tensor() {
        use crate::quant::{QOp, QRequant, QWeights};
        let arch: Arch = "cell=0321.0010.0001.0100,ch=4,stages=2,fc=16,t=2,bits=4"
            .parse()
            .unwrap();
        let input = InputShape::parse("2x8x8", 3).unwrap();
        let net = SyntheticNetwork::new(&arch, &input, 3).unwrap();
        let q = net.quantized();
        let (mut weights, mut requants) = (0, 0);
        let mut add = |w: Option<&QWeights>, r: &QRequant| {
            weights += w.map_or(0, QWeights::bytes);
            requants += 8 * r.mult.len() + 1;
        };
        add(Some(&q.stem.weights), &q.stem.requant);
        for st in &q.stages {
            if let Some(r) = &st.reduction {
                add(None, &r.bn);
                add(Some(&r.conv.weights), &r.conv.requant);
            }
            for e in &st.edges {
                if let QOp::Conv { conv, .. } = &e.op {
                    add(Some(&conv.weights), &conv.requant);
                }
            }
        }
        add(None, &q.head.bn);
        if let Some((fc, _)) = &q.head.hidden {
            add(Some(&fc.weights), &fc.requant);
        }
        add(Some(&q.head.output.weights), &q.head.output.requant);
        let s = q.storage();
        assert_eq!((s.weight_bytes, s.requant_bytes), (weights, requants));
    }
}
