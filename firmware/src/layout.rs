//! Caller-provided memory for one inference and its exact size.
//!
//! Five buffers, each of one element type so firmware can declare them as
//! `static mut` arrays and place each in a memory region of its choice:
//!
//! | buffer | type | holds | lifetime |
//! |---|---|---|---|
//! | `membranes` | `i16` | every LIF neuron's membrane (reduction LIFs, conv-edge LIFs in edge order, head LIF, hidden LIF) | whole image |
//! | `currents` | `i32` | stem current, backward-edge source nodes, node slots, class scores | see [`WorkspaceLayout`] |
//! | `spikes` | `u32` | one bit-packed spike map (the largest LIF layer's) | one layer |
//! | `scratch` | `i32` | the largest accumulator (`[y][x][co]` of a convolution or a linear output) | one layer |
//! | `bytes` | `u8` | the pooled input image, then the head's 2x2 spike counts | one layer |

/// Exact buffer sizes (in elements) one [`crate::Network`] needs, with the breakdown of
/// the composite buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WorkspaceLayout {
    /// `i16` membranes: one per LIF neuron of every LIF layer.
    pub membranes_i16: usize,
    /// `i32` currents: `stem_current + persistent_nodes + reduction_slot + 3 * node_slot + scores`.
    pub currents_i32: usize,
    /// `u32` words of the spike map scratch.
    pub spikes_u32: usize,
    /// `i32` accumulator scratch.
    pub scratch_i32: usize,
    /// `u8` scratch: `max(pooled_input, head_counts)`.
    pub bytes_u8: usize,
    /// Part of `currents`: the stem output (`C0 x H0 x W0`), computed once per image.
    pub stem_current_i32: usize,
    /// Part of `currents`: cell nodes read by backward edges at the next timestep.
    pub persistent_nodes_i32: usize,
    /// Part of `currents`: the reduction output (node 0 of stages > 0), largest stage.
    pub reduction_slot_i32: usize,
    /// Part of `currents`: one of the three slots for nodes 1, 2, 3 (largest stage).
    pub node_slot_i32: usize,
    /// Part of `currents`: one score per class.
    pub scores_i32: usize,
    /// Part of `bytes`: the pooled input image (0 without input pooling).
    pub pooled_input_u8: usize,
    /// Part of `bytes`: the head's 2x2 spike counts (the first linear layer's input).
    pub head_counts_u8: usize,
}

impl WorkspaceLayout {
    /// Total size in bytes of the five buffers.
    pub const fn bytes(&self) -> usize {
        self.membranes_i16 * 2
            + (self.currents_i32 + self.scratch_i32) * 4
            + self.spikes_u32 * 4
            + self.bytes_u8
    }
}

/// Caller-provided memory for [`crate::Network::infer`]; each slice at least as long as
/// the matching [`WorkspaceLayout`] field (longer is fine). The runtime zeroes what it
/// needs at the start of every image.
#[derive(Debug)]
pub struct Workspace<'w> {
    /// See [`WorkspaceLayout::membranes_i16`].
    pub membranes: &'w mut [i16],
    /// See [`WorkspaceLayout::currents_i32`].
    pub currents: &'w mut [i32],
    /// See [`WorkspaceLayout::spikes_u32`].
    pub spikes: &'w mut [u32],
    /// See [`WorkspaceLayout::scratch_i32`].
    pub scratch: &'w mut [i32],
    /// See [`WorkspaceLayout::bytes_u8`].
    pub bytes: &'w mut [u8],
}

impl Workspace<'_> {
    /// Checks every buffer against `layout`.
    pub fn check(&self, layout: &WorkspaceLayout) -> Result<(), crate::Error> {
        let pairs = [
            ("membranes", layout.membranes_i16, self.membranes.len()),
            ("currents", layout.currents_i32, self.currents.len()),
            ("spikes", layout.spikes_u32, self.spikes.len()),
            ("scratch", layout.scratch_i32, self.scratch.len()),
            ("bytes", layout.bytes_u8, self.bytes.len()),
        ];
        for (buffer, needed, found) in pairs {
            if found < needed {
                return Err(crate::Error::Workspace {
                    buffer,
                    needed,
                    found,
                });
            }
        }
        Ok(())
    }
}
