//! Multi-step leaky integrate-and-fire neurons (spikingjelly's `LIFNode` with
//! `decay_input=True`, `v_reset=0`, `detach_reset=True`) with a surrogate gradient.
//!
//! Per step t, for every neuron: `h_t = v_{t-1} + (I_t - v_{t-1}) / tau`,
//! `s_t = H(h_t - v_th)`, then `v_t = h_t * (1 - s_t)` (hard reset) or
//! `v_t = h_t - s_t * v_th` (subtractive reset); `v_{-1} = 0`. The backward replaces
//! `dH/dx` by the surrogate and passes no gradient through the reset (`s_t` in the
//! reset is detached), so BPTT runs through the membrane only:
//! `gh_t = gs_t * sg(h_t - v_th) + gv_t * dv_t/dh_t`, `gI_t = gh_t / tau`,
//! `gv_{t-1} = gh_t * (1 - 1/tau)`.
//!
//! [`lif_multistep`] is one fused custom op (parallel over neurons, sequential over
//! time, the backward recomputes `h` from the currents instead of storing it);
//! [`lif_multistep_reference`] builds the same thing from candle tensor ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{check_grad_shape, cpu_f32, KernelError};

/// Reset applied after a spike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reset {
    /// `v = 0` after a spike (spikingjelly's `v_reset = 0`).
    #[default]
    Hard,
    /// `v = h - v_th` after a spike (spikingjelly's `v_reset = None`).
    Subtract,
}

/// Surrogate for the derivative of the Heaviside step, as a function of
/// `x = h - v_th`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Surrogate {
    /// `alpha/2 / (1 + (pi/2 * alpha * x)^2)` (spikingjelly's `ATan`, default alpha 2).
    ATan {
        /// Sharpness; spikingjelly's default is 2.
        alpha: f32,
    },
    /// `1 / (1 + k|x|)^2`, the derivative of the fast sigmoid `x / (1 + k|x|)`.
    FastSigmoid {
        /// Sharpness.
        k: f32,
    },
}

impl Default for Surrogate {
    fn default() -> Self {
        Self::ATan { alpha: 2.0 }
    }
}

impl Surrogate {
    /// The surrogate derivative at `x = h - v_th`.
    #[inline]
    pub fn grad(&self, x: f32) -> f32 {
        match *self {
            Self::ATan { alpha } => {
                let a = std::f32::consts::FRAC_PI_2 * alpha * x;
                alpha / 2.0 / (1.0 + a * a)
            }
            Self::FastSigmoid { k } => {
                let d = 1.0 + k * x.abs();
                1.0 / (d * d)
            }
        }
    }
}

/// Parameters of a LIF layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LifParams {
    /// Membrane time constant; the decay per step is `1 - 1/tau` (spikingjelly default 2;
    /// SNASNet uses 4/3).
    pub tau: f32,
    /// Firing threshold `v_th`.
    pub threshold: f32,
    /// Reset rule.
    pub reset: Reset,
    /// Surrogate gradient of the spike.
    pub surrogate: Surrogate,
}

impl Default for LifParams {
    /// SNASNet's LIF: tau 4/3, threshold 1, hard reset, ATan(alpha 2).
    fn default() -> Self {
        Self {
            tau: 4.0 / 3.0,
            threshold: 1.0,
            reset: Reset::Hard,
            surrogate: Surrogate::default(),
        }
    }
}

impl LifParams {
    /// Checks that every field is usable.
    pub fn validate(&self) -> Result<(), KernelError> {
        let bad = |field, value, fix| Err(KernelError::LifParam { field, value, fix });
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return bad("tau", self.tau, "must be finite and > 0 (e.g. 4/3 or 2)");
        }
        if !self.threshold.is_finite() {
            return bad("threshold", self.threshold, "must be finite (e.g. 1.0)");
        }
        match self.surrogate {
            Surrogate::ATan { alpha } if !(alpha.is_finite() && alpha > 0.0) => {
                bad("surrogate.alpha", alpha, "must be finite and > 0 (e.g. 2)")
            }
            Surrogate::FastSigmoid { k } if !(k.is_finite() && k > 0.0) => {
                bad("surrogate.k", k, "must be finite and > 0 (e.g. 5)")
            }
            _ => Ok(()),
        }
    }

    /// `1/tau` as the f32 both implementations multiply by.
    fn inv_tau(&self) -> f32 {
        (1.0 / self.tau as f64) as f32
    }
}

fn time_steps(dims: &[usize]) -> Result<(usize, usize), KernelError> {
    if dims.len() < 2 {
        return Err(KernelError::LifRank(dims.to_vec()));
    }
    let t = dims[0];
    let m = dims[1..].iter().product();
    Ok((t, m))
}

/// Fused multi-step LIF: `currents` (T, B, ...) -> spikes (T, B, ...) of 0.0/1.0, with
/// the surrogate-gradient backward. On a non-CPU device or a non-f32 dtype it runs
/// [`lif_multistep_reference`].
pub fn lif_multistep(currents: &Tensor, params: &LifParams) -> candle_core::Result<Tensor> {
    params.validate()?;
    time_steps(currents.dims())?;
    if !currents.device().is_cpu() || currents.dtype() != DType::F32 {
        return lif_multistep_reference(currents, params);
    }
    currents.contiguous()?.apply_op1(LifOp { params: *params })
}

/// The same LIF from standard candle ops (a loop over T). The spike is
/// `H(x) + (x * sg(x).detach() - (x * sg(x)).detach())` with `x = h - v_th`: its value
/// is exactly `H(x)` and its gradient wrt `x` exactly the surrogate `sg(x)`.
pub fn lif_multistep_reference(
    currents: &Tensor,
    params: &LifParams,
) -> candle_core::Result<Tensor> {
    params.validate()?;
    let (t_steps, _) = time_steps(currents.dims())?;
    let inv_tau = params.inv_tau() as f64;
    let vth = params.threshold as f64;
    let mut v = currents.get(0)?.zeros_like()?;
    let mut spikes = Vec::with_capacity(t_steps);
    for t in 0..t_steps {
        let i_t = currents.get(t)?;
        let h = (&v + (&i_t - &v)?.affine(inv_tau, 0.0)?)?;
        let x = h.affine(1.0, -vth)?;
        let heaviside = x.ge(0.0)?.to_dtype(x.dtype())?;
        let sg = match params.surrogate {
            Surrogate::ATan { alpha } => {
                let c = std::f64::consts::FRAC_PI_2 * alpha as f64;
                x.affine(c, 0.0)?
                    .sqr()?
                    .affine(1.0, 1.0)?
                    .recip()?
                    .affine(alpha as f64 / 2.0, 0.0)?
            }
            Surrogate::FastSigmoid { k } => x.abs()?.affine(k as f64, 1.0)?.sqr()?.recip()?,
        }
        .detach();
        let xsg = (&x * &sg)?;
        let spike = (&heaviside + (&xsg - xsg.detach())?)?;
        v = match params.reset {
            Reset::Hard => (&h * heaviside.affine(-1.0, 1.0)?)?,
            Reset::Subtract => (&h - heaviside.affine(vth, 0.0)?)?,
        };
        spikes.push(spike);
    }
    Tensor::stack(&spikes, 0)
}

/// Neurons per parallel task: large enough to amortise the task, small enough that
/// T rows of it stay in L1/L2.
const CHUNK: usize = 2048;

/// Splits a (T, M) row-major buffer into per-chunk lists of T row pieces, so each
/// parallel task owns the columns `c*CHUNK..` of every time step.
fn column_chunks(buf: &mut [f32], t_steps: usize, m: usize) -> Vec<Vec<&mut [f32]>> {
    let n_chunks = m.div_ceil(CHUNK);
    let mut chunks: Vec<Vec<&mut [f32]>> =
        (0..n_chunks).map(|_| Vec::with_capacity(t_steps)).collect();
    for row in buf.chunks_mut(m) {
        for (c, piece) in row.chunks_mut(CHUNK).enumerate() {
            chunks[c].push(piece);
        }
    }
    chunks
}

/// Runs the forward recurrence over one chunk of neurons; `emit(t, j, h)` sees every
/// pre-spike membrane value.
#[inline]
fn forward_chunk(
    p: &LifParams,
    currents: &[f32],
    m: usize,
    t_steps: usize,
    col0: usize,
    width: usize,
    mut emit: impl FnMut(usize, usize, f32),
) {
    let inv_tau = p.inv_tau();
    let vth = p.threshold;
    let mut v = [0.0f32; CHUNK];
    let v = &mut v[..width];
    for t in 0..t_steps {
        let i_row = &currents[t * m + col0..t * m + col0 + width];
        for (j, (vj, &i)) in v.iter_mut().zip(i_row).enumerate() {
            let h = *vj + (i - *vj) * inv_tau;
            emit(t, j, h);
            let fired = h - vth >= 0.0;
            *vj = match (p.reset, fired) {
                (_, false) => h,
                (Reset::Hard, true) => 0.0,
                (Reset::Subtract, true) => h - vth,
            };
        }
    }
}

/// The forward recurrence over one chunk of neurons, writing the spikes into `rows`
/// (one row piece per step): the same arithmetic as [`forward_chunk`], branch-free so
/// that it vectorises.
fn spikes_chunk(
    p: &LifParams,
    currents: &[f32],
    m: usize,
    col0: usize,
    width: usize,
    rows: &mut [&mut [f32]],
) {
    let inv_tau = p.inv_tau();
    let vth = p.threshold;
    let mut v = [0.0f32; CHUNK];
    let v = &mut v[..width];
    for (t, out) in rows.iter_mut().enumerate() {
        let i_row = &currents[t * m + col0..t * m + col0 + width];
        for ((vj, &i), o) in v.iter_mut().zip(i_row).zip(out.iter_mut()) {
            let h = *vj + (i - *vj) * inv_tau;
            let fired = h - vth >= 0.0;
            *o = if fired { 1.0 } else { 0.0 };
            *vj = match p.reset {
                Reset::Hard => {
                    if fired {
                        0.0
                    } else {
                        h
                    }
                }
                Reset::Subtract => {
                    if fired {
                        h - vth
                    } else {
                        h
                    }
                }
            };
        }
    }
}

/// Spikes (T x M, 0.0/1.0) of the multi-step LIF over the currents `cur` (T x M,
/// row-major), parallel over neurons.
pub(crate) fn spikes(cur: &[f32], t_steps: usize, m: usize, p: &LifParams) -> Vec<f32> {
    let mut out = vec![0.0f32; cur.len()];
    column_chunks(&mut out, t_steps, m)
        .into_par_iter()
        .enumerate()
        .for_each(|(c, mut rows)| {
            let width = rows.first().map_or(0, |r| r.len());
            spikes_chunk(p, cur, m, c * CHUNK, width, &mut rows);
        });
    out
}

/// `dL/dcurrents` (T x M) from the currents and `dL/dspikes` `gs` (both T x M): BPTT
/// through the membrane, recomputing `h` from the currents.
pub(crate) fn backward(
    cur: &[f32],
    gs: &[f32],
    t_steps: usize,
    m: usize,
    p: &LifParams,
) -> Vec<f32> {
    let p = *p;
    let inv_tau = p.inv_tau();
    let decay = 1.0 - inv_tau;
    let mut out = vec![0.0f32; cur.len()];
    column_chunks(&mut out, t_steps, m)
        .into_par_iter()
        .enumerate()
        .for_each_init(Vec::<f32>::new, |hbuf, (c, mut rows)| {
            let width = rows.first().map_or(0, |r| r.len());
            let col0 = c * CHUNK;
            hbuf.resize(t_steps * width, 0.0);
            forward_chunk(&p, cur, m, t_steps, col0, width, |t, j, h| {
                hbuf[t * width + j] = h;
            });
            let mut gv = [0.0f32; CHUNK];
            let gv = &mut gv[..width];
            for t in (0..t_steps).rev() {
                let g_row = &gs[t * m + col0..t * m + col0 + width];
                let h_row = &hbuf[t * width..(t + 1) * width];
                let o_row = &mut rows[t];
                for j in 0..width {
                    let x = h_row[j] - p.threshold;
                    let dv_dh = match p.reset {
                        Reset::Hard if x >= 0.0 => 0.0,
                        _ => 1.0,
                    };
                    let gh = g_row[j] * p.surrogate.grad(x) + gv[j] * dv_dh;
                    o_row[j] = gh * inv_tau;
                    gv[j] = gh * decay;
                }
            }
        });
    out
}

/// The fused forward op.
#[derive(Debug, Clone, Copy)]
struct LifOp {
    params: LifParams,
}

impl CustomOp1 for LifOp {
    fn name(&self) -> &'static str {
        "spikenas-lif"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let cur = cpu_f32(self.name(), "currents", s, l)?;
        let (t_steps, m) = time_steps(l.dims())?;
        let out = spikes(cur, t_steps, m, &self.params);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(
        &self,
        currents: &Tensor,
        _spikes: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = currents.apply_op2_no_bwd(
            &grad.contiguous()?,
            &LifBackwardOp {
                params: self.params,
            },
        )?;
        Ok(Some(g))
    }
}

/// The fused backward: `(currents, dL/dspikes) -> dL/dcurrents`.
#[derive(Debug, Clone, Copy)]
struct LifBackwardOp {
    params: LifParams,
}

impl CustomOp2 for LifBackwardOp {
    fn name(&self) -> &'static str {
        "spikenas-lif-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let cur = cpu_f32(self.name(), "currents", s1, l1)?;
        let gs = cpu_f32(self.name(), "grad", s2, l2)?;
        check_grad_shape(self.name(), l2.dims(), l1.dims())?;
        let (t_steps, m) = time_steps(l1.dims())?;
        let out = backward(cur, gs, t_steps, m, &self.params);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}
