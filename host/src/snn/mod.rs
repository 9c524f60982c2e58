//! The spiking network in candle: LIF neurons, the SNASNet cell and the macro
//! network that the search explores (see [`crate::arch`] and ARCHITECTURE.md).
//!
//! Weights are named through a `VarBuilder`, so a checkpoint reads naturally:
//! `stem.conv.weight`, `stage1.reduce.conv.weight`, `stage0.cell.e01.conv.weight`,
//! `head.fc1.weight`, ...

pub mod cell;
pub mod lif;
pub mod network;

pub use crate::arch::InputShape;
pub use network::Network;

use crate::kernels::ConvBackend;
use lif::LifParams;

/// What a forward pass needs besides the weights.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Timesteps T.
    pub timesteps: usize,
    /// Training mode (batch statistics in batch-norm).
    pub train: bool,
    /// The neuron model.
    pub lif: LifParams,
    /// Convolution implementation.
    pub conv: ConvBackend,
}
