//! NIR (Neuromorphic Intermediate Representation) export of a float checkpoint, so a
//! network found by spikenas can move to snnTorch, Norse, Sinabs, Rockpool, Lava or
//! SpiNNaker2. `spikenas-host export --nir OUT.nir --checkpoint DIR`.
//!
//! ## The mapping
//!
//! | spikenas | NIR |
//! |---|---|
//! | input `u8 / 255`, `CxHxW` | `Input` (the graph takes `pixel / 255`; metadata `input`) |
//! | input average pooling | `AvgPool2d` (kernel = stride = pool) |
//! | conv (no bias) -> batch-norm | `Conv2d` with the BN folded: `w * a_c`, bias `b_c` (`a = gamma / sqrt(var + eps)`, `b = beta - a * mean`) |
//! | standalone BN -> LIF (reductions, head) | `LIF` with `r = a_c`, `v_leak = b_c` |
//! | LIF (`h = v + (I - v) / tau`, fire at `h >= thr`, hard reset to 0) | `LIF` with `tau = tau_steps * dt`, `v_threshold = thr`, `v_reset = 0`; metadata `integration`, `dt` |
//! | cell node (sum of its edges) | `Scale` of ones, a summing junction (NIR sums the edges into a node) |
//! | skip edge | an edge |
//! | avgpool3x3 edge | `AvgPool2d(3, stride 1, padding 1)`, divided by 9 |
//! | LIF -> conv edge | one `LIF` per cell node that feeds convolutions (shared, as the float network computes it once), then `Conv2d` |
//! | avgpool2 | `AvgPool2d(2, stride 2)` |
//! | flatten, linear | `Flatten`, `Affine` |
//! | population vote (mean over a class's cluster) | folded into the last `Affine` (it is linear) |
//! | mean over T | metadata `readout`: the mean of `Output` over the steps |
//!
//! The discrete update is forward Euler with `dt` ([`graph::DT_SECONDS`], one
//! timestep): `v <- v + dt/tau (v_leak - v + r I)` is spikenas's `v + (bn(I) - v)/tau`
//! when `dt/tau = 1/tau_steps`, `r = a`, `v_leak = b`.
//!
//! ## What NIR cannot express (refused with an error)
//!
//! - **The subtractive reset** (`v -= threshold`): NIR's LIF resets to `v_reset`.
//! - **The exact integer model** (`model.safetensors`: int8/int4 weights with
//!   per-channel requantisation, Q12 saturating i16 membranes, decay as a shift): NIR
//!   has float parameters only. Export the float checkpoint; the integer runtime stays
//!   the firmware crate.
//! - **Backward cell edges** (the previous timestep's node value fed back): NIR has
//!   no one-step delay primitive that simulators agree on.
//!
//! Two differences remain, stated in the metadata: NIR fires at `v > v_threshold`,
//! spikenas at `>=` (different only when a membrane equals the threshold exactly), and
//! average pooling counts zero padding.
//!
//! ## The HDF5 dependency
//!
//! NIR files are HDF5. No Rust NIR crate exists (the crate named `nir` is unrelated).
//! Of the HDF5 crates, `hdf5-metno` (the maintained fork of `hdf5`, years in use)
//! binds the reference C library, the implementation h5py and so the Python `nir`
//! package read with, and Debian ships it (`libhdf5-dev`). The pure-Rust writers
//! (`hdf5-pure`, `rust-hdf5`) avoid the C library but are young (and need Rust 1.89);
//! a file the reference library wrote is the safer interchange. The cost, a C library
//! at build time, is kept optional: the `nir` feature (default) can be switched off with
//! `--no-default-features`, and `export --nir` then says so.

pub mod graph;

#[cfg_attr(not(feature = "nir"), path = "disabled.rs")]
mod file;

use std::path::{Path, PathBuf};

use candle_core::Device;

pub use file::write;
pub use graph::{build, Graph, Node, Value};

use crate::checkpoint::FILE as CHECKPOINT_FILE;
use crate::checkpoint::{self, CheckpointError};

/// Errors exporting NIR; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum NirError {
    /// Part of the network has no NIR equivalent.
    #[error("NIR cannot express {what}: {why}. Export a network without it")]
    Unsupported {
        /// What cannot be expressed.
        what: String,
        /// Why.
        why: String,
    },
    /// The input is the integer model, which NIR cannot express.
    #[error(
        "{} is the integer model (int weights, Q12 saturating membranes, shift decay), which \
         NIR cannot express: NIR has float parameters only. Fix: export the float \
         checkpoint ({CHECKPOINT_FILE}, beside it in a quantize, train or search folder)",
        .0.display()
    )]
    IntegerModel(PathBuf),
    /// No checkpoint at the given path.
    #[error(
        "{} has no {CHECKPOINT_FILE}. Fix: pass a checkpoint file, or a folder that `train`, \
         `search` or `quantize` wrote",
        .0.display()
    )]
    NoCheckpoint(PathBuf),
    /// A tensor the architecture needs is missing or has another size.
    #[error(transparent)]
    Variable(#[from] crate::snn::VarError),
    /// Reading the checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The HDF5 library refused.
    #[error("cannot write NIR file {}: {message}", path.display())]
    Hdf5 {
        /// File.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// This build has no NIR support.
    #[error(
        "this build has no NIR export: rebuild with the `nir` feature (on by default; \
         it needs the HDF5 C library, Debian: libhdf5-dev)"
    )]
    NotEnabled,
    /// Writing the output failed.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// What [`export`] wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The checkpoint read.
    pub checkpoint: PathBuf,
    /// The NIR file written.
    pub out: PathBuf,
    /// The architecture.
    pub arch: String,
    /// Node count.
    pub nodes: usize,
    /// Edge count.
    pub edges: usize,
}

/// The checkpoint file for `path`: the file itself, or `checkpoint.safetensors` in a
/// folder; the integer model is refused.
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf, NirError> {
    let file = if path.is_dir() {
        let ckpt = path.join(CHECKPOINT_FILE);
        if !ckpt.is_file() {
            let model = path.join(crate::quant::export::MODEL_FILE);
            return Err(if model.is_file() {
                NirError::IntegerModel(model)
            } else {
                NirError::NoCheckpoint(path.to_path_buf())
            });
        }
        ckpt
    } else {
        path.to_path_buf()
    };
    if is_integer_model(&file) {
        return Err(NirError::IntegerModel(file));
    }
    Ok(file)
}

/// True when `file` reads as a safetensors file whose format is the integer model's.
fn is_integer_model(file: &Path) -> bool {
    let Ok(bytes) = std::fs::read(file) else {
        return false;
    };
    safetensors::SafeTensors::read_metadata(&bytes)
        .ok()
        .and_then(|(_, h)| h.metadata().clone())
        .and_then(|m| m.get("spikenas.format").cloned())
        .is_some_and(|f| f == crate::quant::export::FORMAT)
}

/// Reads the float checkpoint at `checkpoint` (a file or a folder holding one) and
/// writes its NIR graph to `out`, whole or not at all; an existing `out` is replaced
/// only with `force`.
pub fn export(checkpoint: &Path, out: &Path, force: bool) -> Result<Exported, NirError> {
    let file = resolve_checkpoint(checkpoint)?;
    // Before any work: refuse an existing output now rather than after the build.
    if out.exists() && !force {
        return Err(crate::output::OutputError::FileExists(out.to_path_buf()).into());
    }
    let (net, varmap, _) = checkpoint::load(&file, &Device::Cpu)?;
    let graph = build(&net, &varmap)?;
    crate::output::write_new_file_with(out, force, |tmp| write(tmp, &graph))?;
    Ok(Exported {
        checkpoint: file,
        out: out.to_path_buf(),
        arch: net.arch.to_string(),
        nodes: graph.nodes.len(),
        edges: graph.edges.len(),
    })
}
