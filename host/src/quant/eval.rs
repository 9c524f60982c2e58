//! The integer evaluation: the firmware crate's `Network::infer` on every image, in
//! parallel over images (one workspace per rayon task).

use rayon::prelude::*;
use serde::Serialize;
use spikenas_firmware as fw;

use super::{QuantError, QuantizedNetwork};
use crate::data::Split;

/// Owned memory for [`fw::Network::infer`], sized from a [`fw::WorkspaceLayout`].
#[derive(Debug, Clone, Default)]
pub struct WorkspaceBuf {
    membranes: Vec<i16>,
    currents: Vec<i32>,
    spikes: Vec<u32>,
    scratch: Vec<i32>,
    bytes: Vec<u8>,
}

impl WorkspaceBuf {
    /// Buffers of exactly the sizes `layout` asks for.
    pub fn new(layout: &fw::WorkspaceLayout) -> Self {
        WorkspaceBuf {
            membranes: vec![0; layout.membranes_i16],
            currents: vec![0; layout.currents_i32],
            spikes: vec![0; layout.spikes_u32],
            scratch: vec![0; layout.scratch_i32],
            bytes: vec![0; layout.bytes_u8],
        }
    }

    /// The firmware's view of the buffers.
    pub fn view(&mut self) -> fw::Workspace<'_> {
        fw::Workspace {
            membranes: &mut self.membranes,
            currents: &mut self.currents,
            spikes: &mut self.spikes,
            scratch: &mut self.scratch,
            bytes: &mut self.bytes,
        }
    }

    /// The membranes as the last inference left them (layout: reduction LIFs,
    /// conv-edge LIFs in edge order, head LIF, hidden LIF; see `spikenas_firmware::layout`).
    pub fn membranes(&self) -> &[i16] {
        &self.membranes
    }
}

/// The integer network's results on a split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntEval {
    /// Fraction of images whose prediction equals the label.
    pub accuracy: f32,
    /// Predicted class per image.
    pub predictions: Vec<u32>,
    /// Spikes of all LIF layers over all timesteps, per image.
    pub spikes: Vec<u64>,
    /// Synaptic operations per image.
    pub synops: Vec<u64>,
}

impl IntEval {
    /// Mean spikes per image.
    pub fn mean_spikes(&self) -> f64 {
        mean(&self.spikes)
    }

    /// Mean synaptic operations per image.
    pub fn mean_synops(&self) -> f64 {
        mean(&self.synops)
    }
}

fn mean(v: &[u64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<u64>() as f64 / v.len() as f64
    }
}

/// Checks that `split`'s images fit the network's input.
pub(crate) fn check_input(q: &QuantizedNetwork, split: &Split) -> Result<(), QuantError> {
    let i = &q.input;
    if (split.channels, split.height, split.width) != (i.channels, i.height, i.width) {
        return Err(QuantError::Input {
            expected: format!("{}x{}x{}", i.channels, i.height, i.width),
            found: format!("{}x{}x{}", split.channels, split.height, split.width),
        });
    }
    Ok(())
}

/// Runs the integer network (the firmware's `infer`) on every image of `split`.
pub fn evaluate_int(q: &QuantizedNetwork, split: &Split) -> Result<IntEval, QuantError> {
    check_input(q, split)?;
    let results = q.with_firmware(|net| -> Result<Vec<(u32, u64, u64)>, fw::Error> {
        let layout = net.workspace_layout()?;
        (0..split.len())
            .into_par_iter()
            .map_init(
                || WorkspaceBuf::new(&layout),
                |ws, i| {
                    let mut view = ws.view();
                    let r = net.infer(split.image(i), &mut view)?;
                    Ok((r.class as u32, r.spikes, r.synops))
                },
            )
            .collect()
    })?;
    let correct = results
        .iter()
        .zip(&split.labels)
        .filter(|((p, _, _), &l)| *p == l as u32)
        .count();
    Ok(IntEval {
        accuracy: if split.is_empty() {
            0.0
        } else {
            correct as f32 / split.len() as f32
        },
        predictions: results.iter().map(|r| r.0).collect(),
        spikes: results.iter().map(|r| r.1).collect(),
        synops: results.iter().map(|r| r.2).collect(),
    })
}

/// Fraction of positions where `a` and `b` agree (1 for two empty lists).
pub fn agreement(a: &[u32], b: &[u32]) -> f32 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 1.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f32 / n as f32
}
