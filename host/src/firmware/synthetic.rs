//! Networks of any architecture with deterministic pseudo-random integer parameters.
//!
//! They are not trained (their accuracy is chance): they exist to check the device path
//! (code generation, toolchain, instruction set, memory layout) on realistic shapes
//! before a quantized model is at hand. Requantisation scales are chosen from the
//! expected accumulator spread so that currents sit around the firing threshold and
//! every LIF layer spikes.

use spikenas_firmware::requant::quantize_multiplier;
use spikenas_firmware::weights::pack_i4;
use spikenas_firmware::{
    Cell, ConvLayer, Edge, Head, Hidden, Lif, LinearLayer, Network, Op, Reduction, Requant, Stage,
    Weights, ONE_Q12,
};

use crate::arch::{self, Arch, InputShape};
use crate::rng::Rng;

use super::TestSet;

/// Owned weights of one layer.
#[derive(Debug, Clone)]
enum OwnedWeights {
    I8(Vec<i8>),
    I4(Vec<u8>),
}

impl OwnedWeights {
    fn borrow(&self) -> Weights<'_> {
        match self {
            OwnedWeights::I8(w) => Weights::I8(w),
            OwnedWeights::I4(w) => Weights::I4(w),
        }
    }
}

/// Owned requantisation.
#[derive(Debug, Clone)]
struct OwnedRequant {
    mult: Vec<i32>,
    bias: Vec<i32>,
    shift: u8,
}

impl OwnedRequant {
    fn borrow(&self) -> Requant<'_> {
        Requant {
            mult: &self.mult,
            bias: &self.bias,
            shift: self.shift,
        }
    }
}

/// An owned convolution or linear layer (`rows` inputs of `cols` outputs).
#[derive(Debug, Clone)]
struct OwnedLayer {
    cin: usize,
    cout: usize,
    k: usize,
    weights: OwnedWeights,
    requant: OwnedRequant,
}

impl OwnedLayer {
    fn conv(&self) -> ConvLayer<'_> {
        ConvLayer {
            cin: self.cin,
            cout: self.cout,
            k: self.k,
            weights: self.weights.borrow(),
            requant: self.requant.borrow(),
        }
    }

    fn linear(&self) -> LinearLayer<'_> {
        LinearLayer {
            inputs: self.cin,
            outputs: self.cout,
            weights: self.weights.borrow(),
            requant: self.requant.borrow(),
        }
    }
}

#[derive(Debug, Clone)]
enum OwnedOp {
    Zero,
    Skip,
    AvgPool3,
    Conv(OwnedLayer),
}

#[derive(Debug, Clone)]
struct OwnedStage {
    reduction: Option<(OwnedRequant, OwnedLayer)>,
    edges: Vec<(u8, u8, OwnedOp)>,
}

/// A network with pseudo-random parameters, owning its data; borrow it as a
/// [`Network`] with [`SyntheticNetwork::with_network`].
#[derive(Debug, Clone)]
pub struct SyntheticNetwork {
    arch: Arch,
    input: InputShape,
    stem: OwnedLayer,
    stages: Vec<OwnedStage>,
    head_bn: OwnedRequant,
    hidden: Option<OwnedLayer>,
    output: OwnedLayer,
}

/// Spread of the weights: standard deviation of a uniform integer in `-lim..=lim`.
fn weight_std(bits: u8) -> f64 {
    let lim = if bits == 4 { 7.0 } else { 127.0 };
    lim / 3f64.sqrt()
}

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
    fn requant(&mut self, real: &[f64], bias_q12: (f64, f64)) -> OwnedRequant {
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
        OwnedRequant { mult, bias, shift }
    }

    /// A layer with `rows` inputs of `cols` outputs whose accumulator, for inputs of
    /// mean square `x_sq`, maps to currents of about 1.2 thresholds.
    fn layer(&mut self, cin: usize, cout: usize, k: usize, x_sq: f64) -> OwnedLayer {
        let rows = cin * k * k;
        let lim = if self.bits == 4 { 7 } else { 127 };
        let w8: Vec<i8> = (0..rows * cout)
            .map(|_| self.int(-lim, lim) as i8)
            .collect();
        let weights = if self.bits == 4 {
            let mut packed = vec![0u8; rows * cout.div_ceil(2)];
            pack_i4(&w8, cout, &mut packed).expect("weights in -7..=7");
            OwnedWeights::I4(packed)
        } else {
            OwnedWeights::I8(w8)
        };
        let acc_std = (rows as f64 * x_sq).sqrt() * weight_std(self.bits);
        let base = 1.2 * ONE_Q12 as f64 / acc_std.max(1.0);
        let real: Vec<f64> = (0..cout).map(|_| base * self.uniform(0.6, 1.4)).collect();
        let requant = self.requant(&real, (-0.2, 0.6));
        OwnedLayer {
            cin,
            cout,
            k,
            weights,
            requant,
        }
    }

    /// A BatchNorm affine on currents: scale about 1, small bias.
    fn bn(&mut self, channels: usize) -> OwnedRequant {
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

impl SyntheticNetwork {
    /// A network of architecture `arch` on `input` with parameters drawn from `seed`.
    /// The architecture is validated (dead nodes removed) first.
    pub fn new(arch: &Arch, input: &InputShape, seed: u64) -> Result<SyntheticNetwork, String> {
        let arch = arch.validated().map_err(|e| e.to_string())?;
        let mut m = Maker {
            rng: Rng::new(seed),
            bits: arch.weight_bits,
        };
        let c0 = arch.stage_channels(0);
        let stem = m.layer(input.channels, c0, 3, PIXEL_SQ);
        let mut stages = Vec::with_capacity(arch.stages);
        for s in 0..arch.stages {
            let c = arch.stage_channels(s);
            let reduction = (s > 0).then(|| {
                let prev = arch.stage_channels(s - 1);
                let bn = m.bn(prev);
                // The reduction's requant applies to the 2x2 *sum*: fold the 1/4 in.
                let mut conv = m.layer(prev, c, 3, SPIKE_SQ);
                for v in &mut conv.requant.mult {
                    *v /= 4;
                }
                (bn, conv)
            });
            let edges = arch
                .cell
                .edges()
                .into_iter()
                .map(|e| {
                    let op = match e.op {
                        arch::Op::Zero => OwnedOp::Zero,
                        arch::Op::Skip => OwnedOp::Skip,
                        arch::Op::AvgPool3x3 => OwnedOp::AvgPool3,
                        arch::Op::Conv1x1 => OwnedOp::Conv(m.layer(c, c, 1, SPIKE_SQ)),
                        arch::Op::Conv3x3 => OwnedOp::Conv(m.layer(c, c, 3, SPIKE_SQ)),
                    };
                    (e.from as u8, e.to as u8, op)
                })
                .collect();
            stages.push(OwnedStage { reduction, edges });
        }
        let last = arch.stage_channels(arch.stages - 1);
        let head_bn = m.bn(last);
        let d = input.head_features(&arch);
        let outputs = input.classes * arch.cluster;
        let (hidden, output) = if arch.fc > 0 {
            let hidden = m.layer(d, arch.fc, 1, COUNT_SQ);
            (Some(hidden), m.layer(arch.fc, outputs, 1, SPIKE_SQ))
        } else {
            (None, m.layer(d, outputs, 1, COUNT_SQ))
        };
        let net = SyntheticNetwork {
            arch,
            input: *input,
            stem,
            stages,
            head_bn,
            hidden,
            output,
        };
        net.with_network(|n| n.validate())
            .map_err(|e| format!("{arch} on {input:?}: {e}"))?;
        Ok(net)
    }

    /// The architecture (validated).
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// The input shape.
    pub fn input(&self) -> &InputShape {
        &self.input
    }

    /// Calls `f` with the network borrowed as the firmware's description.
    pub fn with_network<R>(&self, f: impl FnOnce(&Network<'_>) -> R) -> R {
        let lif = Lif::SNASNET;
        let edges: Vec<Vec<Edge<'_>>> = self
            .stages
            .iter()
            .map(|st| {
                st.edges
                    .iter()
                    .map(|(from, to, op)| Edge {
                        from: *from,
                        to: *to,
                        op: match op {
                            OwnedOp::Zero => Op::Zero,
                            OwnedOp::Skip => Op::Skip,
                            OwnedOp::AvgPool3 => Op::AvgPool3,
                            OwnedOp::Conv(c) => Op::Conv {
                                lif,
                                conv: c.conv(),
                            },
                        },
                    })
                    .collect()
            })
            .collect();
        let stages: Vec<Stage<'_>> = self
            .stages
            .iter()
            .zip(&edges)
            .map(|(st, edges)| Stage {
                reduction: st.reduction.as_ref().map(|(bn, conv)| Reduction {
                    bn: bn.borrow(),
                    lif,
                    conv: conv.conv(),
                }),
                cell: Cell { edges },
            })
            .collect();
        let net = Network {
            channels: self.input.channels,
            height: self.input.height,
            width: self.input.width,
            input_pool: self.arch.input_pool,
            timesteps: self.arch.timesteps,
            stem: self.stem.conv(),
            stages: &stages,
            head: Head {
                bn: self.head_bn.borrow(),
                lif,
                hidden: self.hidden.as_ref().map(|h| Hidden {
                    fc: h.linear(),
                    lif,
                }),
                output: self.output.linear(),
            },
            classes: self.input.classes,
            cluster: self.arch.cluster,
        };
        f(&net)
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
        crate::firmware::validate::host_run(net, set)
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
}
