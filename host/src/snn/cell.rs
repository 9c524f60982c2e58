//! The SNASNet cell in candle: four nodes, one op per edge, forward and backward
//! edges (see [`crate::arch`]). Node values are currents; convolution ops are
//! LIF -> conv -> batch-norm, each with its own neuron state.
//!
//! Feature maps are `(T, B, C, H, W)` (time-major): the fused kernels take them as they
//! are, so no reshape nodes sit between convolution, batch-norm, pooling and LIF.

use candle_core::{Result, Tensor, Var};
use candle_nn::VarBuilder;

use super::lif;
use super::Ctx;
use crate::arch::{Cell, Edge, Op, NODES};
use crate::kernels::ConvBackend;

/// One edge's op with its weights.
#[derive(Debug)]
pub struct EdgeOp {
    /// The edge (nodes, op, direction).
    pub edge: Edge,
    conv: Option<(Tensor, Bn)>,
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

/// Batch-norm over the channel dim `rank - 3` of feature maps (`(N, C, H, W)` or
/// `(T, B, C, H, W)`), with PyTorch's semantics and the variable names of
/// `candle_nn::batch_norm` (`weight`, `bias`, `running_mean`, `running_var`). Training
/// mode normalises with the batch's statistics and updates the running averages in
/// place; inference mode uses the running averages. Runs the fused kernel
/// ([`crate::kernels::batch_norm_train`]).
#[derive(Debug)]
pub struct Bn {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl Bn {
    /// The variables of `channels` features under `vb` (see [`bn_config`]).
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = bn_config();
        let rm = vb.get_with_hints(channels, "running_mean", candle_nn::Init::Const(0.))?;
        let rv = vb.get_with_hints(channels, "running_var", candle_nn::Init::Const(1.))?;
        Ok(Bn {
            weight: vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.))?,
            bias: vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.))?,
            running_mean: Var::from_tensor(&rm)?,
            running_var: Var::from_tensor(&rv)?,
            eps: cfg.eps,
            momentum: cfg.momentum,
        })
    }

    /// Normalise `x` (rank >= 3, channels at dim `rank - 3`).
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let cdim = match x.rank() {
            r if r >= 3 => r - 3,
            r => candle_core::bail!("batch-norm input must be (.., C, H, W), got rank {r}"),
        };
        if !train {
            return crate::kernels::batch_norm_eval(
                x,
                &self.weight,
                &self.bias,
                self.running_mean.as_tensor(),
                self.running_var.as_tensor(),
                cdim,
                self.eps,
            );
        }
        let (y, stats) =
            crate::kernels::batch_norm_train(x, &self.weight, &self.bias, cdim, self.eps)?;
        self.update_running(&stats)?;
        Ok(y)
    }

    /// `forward(conv2d(x, w))`: a `k x k` convolution with padding `k/2`, stride 1. In
    /// training with the fast kernels the two run as one node
    /// ([`crate::kernels::conv_bn_train`]); otherwise one after the other.
    pub fn forward_conv(
        &self,
        x: &Tensor,
        w: &Tensor,
        input_grad: bool,
        ctx: &Ctx,
    ) -> Result<Tensor> {
        let pad = w.dim(3)? / 2;
        if ctx.train && ctx.conv == ConvBackend::Fast {
            let (y, stats) = crate::kernels::conv_bn_train(
                x,
                w,
                &self.weight,
                &self.bias,
                pad,
                1,
                input_grad,
                self.eps,
            )?;
            self.update_running(&stats)?;
            return Ok(y);
        }
        let y = crate::kernels::conv2d(x, w, pad, 1, ctx.conv, input_grad)?;
        self.forward(&y, ctx.train)
    }

    /// Moves the running averages towards a training batch's statistics (momentum,
    /// unbiased variance, as PyTorch does).
    fn update_running(&self, stats: &crate::kernels::BnBatchStats) -> Result<()> {
        let m = self.momentum as f32;
        let n = stats.count as f32;
        let unbias = if stats.count > 1 { n / (n - 1.0) } else { 1.0 };
        let update = |var: &Var, batch: &[f32], scale: f32| -> Result<()> {
            let old = var.as_tensor().to_vec1::<f32>()?;
            let new: Vec<f32> = old
                .iter()
                .zip(batch)
                .map(|(o, b)| o * (1.0 - m) + b * scale * m)
                .collect();
            var.set(&Tensor::from_vec(new, old.len(), var.device())?)
        };
        update(&self.running_mean, &stats.mean, 1.0)?;
        update(&self.running_var, &stats.var, unbias)
    }
}

/// 3x3 average pooling, stride 1, zero padding 1, always divided by 9, over the last two
/// dims (any rank >= 2): one fused node ([`crate::kernels::avg_pool3x3_same`]).
pub fn avgpool3x3_same(x: &Tensor) -> Result<Tensor> {
    crate::kernels::avg_pool3x3_same(x)
}

/// The name of an edge's weights: `e01` for forward 0->1, `b31` for backward 3->1.
pub fn edge_name(e: &Edge) -> String {
    edge_key(e.from, e.to)
}

/// The name of the edge `from -> to` in variable names: `eXY` forward, `bXY` backward
/// (`from > to`).
pub fn edge_key(from: usize, to: usize) -> String {
    format!("{}{from}{to}", if from > to { 'b' } else { 'e' })
}

impl EdgeOp {
    fn new(edge: Edge, channels: usize, vb: &VarBuilder) -> Result<Self> {
        let conv = match edge.op.kernel() {
            Some(k) => {
                let vb = vb.pp(edge_name(&edge));
                let w = conv_weight(channels, channels, k, &vb.pp("conv"))?;
                let bn = Bn::new(channels, vb.pp("bn"))?;
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
                let s = spikes.expect("conv op needs spikes");
                bn.forward_conv(s, w, true, ctx)
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

    /// Run all timesteps: `x0` is `(T, B, C, H, W)`; returns node 3, same shape.
    pub fn forward(&self, x0: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        if self.cell.has_backward() {
            self.forward_stepwise(x0, ctx)
        } else {
            self.forward_layerwise(x0, ctx)
        }
    }

    /// Forward-only cells: every op over all timesteps at once (multi-step mode). Conv
    /// edges leaving the same node see the same current, so their LIF neurons spike
    /// identically: the spikes are computed once per node and shared.
    fn forward_layerwise(&self, x0: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let mut nodes: Vec<Option<Tensor>> = vec![Some(x0.clone()), None, None, None];
        let mut spikes: Vec<Option<Tensor>> = vec![None; NODES];
        for j in 1..NODES {
            let mut acc: Option<Tensor> = None;
            for op in self
                .ops
                .iter()
                .filter(|o| o.edge.to == j && !o.edge.backward)
            {
                let from = op.edge.from;
                if nodes[from].is_none() {
                    // A node without inputs carries no current.
                    nodes[from] = Some(x0.zeros_like()?);
                }
                let input = nodes[from].as_ref().expect("set above");
                let s = match op.conv {
                    Some(_) => {
                        if spikes[from].is_none() {
                            spikes[from] = Some(lif::multistep_tb(input, &ctx.lif, ctx.conv)?);
                        }
                        spikes[from].as_ref()
                    }
                    None => None,
                };
                let y = op.apply(input, s, ctx)?;
                acc = Some(match acc {
                    Some(a) => (a + y)?,
                    None => y,
                });
            }
            // A node without inputs stays `None` until an edge reads it.
            nodes[j] = acc;
        }
        match nodes[NODES - 1].take() {
            Some(out) => Ok(out),
            None => x0.zeros_like(),
        }
    }

    /// Cells with backward edges: one timestep at a time, carrying neuron state and
    /// the previous step's node values.
    fn forward_stepwise(&self, x0: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let t_steps = x0.dim(0)?;
        let mut membranes: Vec<Option<Tensor>> = vec![None; self.ops.len()];
        let mut prev: Vec<Option<Tensor>> = vec![None; NODES];
        let mut outputs = Vec::with_capacity(t_steps);
        for t in 0..t_steps {
            let x0_t = x0.get(t)?;
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
        Tensor::stack(&outputs, 0)
    }
}

/// Convolution followed by batch-norm, used by the stem and the reductions.
#[derive(Debug)]
pub struct ConvBn {
    weight: Tensor,
    bn: Bn,
}

impl ConvBn {
    /// `conv` (no bias) and `bn` under `vb`.
    pub fn new(cin: usize, cout: usize, k: usize, vb: VarBuilder) -> Result<Self> {
        let weight = conv_weight(cin, cout, k, &vb.pp("conv"))?;
        let bn = Bn::new(cout, vb.pp("bn"))?;
        Ok(ConvBn { weight, bn })
    }

    /// Convolve then normalise; `x` is `(N, C, H, W)` or `(T, B, C, H, W)`.
    pub fn forward(&self, x: &Tensor, ctx: &Ctx, input_grad: bool) -> Result<Tensor> {
        self.bn.forward_conv(x, &self.weight, input_grad, ctx)
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
