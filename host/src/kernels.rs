//! Convolution entry point used by the SNN layers (candle's own path; the fast
//! CPU kernels replace this file).

use candle_core::{Result, Tensor};

/// Which convolution implementation the SNN layers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvBackend {
    /// candle's own conv2d.
    #[default]
    Candle,
}

/// 2-D convolution without bias; `input_grad = false` marks an input that needs no gradient.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    stride: usize,
    _backend: ConvBackend,
    _input_grad: bool,
) -> Result<Tensor> {
    x.conv2d(w, padding, stride, 1, 1)
}
