//! Convolution -> LIF (-> 2x2 average pool), and convolution -> batch-norm, each as one
//! candle node.
//!
//! candle's backward pass costs every node of the graph a zero-filled gradient buffer
//! of the node's size plus an element-wise add into it, single-threaded, on top of the
//! op's own backward. For an SNN layer the convolution output and the spikes are the
//! largest tensors of the step (T x batch x C x H x W), so a layer of three nodes
//! (conv, LIF, pool) pays that three times over its widest tensors. As one node it pays
//! it once, on the layer's (pooled) output, and the currents between conv and LIF stay
//! inside the op: the forward keeps them for the backward, which runs the LIF's BPTT,
//! the pool's spread and the convolution's two gradients back to back.
//!
//! Convolution -> batch-norm (training mode) likewise keeps the convolution's output
//! inside the node, for the batch-norm's backward.
//!
//! The arithmetic is exactly that of [`super::conv2d`] (fast path), [`super::lif_multistep`]
//! and [`super::avg_pool2`] in sequence; the tests check it against candle's own ops.

use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex, PoisonError};

use rayon::prelude::*;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Layout, Shape, Tensor,
};

use super::bn::{self, BnBatchStats, NormOp};
use super::conv::{self, Conv2dOp, Geom};
use super::lif::{self, LifParams};
use super::{check_grad_shape, cpu_f32, pool, KernelError};

/// `avg_pool2(LIF(conv2d(x, w)))` (or without the pool) as one node: `x` is
/// (T, B, Cin, H, W), `w` (Cout, Cin, k, k); returns spikes (T, B, Cout, Ho, Wo), or
/// their 2x2 averages (T, B, Cout, Ho/2, Wo/2) with `pool`.
///
/// `input_grad` as for [`super::conv2d`]: false for a first layer whose input needs no
/// gradient. On a non-CPU device or a non-f32 dtype it runs the three ops separately.
pub fn conv_lif(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    stride: usize,
    lif: &LifParams,
    pool: bool,
    input_grad: bool,
) -> candle_core::Result<Tensor> {
    lif.validate()?;
    if x.rank() != 5 {
        return Err(KernelError::ConvLifRank(x.dims().to_vec()).into());
    }
    Geom::new(x.dims(), w.dims(), padding, stride)?;
    let fast_ok = x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32;
    if !fast_ok {
        let y = super::conv2d(x, w, padding, stride, super::ConvBackend::Fast, input_grad)?;
        let s = lif::lif_multistep(&y, lif)?;
        return if pool { pool::avg_pool2(&s) } else { Ok(s) };
    }
    let op = ConvLifOp {
        conv: Conv2dOp {
            padding,
            stride,
            input_grad,
        },
        lif: *lif,
        pool,
        currents: Mutex::new(None),
    };
    x.contiguous()?.apply_op2(&w.contiguous()?, op)
}

/// The same from candle's own ops (`conv2d`, the tensor-op LIF, `avg_pool2d`), for tests.
pub fn conv_lif_reference(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    stride: usize,
    lif: &LifParams,
    pool: bool,
) -> candle_core::Result<Tensor> {
    let y = super::conv2d(x, w, padding, stride, super::ConvBackend::Candle, true)?;
    let s = lif::lif_multistep_reference(&y, lif)?;
    if !pool {
        return Ok(s);
    }
    // Odd trailing rows/columns are cut first: candle's avg_pool2d drops them too, but
    // its backward (nearest upsampling to the input size) spreads gradient onto them.
    let (t, b, c, h, wd) = s.dims5()?;
    let (h2, w2) = (h / 2 * 2, wd / 2 * 2);
    s.narrow(3, 0, h2)?
        .narrow(4, 0, w2)?
        .reshape((t * b, c, h2, w2))?
        .avg_pool2d(2)?
        .reshape((t, b, c, h / 2, wd / 2))
}

/// The dims of the fused op's output for currents of dims `y_dims` (T, B, C, H, W).
fn output_dims(y_dims: &[usize], pool: bool) -> Vec<usize> {
    let mut d = y_dims.to_vec();
    if pool {
        d[3] /= 2;
        d[4] /= 2;
    }
    d
}

/// The pooling planes of a (T, B, C, H, W) tensor.
fn plane_pool(dims: &[usize]) -> lif::Pool2 {
    lif::Pool2 {
        h: dims[3],
        w: dims[4],
    }
}

/// The convolution's output (the LIF's input currents), kept by the forward for the
/// backward.
type Currents = Arc<(Vec<f32>, Vec<usize>)>;

/// The fused op; `currents` is filled by the forward.
#[derive(Debug)]
struct ConvLifOp {
    conv: Conv2dOp,
    lif: LifParams,
    pool: bool,
    currents: Mutex<Option<Currents>>,
}

impl CustomOp2 for ConvLifOp {
    fn name(&self) -> &'static str {
        "spikenas-conv-lif"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.dims(), l2.dims(), self.conv.padding, self.conv.stride)?;
        let x = cpu_f32(self.name(), "x", s1, l1)?;
        let w = cpu_f32(self.name(), "w", s2, l2)?;
        let y_dims = g.out_dims(l1.dims());
        let pool2 = self.pool.then(|| plane_pool(&y_dims));
        let (y, out) = forward_by_item(x, w, &g, y_dims[0], &self.lif, pool2);
        let out_dims = output_dims(&y_dims, self.pool);
        *self.currents.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new((y, y_dims)));
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let currents = self
            .currents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(currents) = currents else {
            candle_core::bail!("{}: backward before forward", self.name());
        };
        // dL/dcurrents: through the pool's spread and the LIF's BPTT.
        let dy = grad_res.contiguous()?.apply_op1_no_bwd(&CurrentsGradOp {
            lif: self.lif,
            pool: self.pool,
            currents,
        })?;
        let want_dx = self.conv.input_grad && x.track_op();
        let (dx, dw) = self.conv.grads(x, w, &dy, want_dx)?;
        Ok((dx, Some(dw)))
    }
}

/// The samples `t*B + b` of a (T*B, len) buffer grouped by batch item `b`, each group
/// in time order: one task computes a batch item's T steps back to back, so the LIF
/// reads the convolution's output while it is still in cache.
/// `buf` holds `t_steps * b_items` samples of `len` values (`len` may be 0).
fn by_item<E>(buf: &mut [E], t_steps: usize, b_items: usize, len: usize) -> Vec<Vec<&mut [E]>> {
    if len == 0 {
        return (0..b_items)
            .map(|_| (0..t_steps).map(|_| <&mut [E]>::default()).collect())
            .collect();
    }
    let mut groups: Vec<Vec<&mut [E]>> =
        (0..b_items).map(|_| Vec::with_capacity(t_steps)).collect();
    for (i, chunk) in buf.chunks_mut(len).enumerate() {
        groups[i % b_items].push(chunk);
    }
    groups
}

/// The values of a slice every element of which has been written.
///
/// # Safety
/// Every element of `s` must be initialised.
unsafe fn assume_init(s: &[MaybeUninit<f32>]) -> &[f32] {
    // SAFETY: MaybeUninit<f32> has f32's layout; the caller guarantees initialisation.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) }
}

/// The fused forward, one task per batch item: the T convolutions of its samples, then
/// the LIF (and pool) over them. Returns the currents (N, Cout, Ho, Wo) and the output.
fn forward_by_item(
    x: &[f32],
    w: &[f32],
    g: &Geom,
    t_steps: usize,
    lif: &LifParams,
    pool: Option<lif::Pool2>,
) -> (Vec<f32>, Vec<f32>) {
    let (y_len, x_len) = (g.cout * g.p(), g.cin * g.h * g.w);
    let o_len = lif::out_len(y_len, pool);
    let (width, _) = lif::task_widths(y_len, pool);
    let mut y = Vec::with_capacity(g.n * y_len);
    let mut out = Vec::with_capacity(g.n * o_len);
    let b_items = g.n / t_steps.max(1);
    let ys = by_item(
        &mut y.spare_capacity_mut()[..g.n * y_len],
        t_steps,
        b_items,
        y_len,
    );
    let os = by_item(
        &mut out.spare_capacity_mut()[..g.n * o_len],
        t_steps,
        b_items,
        o_len,
    );
    ys.into_par_iter().zip(os).enumerate().for_each_init(
        || (Vec::new(), lif::Scratch::default()),
        |(col, scratch), (b, (mut yb, mut ob))| {
            for (t, yn) in yb.iter_mut().enumerate() {
                let n = t * b_items + b;
                conv::forward_sample(&x[n * x_len..(n + 1) * x_len], w, g, col, yn);
            }
            // SAFETY: forward_sample wrote every value of every sample above.
            let yr: Vec<&[f32]> = yb.iter().map(|s| unsafe { assume_init(s) }).collect();
            let (mut c0, mut o0) = (0, 0);
            while c0 < y_len {
                let wd = width.min(y_len - c0);
                let wo = lif::out_len(wd, pool);
                let mut rows: Vec<&mut [MaybeUninit<f32>]> =
                    ob.iter_mut().map(|o| &mut o[o0..o0 + wo]).collect();
                lif::spikes_task(lif, pool, wd, |t| &yr[t][c0..], &mut rows, scratch);
                c0 += wd;
                o0 += wo;
            }
        },
    );
    // SAFETY: the groups tile both buffers; every sample was written by the GEMM (y)
    // and every output value by spikes_task (each step's row pieces tile the row).
    unsafe {
        y.set_len(g.n * y_len);
        out.set_len(g.n * o_len);
    }
    (y, out)
}

/// `dL/d(output) -> dL/dcurrents` of the fused op.
#[derive(Debug)]
struct CurrentsGradOp {
    lif: LifParams,
    pool: bool,
    currents: Currents,
}

impl CustomOp1 for CurrentsGradOp {
    fn name(&self) -> &'static str {
        "spikenas-conv-lif-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let grad = cpu_f32(self.name(), "grad", s, l)?;
        let (y, y_dims) = &*self.currents;
        check_grad_shape(self.name(), l.dims(), &output_dims(y_dims, self.pool))?;
        let t = y_dims[0];
        let pool2 = self.pool.then(|| plane_pool(y_dims));
        let dy = lif::backward(y, grad, t, y.len() / t.max(1), &self.lif, pool2);
        Ok((CpuStorage::F32(dy), Shape::from(y_dims.clone())))
    }
}

/// `batch_norm_train(conv2d(x, w), gamma, beta)` as one node: `x` (..., Cin, H, W) with
/// one or more leading batch dims, `w` (Cout, Cin, k, k), `gamma`/`beta` (Cout,).
/// Returns the normalised output and the batch statistics (update the running averages
/// from them, as after [`super::batch_norm_train`]). `input_grad` as for
/// [`super::conv2d`]. On a non-CPU device or a non-f32 dtype it runs the two ops.
#[allow(clippy::too_many_arguments)]
pub fn conv_bn_train(
    x: &Tensor,
    w: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    padding: usize,
    stride: usize,
    input_grad: bool,
    eps: f64,
) -> candle_core::Result<(Tensor, BnBatchStats)> {
    let g = Geom::new(x.dims(), w.dims(), padding, stride)?;
    let fast_ok = [x, w, gamma, beta]
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32);
    if !fast_ok {
        let y = super::conv2d(x, w, padding, stride, super::ConvBackend::Fast, input_grad)?;
        return super::batch_norm_train(&y, gamma, beta, y.rank() - 3, eps);
    }
    let (cg, cb) = (gamma.elem_count(), beta.elem_count());
    if cg != g.cout || cb != g.cout {
        return Err(KernelError::BnParams {
            op: "conv_bn_train",
            channels: g.cout,
            gamma: cg,
            beta: cb,
        }
        .into());
    }
    let saved = Arc::new(Mutex::new(None));
    let op = ConvBnOp {
        conv: Conv2dOp {
            padding,
            stride,
            input_grad,
        },
        eps,
        saved: saved.clone(),
    };
    // gamma and beta travel as one (2*Cout,) argument; candle's cat backward splits
    // their gradients again.
    let gb = Tensor::cat(&[&gamma.flatten_all()?, &beta.flatten_all()?], 0)?;
    let y = x.contiguous()?.apply_op3(&w.contiguous()?, &gb, op)?;
    let stats = saved
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|s: &ConvBnSaved| s.stats.clone());
    match stats {
        Some(stats) => Ok((y, stats)),
        None => candle_core::bail!("conv_bn_train: the forward kept no statistics"),
    }
}

/// What the conv -> batch-norm forward keeps: the convolution's output, the
/// normalisation (which differentiates itself) and the batch statistics.
#[derive(Debug)]
struct ConvBnSaved {
    y: Tensor,
    norm: NormOp,
    stats: BnBatchStats,
}

#[derive(Debug)]
struct ConvBnOp {
    conv: Conv2dOp,
    eps: f64,
    saved: Arc<Mutex<Option<ConvBnSaved>>>,
}

impl CustomOp3 for ConvBnOp {
    fn name(&self) -> &'static str {
        "spikenas-conv-bn"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.dims(), l2.dims(), self.conv.padding, self.conv.stride)?;
        let x = cpu_f32(self.name(), "x", s1, l1)?;
        let w = cpu_f32(self.name(), "w", s2, l2)?;
        let gb = cpu_f32(self.name(), "gamma/beta", s3, l3)?;
        let y = conv::forward(x, w, &g);
        let y_dims = g.out_dims(l1.dims());
        let (gamma, beta) = gb.split_at(gb.len() / 2);
        let (z, norm, stats) =
            bn::train_forward(&y, &y_dims, y_dims.len() - 3, gamma, beta, self.eps)?;
        let y = Tensor::from_vec(y, y_dims.clone(), &Device::Cpu)?;
        *self.saved.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(ConvBnSaved { y, norm, stats });
        Ok((CpuStorage::F32(z), Shape::from(y_dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        gb: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (y, norm) = match &*self.saved.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(s) => (s.y.clone(), s.norm.clone()),
            None => candle_core::bail!("{}: backward before forward", self.name()),
        };
        let c = gb.elem_count() / 2;
        let (dy, dgamma, dbeta) = norm.grads(&y, &gb.narrow(0, 0, c)?, grad_res, true)?;
        let dy = match dy {
            Some(dy) => dy.contiguous()?,
            None => candle_core::bail!("{}: no output gradient", self.name()),
        };
        let dgb = Tensor::cat(&[&dgamma, &dbeta], 0)?;
        let want_dx = self.conv.input_grad && x.track_op();
        let (dx, dw) = self.conv.grads(x, w, &dy, want_dx)?;
        Ok((dx, Some(dw), Some(dgb)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    use crate::kernels::tests::{max_abs, max_abs_diff as max_diff};
    use crate::rng::Rng;

    fn randn(rng: &mut Rng, dims: &[usize], scale: f32) -> Tensor {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| scale * rng.normal()).collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    /// Forward and both gradients against candle's ops, for binary (spike) and real
    /// inputs, odd sizes, stride 2, with and without the pool.
    #[test]
    fn matches_candle_forward_and_gradients() {
        let mut rng = Rng::new(11);
        let lif = LifParams::default();
        let cases = [
            // (T, B, Cin, H, W, Cout, k, pad, stride, pool, binary input)
            (2, 3, 4, 9, 7, 5, 3, 1, 1, true, true),
            (3, 2, 3, 8, 8, 6, 3, 1, 1, false, false),
            // candle's conv backward takes its output padding from H alone: square for stride 2.
            (2, 2, 4, 11, 11, 3, 3, 1, 2, true, true),
            (4, 1, 5, 6, 6, 4, 1, 0, 1, true, false),
        ];
        for (t, b, cin, h, wd, cout, k, pad, stride, pool, binary) in cases {
            let n = t * b * cin * h * wd;
            let xv: Vec<f32> = (0..n)
                .map(|_| {
                    if binary {
                        f32::from(rng.f32() < 0.2)
                    } else {
                        rng.normal()
                    }
                })
                .collect();
            let x = Var::from_vec(xv, (t, b, cin, h, wd), &Device::Cpu).unwrap();
            let scale = 3.0 / ((cin * k * k) as f32).sqrt();
            let w = Var::from_tensor(&randn(&mut rng, &[cout, cin, k, k], scale)).unwrap();
            let fast =
                conv_lif(x.as_tensor(), w.as_tensor(), pad, stride, &lif, pool, true).unwrap();
            let refr =
                conv_lif_reference(x.as_tensor(), w.as_tensor(), pad, stride, &lif, pool).unwrap();
            assert_eq!(fast.dims(), refr.dims());
            let rate = fast.mean_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(
                rate > 0.01,
                "case {cin}->{cout}: no spikes, the test is vacuous"
            );
            assert!(max_diff(&fast, &refr) < 1e-5, "forward differs");
            let r = randn(&mut rng, fast.dims(), 1.0);
            let gf = (&fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (&refr * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("w", &w)] {
                let a = gf.get(v.as_tensor()).unwrap();
                let e = gr.get(v.as_tensor()).unwrap();
                let tol = 1e-4 * (1.0 + max_abs(e));
                let d = max_diff(a, e);
                assert!(
                    d < tol,
                    "d{name} differs by {d} (tol {tol}), case {cin}->{cout}"
                );
            }
        }
    }

    #[test]
    fn pooling_a_single_row_gives_an_empty_output_and_gradients() {
        let mut rng = Rng::new(3);
        let x = Var::from_tensor(&randn(&mut rng, &[2, 2, 3, 1, 5], 1.0)).unwrap();
        let w = Var::from_tensor(&randn(&mut rng, &[4, 3, 3, 3], 1.0)).unwrap();
        let lif = LifParams::default();
        let y = conv_lif(x.as_tensor(), w.as_tensor(), 1, 1, &lif, true, true).unwrap();
        assert_eq!(y.dims(), &[2, 2, 4, 0, 2]);
        let g = y.sum_all().unwrap().backward().unwrap();
        let dw = g.get(w.as_tensor()).unwrap();
        assert_eq!(max_abs(dw), 0.0, "nothing reaches the output");
    }

    #[test]
    fn first_layer_gets_no_input_gradient_and_bad_rank_is_an_error() {
        let mut rng = Rng::new(2);
        let x = Var::from_tensor(&randn(&mut rng, &[2, 2, 1, 6, 6], 1.0)).unwrap();
        let w = Var::from_tensor(&randn(&mut rng, &[3, 1, 3, 3], 1.0)).unwrap();
        let y = conv_lif(
            x.as_tensor(),
            w.as_tensor(),
            1,
            1,
            &LifParams::default(),
            false,
            false,
        )
        .unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(x.as_tensor()).is_none());
        assert!(g.get(w.as_tensor()).is_some());
        let flat = x.as_tensor().flatten(0, 1).unwrap();
        let err = conv_lif(
            &flat,
            w.as_tensor(),
            1,
            1,
            &LifParams::default(),
            false,
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("(T, B, Cin, H, W)"), "{err}");
    }

    /// conv -> batch-norm: output, statistics and all four gradients against conv2d +
    /// the batch-norm reference, on (T, B, ...) and (N, ...) inputs.
    #[test]
    fn conv_bn_matches_the_two_ops() {
        let mut rng = Rng::new(5);
        for (xd, cout, k, pad, stride) in [
            (vec![2, 3, 4, 7, 9], 5, 3, 1, 1),
            (vec![6, 3, 8, 8], 4, 3, 1, 2),
            (vec![3, 4, 5, 5], 6, 1, 0, 1),
        ] {
            let cin = xd[xd.len() - 3];
            let x = Var::from_tensor(&randn(&mut rng, &xd, 1.0)).unwrap();
            let w = Var::from_tensor(&randn(&mut rng, &[cout, cin, k, k], 0.5)).unwrap();
            let gamma = Var::from_tensor(&randn(&mut rng, &[cout], 1.0)).unwrap();
            let beta = Var::from_tensor(&randn(&mut rng, &[cout], 1.0)).unwrap();
            let args = (
                x.as_tensor(),
                w.as_tensor(),
                gamma.as_tensor(),
                beta.as_tensor(),
            );
            let (fast, stats) =
                conv_bn_train(args.0, args.1, args.2, args.3, pad, stride, true, 1e-5).unwrap();
            let y = crate::kernels::conv2d(
                args.0,
                args.1,
                pad,
                stride,
                crate::kernels::ConvBackend::Candle,
                true,
            )
            .unwrap();
            let cdim = y.rank() - 3;
            let (refr, rstats) =
                crate::kernels::batch_norm_train_reference(&y, args.2, args.3, cdim, 1e-5).unwrap();
            assert!(max_diff(&fast, &refr) < 1e-4, "forward differs");
            for (a, b) in stats.mean.iter().zip(&rstats.mean) {
                assert!((a - b).abs() < 1e-4);
            }
            assert_eq!(stats.count, rstats.count);
            let r = randn(&mut rng, fast.dims(), 1.0);
            let gf = (&fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (&refr * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("w", &w), ("gamma", &gamma), ("beta", &beta)] {
                let a = gf.get(v.as_tensor()).unwrap();
                let e = gr.get(v.as_tensor()).unwrap();
                let tol = 1e-3 * (1.0 + max_abs(e));
                let d = max_diff(a, e);
                assert!(d < tol, "d{name} differs by {d} (tol {tol}), x {xd:?}");
            }
        }
    }
}
