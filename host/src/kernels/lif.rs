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

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{check_grad_shape, cpu_f32, with_simd, KernelError};

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

/// The 2x2/stride-2 average pool fused behind the LIF: each time step's M neurons are
/// planes of `h x w` (the last two dims); tasks then hold whole planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pool2 {
    /// Plane height.
    pub h: usize,
    /// Plane width.
    pub w: usize,
}

impl Pool2 {
    fn plane(&self) -> usize {
        self.h * self.w
    }

    fn pooled_plane(&self) -> usize {
        (self.h / 2) * (self.w / 2)
    }
}

/// Neurons per task (per time step): `CHUNK`, or as many whole planes as fit in it
/// (at least one) when pooling.
fn task_width(m: usize, pool: Option<Pool2>) -> usize {
    match pool {
        None => CHUNK.min(m).max(1),
        Some(p) => (CHUNK / p.plane().max(1)).max(1) * p.plane().max(1),
    }
}

/// Splits a (T, M) row-major buffer into per-task lists of T row pieces of `width`
/// columns, so each parallel task owns the same columns of every time step.
fn column_chunks<E>(buf: &mut [E], t_steps: usize, m: usize, width: usize) -> Vec<Vec<&mut [E]>> {
    let n_chunks = if m == 0 { 0 } else { m.div_ceil(width) };
    let mut chunks: Vec<Vec<&mut [E]>> =
        (0..n_chunks).map(|_| Vec::with_capacity(t_steps)).collect();
    if m == 0 {
        return chunks;
    }
    for row in buf.chunks_mut(m) {
        for (c, piece) in row.chunks_mut(width).enumerate() {
            chunks[c].push(piece);
        }
    }
    chunks
}

/// A vector of `len` values every one of which the caller writes before reading:
/// the parallel kernels fill it through [`column_chunks`] of its spare capacity.
fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: every caller writes all `len` elements (each task writes each value of
    // its row pieces, and the pieces tile the buffer).
    unsafe { v.set_len(len) };
    v
}

/// Calls `f` with the surrogate as a closure and the reset as a const generic, so the
/// inner loops are branch-free and vectorise.
macro_rules! specialise {
    ($p:expr, |$sg:ident, $hard:ident| $body:expr) => {
        match ($p.surrogate, $p.reset) {
            (Surrogate::ATan { alpha }, reset) => {
                let c = std::f32::consts::FRAC_PI_2 * alpha;
                let half = alpha / 2.0;
                let $sg = move |x: f32| {
                    let a = c * x;
                    half / (1.0 + a * a)
                };
                match reset {
                    Reset::Hard => {
                        const $hard: bool = true;
                        $body
                    }
                    Reset::Subtract => {
                        const $hard: bool = false;
                        $body
                    }
                }
            }
            (Surrogate::FastSigmoid { k }, reset) => {
                let $sg = move |x: f32| {
                    let d = 1.0 + k * x.abs();
                    1.0 / (d * d)
                };
                match reset {
                    Reset::Hard => {
                        const $hard: bool = true;
                        $body
                    }
                    Reset::Subtract => {
                        const $hard: bool = false;
                        $body
                    }
                }
            }
        }
    };
}

/// One step of the recurrence over a row of neurons: `h = v + (i - v)/tau` into `hrow`,
/// spikes (0.0/1.0) into `srow`, the membrane after reset back into `v`.
#[inline(always)]
fn step_row<const HARD: bool>(
    inv_tau: f32,
    vth: f32,
    i_row: &[f32],
    v: &mut [f32],
    hrow: &mut [f32],
    srow: &mut [f32],
) {
    for (((vj, &i), h_out), s_out) in v.iter_mut().zip(i_row).zip(hrow).zip(srow) {
        let h = *vj + (i - *vj) * inv_tau;
        let fired = h - vth >= 0.0;
        *h_out = h;
        *s_out = if fired { 1.0 } else { 0.0 };
        *vj = match (HARD, fired) {
            (_, false) => h,
            (true, true) => 0.0,
            (false, true) => h - vth,
        };
    }
}

/// Pools the spikes `srow` (whole `h x w` planes) of one step into `out` (the same
/// planes at `h/2 x w/2`), as [`super::pool::pool2_forward`] does.
#[inline(always)]
fn pool_row(pool: Pool2, srow: &[f32], out: &mut [MaybeUninit<f32>]) {
    let (h, w) = (pool.h, pool.w);
    let (ho, wo) = (h / 2, w / 2);
    for (sp, op) in srow
        .chunks_exact(pool.plane())
        .zip(out.chunks_exact_mut(pool.pooled_plane().max(1)))
    {
        for oy in 0..ho {
            let r0 = &sp[2 * oy * w..2 * oy * w + w];
            let r1 = &sp[(2 * oy + 1) * w..(2 * oy + 1) * w + w];
            for ox in 0..wo {
                let s = r0[2 * ox] + r0[2 * ox + 1] + r1[2 * ox] + r1[2 * ox + 1];
                op[oy * wo + ox].write(s * 0.25);
            }
        }
    }
}

/// Spreads the pooled gradient `gp` of whole planes back onto `grow` (`h x w` planes):
/// a quarter to each input of a window, 0 to dropped rows and columns.
#[inline(always)]
fn spread_row(pool: Pool2, gp: &[f32], grow: &mut [f32]) {
    let (h, w) = (pool.h, pool.w);
    let (ho, wo) = (h / 2, w / 2);
    let (plane, pooled) = (pool.plane(), pool.pooled_plane());
    for (i, gplane) in grow.chunks_exact_mut(plane).enumerate() {
        let g = &gp[i * pooled..(i + 1) * pooled];
        for y in 0..h {
            let row = &mut gplane[y * w..(y + 1) * w];
            if y / 2 >= ho {
                row.fill(0.0);
                continue;
            }
            let grow_p = &g[(y / 2) * wo..(y / 2) * wo + wo];
            for (x, r) in row.iter_mut().enumerate() {
                *r = if x / 2 < wo {
                    grow_p[x / 2] * 0.25
                } else {
                    0.0
                };
            }
        }
    }
}

/// Scratch rows of one LIF task, reused across tasks.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    v: Vec<f32>,
    h: Vec<f32>,
    row: Vec<f32>,
}

/// The forward over one group of `wd` neurons (whole planes with `pool`): `cur(t)` is
/// step t's currents, `out[t]` receives step t's spikes (or their pooled averages).
#[inline]
pub(crate) fn spikes_task<'a>(
    p: &LifParams,
    pool: Option<Pool2>,
    wd: usize,
    cur: impl Fn(usize) -> &'a [f32],
    out: &mut [&mut [MaybeUninit<f32>]],
    s: &mut Scratch,
) {
    let (inv_tau, vth) = (p.inv_tau(), p.threshold);
    s.v.clear();
    s.v.resize(wd, 0.0);
    s.h.resize(wd, 0.0);
    s.row.resize(wd, 0.0);
    let Scratch { v, h, row } = s;
    with_simd(|| {
        specialise!(p, |_sg, HARD| {
            for (t, o) in out.iter_mut().enumerate() {
                step_row::<HARD>(inv_tau, vth, &cur(t)[..wd], v, h, row);
                match pool {
                    None => {
                        for (o, &x) in o.iter_mut().zip(row.iter()) {
                            o.write(x);
                        }
                    }
                    Some(pl) => pool_row(pl, row, o),
                }
            }
        })
    });
}

/// The backward over one group of `wd` neurons: `cur(t)` is step t's currents,
/// `grad(t)` the gradient of step t's output (spikes, or their pooled averages with
/// `pool`), `out[t]` receives `dL/dcurrents` of step t.
#[inline]
pub(crate) fn backward_task<'a>(
    p: &LifParams,
    pool: Option<Pool2>,
    wd: usize,
    cur: impl Fn(usize) -> &'a [f32],
    grad: impl Fn(usize) -> &'a [f32],
    out: &mut [&mut [MaybeUninit<f32>]],
    s: &mut Scratch,
) {
    let t_steps = out.len();
    let (inv_tau, vth) = (p.inv_tau(), p.threshold);
    let decay = 1.0 - inv_tau;
    s.h.resize(t_steps * wd, 0.0);
    s.v.clear();
    s.v.resize(wd, 0.0);
    s.row.resize(wd, 0.0);
    let Scratch { v, h: hbuf, row } = s;
    with_simd(|| {
        specialise!(p, |sg, HARD| {
            // Forward again, keeping h; the spikes go to the scratch row.
            for t in 0..t_steps {
                let hrow = &mut hbuf[t * wd..(t + 1) * wd];
                step_row::<HARD>(inv_tau, vth, &cur(t)[..wd], v, hrow, row);
            }
            // v now carries dL/dv of the step after, from 0.
            v.fill(0.0);
            for t in (0..t_steps).rev() {
                let g_row: &[f32] = match pool {
                    None => &grad(t)[..wd],
                    Some(pl) => {
                        spread_row(pl, grad(t), row);
                        row
                    }
                };
                let h_row = &hbuf[t * wd..(t + 1) * wd];
                for (((o, &g), &h), gv) in out[t].iter_mut().zip(g_row).zip(h_row).zip(v.iter_mut())
                {
                    let x = h - vth;
                    let dv_dh = if HARD && x >= 0.0 { 0.0 } else { 1.0 };
                    let gh = g * sg(x) + *gv * dv_dh;
                    o.write(gh * inv_tau);
                    *gv = gh * decay;
                }
            }
        })
    });
}

/// Neurons per task and the matching width of the (pooled) output row piece.
pub(crate) fn task_widths(m: usize, pool: Option<Pool2>) -> (usize, usize) {
    let width = task_width(m, pool);
    let w_out = match pool {
        None => width,
        Some(pl) => width / pl.plane().max(1) * pl.pooled_plane(),
    };
    (width, w_out)
}

/// Output values per step for `m` neurons: `m`, or the pooled count.
pub(crate) fn out_len(m: usize, pool: Option<Pool2>) -> usize {
    match pool {
        None => m,
        Some(pl) => m / pl.plane().max(1) * pl.pooled_plane(),
    }
}

/// Spikes of the multi-step LIF over the currents `cur` (T x M, row-major): T x M
/// values of 0.0/1.0, or with `pool` their 2x2 averages (T x M/4 for even planes).
/// Parallel over neurons, sequential over time.
pub(crate) fn spikes(
    cur: &[f32],
    t_steps: usize,
    m: usize,
    p: &LifParams,
    pool: Option<Pool2>,
) -> Vec<f32> {
    let (width, w_out) = task_widths(m, pool);
    let m_out = out_len(m, pool);
    filled(t_steps * m_out, |out| {
        if m_out == 0 {
            return;
        }
        column_chunks(out, t_steps, m_out, w_out.max(1))
            .into_par_iter()
            .enumerate()
            .for_each_init(Scratch::default, |s, (c, mut rows)| {
                let col0 = c * width;
                let wd = width.min(m - col0);
                spikes_task(p, pool, wd, |t| &cur[t * m + col0..], &mut rows, s);
            });
    })
}

/// `dL/dcurrents` (T x M) from the currents and `dL/d(output)` `grad`: T x M spike
/// gradients, or with `pool` the gradients of the pooled output (T x M/4). BPTT through
/// the membrane, recomputing `h` from the currents.
pub(crate) fn backward(
    cur: &[f32],
    grad: &[f32],
    t_steps: usize,
    m: usize,
    p: &LifParams,
    pool: Option<Pool2>,
) -> Vec<f32> {
    let (width, w_g) = task_widths(m, pool);
    let m_g = out_len(m, pool);
    filled(t_steps * m, |out| {
        if m == 0 {
            return;
        }
        column_chunks(out, t_steps, m, width)
            .into_par_iter()
            .enumerate()
            .for_each_init(Scratch::default, |s, (c, mut rows)| {
                let col0 = c * width;
                let wd = width.min(m - col0);
                let n_g = out_len(wd, pool);
                backward_task(
                    p,
                    pool,
                    wd,
                    |t| &cur[t * m + col0..],
                    |t| &grad[t * m_g + c * w_g..t * m_g + c * w_g + n_g],
                    &mut rows,
                    s,
                );
            });
    })
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
        let out = spikes(cur, t_steps, m, &self.params, None);
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
        let out = backward(cur, gs, t_steps, m, &self.params, None);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}
