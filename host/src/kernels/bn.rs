//! Fused batch-norm over feature maps: one custom op forward (statistics pass +
//! normalise pass) and backward (reduction pass + input-gradient pass), instead of the
//! ~10 candle nodes of `candle_nn::BatchNorm` in training mode (each with a full-size
//! temporary, and in backward a zero-fill and an add per node).
//!
//! Semantics are PyTorch's `BatchNorm2d`: statistics over every dim but the channel dim,
//! normalisation by the biased variance, `y = (x - mean) / sqrt(var + eps) * gamma +
//! beta`. The caller updates running statistics from the returned [`BnBatchStats`]
//! (the unbiased variance goes into `running_var`, as PyTorch and candle do).

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::reduce::{ordered_partials, sum_in_order};

use super::{check_grad_shape, cpu_f32, with_simd, KernelError};

/// Rows (one channel's run of `inner` contiguous values) per rayon task, at least.
const MIN_TASK_ELEMS: usize = 16 * 1024;

/// `(outer, channels, inner)` of a tensor whose channel dim is `cdim`.
#[derive(Debug, Clone, Copy)]
struct Dims {
    outer: usize,
    c: usize,
    inner: usize,
}

impl Dims {
    fn new(dims: &[usize], cdim: usize) -> Result<Self, KernelError> {
        if cdim >= dims.len() {
            return Err(KernelError::BnChannelDim {
                dims: dims.to_vec(),
                cdim,
            });
        }
        Ok(Self {
            outer: dims[..cdim].iter().product(),
            c: dims[cdim],
            inner: dims[cdim + 1..].iter().product(),
        })
    }

    fn rows(&self) -> usize {
        self.outer * self.c
    }

    /// Values per channel.
    fn count(&self) -> usize {
        self.outer * self.inner
    }

    fn min_rows(&self) -> usize {
        (MIN_TASK_ELEMS / self.inner.max(1)).max(1)
    }
}

/// Per-channel sums `(sum_a, sum_b)` of `fa(row values...)`, accumulated in f64 over all
/// rows: `f(row, channel, acc_a, acc_b)` adds one row's contribution.
fn channel_sums(
    d: Dims,
    f: impl Fn(usize, usize, &mut f64, &mut f64) + Sync,
) -> (Vec<f64>, Vec<f64>) {
    let c = d.c;
    // Fixed chunks of rows, partials summed in chunk order: bit-identical runs.
    let parts = ordered_partials(
        d.rows(),
        d.min_rows(),
        || vec![0f64; 2 * c],
        |mut acc, r| {
            let ch = r % c;
            let (a, b) = acc.split_at_mut(c);
            with_simd(|| f(r, ch, &mut a[ch], &mut b[ch]));
            acc
        },
    );
    let acc = sum_in_order(parts, 2 * c);
    let (a, b) = acc.split_at(c);
    (a.to_vec(), b.to_vec())
}

/// `out[i] = fa[c] * a[i] + fb[c] * b[i] + fc[c]` for two inputs of layout `d` (with
/// `fb` unused when `b` is `None`).
fn channel_affine(
    d: Dims,
    a: &[f32],
    b: Option<&[f32]>,
    ka: &[f32],
    kb: &[f32],
    k0: &[f32],
) -> Vec<f32> {
    let n = a.len();
    let mut out = Vec::with_capacity(n);
    let inner = d.inner.max(1);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(inner)
        .with_min_len(d.min_rows())
        .enumerate()
        .for_each(|(r, o)| {
            let ch = r % d.c;
            let ar = &a[r * inner..(r + 1) * inner];
            with_simd(|| match b {
                Some(b) => {
                    let br = &b[r * inner..(r + 1) * inner];
                    let (x, y, z) = (ka[ch], kb[ch], k0[ch]);
                    for ((o, &av), &bv) in o.iter_mut().zip(ar).zip(br) {
                        o.write(x * av + y * bv + z);
                    }
                }
                None => {
                    let (x, z) = (ka[ch], k0[ch]);
                    for (o, &av) in o.iter_mut().zip(ar) {
                        o.write(x * av + z);
                    }
                }
            });
        });
    // SAFETY: the chunks tile all `n` values (a.len() = rows * inner) and every value of
    // every chunk was written above.
    unsafe { out.set_len(n) };
    out
}

#[inline(always)]
fn row_sum(v: &[f32]) -> f64 {
    // Eight independent f64 lanes: vectorises and keeps the error small.
    let mut lanes = [0f64; 8];
    let mut chunks = v.chunks_exact(8);
    for ch in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(ch) {
            *l += x as f64;
        }
    }
    chunks.remainder().iter().map(|&x| x as f64).sum::<f64>() + lanes.iter().sum::<f64>()
}

#[inline(always)]
fn row_dot(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x8, y8) in (&mut ca).zip(&mut cb) {
        for ((l, &x), &y) in lanes.iter_mut().zip(x8).zip(y8) {
            *l += x as f64 * y as f64;
        }
    }
    let rest: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| x as f64 * y as f64)
        .sum();
    rest + lanes.iter().sum::<f64>()
}

/// Batch statistics of one forward pass in training mode.
#[derive(Debug, Clone, PartialEq)]
pub struct BnBatchStats {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel biased variance (used to normalise).
    pub var: Vec<f32>,
    /// Values per channel (for the unbiased variance `var * n / (n - 1)`).
    pub count: usize,
}

/// Per-channel mean and biased variance of `x` (layout `d`).
fn batch_stats(x: &[f32], d: Dims) -> (Vec<f32>, Vec<f32>) {
    let inner = d.inner;
    let (s1, s2) = channel_sums(d, |r, _, a, b| {
        let row = &x[r * inner..(r + 1) * inner];
        *a += row_sum(row);
        *b += row_dot(row, row);
    });
    let n = d.count().max(1) as f64;
    let mean = s1.iter().map(|&s| (s / n) as f32).collect();
    let var = s1
        .iter()
        .zip(&s2)
        .map(|(&s, &q)| ((q / n) - (s / n) * (s / n)).max(0.0) as f32)
        .collect();
    (mean, var)
}

/// Per-channel mean and biased variance of a contiguous f32 CPU tensor.
#[derive(Debug, Clone, Copy)]
struct StatsOp {
    cdim: usize,
}

impl CustomOp1 for StatsOp {
    fn name(&self) -> &'static str {
        "spikenas-bn-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(self.name(), "x", s, l)?;
        let d = Dims::new(l.dims(), self.cdim)?;
        let (mean, var) = batch_stats(x, d);
        let out = [mean, var].concat();
        Ok((CpuStorage::F32(out), Shape::from((2, d.c))))
    }
}

/// `y = (x - mean) * invstd * gamma + beta` with fixed per-channel `mean`, `invstd`; in
/// training mode the backward also differentiates through the batch statistics.
#[derive(Debug, Clone)]
pub(crate) struct NormOp {
    cdim: usize,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    /// The statistics came from `x` itself (training mode).
    batch_stats: bool,
}

impl NormOp {
    fn coefficients(&self, gamma: &[f32], beta: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = gamma.iter().zip(&self.invstd).map(|(g, s)| g * s).collect();
        let shift = beta
            .iter()
            .zip(&self.mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        (scale, shift)
    }
}

impl CustomOp3 for NormOp {
    fn name(&self) -> &'static str {
        "spikenas-bn"
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
        let x = cpu_f32(self.name(), "x", s1, l1)?;
        let gamma = cpu_f32(self.name(), "gamma", s2, l2)?;
        let beta = cpu_f32(self.name(), "beta", s3, l3)?;
        let d = Dims::new(l1.dims(), self.cdim)?;
        check_channels(self.name(), d.c, gamma.len(), beta.len())?;
        let (scale, shift) = self.coefficients(gamma, beta);
        let y = channel_affine(d, x, None, &scale, &[], &shift);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dgamma, dbeta) = self.grads(x, gamma, grad, x.track_op())?;
        Ok((dx, Some(dgamma), Some(dbeta)))
    }
}

impl NormOp {
    /// `(dx, dgamma, dbeta)` of this normalisation of `x` from the output gradient;
    /// `dx` only when `want_dx`.
    pub(crate) fn grads(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        grad: &Tensor,
        want_dx: bool,
    ) -> candle_core::Result<(Option<Tensor>, Tensor, Tensor)> {
        let dy = grad.contiguous()?;
        let d = Dims::new(x.dims(), self.cdim)?;
        // Per channel: sum(dy) and sum(dy * (x - mean)).
        let sums = x.apply_op2_no_bwd(
            &dy,
            &GradSumsOp {
                cdim: self.cdim,
                mean: self.mean.clone(),
            },
        )?;
        let sums_v = sums.to_vec2::<f32>()?;
        let (sdy, sdyx) = (&sums_v[0], &sums_v[1]);
        let dgamma: Vec<f32> = sdyx.iter().zip(&self.invstd).map(|(s, i)| s * i).collect();
        let dgamma = Tensor::from_vec(dgamma, d.c, x.device())?;
        let dbeta = sums.get(0)?;
        if !want_dx {
            return Ok((None, dgamma, dbeta));
        }
        let g = gamma.to_vec1::<f32>()?;
        let n = d.count().max(1) as f32;
        let mut ka = Vec::with_capacity(d.c);
        let mut kb = Vec::with_capacity(d.c);
        let mut k0 = Vec::with_capacity(d.c);
        for ch in 0..d.c {
            let (gi, is) = (g[ch], self.invstd[ch]);
            if self.batch_stats {
                // dx = g*is*(dy - sdy/n - (x-mean)*is^2*sdyx/n)
                let kx = -gi * is * is * is * sdyx[ch] / n;
                ka.push(gi * is);
                kb.push(kx);
                k0.push(-gi * is * sdy[ch] / n - kx * self.mean[ch]);
            } else {
                ka.push(gi * is);
                kb.push(0.0);
                k0.push(0.0);
            }
        }
        let dx = dy.apply_op2_no_bwd(
            x,
            &InputGradOp {
                cdim: self.cdim,
                ka,
                kb,
                k0,
            },
        )?;
        Ok((Some(dx), dgamma, dbeta))
    }
}

fn check_channels(op: &'static str, c: usize, g: usize, b: usize) -> Result<(), KernelError> {
    if g != c || b != c {
        return Err(KernelError::BnParams {
            op,
            channels: c,
            gamma: g,
            beta: b,
        });
    }
    Ok(())
}

/// `(x, dy) -> (2, C)`: per channel `sum(dy)` and `sum(dy * (x - mean))`.
#[derive(Debug, Clone)]
struct GradSumsOp {
    cdim: usize,
    mean: Vec<f32>,
}

impl candle_core::CustomOp2 for GradSumsOp {
    fn name(&self) -> &'static str {
        "spikenas-bn-grad-sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(self.name(), "x", s1, l1)?;
        let dy = cpu_f32(self.name(), "dy", s2, l2)?;
        check_grad_shape(self.name(), l2.dims(), l1.dims())?;
        let d = Dims::new(l1.dims(), self.cdim)?;
        let inner = d.inner;
        let (sdy, sdyx) = channel_sums(d, |r, ch, a, b| {
            let (xr, gr) = (
                &x[r * inner..(r + 1) * inner],
                &dy[r * inner..(r + 1) * inner],
            );
            let s = row_sum(gr);
            *a += s;
            *b += row_dot(gr, xr) - self.mean[ch] as f64 * s;
        });
        let out = sdy.iter().chain(&sdyx).map(|&v| v as f32).collect();
        Ok((CpuStorage::F32(out), Shape::from((2, d.c))))
    }
}

/// `(dy, x) -> dx = ka[c] * dy + kb[c] * x + k0[c]`.
#[derive(Debug, Clone)]
struct InputGradOp {
    cdim: usize,
    ka: Vec<f32>,
    kb: Vec<f32>,
    k0: Vec<f32>,
}

impl candle_core::CustomOp2 for InputGradOp {
    fn name(&self) -> &'static str {
        "spikenas-bn-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dy = cpu_f32(self.name(), "dy", s1, l1)?;
        let x = cpu_f32(self.name(), "x", s2, l2)?;
        let d = Dims::new(l1.dims(), self.cdim)?;
        let b = self.kb.iter().any(|&v| v != 0.0).then_some(x);
        let dx = channel_affine(d, dy, b, &self.ka, &self.kb, &self.k0);
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Training-mode batch-norm of the values `x` (dims `dims`, channels at `cdim`) on
/// slices: the output, the op that differentiates it ([`NormOp::grads`]) and the batch
/// statistics. The same arithmetic as [`batch_norm_train`].
pub(crate) fn train_forward(
    x: &[f32],
    dims: &[usize],
    cdim: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
) -> Result<(Vec<f32>, NormOp, BnBatchStats), KernelError> {
    let d = Dims::new(dims, cdim)?;
    check_channels("spikenas-bn", d.c, gamma.len(), beta.len())?;
    let (mean, var) = batch_stats(x, d);
    let op = NormOp {
        cdim,
        invstd: inv_std(&var, eps),
        mean: mean.clone(),
        batch_stats: true,
    };
    let (scale, shift) = op.coefficients(gamma, beta);
    let y = channel_affine(d, x, None, &scale, &[], &shift);
    let stats = BnBatchStats {
        mean,
        var,
        count: d.count(),
    };
    Ok((y, op, stats))
}

fn fast_ok(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> bool {
    [x, gamma, beta]
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

fn inv_std(var: &[f32], eps: f64) -> Vec<f32> {
    var.iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect()
}

/// Batch-norm in training mode over channel dim `cdim` of `x`: normalises with the
/// batch's mean and biased variance, returns the output and the statistics (update the
/// running averages from them). CPU f32 runs the fused op; other devices or dtypes run
/// [`batch_norm_train_reference`].
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    cdim: usize,
    eps: f64,
) -> candle_core::Result<(Tensor, BnBatchStats)> {
    if !fast_ok(x, gamma, beta) {
        return batch_norm_train_reference(x, gamma, beta, cdim, eps);
    }
    let d = Dims::new(x.dims(), cdim)?;
    let x = x.contiguous()?;
    let stats = x.apply_op1_no_bwd(&StatsOp { cdim })?.to_vec2::<f32>()?;
    let (mean, var) = (stats[0].clone(), stats[1].clone());
    let op = NormOp {
        cdim,
        invstd: inv_std(&var, eps),
        mean: mean.clone(),
        batch_stats: true,
    };
    let y = x.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    Ok((
        y,
        BnBatchStats {
            mean,
            var,
            count: d.count(),
        },
    ))
}

/// Batch-norm in inference mode: normalises with the given running mean and variance.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    cdim: usize,
    eps: f64,
) -> candle_core::Result<Tensor> {
    if !fast_ok(x, gamma, beta) {
        return batch_norm_eval_reference(x, gamma, beta, running_mean, running_var, cdim, eps);
    }
    Dims::new(x.dims(), cdim)?;
    let var = running_var.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let op = NormOp {
        cdim,
        mean: running_mean.to_dtype(DType::F32)?.to_vec1::<f32>()?,
        invstd: inv_std(&var, eps),
        batch_stats: false,
    };
    x.contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)
}

/// `v` of shape (C,) reshaped to broadcast along channel dim `cdim` of `x`.
fn per_channel(v: &Tensor, x: &Tensor, cdim: usize) -> candle_core::Result<Tensor> {
    let mut shape = vec![1; x.rank()];
    shape[cdim] = x.dim(cdim)?;
    v.reshape(shape)
}

/// [`batch_norm_train`] built from candle ops (any device), for tests and fallback.
pub fn batch_norm_train_reference(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    cdim: usize,
    eps: f64,
) -> candle_core::Result<(Tensor, BnBatchStats)> {
    let d = Dims::new(x.dims(), cdim)?;
    let axes: Vec<usize> = (0..x.rank()).filter(|&a| a != cdim).collect();
    let mean = x.mean_keepdim(axes.as_slice())?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(axes.as_slice())?;
    let y = xc
        .broadcast_div(&(&var + eps)?.sqrt()?)?
        .broadcast_mul(&per_channel(gamma, x, cdim)?)?
        .broadcast_add(&per_channel(beta, x, cdim)?)?;
    let stats = BnBatchStats {
        mean: mean.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
        var: var.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
        count: d.count(),
    };
    Ok((y, stats))
}

/// [`batch_norm_eval`] built from candle ops (any device), for tests and fallback.
pub fn batch_norm_eval_reference(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    cdim: usize,
    eps: f64,
) -> candle_core::Result<Tensor> {
    Dims::new(x.dims(), cdim)?;
    let m = per_channel(running_mean, x, cdim)?;
    let s = per_channel(&(running_var + eps)?.sqrt()?, x, cdim)?;
    x.broadcast_sub(&m)?
        .broadcast_div(&s)?
        .broadcast_mul(&per_channel(gamma, x, cdim)?)?
        .broadcast_add(&per_channel(beta, x, cdim)?)
}
