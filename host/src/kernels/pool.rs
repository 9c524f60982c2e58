//! Pooling and time-broadcast ops over the last two (spatial) dims of tensors of any
//! rank, each one candle node with its own backward (candle's `avg_pool2d` needs 4-D
//! input, so a (T, B, C, H, W) tensor would need reshape nodes around it, and its
//! backward for 3x3/stride 1 does not exist; the shifted-sum form of the 3x3 pool is
//! ~12 nodes).
//!
//! - [`avg_pool2`]: 2x2 average, stride 2, floor (odd trailing rows/columns dropped).
//! - [`avg_pool3x3_same`]: 3x3 average, stride 1, zero padding 1, always divided by 9
//!   (padding counts); summed rows first, then columns, as the candle form does.
//! - [`repeat_time`]: (B, ...) -> (T, B, ...) copies; backward sums over T.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu_f32, with_simd, KernelError};

/// Planes (H x W images) per rayon task, at least this many values.
const MIN_TASK_ELEMS: usize = 16 * 1024;

fn spatial(op: &'static str, dims: &[usize]) -> Result<(usize, usize, usize), KernelError> {
    if dims.len() < 2 {
        return Err(KernelError::PoolRank {
            op,
            dims: dims.to_vec(),
        });
    }
    let (h, w) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    Ok((dims[..dims.len() - 2].iter().product(), h, w))
}

/// Runs `f(plane_index, out_plane)` over `planes` output planes of `len` values each,
/// in parallel when there is enough work.
fn per_plane(planes: usize, len: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; planes * len];
    if len == 0 {
        return out;
    }
    let min = (MIN_TASK_ELEMS / len).max(1);
    out.par_chunks_mut(len)
        .with_min_len(min)
        .enumerate()
        .for_each(|(p, o)| with_simd(|| f(p, o)));
    out
}

fn fast_ok(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// 2x2/stride-2 average pooling of `x` (dims `dims`, rank >= 2) over the last two dims:
/// the pooled values and their dims.
pub(crate) fn pool2_forward(
    x: &[f32],
    dims: &[usize],
) -> Result<(Vec<f32>, Vec<usize>), KernelError> {
    let (n, h, w) = spatial("avg_pool2", dims)?;
    let (ho, wo) = (h / 2, w / 2);
    let y = per_plane(n, ho * wo, |p, o| {
        let xp = &x[p * h * w..(p + 1) * h * w];
        for oy in 0..ho {
            let r0 = &xp[2 * oy * w..2 * oy * w + w];
            let r1 = &xp[(2 * oy + 1) * w..(2 * oy + 1) * w + w];
            for ox in 0..wo {
                let s = r0[2 * ox] + r0[2 * ox + 1] + r1[2 * ox] + r1[2 * ox + 1];
                o[oy * wo + ox] = s * 0.25;
            }
        }
    });
    let mut out = dims.to_vec();
    let r = out.len();
    out[r - 2] = ho;
    out[r - 1] = wo;
    Ok((y, out))
}

/// The gradient of [`pool2_forward`]: `dy` (dims `dy_dims`, the pooled dims of
/// `x_dims`) -> `dx` (`x_dims`), a quarter of each window's gradient to each of its
/// inputs (dropped rows and columns get 0).
pub(crate) fn pool2_backward(
    dy: &[f32],
    dy_dims: &[usize],
    x_dims: &[usize],
) -> Result<Vec<f32>, KernelError> {
    const OP: &str = "spikenas-avgpool2-backward";
    let (n, h, w) = spatial(OP, x_dims)?;
    let (ho, wo) = (h / 2, w / 2);
    let (gn, gh, gw) = spatial(OP, dy_dims)?;
    if (gn, gh, gw) != (n, ho, wo) {
        return Err(KernelError::GradShape {
            op: OP,
            got: dy_dims.to_vec(),
            expected: [&x_dims[..x_dims.len() - 2], &[ho, wo]].concat(),
        });
    }
    Ok(per_plane(n, h * w, |p, o| {
        let gp = &dy[p * ho * wo..(p + 1) * ho * wo];
        for oy in 0..ho {
            for ox in 0..wo {
                let g = gp[oy * wo + ox] * 0.25;
                o[2 * oy * w + 2 * ox] = g;
                o[2 * oy * w + 2 * ox + 1] = g;
                o[(2 * oy + 1) * w + 2 * ox] = g;
                o[(2 * oy + 1) * w + 2 * ox + 1] = g;
            }
        }
    }))
}

/// 2x2 average pooling, stride 2, over the last two dims.
#[derive(Debug, Clone, Copy)]
struct AvgPool2;

impl CustomOp1 for AvgPool2 {
    fn name(&self) -> &'static str {
        "spikenas-avgpool2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(self.name(), "x", s, l)?;
        let (y, dims) = pool2_forward(x, l.dims())?;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let op = AvgPool2Backward {
            x_dims: x.dims().to_vec(),
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// `dy (.., H/2, W/2) -> dx (.., H, W)`: each input of a window gets a quarter.
#[derive(Debug, Clone)]
struct AvgPool2Backward {
    x_dims: Vec<usize>,
}

impl CustomOp1 for AvgPool2Backward {
    fn name(&self) -> &'static str {
        "spikenas-avgpool2-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dy = cpu_f32(self.name(), "dy", s, l)?;
        let dx = pool2_backward(dy, l.dims(), &self.x_dims)?;
        Ok((CpuStorage::F32(dx), Shape::from(self.x_dims.clone())))
    }
}

/// 2x2 average pooling with stride 2 over the last two dims of `x` (rank >= 2; rows
/// and columns beyond an even count are dropped, as `avg_pool2d(2)` does).
pub fn avg_pool2(x: &Tensor) -> candle_core::Result<Tensor> {
    if fast_ok(x) {
        spatial("avg_pool2", x.dims())?;
        return x.contiguous()?.apply_op1(AvgPool2);
    }
    let dims = x.dims().to_vec();
    let (n, h, w) = spatial("avg_pool2", &dims)?;
    let y = x.reshape((n, 1, h, w))?.avg_pool2d(2)?;
    let r = dims.len();
    let mut out = dims;
    out[r - 2] = h / 2;
    out[r - 1] = w / 2;
    y.reshape(out)
}

/// Separable 3x3 box sum with zero padding, divided by 9, of every plane of `x`.
fn box3(x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
    per_plane(n, h * w, |p, o| {
        let xp = &x[p * h * w..(p + 1) * h * w];
        // Rows: r[y] = (x[y-1] + x[y]) + x[y+1], zero outside, written into `o`.
        for y in 0..h {
            let r = &mut o[y * w..(y + 1) * w];
            let mid = &xp[y * w..(y + 1) * w];
            if y > 0 {
                let up = &xp[(y - 1) * w..y * w];
                for ((r, &a), &b) in r.iter_mut().zip(up).zip(mid) {
                    *r = a + b;
                }
            } else {
                r.copy_from_slice(mid);
            }
            if y + 1 < h {
                let down = &xp[(y + 1) * w..(y + 2) * w];
                for (r, &c) in r.iter_mut().zip(down) {
                    *r += c;
                }
            }
        }
        // Columns, in place row by row: s[x] = (r[x-1] + r[x]) + r[x+1], then / 9.
        let mut r = vec![0f32; w];
        for y in 0..h {
            let o = &mut o[y * w..(y + 1) * w];
            r.copy_from_slice(o);
            for xx in 0..w {
                let left = if xx > 0 { r[xx - 1] } else { 0.0 };
                let right = if xx + 1 < w { r[xx + 1] } else { 0.0 };
                o[xx] = ((left + r[xx]) + right) / 9.0;
            }
        }
    })
}

/// 3x3 average pooling, stride 1, zero padding 1, divided by 9 everywhere.
#[derive(Debug, Clone, Copy)]
struct AvgPool3x3;

impl CustomOp1 for AvgPool3x3 {
    fn name(&self) -> &'static str {
        "spikenas-avgpool3x3"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(self.name(), "x", s, l)?;
        let (n, h, w) = spatial(self.name(), l.dims())?;
        Ok((CpuStorage::F32(box3(x, n, h, w)), l.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // The zero-padded 3x3 box filter is symmetric, so it is its own adjoint.
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&AvgPool3x3)?))
    }
}

/// 3x3 average pooling, stride 1, zero padding 1, always divided by 9, over the last
/// two dims of `x` (rank >= 2).
pub fn avg_pool3x3_same(x: &Tensor) -> candle_core::Result<Tensor> {
    spatial("avg_pool3x3_same", x.dims())?;
    if fast_ok(x) {
        return x.contiguous()?.apply_op1(AvgPool3x3);
    }
    avg_pool3x3_same_reference(x)
}

/// [`avg_pool3x3_same`] from candle ops (separable shifted sums), for tests and other
/// devices.
pub fn avg_pool3x3_same_reference(x: &Tensor) -> candle_core::Result<Tensor> {
    let r = x.rank();
    let (hd, wd) = (r - 2, r - 1);
    let (h, w) = (x.dim(hd)?, x.dim(wd)?);
    let p = x.pad_with_zeros(hd, 1, 1)?;
    let rows = ((p.narrow(hd, 0, h)? + p.narrow(hd, 1, h)?)? + p.narrow(hd, 2, h)?)?;
    let p = rows.pad_with_zeros(wd, 1, 1)?;
    let sum = ((p.narrow(wd, 0, w)? + p.narrow(wd, 1, w)?)? + p.narrow(wd, 2, w)?)?;
    sum / 9.0
}

/// `(B, ...) -> (T, B, ...)`: the input repeated T times.
#[derive(Debug, Clone, Copy)]
struct RepeatTime {
    t: usize,
}

impl CustomOp1 for RepeatTime {
    fn name(&self) -> &'static str {
        "spikenas-repeat-time"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(self.name(), "x", s, l)?;
        let mut y = Vec::with_capacity(self.t * x.len());
        for _ in 0..self.t {
            y.extend_from_slice(x);
        }
        let dims = [&[self.t][..], l.dims()].concat();
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&SumTime)?))
    }
}

/// `(T, B, ...) -> (B, ...)`: the sum over T (in order t = 0, 1, ...).
#[derive(Debug, Clone, Copy)]
struct SumTime;

impl CustomOp1 for SumTime {
    fn name(&self) -> &'static str {
        "spikenas-sum-time"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = cpu_f32(self.name(), "grad", s, l)?;
        let dims = l.dims();
        let t = dims.first().copied().unwrap_or(0);
        let m = g.len().checked_div(t).unwrap_or(0);
        let mut out = g[..m].to_vec();
        for step in 1..t {
            for (o, &v) in out.iter_mut().zip(&g[step * m..(step + 1) * m]) {
                *o += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(&dims[1..])))
    }
}

/// `x` (B, ...) repeated along a new leading time dim: (T, B, ...). The backward sums
/// the gradient over T. One node (candle's unsqueeze + broadcast + copy are three).
pub fn repeat_time(x: &Tensor, t: usize) -> candle_core::Result<Tensor> {
    if t == 0 {
        return Err(KernelError::RepeatZero.into());
    }
    if fast_ok(x) {
        return x.contiguous()?.apply_op1(RepeatTime { t });
    }
    let dims = [&[t][..], x.dims()].concat();
    x.unsqueeze(0)?.broadcast_as(dims)?.contiguous()
}
