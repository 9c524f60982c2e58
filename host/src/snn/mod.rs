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

use std::collections::HashMap;

use candle_core::Var;

use crate::kernels::ConvBackend;
use lif::LifParams;

/// Why a named variable of a network could not be read ([`var_values`]).
#[derive(Debug, thiserror::Error)]
pub enum VarError {
    /// No variable of that name.
    #[error("tensor `{0}` is missing from the float network's variables; is the checkpoint for this architecture?")]
    Missing(String),
    /// The variable has another number of elements.
    #[error("tensor `{name}` has {found} values, the architecture needs {expected}")]
    Shape {
        /// Tensor name.
        name: String,
        /// Values required.
        expected: usize,
        /// Values found.
        found: usize,
    },
    /// Copying it off the device failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The values of variable `name` in `data` (a `VarMap`'s), as f32 on the CPU, checked
/// to be `expected` many: what the folds of quantization and NIR export read.
pub fn var_values(
    data: &HashMap<String, Var>,
    name: &str,
    expected: usize,
) -> Result<Vec<f32>, VarError> {
    let var = data
        .get(name)
        .ok_or_else(|| VarError::Missing(name.to_string()))?;
    let v = var
        .as_tensor()
        .to_device(&candle_core::Device::Cpu)?
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    if v.len() != expected {
        return Err(VarError::Shape {
            name: name.to_string(),
            expected,
            found: v.len(),
        });
    }
    Ok(v)
}

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
