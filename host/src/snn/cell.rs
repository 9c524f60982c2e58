//! The SNASNet cell in candle: four nodes, one op per edge, forward and backward
//! edges (see [`crate::arch`]). Node values are currents; convolution ops are
//! LIF -> conv -> batch-norm, each with its own neuron state.

use candle_core::{ModuleT, Result, Tensor};
use candle_nn::{BatchNorm, VarBuilder};

use super::lif;
use super::Ctx;
use crate::arch::{Cell, Edge, Op, NODES};

/// One edge's op with its weights.
#[derive(Debug)]
pub struct EdgeOp {
    /// The edge (nodes, op, direction).
    pub edge: Edge,
    conv: Option<(Tensor, BatchNorm)>,
}

/// The batch-norm configuration used everywhere (PyTorch's defaults).
pub fn bn_config() -> candle_nn::BatchNormConfig {
    candle_nn::BatchNormConfig {
        eps: 1e-5,
        remove_mean: true,
        affine: true,
        momentum: 0.1,
    }
}

/// A convolution weight `(cout, cin, k, k)` named `weight` under `vb`.
pub fn conv_weight(cin: usize, cout: usize, k: usize, vb: &VarBuilder) -> Result<Tensor> {
    vb.get_with_hints(
        (cout, cin, k, k),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )
}

/// 3x3 average pooling, stride 1, zero padding 1, always divided by 9.
/// Written as separable shifted sums, since candle's avg_pool2d has no backward
/// when the kernel and stride differ.
pub fn avgpool3x3_same(x: &Tensor) -> Result<Tensor> {
    let (h, w) = (x.dim(2)?, x.dim(3)?);
    let p = x.pad_with_zeros(2, 1, 1)?;
    let rows = ((p.narrow(2, 0, h)? + p.narrow(2, 1, h)?)? + p.narrow(2, 2, h)?)?;
    let p = rows.pad_with_zeros(3, 1, 1)?;
    let sum = ((p.narrow(3, 0, w)? + p.narrow(3, 1, w)?)? + p.narrow(3, 2, w)?)?;
    sum / 9.0
}

/// The name of an edge's weights: `e01` for forward 0->1, `b31` for backward 3->1.
pub fn edge_name(e: &Edge) -> String {
    format!("{}{}{}", if e.backward { 'b' } else { 'e' }, e.from, e.to)
}

impl EdgeOp {
    fn new(edge: Edge, channels: usize, vb: &VarBuilder) -> Result<Self> {
        let conv = match edge.op.kernel() {
            Some(k) => {
                let vb = vb.pp(edge_name(&edge));
                let w = conv_weight(channels, channels, k, &vb.pp("conv"))?;
                let bn = candle_nn::batch_norm(channels, bn_config(), vb.pp("bn"))?;
                Some((w, bn))
            }
            None => None,
        };
        Ok(EdgeOp { edge, conv })
    }

    /// Apply the op to spikes already computed (conv ops) or to the current.
    fn apply(&self, input: &Tensor, spikes: Option<&Tensor>, ctx: &Ctx) -> Result<Tensor> {
        match (self.edge.op, &self.conv) {
            (Op::Skip, _) => Ok(input.clone()),
            (Op::AvgPool3x3, _) => avgpool3x3_same(input),
            (_, Some((w, bn))) => {
                let k = w.dim(3)?;
                let s = spikes.expect("conv op needs spikes");
                let y = crate::kernels::conv2d(s, w, k / 2, 1, ctx.conv, true)?;
                bn.forward_t(&y, ctx.train)
            }
            (op, None) => candle_core::bail!("edge op {op:?} has no weights"),
        }
    }
}

/// A cell with its edge ops.
#[derive(Debug)]
pub struct CellNet {
    cell: Cell,
    ops: Vec<EdgeOp>,
}

impl CellNet {
    /// Build the cell's weights under `vb` for `channels` channels.
    pub fn new(cell: Cell, channels: usize, vb: VarBuilder) -> Result<Self> {
        let ops = cell
            .edges()
            .into_iter()
            .map(|e| EdgeOp::new(e, channels, &vb))
            .collect::<Result<_>>()?;
        Ok(CellNet { cell, ops })
    }

    /// Run all timesteps: `x0` is `(T*B, C, H, W)` time-major; returns node 3.
    pub fn forward(&self, x0: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        if self.cell.has_backward() {
            self.forward_stepwise(x0, ctx)
        } else {
            self.forward_layerwise(x0, ctx)
        }
    }

    /// Forward-only cells: every op over all timesteps at once (multi-step mode).
    fn forward_layerwise(&self, x0: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let mut nodes: Vec<Option<Tensor>> = vec![Some(x0.clone()), None, None, None];
        for j in 1..NODES {
            let mut acc: Option<Tensor> = None;
            for op in self
                .ops
                .iter()
                .filter(|o| o.edge.to == j && !o.edge.backward)
            {
                let input = nodes[op.edge.from]
                    .as_ref()
                    .expect("nodes are computed in order");
                let spikes = match op.conv {
                    Some(_) => Some(lif::multistep(input, ctx.timesteps, &ctx.lif, ctx.conv)?),
                    None => None,
                };
                let y = op.apply(input, spikes.as_ref(), ctx)?;
                acc = Some(match acc {
                    Some(a) => (a + y)?,
                    None => y,
                });
            }
            nodes[j] = Some(match acc {
                Some(a) => a,
                None => x0.zeros_like()?,
            });
        }
        Ok(nodes[NODES - 1].take().expect("output node"))
    }

    /// Cells with backward edges: one timestep at a time, carrying neuron state and
    /// the previous step's node values.
    fn forward_stepwise(&self, x0: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let t_steps = ctx.timesteps;
        let b = x0.dim(0)? / t_steps;
        let mut membranes: Vec<Option<Tensor>> = vec![None; self.ops.len()];
        let mut prev: Vec<Option<Tensor>> = vec![None; NODES];
        let mut outputs = Vec::with_capacity(t_steps);
        for t in 0..t_steps {
            let x0_t = x0.narrow(0, t * b, b)?;
            let mut nodes: Vec<Option<Tensor>> = vec![Some(x0_t.clone()), None, None, None];
            for j in 1..NODES {
                let mut acc: Option<Tensor> = None;
                for (idx, op) in self.ops.iter().enumerate().filter(|(_, o)| o.edge.to == j) {
                    let input = if op.edge.backward {
                        match &prev[op.edge.from] {
                            Some(p) => p.clone(),
                            None => x0_t.zeros_like()?,
                        }
                    } else {
                        nodes[op.edge.from]
                            .clone()
                            .expect("nodes are computed in order")
                    };
                    let spikes = match op.conv {
                        Some(_) => {
                            let (s, v) = lif::step(&input, membranes[idx].as_ref(), &ctx.lif)?;
                            membranes[idx] = Some(v);
                            Some(s)
                        }
                        None => None,
                    };
                    let y = op.apply(&input, spikes.as_ref(), ctx)?;
                    acc = Some(match acc {
                        Some(a) => (a + y)?,
                        None => y,
                    });
                }
                nodes[j] = Some(match acc {
                    Some(a) => a,
                    None => x0_t.zeros_like()?,
                });
            }
            outputs.push(nodes[NODES - 1].clone().expect("output node"));
            prev = nodes;
        }
        Tensor::cat(&outputs, 0)
    }
}

/// Convolution followed by batch-norm, used by the stem and the reductions.
#[derive(Debug)]
pub struct ConvBn {
    weight: Tensor,
    bn: BatchNorm,
    padding: usize,
}

impl ConvBn {
    /// `conv` (no bias) and `bn` under `vb`.
    pub fn new(cin: usize, cout: usize, k: usize, vb: VarBuilder) -> Result<Self> {
        let weight = conv_weight(cin, cout, k, &vb.pp("conv"))?;
        let bn = candle_nn::batch_norm(cout, bn_config(), vb.pp("bn"))?;
        Ok(ConvBn {
            weight,
            bn,
            padding: k / 2,
        })
    }

    /// Convolve then normalise.
    pub fn forward(&self, x: &Tensor, ctx: &Ctx, input_grad: bool) -> Result<Tensor> {
        let y = crate::kernels::conv2d(x, &self.weight, self.padding, 1, ctx.conv, input_grad)?;
        self.bn.forward_t(&y, ctx.train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn avgpool3x3_counts_padding() -> Result<()> {
        let x = Tensor::ones((1, 1, 3, 4), candle_core::DType::F32, &Device::Cpu)?;
        let y = avgpool3x3_same(&x)?.flatten_all()?.to_vec1::<f32>()?;
        // Corners see 4 of 9 ones, edges 6, the inside 9.
        let expect = [4., 6., 6., 4., 6., 9., 9., 6., 4., 6., 6., 4.].map(|v: f32| v / 9.0);
        for (a, b) in y.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
        Ok(())
    }
}
