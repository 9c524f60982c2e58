//! The macro network (SNASNet's, parameterised for microcontroller scale):
//!
//! ```text
//! input (u8 / 255) -> avgpool(pool) -> stem conv3x3 -> BN            (once: direct encoding)
//! for each step t:  stage 0: cell(C)
//!                   stage s>0: BN -> LIF -> conv3x3(C_{s-1} -> C_s) -> BN -> avgpool2 -> cell(C_s)
//!                   head: BN -> LIF -> avgpool2 -> flatten -> Linear(fc) -> LIF -> Linear(classes x cluster)
//! output: mean over T and over each class's cluster (population vote)
//! ```

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap};
use spikenas_firmware::shape::LayerShape;

use super::cell::{Bn, CellNet, ConvBn};
use super::lif::{self, LifParams};
use super::Ctx;
use crate::arch::{Arch, InputShape};
use crate::kernels::ConvBackend;
use crate::rng::Rng;

#[derive(Debug)]
struct Stage {
    reduce: Option<(Bn, ConvBn)>,
    cell: CellNet,
}

/// The network with its weights.
#[derive(Debug)]
pub struct Network {
    /// The architecture.
    pub arch: Arch,
    /// The input it was built for.
    pub input: InputShape,
    /// The neuron model.
    pub lif: LifParams,
    stem: ConvBn,
    stages: Vec<Stage>,
    head_bn: Bn,
    fc1: Option<Linear>,
    fc2: Linear,
}

/// Errors building a network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The input is too small for the number of stages and pooling.
    #[error("input {h}x{w} is too small for {arch}: after pooling and {stages} reductions the classifier sees nothing; use fewer stages or a smaller pool")]
    TooSmall {
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
        /// The architecture.
        arch: String,
        /// Stages.
        stages: usize,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Network {
    /// Build the network's weights under `vb`.
    pub fn new(
        arch: Arch,
        input: InputShape,
        lif: LifParams,
        vb: VarBuilder,
    ) -> std::result::Result<Self, NetworkError> {
        if input.head_features(&arch) == 0 {
            return Err(NetworkError::TooSmall {
                h: input.height,
                w: input.width,
                arch: arch.to_string(),
                stages: arch.stages,
            });
        }
        // The layers of the architecture's shape, in order; the cell makes its own edges.
        let vh = vb.pp("head");
        let (mut stem, mut head_bn, mut fc1, mut fc2) = (None, None, None, None);
        let mut stages = Vec::with_capacity(arch.stages);
        let mut reduce = None;
        arch.shape(&input).for_each_layer(|layer| -> Result<()> {
            match layer {
                LayerShape::Stem { cin, k, out } => {
                    stem = Some(ConvBn::new(cin, out.c, k, vb.pp("stem"))?);
                }
                LayerShape::Reduction {
                    stage,
                    k,
                    input,
                    out,
                } => {
                    let vr = vb.pp(format!("stage{stage}")).pp("reduce");
                    let bn = Bn::new(input.c, vr.pp("bn_in"))?;
                    reduce = Some((bn, ConvBn::new(input.c, out.c, k, vr)?));
                }
                LayerShape::Edge { .. } => {}
                LayerShape::Nodes { stage, g, .. } => {
                    let vc = vb.pp(format!("stage{stage}")).pp("cell");
                    stages.push(Stage {
                        reduce: reduce.take(),
                        cell: CellNet::new(arch.cell, g.c, vc)?,
                    });
                }
                LayerShape::Head { input } => head_bn = Some(Bn::new(input.c, vh.pp("bn"))?),
                LayerShape::Hidden { inputs, outputs } => {
                    fc1 = Some(candle_nn::linear(inputs, outputs, vh.pp("fc1"))?);
                }
                LayerShape::Output { inputs, outputs } => {
                    fc2 = Some(candle_nn::linear(inputs, outputs, vh.pp("fc2"))?);
                }
            }
            Ok(())
        })?;
        let (Some(stem), Some(head_bn), Some(fc2)) = (stem, head_bn, fc2) else {
            unreachable!("the walk visits the stem, the head and the output layer")
        };
        Ok(Network {
            arch,
            input,
            lif,
            stem,
            stages,
            head_bn,
            fc1,
            fc2,
        })
    }

    /// A freshly initialised network with its variables, seeded: the same seed gives
    /// the same weights on every machine.
    pub fn init(
        arch: Arch,
        input: InputShape,
        lif: LifParams,
        device: &Device,
        seed: u64,
    ) -> std::result::Result<(Self, VarMap), NetworkError> {
        crate::kernels::tune_cpu_runtime();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let net = Network::new(arch, input, lif, vb)?;
        reinit(&varmap, seed)?;
        Ok((net, varmap))
    }

    /// Logits `(B, classes)` for images `(B, C, H, W)` scaled to `[0, 1]`.
    pub fn forward(&self, images: &Tensor, train: bool, conv: ConvBackend) -> Result<Tensor> {
        let ctx = Ctx {
            timesteps: self.arch.timesteps,
            train,
            lif: self.lif,
            conv,
        };
        self.forward_ctx(images, &ctx, &mut |_, _| Ok(()))
    }

    /// Forward pass that shows every LIF layer's spikes `(T*B, ...)` to `observe`
    /// (used by the training-free score); returns the logits.
    pub fn forward_ctx(
        &self,
        images: &Tensor,
        ctx: &Ctx,
        observe: &mut dyn FnMut(&str, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let t = ctx.timesteps;
        let b = images.dim(0)?;
        let x = match self.arch.input_pool {
            1 => images.clone(),
            p => images.avg_pool2d(p)?,
        };
        // Direct encoding: the stem's output is the same current at every step. From here
        // on feature maps are (T, B, C, H, W).
        let stem = self.stem.forward(&x, ctx, false)?;
        let mut x = crate::kernels::repeat_time(&stem, t)?;
        // The observer sees (T*B, ...), time-major (a view, outside the loss's graph).
        let merged = |s: &Tensor| s.flatten(0, 1);
        for (s, stage) in self.stages.iter().enumerate() {
            if let Some((bn, conv)) = &stage.reduce {
                let spikes = lif::multistep_tb(&bn.forward(&x, ctx.train)?, &ctx.lif, ctx.conv)?;
                observe(&format!("stage{s}.reduce"), &merged(&spikes)?)?;
                x = crate::kernels::avg_pool2(&conv.forward(&spikes, ctx, true)?)?;
            }
            x = stage.cell.forward(&x, ctx)?;
        }
        let spikes = lif::multistep_tb(&self.head_bn.forward(&x, ctx.train)?, &ctx.lif, ctx.conv)?;
        observe("head.lif", &merged(&spikes)?)?;
        let mut h = crate::kernels::avg_pool2(&spikes)?.reshape((t * b, ()))?;
        if let Some(fc1) = &self.fc1 {
            h = lif::multistep(&fc1.forward(&h)?, t, &ctx.lif, ctx.conv)?;
            observe("head.fc1", &h)?;
        }
        let out = self.fc2.forward(&h)?;
        let (classes, cluster) = (self.input.classes, self.arch.cluster);
        out.reshape((t, b, classes, cluster))?.mean(3)?.mean(0)
    }
}

/// Re-initialise every variable from `seed` (candle's CPU generator cannot be
/// seeded). Conv and linear weights: PyTorch's default, uniform in
/// `+-1/sqrt(fan_in)` scaled by sqrt(3) (Kaiming uniform, a = sqrt(5) -> bound
/// 1/sqrt(fan_in)); linear biases likewise; batch-norm weight 1, bias 0, running
/// mean 0, running variance 1.
pub fn reinit(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = Rng::new(seed);
    for name in names {
        let var = &data[name];
        let shape = var.as_tensor().dims().to_vec();
        let n: usize = shape.iter().product();
        let is_bn = name.contains(".bn.") || name.contains(".bn_in.") || name.starts_with("bn.");
        let values: Vec<f32> =
            if name.ends_with("running_mean") || (is_bn && name.ends_with(".bias")) {
                vec![0.0; n]
            } else if name.ends_with("running_var") || (is_bn && name.ends_with(".weight")) {
                vec![1.0; n]
            } else {
                let fan_in = if shape.len() >= 2 {
                    shape[1..].iter().product::<usize>()
                } else {
                    // A linear bias: fan-in of its weight.
                    let wname = name.trim_end_matches("bias").to_string() + "weight";
                    data.get(&wname)
                        .map(|w| w.as_tensor().dims()[1..].iter().product())
                        .unwrap_or(1)
                };
                let bound = 1.0 / (fan_in as f32).sqrt();
                (0..n).map(|_| (rng.f32() * 2.0 - 1.0) * bound).collect()
            };
        var.set(&Tensor::from_vec(values, shape, var.device())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn shape(c: usize, hw: usize) -> InputShape {
        InputShape {
            channels: c,
            height: hw,
            width: hw,
            classes: 10,
        }
    }

    #[test]
    fn output_shape_and_determinism() -> Result<()> {
        let dev = Device::Cpu;
        let arch: Arch = "cell=0303.0003.0000.0000,ch=4,stages=2,fc=16,t=2,cluster=2"
            .parse()
            .unwrap();
        let (net, _) = Network::init(arch, shape(1, 8), LifParams::default(), &dev, 1).unwrap();
        let (net2, _) = Network::init(arch, shape(1, 8), LifParams::default(), &dev, 1).unwrap();
        let x = Tensor::rand(0f32, 1f32, (3, 1, 8, 8), &dev)?;
        let y = net.forward(&x, false, ConvBackend::default())?;
        assert_eq!(y.dims(), &[3, 10]);
        let y2 = net2.forward(&x, false, ConvBackend::default())?;
        assert_eq!(y.to_vec2::<f32>()?, y2.to_vec2::<f32>()?);
        Ok(())
    }

    /// Gradients reach the first layer through every kind of op and through backward edges.
    #[test]
    fn gradient_reaches_stem_for_every_op() -> Result<()> {
        let dev = Device::Cpu;
        for cell in [
            "0303.0003.0000.0000",
            "0304.0001.0000.0000",
            "0302.0004.0000.0000",
            "0333.0003.0303.0000",
        ] {
            let arch: Arch = format!("cell={cell},ch=4,stages=2,fc=8,t=3")
                .parse()
                .unwrap();
            let (net, varmap) =
                Network::init(arch, shape(1, 8), LifParams::default(), &dev, 2).unwrap();
            let x = (Tensor::rand(0f32, 1f32, (4, 1, 8, 8), &dev)? * 3.0)?;
            let y = net.forward(&x, true, ConvBackend::default())?;
            let labels = Tensor::new(&[0u32, 1, 2, 3], &dev)?;
            let loss = candle_nn::loss::cross_entropy(&y, &labels)?;
            let grads = loss.backward()?;
            let data = varmap.data().lock().unwrap();
            let stem: &Var = &data["stem.conv.weight"];
            let g = grads
                .get(stem.as_tensor())
                .expect("stem weight has a gradient");
            let norm = g.sqr()?.sum_all()?.to_scalar::<f32>()?;
            assert!(norm > 0.0, "cell {cell}: zero gradient at the stem");
        }
        Ok(())
    }

    #[test]
    fn reinit_is_seeded_and_bn_is_identity() -> Result<()> {
        let arch = Arch::default();
        let (_, a) =
            Network::init(arch, shape(1, 8), LifParams::default(), &Device::Cpu, 5).unwrap();
        let (_, b) =
            Network::init(arch, shape(1, 8), LifParams::default(), &Device::Cpu, 6).unwrap();
        let da = a.data().lock().unwrap();
        let db = b.data().lock().unwrap();
        assert_eq!(
            da["stem.bn.weight"].as_tensor().to_vec1::<f32>()?,
            vec![1.0; 16]
        );
        assert_eq!(
            da["stem.bn.running_var"].as_tensor().to_vec1::<f32>()?,
            vec![1.0; 16]
        );
        let wa = da["head.fc2.weight"]
            .as_tensor()
            .flatten_all()?
            .to_vec1::<f32>()?;
        let wb = db["head.fc2.weight"]
            .as_tensor()
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_ne!(wa, wb);
        Ok(())
    }
}
