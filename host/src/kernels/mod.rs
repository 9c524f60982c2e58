//! Training kernels that make SNN training fast on a CPU, five kinds, one file each:
//!
//! - [`conv`]: a 2-D convolution with its own forward and backward (im2col + GEMM,
//!   parallel across samples), and [`sparse`], its weight gradient on binary spike
//!   inputs (a row add per active pixel instead of a GEMM);
//! - [`lif`]: a fused multi-step LIF neuron with a surrogate-gradient backward (BPTT
//!   through the membrane);
//! - [`bn`]: a fused batch-norm (statistics, normalisation and their backward);
//! - [`fused`]: convolution -> LIF (-> 2x2 average pool) and convolution -> batch-norm,
//!   each one candle node;
//! - [`pool`]: 2x2 and 3x3 average pools and the time broadcast over tensors of any rank.
//!
//! [`reduce`] makes their floating-point sums deterministic and [`runtime`] tunes the
//! CPU runtime. Each kernel has a plain path built from candle's own ops
//! (`ConvBackend::Candle`, [`lif_multistep_reference`], the `*_reference` functions) and
//! a fast path (`ConvBackend::Fast`, [`lif_multistep`]); the tests check one against the
//! other, forward and gradients. The fast paths run on the CPU with f32; on any other
//! device or dtype they fall back to the candle path.

mod bn;
mod conv;
mod fused;
mod lif;
mod pool;
mod reduce;
mod runtime;
mod sparse;

use std::fmt;
use std::str::FromStr;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Tensor};

pub use bn::{
    batch_norm_eval, batch_norm_eval_reference, batch_norm_train, batch_norm_train_reference,
    BnBatchStats,
};
pub use fused::{conv_bn_train, conv_lif, conv_lif_reference};
pub use lif::{lif_multistep, lif_multistep_reference, LifParams, Reset, Surrogate};
pub use pool::{avg_pool2, avg_pool3x3_same, avg_pool3x3_same_reference, repeat_time};
pub use runtime::{cpu_runtime_tuned, tune_cpu_runtime, MMAP_THRESHOLD};

/// Errors of the kernels; each message names the tensor or field and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A backend name that is neither "candle" nor "fast".
    #[error("unknown convolution backend {0:?}: use \"candle\" or \"fast\"")]
    UnknownBackend(String),
    /// `x` or `w` of a convolution is not 4-D.
    #[error("conv2d expects x as (N, Cin, H, W) and w as (Cout, Cin, k, k); got x {x:?}, w {w:?}")]
    ConvRank {
        /// Dimensions of `x`.
        x: Vec<usize>,
        /// Dimensions of `w`.
        w: Vec<usize>,
    },
    /// Input channels of `x` and `w` differ.
    #[error(
        "conv2d: x has {x_cin} input channels but w expects {w_cin}; make w (Cout, {x_cin}, k, k)"
    )]
    ConvChannels {
        /// Channels of `x` (dim 1).
        x_cin: usize,
        /// Channels of `w` (dim 1).
        w_cin: usize,
    },
    /// The kernel is not square.
    #[error("conv2d: kernel is {kh}x{kw}; only square kernels are supported")]
    ConvKernelNotSquare {
        /// Kernel height.
        kh: usize,
        /// Kernel width.
        kw: usize,
    },
    /// Stride 0.
    #[error("conv2d: stride must be at least 1, got 0")]
    ConvStride,
    /// The (padded) input is smaller than the kernel.
    #[error("conv2d: input {h}x{w} with padding {pad} is smaller than the {k}x{k} kernel; pad more or use a smaller kernel")]
    ConvKernelTooLarge {
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
        /// Kernel size.
        k: usize,
        /// Padding.
        pad: usize,
    },
    /// A gradient tensor has the wrong shape.
    #[error("{op}: gradient has shape {got:?}, expected {expected:?}")]
    GradShape {
        /// The op.
        op: &'static str,
        /// Shape received.
        got: Vec<usize>,
        /// Shape expected.
        expected: Vec<usize>,
    },
    /// A fast kernel got a tensor that is not f32.
    #[error("{op}: {which} has dtype {dtype:?}; the fast kernel takes f32 (convert with to_dtype(DType::F32))")]
    DType {
        /// The op.
        op: &'static str,
        /// Which argument.
        which: &'static str,
        /// Its dtype.
        dtype: DType,
    },
    /// A fast kernel got a non-contiguous tensor (the public wrappers make it contiguous).
    #[error("{op}: {which} is not contiguous; call .contiguous() first")]
    NotContiguous {
        /// The op.
        op: &'static str,
        /// Which argument.
        which: &'static str,
    },
    /// A fused conv -> LIF input that is not (T, B, Cin, H, W).
    #[error("conv_lif: x must be (T, B, Cin, H, W), got {0:?}; add the time dim (unsqueeze(0) for T = 1)")]
    ConvLifRank(Vec<usize>),
    /// LIF input without a time dimension.
    #[error("lif: currents must be (T, B, ...) with at least 2 dims, got {0:?}")]
    LifRank(Vec<usize>),
    /// A batch-norm channel dim outside the tensor.
    #[error("batch-norm: channel dim {cdim} is outside a tensor of dims {dims:?}; pass the index of the channel dim (1 for (N, C, H, W), 2 for (T, B, C, H, W))")]
    BnChannelDim {
        /// Dimensions of `x`.
        dims: Vec<usize>,
        /// The channel dim given.
        cdim: usize,
    },
    /// gamma or beta do not have one value per channel.
    #[error("{op}: x has {channels} channels but gamma has {gamma} and beta {beta} values; give both one value per channel")]
    BnParams {
        /// The op.
        op: &'static str,
        /// Channels of `x`.
        channels: usize,
        /// Length of gamma.
        gamma: usize,
        /// Length of beta.
        beta: usize,
    },
    /// A pooling input without two spatial dims.
    #[error("{op}: input must have at least 2 dims (.., H, W), got {dims:?}")]
    PoolRank {
        /// The op.
        op: &'static str,
        /// Dimensions given.
        dims: Vec<usize>,
    },
    /// `repeat_time` with T = 0.
    #[error("repeat_time: T must be at least 1, got 0")]
    RepeatZero,
    /// A LIF parameter out of range.
    #[error("lif: {field} = {value} is invalid: {fix}")]
    LifParam {
        /// The field of `LifParams`.
        field: &'static str,
        /// Its value.
        value: f32,
        /// What it must be.
        fix: &'static str,
    },
}

impl From<KernelError> for candle_core::Error {
    fn from(e: KernelError) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// The contiguous f32 data of a CPU storage, or a typed error naming the argument.
/// Checks that a gradient has the shape its op expects.
pub(crate) fn check_grad_shape(
    op: &'static str,
    got: &[usize],
    expected: &[usize],
) -> Result<(), KernelError> {
    if got == expected {
        Ok(())
    } else {
        Err(KernelError::GradShape {
            op,
            got: got.to_vec(),
            expected: expected.to_vec(),
        })
    }
}

pub(crate) fn cpu_f32<'a>(
    op: &'static str,
    which: &'static str,
    s: &'a CpuStorage,
    l: &Layout,
) -> Result<&'a [f32], KernelError> {
    let CpuStorage::F32(v) = s else {
        return Err(KernelError::DType {
            op,
            which,
            dtype: s.dtype(),
        });
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => Err(KernelError::NotContiguous { op, which }),
    }
}

/// Runs `f` compiled for AVX2 where the CPU has it (the crate's baseline target is
/// plain x86-64, SSE2, which halves the width of every add here).
#[inline(always)]
pub(crate) fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Which convolution implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ConvBackend {
    /// candle's own `conv2d` (and its autograd backward, `conv_transpose2d`).
    Candle,
    /// The im2col + GEMM custom op of this module (CPU f32; other devices fall back to
    /// candle).
    #[default]
    Fast,
}

impl FromStr for ConvBackend {
    type Err = KernelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "candle" => Ok(Self::Candle),
            "fast" => Ok(Self::Fast),
            other => Err(KernelError::UnknownBackend(other.to_string())),
        }
    }
}

impl fmt::Display for ConvBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Candle => "candle",
            Self::Fast => "fast",
        })
    }
}

/// 2-D convolution without bias: `x` (N, Cin, H, W), `w` (Cout, Cin, k, k) ->
/// (N, Cout, Ho, Wo), with the same padding on all sides and the same stride in both
/// directions (dilation 1, one group).
///
/// `x` may also carry several leading batch dims, e.g. (T, B, Cin, H, W) -> (T, B, Cout,
/// Ho, Wo): the fast path then needs no reshape nodes between convolution and LIF (each
/// reshape costs candle's backward a full zero-fill and add of the gradient).
///
/// With `ConvBackend::Fast` on the CPU (f32), the backward pass computes the weight
/// gradient and, when `input_grad` is true and `x` is tracked by autograd, the input
/// gradient; pass `input_grad = false` for a first layer whose input needs none.
/// `ConvBackend::Candle`, other devices and other dtypes use candle's `conv2d`
/// (which ignores `input_grad`).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    stride: usize,
    backend: ConvBackend,
    input_grad: bool,
) -> candle_core::Result<Tensor> {
    let fast_ok = x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32;
    match backend {
        ConvBackend::Fast if fast_ok => {
            // Validate before launching so the error names the shapes.
            conv::Geom::new(x.dims(), w.dims(), padding, stride)?;
            let op = conv::Conv2dOp {
                padding,
                stride,
                input_grad,
            };
            x.contiguous()?.apply_op2(&w.contiguous()?, op)
        }
        _ if x.rank() > 4 => {
            let (lead, chw) = x.dims().split_at(x.rank() - 3);
            let n: usize = lead.iter().product();
            let y = x
                .reshape((n, chw[0], chw[1], chw[2]))?
                .conv2d(w, padding, stride, 1, 1)?;
            let mut out = lead.to_vec();
            out.extend_from_slice(&y.dims()[1..]);
            y.reshape(out)
        }
        _ => x.conv2d(w, padding, stride, 1, 1),
    }
}

/// The two gradients of `conv2d(x, w)` from the output gradient `dy`: `(dX, dW)`.
///
/// `ConvBackend::Fast` (CPU, f32) runs this module's kernels, the ones its autograd
/// backward runs; `ConvBackend::Candle` runs the ops candle's autograd runs for its
/// conv2d (a transposed convolution for `dX`, a convolution of the transposed input
/// and gradient for `dW`). For benchmarks of the backward kernels alone, without
/// autograd's bookkeeping; `x` and `dy` are (N, C, H, W).
pub fn conv2d_backward(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    padding: usize,
    stride: usize,
    backend: ConvBackend,
) -> candle_core::Result<(Tensor, Tensor)> {
    let g = conv::Geom::new(x.dims(), w.dims(), padding, stride)?;
    check_grad_shape("conv2d_backward", dy.dims(), &g.out_dims(x.dims()))?;
    let fast_ok = x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32;
    if backend == ConvBackend::Fast && fast_ok {
        let op = conv::Conv2dOp {
            padding,
            stride,
            input_grad: true,
        };
        let (dx, dw) = op.grads(&x.contiguous()?, &w.contiguous()?, &dy.contiguous()?, true)?;
        let dx = dx.expect("requested");
        return Ok((dx, dw));
    }
    let (x, dy) = match x.rank() {
        4 => (x.clone(), dy.clone()),
        _ => (
            x.reshape((g.n, g.cin, g.h, g.w))?,
            dy.reshape((g.n, g.cout, g.ho, g.wo))?,
        ),
    };
    let out_size = (g.ho - 1) * stride + g.k - 2 * padding;
    let dx = dy.conv_transpose2d(w, padding, g.h - out_size, stride, 1)?;
    let dw = x
        .transpose(0, 1)?
        .conv2d(&dy.transpose(0, 1)?, padding, 1, stride, 1)?
        .transpose(0, 1)?
        .narrow(2, 0, g.k)?
        .narrow(3, 0, g.k)?;
    Ok((dx, dw))
}

/// FLOP of one forward convolution (2 per multiply-add); the weight-gradient and the
/// input-gradient passes each cost the same.
pub fn conv2d_flop(
    x_dims: &[usize],
    w_dims: &[usize],
    padding: usize,
    stride: usize,
) -> Result<f64, KernelError> {
    Ok(conv::Geom::new(x_dims, w_dims, padding, stride)?.forward_flop())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_determinism;
#[cfg(test)]
mod tests_fused;
