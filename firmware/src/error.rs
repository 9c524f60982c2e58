//! Errors of the model description and of the caller-provided workspace.

use core::fmt;

/// The part of a [`crate::Network`] an error refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Layer {
    /// Network-level fields (input shape, pooling, timesteps, classes, stages).
    Network,
    /// The stem convolution.
    Stem,
    /// The reduction at the start of stage `stage`.
    Reduction {
        /// Stage index.
        stage: usize,
    },
    /// Edge `index` of the cell of stage `stage`.
    Edge {
        /// Stage index.
        stage: usize,
        /// Index into `Cell::edges`.
        index: usize,
    },
    /// The head's BatchNorm / LIF.
    HeadBn,
    /// The head's hidden linear layer and its LIF.
    Hidden,
    /// The head's output linear layer.
    Output,
}

/// A model description or workspace that the runtime cannot execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// A slice or dimension does not match the shape the rest of the network implies.
    Length {
        /// Where.
        layer: Layer,
        /// Field name, e.g. `"weights"`, `"requant.mult"`, `"cin"`.
        field: &'static str,
        /// Required length or size.
        expected: usize,
        /// Length or size found.
        found: usize,
    },
    /// A parameter is outside its allowed range.
    Value {
        /// Where.
        layer: Layer,
        /// Field name.
        field: &'static str,
        /// Value found.
        found: i64,
        /// The allowed values, in words.
        allowed: &'static str,
    },
    /// A workspace buffer is smaller than [`crate::Network::workspace_layout`] requires.
    Workspace {
        /// Buffer name (`"membranes"`, `"currents"`, `"spikes"`, `"scratch"`, `"bytes"`).
        buffer: &'static str,
        /// Elements required.
        needed: usize,
        /// Elements provided.
        found: usize,
    },
    /// The image does not have `channels * height * width` pixels.
    Image {
        /// Pixels required.
        expected: usize,
        /// Pixels provided.
        found: usize,
    },
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Network => write!(f, "network"),
            Layer::Stem => write!(f, "stem"),
            Layer::Reduction { stage } => write!(f, "stage {stage} reduction"),
            Layer::Edge { stage, index } => write!(f, "stage {stage} cell edge {index}"),
            Layer::HeadBn => write!(f, "head batch-norm/LIF"),
            Layer::Hidden => write!(f, "head hidden layer"),
            Layer::Output => write!(f, "head output layer"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Length { layer, field, expected, found } => write!(
                f,
                "{layer}: `{field}` is {found} but the network shape requires {expected}; \
                 regenerate the model description so the shapes agree"
            ),
            Error::Value { layer, field, found, allowed } => {
                write!(f, "{layer}: `{field}` = {found} is not allowed (allowed: {allowed})")
            }
            Error::Workspace { buffer, needed, found } => write!(
                f,
                "workspace buffer `{buffer}` has {found} elements but the network needs {needed}; \
                 size it from Network::workspace_layout()"
            ),
            Error::Image { expected, found } => write!(
                f,
                "image has {found} pixels but the network input is {expected} (channels x height x width, u8)"
            ),
        }
    }
}

impl core::error::Error for Error {}
