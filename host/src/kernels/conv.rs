//! The fast CPU 2-D convolution: im2col + GEMM (the `gemm` crate), batched over the
//! samples with rayon, as a candle custom op with its own backward pass.
//!
//! Forward, per sample n: `Y_n (Cout x P) = W (Cout x K) . col(X_n) (K x P)` where
//! `K = Cin*k*k` and `P = Ho*Wo`. Backward: `dW = sum_n dY_n . col(X_n)^T` and
//! `dX_n = col2im(W^T . dY_n)`. A 1x1 kernel with stride 1 and no padding skips
//! im2col/col2im altogether (`col(X_n) = X_n`).
//!
//! The weight gradient of a sparse binary input (spikes) goes through `sparse` instead.
//!
//! Each sample's GEMM runs single-threaded; the parallelism is across samples
//! (N = T*batch is large in SNN training), which keeps every thread's im2col buffer in
//! its own L2 cache.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::reduce::{ordered_partials, sum_in_order};

use super::{check_grad_shape, cpu_f32, sparse, KernelError};

/// Shape of one convolution: everything the kernels need, derived from the layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geom {
    /// Checks the shapes of `x` (..., Cin, H, W) (leading dims are the batch, at least
    /// one) and `w` (Cout, Cin, k, k).
    pub fn new(
        x_dims: &[usize],
        w_dims: &[usize],
        pad: usize,
        stride: usize,
    ) -> Result<Self, KernelError> {
        let rank_err = || KernelError::ConvRank {
            x: x_dims.to_vec(),
            w: w_dims.to_vec(),
        };
        if x_dims.len() < 4 {
            return Err(rank_err());
        }
        let (lead, chw) = x_dims.split_at(x_dims.len() - 3);
        let n = lead.iter().product();
        let (&[cin, h, w], &[cout, wcin, kh, kw]) = (chw, w_dims) else {
            return Err(rank_err());
        };
        if wcin != cin {
            return Err(KernelError::ConvChannels {
                x_cin: cin,
                w_cin: wcin,
            });
        }
        if kh != kw {
            return Err(KernelError::ConvKernelNotSquare { kh, kw });
        }
        if stride == 0 {
            return Err(KernelError::ConvStride);
        }
        let k = kh;
        if k == 0 || h + 2 * pad < k || w + 2 * pad < k {
            return Err(KernelError::ConvKernelTooLarge { h, w, k, pad });
        }
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        Ok(Self {
            n,
            cin,
            h,
            w,
            cout,
            k,
            stride,
            pad,
            ho,
            wo,
        })
    }

    /// Output dims for input dims `x_dims`: the same leading dims, then (Cout, Ho, Wo).
    pub fn out_dims(&self, x_dims: &[usize]) -> Vec<usize> {
        let mut d = x_dims[..x_dims.len() - 3].to_vec();
        d.extend([self.cout, self.ho, self.wo]);
        d
    }

    /// Rows of the im2col matrix: `Cin*k*k`.
    pub fn kdim(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// Output pixels per channel: `Ho*Wo`.
    pub fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// True when im2col is the identity (1x1 kernel, stride 1, no padding).
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// Multiply-adds of the forward pass, times two (FLOP).
    pub fn forward_flop(&self) -> f64 {
        2.0 * (self.n * self.cout * self.kdim() * self.p()) as f64
    }

    /// The output columns `ox` whose input column `ox*stride + kx - pad` lies inside
    /// `0..w`, as a half-open range.
    fn valid_ox(&self, kx: usize) -> (usize, usize) {
        let (s, pad, w) = (self.stride as isize, self.pad as isize, self.w as isize);
        let off = kx as isize - pad;
        // ox*s + off >= 0  and  ox*s + off <= w-1
        let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
        let hi_incl = w - 1 - off;
        let hi = if hi_incl < 0 { 0 } else { hi_incl / s + 1 };
        let hi = hi.min(self.wo as isize).max(lo);
        (lo as usize, hi as usize)
    }
}

type Strides = (usize, usize);

/// Index of the last element of a `rows x cols` matrix with strides `(rs, cs)`.
fn last(rows: usize, cols: usize, (rs, cs): Strides) -> usize {
    (rows - 1) * rs + (cols - 1) * cs
}

/// Checks the operand bounds of a GEMM (m, n, k all > 0).
fn check_bounds(
    (m, n, k): (usize, usize, usize),
    dst_len: usize,
    dst_st: Strides,
    lhs: &[f32],
    lhs_st: Strides,
    rhs: &[f32],
    rhs_st: Strides,
) {
    assert!(last(m, n, dst_st) < dst_len, "matmul: dst too small");
    assert!(last(m, k, lhs_st) < lhs.len(), "matmul: lhs too small");
    assert!(last(k, n, rhs_st) < rhs.len(), "matmul: rhs too small");
}

/// The `gemm` call behind [`matmul`] and [`matmul_uninit`].
///
/// # Safety
/// The operand bounds must have been checked with [`check_bounds`], `m, n, k > 0`, and
/// `dst` must not alias `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_checked(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    (dst_rs, dst_cs): Strides,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): Strides,
    rhs: &[f32],
    (rhs_rs, rhs_cs): Strides,
) {
    // SAFETY: the caller checked every index the GEMM touches, (rows-1)*rs +
    // (cols-1)*cs at most, against the buffers; with `accumulate` false `gemm` never
    // reads dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `dst (m x n) = [dst +] lhs (m x k) . rhs (k x n)` through `gemm`, single-threaded,
/// with explicit row/column strides; bounds are checked here so the call is sound.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_st: Strides,
    accumulate: bool,
    lhs: &[f32],
    lhs_st: Strides,
    rhs: &[f32],
    rhs_st: Strides,
) {
    if !accumulate {
        // SAFETY: MaybeUninit<f32> has f32's layout, and matmul_uninit writes only
        // initialised f32 values, so `dst` stays initialised.
        let dst = unsafe { &mut *(dst as *mut [f32] as *mut [MaybeUninit<f32>]) };
        return matmul_uninit((m, n, k), dst, dst_st, lhs, lhs_st, rhs, rhs_st);
    }
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    check_bounds((m, n, k), dst.len(), dst_st, lhs, lhs_st, rhs, rhs_st);
    // SAFETY: bounds checked above; dst is borrowed mutably, so it cannot alias.
    unsafe {
        gemm_checked(
            (m, n, k),
            dst.as_mut_ptr(),
            dst_st,
            true,
            lhs,
            lhs_st,
            rhs,
            rhs_st,
        )
    }
}

/// `dst (m x n) = lhs (m x k) . rhs (k x n)` into memory that need not be initialised:
/// every element `(i, j)`, `i < m`, `j < n` of `dst` is written (and none read).
pub(crate) fn matmul_uninit(
    (m, n, k): (usize, usize, usize),
    dst: &mut [MaybeUninit<f32>],
    dst_st: Strides,
    lhs: &[f32],
    lhs_st: Strides,
    rhs: &[f32],
    rhs_st: Strides,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(last(m, n, dst_st) < dst.len(), "matmul: dst too small");
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                dst[i * dst_st.0 + j * dst_st.1].write(0.0);
            }
        }
        return;
    }
    check_bounds((m, n, k), dst.len(), dst_st, lhs, lhs_st, rhs, rhs_st);
    // SAFETY: bounds checked above; dst is borrowed mutably, so it cannot alias; with
    // accumulate = false the GEMM only writes dst, never reads it.
    unsafe {
        gemm_checked(
            (m, n, k),
            dst.as_mut_ptr().cast::<f32>(),
            dst_st,
            false,
            lhs,
            lhs_st,
            rhs,
            rhs_st,
        )
    }
}

/// For a "same" convolution (stride 1, output as large as the input) every im2col row
/// is the input plane shifted by one offset, with the rows and columns that fall into
/// the padding zeroed: per tap `(ky, kx)`, the offset `dy*W + dx` (`dy = ky - pad`,
/// `dx = kx - pad`), the valid output rows `oy0..oy1` and columns `ox0..ox1`.
struct Shift {
    off: isize,
    rows: (usize, usize),
    cols: (usize, usize),
}

impl Shift {
    fn new(g: &Geom, ky: usize, kx: usize) -> Self {
        let (h, w) = (g.h as isize, g.w as isize);
        let (dy, dx) = (ky as isize - g.pad as isize, kx as isize - g.pad as isize);
        let range = |d: isize, n: isize| ((-d).max(0) as usize, (n - d).clamp(0, n) as usize);
        Self {
            off: dy * w + dx,
            rows: range(dy, h),
            cols: range(dx, w),
        }
    }

    /// The positions `q` of the valid rows whose source `q + off` lies in the plane.
    fn span(&self, g: &Geom) -> (usize, usize) {
        let plane = (g.h * g.w) as isize;
        let (lo, hi) = ((self.rows.0 * g.w) as isize, (self.rows.1 * g.w) as isize);
        let a = lo.max(-self.off).min(hi);
        let b = hi.min(plane - self.off).max(a);
        (a as usize, b as usize)
    }
}

/// True when [`Shift`] applies: stride 1 and output size = input size.
fn is_same(g: &Geom) -> bool {
    g.stride == 1 && g.ho == g.h && g.wo == g.w
}

/// Writes the im2col matrix (K x P, row-major) of one sample `x` (Cin x H x W).
pub(crate) fn im2col(x: &[f32], g: &Geom, col: &mut [f32]) {
    if is_same(g) {
        return im2col_same(x, g, col);
    }
    let (p, k, s) = (g.p(), g.k, g.stride);
    let plane = g.h * g.w;
    for ci in 0..g.cin {
        let xc = &x[ci * plane..(ci + 1) * plane];
        for ky in 0..k {
            for kx in 0..k {
                let row_idx = (ci * k + ky) * k + kx;
                let row = &mut col[row_idx * p..(row_idx + 1) * p];
                let (lo, hi) = g.valid_ox(kx);
                for oy in 0..g.ho {
                    let dst = &mut row[oy * g.wo..(oy + 1) * g.wo];
                    let iy = (oy * s + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize || lo >= hi {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &xc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    let ix0 = lo * s + kx - g.pad;
                    if s == 1 {
                        dst[lo..hi].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
                    } else {
                        for (d, sv) in dst[lo..hi].iter_mut().zip(src[ix0..].iter().step_by(s)) {
                            *d = *sv;
                        }
                    }
                }
            }
        }
    }
}

/// [`im2col`] of a "same" convolution: one shifted copy per row, then the padding
/// positions zeroed.
fn im2col_same(x: &[f32], g: &Geom, col: &mut [f32]) {
    let (p, k, w) = (g.p(), g.k, g.w);
    for ci in 0..g.cin {
        let xc = &x[ci * p..(ci + 1) * p];
        for ky in 0..k {
            for kx in 0..k {
                let row_idx = (ci * k + ky) * k + kx;
                let row = &mut col[row_idx * p..(row_idx + 1) * p];
                let sh = Shift::new(g, ky, kx);
                let (a, b) = sh.span(g);
                row[..a].fill(0.0);
                if a < b {
                    let src = (a as isize + sh.off) as usize;
                    row[a..b].copy_from_slice(&xc[src..src + (b - a)]);
                }
                row[b..].fill(0.0);
                let (c0, c1) = sh.cols;
                if c0 > 0 || c1 < w {
                    for oy in sh.rows.0..sh.rows.1 {
                        row[oy * w..oy * w + c0].fill(0.0);
                        row[oy * w + c1..(oy + 1) * w].fill(0.0);
                    }
                }
            }
        }
    }
}

/// Adds the im2col-shaped matrix `col` (K x P) back into one sample `dx` (Cin x H x W),
/// which must be zeroed (or hold values to add to). `col` is scratch: the "same" path
/// zeroes its padding positions.
pub(crate) fn col2im(col: &mut [f32], g: &Geom, dx: &mut [f32]) {
    if is_same(g) {
        return col2im_same(col, g, dx);
    }
    let (p, k, s) = (g.p(), g.k, g.stride);
    let plane = g.h * g.w;
    for ci in 0..g.cin {
        let dxc = &mut dx[ci * plane..(ci + 1) * plane];
        for ky in 0..k {
            for kx in 0..k {
                let row_idx = (ci * k + ky) * k + kx;
                let row = &col[row_idx * p..(row_idx + 1) * p];
                let (lo, hi) = g.valid_ox(kx);
                if lo >= hi {
                    continue;
                }
                for oy in 0..g.ho {
                    let iy = (oy * s + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let src = &row[oy * g.wo + lo..oy * g.wo + hi];
                    let dst = &mut dxc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let ix0 = lo * s + kx - g.pad;
                    if s == 1 {
                        for (d, sv) in dst[ix0..ix0 + (hi - lo)].iter_mut().zip(src) {
                            *d += *sv;
                        }
                    } else {
                        for (d, sv) in dst[ix0..].iter_mut().step_by(s).zip(src) {
                            *d += *sv;
                        }
                    }
                }
            }
        }
    }
}

/// [`col2im`] of a "same" convolution: the padding positions of each row zeroed, then
/// one shifted add per row (each `dx` value gets its taps in the same order as the
/// general path).
fn col2im_same(col: &mut [f32], g: &Geom, dx: &mut [f32]) {
    let (p, k, w) = (g.p(), g.k, g.w);
    for ci in 0..g.cin {
        let dxc = &mut dx[ci * p..(ci + 1) * p];
        for ky in 0..k {
            for kx in 0..k {
                let row_idx = (ci * k + ky) * k + kx;
                let row = &mut col[row_idx * p..(row_idx + 1) * p];
                let sh = Shift::new(g, ky, kx);
                let (c0, c1) = sh.cols;
                if c0 > 0 || c1 < w {
                    for oy in sh.rows.0..sh.rows.1 {
                        row[oy * w..oy * w + c0].fill(0.0);
                        row[oy * w + c1..(oy + 1) * w].fill(0.0);
                    }
                }
                let (a, b) = sh.span(g);
                if a == b {
                    continue;
                }
                let dst = (a as isize + sh.off) as usize;
                for (d, v) in dxc[dst..dst + (b - a)].iter_mut().zip(&row[a..b]) {
                    *d += *v;
                }
            }
        }
    }
}

/// The im2col matrix (K x P) of one sample: `xn` itself for a pointwise convolution,
/// else built in `col`.
fn col_matrix<'a>(xn: &'a [f32], g: &Geom, col: &'a mut Vec<f32>) -> &'a [f32] {
    if g.is_pointwise() {
        return xn;
    }
    col.resize(g.kdim() * g.p(), 0.0);
    im2col(xn, g, col);
    col
}

/// `Y_n = W . col(X_n)` of one sample `xn` (Cin x H x W) into `yn` (Cout x P), every
/// value written; `col` is scratch.
pub(crate) fn forward_sample(
    xn: &[f32],
    w: &[f32],
    g: &Geom,
    col: &mut Vec<f32>,
    yn: &mut [MaybeUninit<f32>],
) {
    let (kd, p) = (g.kdim(), g.p());
    let rhs = col_matrix(xn, g, col);
    matmul_uninit((g.cout, p, kd), yn, (p, 1), w, (kd, 1), rhs, (p, 1));
}

/// Forward convolution of the whole batch: returns `Y` (N, Cout, Ho, Wo), contiguous.
pub(crate) fn forward(x: &[f32], w: &[f32], g: &Geom) -> Vec<f32> {
    let p = g.p();
    let x_len = g.cin * g.h * g.w;
    let len = g.n * g.cout * p;
    let mut y = Vec::with_capacity(len);
    if len == 0 {
        return y;
    }
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(g.cout * p)
        .enumerate()
        .for_each_init(Vec::<f32>::new, |col, (n, yn)| {
            forward_sample(&x[n * x_len..(n + 1) * x_len], w, g, col, yn);
        });
    // SAFETY: the chunks tile the first `len` elements and each chunk's GEMM wrote all
    // of its Cout x P values (matmul_uninit writes every element).
    unsafe { y.set_len(len) };
    y
}

/// Adds one sample's `dY_n . col(X_n)^T` to `dw` (Cout x K); `col` is scratch.
pub(crate) fn weight_grad_sample(
    xn: &[f32],
    dyn_: &[f32],
    g: &Geom,
    col: &mut Vec<f32>,
    dw: &mut [f32],
) {
    let (kd, p) = (g.kdim(), g.p());
    let rhs = col_matrix(xn, g, col);
    // rhs^T (P x K): element (q, r) = rhs[r*P + q].
    matmul(
        (g.cout, kd, p),
        dw,
        (kd, 1),
        true,
        dyn_,
        (p, 1),
        rhs,
        (1, p),
    );
}

/// Weight gradient `dW (Cout x K) = sum_n dY_n . col(X_n)^T`.
pub(crate) fn weight_grad(x: &[f32], dy: &[f32], g: &Geom) -> Vec<f32> {
    let (kd, p) = (g.kdim(), g.p());
    let x_len = g.cin * g.h * g.w;
    let y_len = g.cout * p;
    // Fixed chunks of samples, partials summed in chunk order: bit-identical runs.
    let parts = ordered_partials(
        g.n,
        1,
        || (vec![0.0f32; g.cout * kd], Vec::<f32>::new()),
        |(mut dw, mut col), n| {
            let xn = &x[n * x_len..(n + 1) * x_len];
            let dyn_ = &dy[n * y_len..(n + 1) * y_len];
            weight_grad_sample(xn, dyn_, g, &mut col, &mut dw);
            (dw, col)
        },
    );
    sum_in_order(parts.into_iter().map(|(dw, _)| dw).collect(), g.cout * kd)
}

/// `dX_n = col2im(W^T . dY_n)` of one sample into `dxn` (Cin x H x W, zeroed or
/// holding values to add to); `dcol` is scratch.
pub(crate) fn input_grad_sample(
    dyn_: &[f32],
    w: &[f32],
    g: &Geom,
    dcol: &mut Vec<f32>,
    dxn: &mut [f32],
) {
    let (kd, p) = (g.kdim(), g.p());
    // W^T (K x Cout): element (r, c) = w[c*K + r].
    if g.is_pointwise() {
        matmul((kd, p, g.cout), dxn, (p, 1), true, w, (1, kd), dyn_, (p, 1));
    } else {
        dcol.resize(kd * p, 0.0);
        matmul(
            (kd, p, g.cout),
            dcol,
            (p, 1),
            false,
            w,
            (1, kd),
            dyn_,
            (p, 1),
        );
        col2im(dcol, g, dxn);
    }
}

/// Input gradient `dX_n = col2im(W^T . dY_n)`, returned as (N, Cin, H, W).
pub(crate) fn input_grad(dy: &[f32], w: &[f32], g: &Geom) -> Vec<f32> {
    let p = g.p();
    let x_len = g.cin * g.h * g.w;
    let y_len = g.cout * p;
    let mut dx = vec![0.0f32; g.n * x_len];
    if dx.is_empty() {
        return dx;
    }
    dx.par_chunks_mut(x_len)
        .enumerate()
        .for_each_init(Vec::<f32>::new, |dcol, (n, dxn)| {
            input_grad_sample(&dy[n * y_len..(n + 1) * y_len], w, g, dcol, dxn);
        });
    dx
}

/// The forward custom op: `conv2d(x, w)` with the fast backward below.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv2dOp {
    pub padding: usize,
    pub stride: usize,
    pub input_grad: bool,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "spikenas-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.dims(), l2.dims(), self.padding, self.stride)?;
        let x = cpu_f32(self.name(), "x", s1, l1)?;
        let w = cpu_f32(self.name(), "w", s2, l2)?;
        let y = forward(x, w, &g);
        Ok((CpuStorage::F32(y), Shape::from(g.out_dims(l1.dims()))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // An input that no gradient can reach (the image of the first layer) gets none.
        let want_dx = self.input_grad && x.track_op();
        let (dx, dw) = self.grads(x, w, &grad_res.contiguous()?, want_dx)?;
        Ok((dx, Some(dw)))
    }
}

impl Conv2dOp {
    /// `(dX, dW)` of this convolution from the output gradient `dy` (contiguous, the
    /// output's shape); `dX` only when `want_dx`. The weight gradient takes the sparse
    /// path when `x` is binary spikes at a low rate.
    pub(crate) fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        want_dx: bool,
    ) -> candle_core::Result<(Option<Tensor>, Tensor)> {
        let dw = x.apply_op2_no_bwd(
            dy,
            &WeightGradOp {
                op: *self,
                w_shape: w.dims4()?,
            },
        )?;
        let dx = if want_dx {
            let op = InputGradOp {
                op: *self,
                x_dims: x.dims().to_vec(),
            };
            Some(dy.apply_op2_no_bwd(w, &op)?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// `dW` from `(x, dY)`.
#[derive(Debug, Clone, Copy)]
struct WeightGradOp {
    op: Conv2dOp,
    w_shape: (usize, usize, usize, usize),
}

impl CustomOp2 for WeightGradOp {
    fn name(&self) -> &'static str {
        "spikenas-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (co, ci, kh, kw) = self.w_shape;
        let g = Geom::new(
            l1.dims(),
            &[co, ci, kh, kw],
            self.op.padding,
            self.op.stride,
        )?;
        let expect = g.out_dims(l1.dims());
        check_grad_shape(self.name(), l2.dims(), &expect)?;
        let x = cpu_f32(self.name(), "x", s1, l1)?;
        let dy = cpu_f32(self.name(), "dy", s2, l2)?;
        let dw = if sparse::is_sparse_binary(x) {
            sparse::weight_grad(x, dy, &g)
        } else {
            weight_grad(x, dy, &g)
        };
        Ok((CpuStorage::F32(dw), Shape::from(self.w_shape)))
    }
}

/// `dX` from `(dY, w)`.
#[derive(Debug, Clone)]
struct InputGradOp {
    op: Conv2dOp,
    x_dims: Vec<usize>,
}

impl CustomOp2 for InputGradOp {
    fn name(&self) -> &'static str {
        "spikenas-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geom::new(&self.x_dims, l2.dims(), self.op.padding, self.op.stride)?;
        let expect = g.out_dims(&self.x_dims);
        check_grad_shape(self.name(), l1.dims(), &expect)?;
        let dy = cpu_f32(self.name(), "dy", s1, l1)?;
        let wt = cpu_f32(self.name(), "w", s2, l2)?;
        Ok((
            CpuStorage::F32(input_grad(dy, wt, &g)),
            Shape::from(self.x_dims.clone()),
        ))
    }
}
