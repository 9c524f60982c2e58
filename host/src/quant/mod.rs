//! Post-training quantization of a trained candle network into the firmware crate's
//! integer description, and the host's integer evaluation.
//!
//! [`QuantizedNetwork`] owns every tensor (int8 or packed int4 weights, per-channel
//! `(mult, shift, bias)` requantisations, fixed-point LIF parameters) and lends them to
//! the firmware crate as a [`spikenas_firmware::Network`] through
//! [`QuantizedNetwork::with_firmware`]. The integer evaluation is exactly
//! `Network::infer` of the firmware crate on each image: there is no second
//! implementation on the host (see ARCHITECTURE.md, "The numeric contract").
//!
//! * [`quantize()`] folds BatchNorm (running statistics), weight scales, `1/255`, pooling
//!   divisors and `1/tau` into the requantisations and runs a calibration pass that
//!   compares per-layer spike rates of the float and the integer network
//!   ([`QuantReport`]).
//! * [`evaluate_int`] runs the integer network over a split (in parallel over images).
//! * [`export`] writes and reads `model.safetensors`.
//!
//! # Measured (Fashion-MNIST, not CI)
//!
//! ```text
//! spikenas-host train --dataset fashion-mnist --max-train 10000 --epochs 3 --out /tmp/q-fashion \
//!     --arch "cell=0301.0003.0000.0000,ch=16,stages=2,fc=128,t=4,pool=2"
//! spikenas-host quantize --checkpoint /tmp/q-fashion/checkpoint.safetensors --out /tmp/q-fashion-q
//! ```
//!
//! On the 10,000 test images (2026-11, 2-core host): float 79.73%, int8 79.83% (95.78% of
//! predictions equal to the float network's), int4 79.27% (92.77%). With `--max-test
//! 1000` (a stratified 1,000): float 80.10%, int8 80.00% (agreement 95.9%), int4 80.00%
//! (92.3%). Per-layer spike rates float vs int8 agree to within 0.001.

pub(crate) mod assemble;
mod build;
mod calibrate;
mod eval;
pub mod export;
mod weights;

#[cfg(test)]
mod tests;

use serde::Serialize;
use spikenas_firmware as fw;

use crate::arch::{Arch, InputShape};

pub use build::quantize;
pub use calibrate::{LayerStats, QuantReport};
pub use eval::{agreement, evaluate_int, IntEval, WorkspaceBuf};
pub use weights::{quantize_weights, WeightLayout};

/// Errors of quantization and of the integer evaluation.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// `bits` is neither 8 nor 4.
    #[error("cannot quantize to {0} bits: use --bits 8 or --bits 4")]
    Bits(u8),
    /// The architecture breaks a validity rule.
    #[error(transparent)]
    Arch(#[from] crate::arch::ArchError),
    /// A float tensor the architecture needs is missing or has another size.
    #[error(transparent)]
    Variable(#[from] crate::snn::VarError),
    /// A folded scale cannot be represented as `mult / 2^shift`.
    #[error("layer `{layer}`: scale {value} cannot be represented as an i32 multiplier with a shift; the float weights or batch-norm statistics are not finite or are out of range (retrain or check the checkpoint)")]
    Scale {
        /// Layer name.
        layer: String,
        /// The real scale.
        value: f64,
    },
    /// A LIF parameter does not fit the fixed-point format.
    #[error("layer `{layer}`: {what}")]
    Lif {
        /// Layer name.
        layer: String,
        /// What does not fit.
        what: String,
    },
    /// The calibration split is empty or has the wrong image shape.
    #[error("calibration data: {0}")]
    Calibration(String),
    /// The split's images do not match the network's input.
    #[error("images are {found}, the network takes {expected}; use the dataset the network was trained on")]
    Input {
        /// The network's input, `CxHxW`.
        expected: String,
        /// The split's images, `CxHxW`.
        found: String,
    },
    /// The firmware crate refused the description (a bug in the quantizer or a corrupt
    /// model file).
    #[error("the integer network is not valid for the firmware runtime: {0}")]
    Firmware(#[from] fw::Error),
    /// A float tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Quantized weights of one layer (owned form of [`fw::Weights`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QWeights {
    /// One `i8` per weight.
    I8(Vec<i8>),
    /// Two `int4` per byte (low nibble first), rows padded to whole bytes.
    I4(Vec<u8>),
}

impl QWeights {
    /// The firmware view.
    pub fn as_fw(&self) -> fw::Weights<'_> {
        match self {
            QWeights::I8(w) => fw::Weights::I8(w),
            QWeights::I4(w) => fw::Weights::I4(w),
        }
    }

    /// Bytes of storage.
    pub fn bytes(&self) -> usize {
        match self {
            QWeights::I8(w) => w.len(),
            QWeights::I4(w) => w.len(),
        }
    }
}

/// Per-channel requantisation (owned form of [`fw::Requant`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QRequant {
    /// Multiplier per channel.
    pub mult: Vec<i32>,
    /// Offset per channel, Q12 output units.
    pub bias: Vec<i32>,
    /// Shared right shift.
    pub shift: u8,
}

impl QRequant {
    /// The firmware view.
    pub fn as_fw(&self) -> fw::Requant<'_> {
        fw::Requant {
            mult: &self.mult,
            bias: &self.bias,
            shift: self.shift,
        }
    }

    /// A requantisation that outputs 0 for every input (used to silence layers).
    pub fn zero(channels: usize) -> QRequant {
        QRequant {
            mult: vec![0; channels],
            bias: vec![0; channels],
            shift: 0,
        }
    }
}

/// A convolution with its requantisation (owned form of [`fw::ConvLayer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QConv {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel size.
    pub k: usize,
    /// `[ci][ky][kx][co]` weights.
    pub weights: QWeights,
    /// Requantisation.
    pub requant: QRequant,
}

impl QConv {
    fn as_fw(&self) -> fw::ConvLayer<'_> {
        fw::ConvLayer {
            cin: self.cin,
            cout: self.cout,
            k: self.k,
            weights: self.weights.as_fw(),
            requant: self.requant.as_fw(),
        }
    }
}

/// A linear layer with its requantisation (owned form of [`fw::LinearLayer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QLinear {
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
    /// `[in][out]` weights.
    pub weights: QWeights,
    /// Requantisation (the float bias is in `requant.bias`).
    pub requant: QRequant,
}

impl QLinear {
    fn as_fw(&self) -> fw::LinearLayer<'_> {
        fw::LinearLayer {
            inputs: self.inputs,
            outputs: self.outputs,
            weights: self.weights.as_fw(),
            requant: self.requant.as_fw(),
        }
    }
}

/// The op of a live cell edge (zero edges are not stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QOp {
    /// Identity.
    Skip,
    /// 3x3 average pool.
    AvgPool3,
    /// LIF -> convolution -> BatchNorm.
    Conv {
        /// The edge's neuron.
        lif: fw::Lif,
        /// The convolution.
        conv: QConv,
    },
}

/// One live edge of a cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QEdge {
    /// Source node.
    pub from: u8,
    /// Destination node.
    pub to: u8,
    /// The operation.
    pub op: QOp,
}

/// The reduction between stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QReduction {
    /// BatchNorm on the incoming current.
    pub bn: QRequant,
    /// Its LIF.
    pub lif: fw::Lif,
    /// The convolution (its requantisation includes the 2x2 pool's 1/4).
    pub conv: QConv,
}

/// One stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QStage {
    /// `None` for stage 0.
    pub reduction: Option<QReduction>,
    /// The cell's live edges, in the float network's order.
    pub edges: Vec<QEdge>,
}

/// The classifier head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QHead {
    /// BatchNorm on the last cell's output.
    pub bn: QRequant,
    /// Its LIF.
    pub lif: fw::Lif,
    /// Hidden linear layer and its LIF (`fc > 0`).
    pub hidden: Option<(QLinear, fw::Lif)>,
    /// The output layer (`classes * cluster` outputs).
    pub output: QLinear,
}

/// A whole quantized network with owned tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizedNetwork {
    /// The architecture (its `weight_bits` equals [`QuantizedNetwork::bits`]).
    pub arch: Arch,
    /// The input shape and class count.
    pub input: InputShape,
    /// Weight bit width, 8 or 4.
    pub bits: u8,
    /// The stem convolution over raw `u8` pixels.
    pub stem: QConv,
    /// The stages.
    pub stages: Vec<QStage>,
    /// The head.
    pub head: QHead,
}

/// Serialisable summary of a quantized network's storage.
#[derive(Debug, Clone, Serialize)]
pub struct StorageSummary {
    /// Bytes of weights at their bit width.
    pub weight_bytes: usize,
    /// Bytes of requantisation parameters (i32 mult and bias, one shift per layer).
    pub requant_bytes: usize,
}

impl QuantizedNetwork {
    /// Lends the network to the firmware crate: builds the nested edge and stage arrays
    /// on the stack and calls `f` with the [`fw::Network`] that borrows this network's
    /// tensors.
    ///
    /// (A method returning `fw::Network<'_>` directly would need the edge and stage
    /// arrays stored inside `self`, borrowing `self`'s own vectors: a self-referential
    /// struct. The closure keeps everything safe and costs a few small allocations per
    /// call, so call it once around a loop over images.)
    pub fn with_firmware<R>(&self, f: impl FnOnce(&fw::Network<'_>) -> R) -> R {
        let edges: Vec<Vec<fw::Edge<'_>>> = self
            .stages
            .iter()
            .map(|s| {
                s.edges
                    .iter()
                    .map(|e| fw::Edge {
                        from: e.from,
                        to: e.to,
                        op: match &e.op {
                            QOp::Skip => fw::Op::Skip,
                            QOp::AvgPool3 => fw::Op::AvgPool3,
                            QOp::Conv { lif, conv } => fw::Op::Conv {
                                lif: *lif,
                                conv: conv.as_fw(),
                            },
                        },
                    })
                    .collect()
            })
            .collect();
        let stages: Vec<fw::Stage<'_>> = self
            .stages
            .iter()
            .zip(&edges)
            .map(|(s, edges)| fw::Stage {
                reduction: s.reduction.as_ref().map(|r| fw::Reduction {
                    bn: r.bn.as_fw(),
                    lif: r.lif,
                    conv: r.conv.as_fw(),
                }),
                cell: fw::Cell { edges },
            })
            .collect();
        let net = fw::Network {
            channels: self.input.channels,
            height: self.input.height,
            width: self.input.width,
            input_pool: self.arch.input_pool,
            timesteps: self.arch.timesteps,
            stem: self.stem.as_fw(),
            stages: &stages,
            head: fw::Head {
                bn: self.head.bn.as_fw(),
                lif: self.head.lif,
                hidden: self.head.hidden.as_ref().map(|(fc, lif)| fw::Hidden {
                    fc: fc.as_fw(),
                    lif: *lif,
                }),
                output: self.head.output.as_fw(),
            },
            classes: self.input.classes,
            cluster: self.arch.cluster,
        };
        f(&net)
    }

    /// Checks the description with the firmware's validator and returns its workspace.
    pub fn workspace_layout(&self) -> Result<fw::WorkspaceLayout, QuantError> {
        Ok(self.with_firmware(|n| n.workspace_layout())?)
    }

    /// Weight and requantisation storage in bytes, layer by layer of the
    /// architecture's shape: the firmware's storage of `bits`-wide weights, and per
    /// requantisation an i32 `mult` and `bias` per channel and one shift.
    pub fn storage(&self) -> StorageSummary {
        let probe = match self.bits {
            4 => fw::Weights::I4(&[]),
            _ => fw::Weights::I8(&[]),
        };
        let shape = self.arch.shape(&self.input);
        let weight_bytes = shape.sum(|l| {
            l.weights()
                .map_or(0, |(rows, cols)| probe.storage_len(rows, cols) as u64)
        });
        let requant_bytes = shape.sum(|l| {
            l.requants()
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| 8 * c as u64 + 1)
                .sum()
        });
        StorageSummary {
            weight_bytes: weight_bytes as usize,
            requant_bytes: requant_bytes as usize,
        }
    }
}
