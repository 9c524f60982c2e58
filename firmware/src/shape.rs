//! The shape of a network without its weights: the one description of its structure.
//!
//! A [`NetworkShape`] says what layers a network has and on what geometry each one
//! runs: input pooling, the stem, the stages (reduction + cell edges), the head. It
//! holds no weights and allocates nothing, so the device uses it too:
//! [`crate::Network::workspace_layout`] is [`NetworkShape::workspace_layout`] of the
//! network's [`crate::Network::shape`]. The host builds the same shape from an
//! architecture alone (`Stages::Repeated`: one cell in every stage, channels doubling
//! at each reduction) and derives from it the memory model, the MAC and neuron counts
//! of the latency model and the search, and the order in which quantization and the
//! synthetic networks make their layers.
//!
//! Every consumer visits the layers with [`NetworkShape::for_each_layer`], in this
//! order (the order of the float network, of `model.safetensors` and of the firmware's
//! execution):
//!
//! ```text
//! Stem
//! for each stage s:  [Reduction (s > 0)]  Edge (each edge, in order)  Nodes
//! Head  [Hidden (fc > 0)]  Output
//! ```

use core::fmt;

use crate::bits;
use crate::layout::WorkspaceLayout;
use crate::network::{Edge, Op, Stage};

/// Geometry of an activation map: `c` channels of `h x w`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Geometry {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl Geometry {
    /// Pixels of one channel, `h * w`.
    pub const fn plane(&self) -> usize {
        self.h * self.w
    }

    /// Elements, `c * h * w`.
    pub const fn n(&self) -> usize {
        self.c * self.h * self.w
    }

    /// The map after a reduction to `c` channels (2x2 pool, odd sizes floored).
    pub const fn reduced(&self, c: usize) -> Geometry {
        Geometry {
            c,
            h: self.h / 2,
            w: self.w / 2,
        }
    }

    /// Elements of the 2x2 spike counts of the map (odd sizes floored).
    pub const fn pooled2(&self) -> usize {
        self.c * (self.h / 2) * (self.w / 2)
    }
}

/// The operation of a cell edge, without parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OpShape {
    /// Contributes nothing.
    Zero,
    /// Identity.
    Skip,
    /// LIF -> `k x k` convolution (channels kept) -> BatchNorm.
    Conv {
        /// Kernel side.
        k: usize,
    },
    /// 3x3 average pool.
    AvgPool3,
}

/// One cell edge without parameters: `x[to] += op(x[from])`; `from > to` is backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EdgeShape {
    /// Source node.
    pub from: u8,
    /// Destination node.
    pub to: u8,
    /// The operation.
    pub op: OpShape,
}

impl EdgeShape {
    /// The shape of a firmware edge.
    pub const fn of(e: &Edge) -> EdgeShape {
        EdgeShape {
            from: e.from,
            to: e.to,
            op: match &e.op {
                Op::Zero => OpShape::Zero,
                Op::Skip => OpShape::Skip,
                Op::Conv { conv, .. } => OpShape::Conv { k: conv.k },
                Op::AvgPool3 => OpShape::AvgPool3,
            },
        }
    }

    /// True for a backward edge (it reads the previous timestep's `x[from]`).
    pub const fn is_backward(&self) -> bool {
        self.from > self.to
    }

    /// The kernel side of a convolution edge.
    pub const fn kernel(&self) -> Option<usize> {
        match self.op {
            OpShape::Conv { k } => Some(k),
            _ => None,
        }
    }
}

/// Most edges a [`CellShape`] holds: one per ordered pair of distinct nodes.
pub const CELL_EDGES_MAX: usize = 12;

/// The edges of one cell, by value (no borrow, no heap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellShape {
    edges: [EdgeShape; CELL_EDGES_MAX],
    len: usize,
}

impl CellShape {
    /// A cell without edges.
    pub const EMPTY: CellShape = CellShape {
        edges: [EdgeShape {
            from: 0,
            to: 0,
            op: OpShape::Zero,
        }; CELL_EDGES_MAX],
        len: 0,
    };

    /// Appends an edge (evaluation order is the order of the pushes).
    pub fn push(&mut self, edge: EdgeShape) -> Result<(), ShapeError> {
        let slot = self.edges.get_mut(self.len).ok_or(ShapeError::CellFull)?;
        *slot = edge;
        self.len += 1;
        Ok(())
    }

    /// The edges, in evaluation order.
    pub fn edges(&self) -> &[EdgeShape] {
        &self.edges[..self.len]
    }
}

/// The stages of a [`NetworkShape`].
// `Repeated` holds its cell by value on purpose (a shape built from an architecture
// borrows nothing); a shape is built once per query and never stored in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug)]
pub enum Stages<'a> {
    /// A firmware network's stages (each with its own cell and channels).
    Network(&'a [Stage<'a>]),
    /// `count` stages of the same cell (SNASNet's macro network): every stage after the
    /// first starts with a 3x3 reduction that doubles the channels.
    Repeated {
        /// Number of stages.
        count: usize,
        /// The cell of every stage.
        cell: CellShape,
    },
}

/// Kernel side of the reductions of [`Stages::Repeated`] (and of the stem of an
/// architecture): 3x3.
pub const REDUCTION_K: usize = 3;

/// A network's structure without weights.
#[derive(Clone, Copy, Debug)]
pub struct NetworkShape<'a> {
    /// Input image channels.
    pub channels: usize,
    /// Input image height.
    pub height: usize,
    /// Input image width.
    pub width: usize,
    /// Input pooling factor (1 = none).
    pub input_pool: usize,
    /// Timesteps per image.
    pub timesteps: usize,
    /// Output channels of the stem (the first stage's channels).
    pub stem_channels: usize,
    /// Kernel side of the stem.
    pub stem_k: usize,
    /// The stages.
    pub stages: Stages<'a>,
    /// Width of the hidden linear layer (0: none).
    pub hidden: usize,
    /// Outputs of the last linear layer (`classes * cluster` in a valid network).
    pub outputs: usize,
    /// Number of classes.
    pub classes: usize,
}

/// One layer of a [`NetworkShape`], with the geometry it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerShape {
    /// The stem convolution `cin -> out.c` (kernel `k`) over the pooled pixels, whose
    /// output `out` is the first stage's input.
    Stem {
        /// Image channels.
        cin: usize,
        /// Kernel side.
        k: usize,
        /// Output map.
        out: Geometry,
    },
    /// The reduction that starts stage `stage > 0`: BatchNorm and LIF on `input`, a
    /// `k x k` convolution `input.c -> out.c` at `input`'s resolution, 2x2 pool to `out`.
    Reduction {
        /// The stage it starts.
        stage: usize,
        /// Kernel side.
        k: usize,
        /// The previous stage's output map.
        input: Geometry,
        /// This stage's map (node 0).
        out: Geometry,
    },
    /// Edge `index` of stage `stage`'s cell on maps of geometry `g`.
    Edge {
        /// Stage.
        stage: usize,
        /// Position in the cell's edges.
        index: usize,
        /// The edge.
        edge: EdgeShape,
        /// The stage's map.
        g: Geometry,
    },
    /// After the edges of a stage: the node currents it needs.
    Nodes {
        /// Stage.
        stage: usize,
        /// The stage's map.
        g: Geometry,
        /// Bit `j` set: node `j` (1..=3) has a non-zero incoming edge.
        written: u8,
        /// Bit `j` set: node `j` is read by a non-zero backward edge, so it persists
        /// to the next timestep.
        persistent: u8,
    },
    /// The head's BatchNorm and LIF on the last stage's map `input`, then its 2x2 spike
    /// counts (`input.pooled2()` features).
    Head {
        /// The last stage's map.
        input: Geometry,
    },
    /// The hidden linear layer `inputs -> outputs` and its LIF.
    Hidden {
        /// Input features.
        inputs: usize,
        /// Output neurons.
        outputs: usize,
    },
    /// The output linear layer `inputs -> outputs` (class neurons).
    Output {
        /// Input features.
        inputs: usize,
        /// Outputs (`classes * cluster`).
        outputs: usize,
    },
}

impl LayerShape {
    /// Multiply-accumulates of the layer if every input were non-zero (one timestep).
    pub const fn macs(&self) -> u64 {
        let m = match *self {
            LayerShape::Stem { cin, k, out } => cin * out.c * k * k * out.h * out.w,
            LayerShape::Reduction { k, input, out, .. } => input.c * out.c * k * k * input.plane(),
            LayerShape::Edge {
                edge:
                    EdgeShape {
                        op: OpShape::Conv { k },
                        ..
                    },
                g,
                ..
            } => g.c * g.c * k * k * g.plane(),
            LayerShape::Hidden { inputs, outputs } | LayerShape::Output { inputs, outputs } => {
                inputs * outputs
            }
            _ => 0,
        };
        m as u64
    }

    /// LIF neurons of the layer (each updated once per timestep).
    pub const fn lif_neurons(&self) -> u64 {
        let n = match *self {
            LayerShape::Reduction { input, .. } | LayerShape::Head { input } => input.n(),
            LayerShape::Edge {
                edge:
                    EdgeShape {
                        op: OpShape::Conv { .. },
                        ..
                    },
                g,
                ..
            } => g.n(),
            LayerShape::Hidden { outputs, .. } => outputs,
            _ => 0,
        };
        n as u64
    }

    /// `(rows, cols)` of the layer's weight matrix: `cin * k * k` (convolution) or
    /// `inputs` (linear) rows of `cout` / `outputs` weights.
    pub const fn weights(&self) -> Option<(usize, usize)> {
        match *self {
            LayerShape::Stem { cin, k, out } => Some((cin * k * k, out.c)),
            LayerShape::Reduction { k, input, out, .. } => Some((input.c * k * k, out.c)),
            LayerShape::Edge {
                edge:
                    EdgeShape {
                        op: OpShape::Conv { k },
                        ..
                    },
                g,
                ..
            } => Some((g.c * k * k, g.c)),
            LayerShape::Hidden { inputs, outputs } | LayerShape::Output { inputs, outputs } => {
                Some((inputs, outputs))
            }
            _ => None,
        }
    }

    /// Channels of each of the layer's requantisations: a stand-alone BatchNorm first
    /// (reduction, head), then the weighted layer's (`0`: none).
    pub const fn requants(&self) -> [usize; 2] {
        match *self {
            LayerShape::Reduction { input, out, .. } => [input.c, out.c],
            LayerShape::Head { input } => [input.c, 0],
            _ => match self.weights() {
                Some((_, cols)) => [cols, 0],
                None => [0, 0],
            },
        }
    }
}

/// Why a [`NetworkShape`]'s geometry does not work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ShapeError {
    /// The input pooling leaves no pixels.
    Pool {
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// Pooling factor.
        pool: usize,
    },
    /// A reduction halves a map to nothing.
    Stage {
        /// The stage the reduction starts.
        stage: usize,
        /// The map's height before the reduction.
        height: usize,
        /// The map's width before the reduction.
        width: usize,
    },
    /// The head's 2x2 pool leaves nothing.
    Head {
        /// The last stage's height.
        height: usize,
        /// The last stage's width.
        width: usize,
    },
    /// A cell has more than [`CELL_EDGES_MAX`] edges.
    CellFull,
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ShapeError::Pool {
                height,
                width,
                pool,
            } => write!(
                f,
                "input {height}x{width} pooled by {pool} leaves no pixels; use a smaller pool"
            ),
            ShapeError::Stage {
                stage,
                height,
                width,
            } => write!(
                f,
                "stage {stage} halves a {height}x{width} map to nothing; use fewer stages or pool"
            ),
            ShapeError::Head { height, width } => write!(
                f,
                "the head's avgpool2 turns the last {height}x{width} map into nothing; use fewer stages or pool"
            ),
            ShapeError::CellFull => write!(f, "a cell holds at most {CELL_EDGES_MAX} edges"),
        }
    }
}

impl core::error::Error for ShapeError {}

impl NetworkShape<'_> {
    /// The stem's output map (the first stage's input).
    pub const fn stem_geometry(&self) -> Geometry {
        let p = if self.input_pool > 1 {
            self.input_pool
        } else {
            1
        };
        Geometry {
            c: self.stem_channels,
            h: self.height / p,
            w: self.width / p,
        }
    }

    /// Calls `f` with every layer, in order (see the module docs); stops at the first
    /// error. Returns the last stage's map. Geometry is not checked: a map may be empty
    /// (see [`NetworkShape::check`]).
    pub fn for_each_layer<E>(
        &self,
        mut f: impl FnMut(LayerShape) -> Result<(), E>,
    ) -> Result<Geometry, E> {
        let mut g = self.stem_geometry();
        f(LayerShape::Stem {
            cin: self.channels,
            k: self.stem_k,
            out: g,
        })?;
        match self.stages {
            Stages::Network(stages) => {
                for (s, st) in stages.iter().enumerate() {
                    let reduction = st.reduction.as_ref().map(|r| (r.conv.cout, r.conv.k));
                    let edges = st.cell.edges.iter().map(EdgeShape::of);
                    g = stage(s, reduction, edges, g, &mut f)?;
                }
            }
            Stages::Repeated { count, cell } => {
                for s in 0..count {
                    let reduction = (s > 0).then(|| (self.stem_channels << s, REDUCTION_K));
                    g = stage(s, reduction, cell.edges().iter().copied(), g, &mut f)?;
                }
            }
        }
        f(LayerShape::Head { input: g })?;
        let mut inputs = g.pooled2();
        if self.hidden > 0 {
            f(LayerShape::Hidden {
                inputs,
                outputs: self.hidden,
            })?;
            inputs = self.hidden;
        }
        f(LayerShape::Output {
            inputs,
            outputs: self.outputs,
        })?;
        Ok(g)
    }

    /// The last stage's map (the head's input).
    pub fn last_geometry(&self) -> Geometry {
        self.for_each_layer::<()>(|_| Ok(())).unwrap_or_default()
    }

    /// Features entering the classifier: the head's 2x2 spike counts.
    pub fn head_features(&self) -> usize {
        self.last_geometry().pooled2()
    }

    /// Checks that no map is empty: the input pooling, every reduction and the head's
    /// 2x2 pool leave at least one pixel.
    pub fn check(&self) -> Result<(), ShapeError> {
        self.for_each_layer(|l| match l {
            LayerShape::Stem { out, .. } if out.plane() == 0 => Err(ShapeError::Pool {
                height: self.height,
                width: self.width,
                pool: self.input_pool,
            }),
            LayerShape::Reduction {
                stage, input, out, ..
            } if out.plane() == 0 => Err(ShapeError::Stage {
                stage,
                height: input.h,
                width: input.w,
            }),
            LayerShape::Head { input } if input.h < 2 || input.w < 2 => Err(ShapeError::Head {
                height: input.h,
                width: input.w,
            }),
            _ => Ok(()),
        })
        .map(|_| ())
    }

    /// Multiply-accumulates of one timestep if every input were non-zero (the stem's
    /// included, although it runs once per image).
    pub fn macs(&self) -> u64 {
        self.sum(LayerShape::macs)
    }

    /// MACs of the stem convolution.
    pub fn stem_macs(&self) -> u64 {
        self.sum(|l| match l {
            LayerShape::Stem { .. } => l.macs(),
            _ => 0,
        })
    }

    /// LIF neurons of every layer (updates per timestep).
    pub fn lif_neurons(&self) -> u64 {
        self.sum(LayerShape::lif_neurons)
    }

    /// Cell edges over all stages (the firmware's `Edge` descriptors).
    pub fn edge_count(&self) -> usize {
        self.sum(|l| matches!(l, LayerShape::Edge { .. }) as u64) as usize
    }

    /// Number of stages.
    pub fn stage_count(&self) -> usize {
        match self.stages {
            Stages::Network(s) => s.len(),
            Stages::Repeated { count, .. } => count,
        }
    }

    /// The sum of `per` over the layers.
    pub fn sum(&self, per: impl Fn(&LayerShape) -> u64) -> u64 {
        let mut total = 0u64;
        let _ = self.for_each_layer::<()>(|l| {
            total += per(&l);
            Ok(())
        });
        total
    }

    /// The exact workspace the firmware runtime needs for a network of this shape (see
    /// [`crate::layout`]).
    pub fn workspace_layout(&self) -> WorkspaceLayout {
        let mut l = WorkspaceLayout {
            scores_i32: self.classes,
            ..WorkspaceLayout::default()
        };
        let lif = |l: &mut WorkspaceLayout, n: usize| {
            l.membranes_i16 += n;
            l.spikes_u32 = l.spikes_u32.max(bits::words(n));
        };
        let _ = self.for_each_layer::<()>(|layer| {
            match layer {
                LayerShape::Stem { out, .. } => {
                    l.stem_current_i32 = out.n();
                    l.scratch_i32 = l.scratch_i32.max(out.n());
                    if self.input_pool > 1 {
                        l.pooled_input_u8 = self.channels * out.plane();
                    }
                }
                LayerShape::Reduction { input, out, .. } => {
                    lif(&mut l, input.n());
                    l.scratch_i32 = l.scratch_i32.max(out.n());
                    l.reduction_slot_i32 = l.reduction_slot_i32.max(out.n());
                }
                LayerShape::Edge {
                    edge:
                        EdgeShape {
                            op: OpShape::Conv { .. },
                            ..
                        },
                    g,
                    ..
                } => {
                    lif(&mut l, g.n());
                    l.scratch_i32 = l.scratch_i32.max(g.n());
                }
                LayerShape::Edge { .. } => {}
                LayerShape::Nodes { g, persistent, .. } => {
                    l.persistent_nodes_i32 += persistent.count_ones() as usize * g.n();
                    l.node_slot_i32 = l.node_slot_i32.max(g.n());
                }
                LayerShape::Head { input } => {
                    lif(&mut l, input.n());
                    l.head_counts_u8 = input.pooled2();
                }
                LayerShape::Hidden { outputs, .. } => {
                    lif(&mut l, outputs);
                    l.scratch_i32 = l.scratch_i32.max(outputs);
                }
                LayerShape::Output { outputs, .. } => {
                    l.scratch_i32 = l.scratch_i32.max(outputs);
                }
            }
            Ok(())
        });
        l.bytes_u8 = l.pooled_input_u8.max(l.head_counts_u8);
        l.currents_i32 = l.stem_current_i32
            + l.persistent_nodes_i32
            + l.reduction_slot_i32
            + 3 * l.node_slot_i32
            + l.scores_i32;
        l
    }
}

/// Visits stage `s` (input map `prev`): its reduction to `(cout, k)` if any, its edges
/// and its nodes. Returns the stage's map.
fn stage<E>(
    s: usize,
    reduction: Option<(usize, usize)>,
    edges: impl Iterator<Item = EdgeShape> + Clone,
    prev: Geometry,
    f: &mut impl FnMut(LayerShape) -> Result<(), E>,
) -> Result<Geometry, E> {
    let g = match reduction {
        Some((cout, k)) => {
            let out = prev.reduced(cout);
            f(LayerShape::Reduction {
                stage: s,
                k,
                input: prev,
                out,
            })?;
            out
        }
        None => prev,
    };
    let (mut written, mut persistent) = (0u8, 0u8);
    for (index, edge) in edges.enumerate() {
        if edge.op != OpShape::Zero {
            written |= 1u8.checked_shl(edge.to as u32).unwrap_or(0);
            if edge.is_backward() {
                persistent |= 1u8.checked_shl(edge.from as u32).unwrap_or(0);
            }
        }
        f(LayerShape::Edge {
            stage: s,
            index,
            edge,
            g,
        })?;
    }
    f(LayerShape::Nodes {
        stage: s,
        g,
        written,
        persistent,
    })?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: u8, to: u8, op: OpShape) -> EdgeShape {
        EdgeShape { from, to, op }
    }

    /// 1x8x8, ch 2, two stages; cell: conv3x3 0->1, skip 1->3, conv1x1 0->3, backward
    /// avgpool 3->1; fc 16, 10 classes x 2.
    fn small() -> NetworkShape<'static> {
        let mut cell = CellShape::EMPTY;
        for e in [
            edge(0, 1, OpShape::Conv { k: 3 }),
            edge(1, 3, OpShape::Skip),
            edge(0, 3, OpShape::Conv { k: 1 }),
            edge(3, 1, OpShape::AvgPool3),
        ] {
            cell.push(e).unwrap();
        }
        NetworkShape {
            channels: 1,
            height: 8,
            width: 8,
            input_pool: 1,
            timesteps: 4,
            stem_channels: 2,
            stem_k: 3,
            stages: Stages::Repeated { count: 2, cell },
            hidden: 16,
            outputs: 20,
            classes: 10,
        }
    }

    #[test]
    fn macs_and_neurons_by_hand() {
        let s = small();
        // Stage 0: 2x8x8; stage 1: 4x4x4; head counts 4x2x2 = 16.
        let stem = 2 * 9 * 64;
        let stage0 = 2 * 2 * 9 * 64 + 2 * 2 * 64;
        let reduce = 2 * 4 * 9 * 64;
        let stage1 = 4 * 4 * 9 * 16 + 4 * 4 * 16;
        let head = 16 * 16 + 16 * 20;
        assert_eq!(s.stem_macs(), stem);
        assert_eq!(s.macs(), stem + stage0 + reduce + stage1 + head);
        // Two conv-edge LIFs per stage, the reduction's, the head's and the hidden's.
        let neurons = 2 * 128 + 128 + 2 * 64 + 64 + 16;
        assert_eq!(s.lif_neurons(), neurons);
        assert_eq!(s.edge_count(), 8);
        assert_eq!(s.check(), Ok(()));
    }

    #[test]
    fn workspace_by_hand() {
        let l = small().workspace_layout();
        let expected = WorkspaceLayout {
            membranes_i16: 2 * 128 + 128 + 2 * 64 + 64 + 16,
            // stem 128 + node 1 persists in both stages (128 + 64) + reduction slot 64
            // + 3 node slots of 128 + 10 scores.
            currents_i32: 128 + 192 + 64 + 3 * 128 + 10,
            spikes_u32: 4,
            scratch_i32: 128,
            bytes_u8: 16,
            stem_current_i32: 128,
            persistent_nodes_i32: 192,
            reduction_slot_i32: 64,
            node_slot_i32: 128,
            scores_i32: 10,
            pooled_input_u8: 0,
            head_counts_u8: 16,
        };
        assert_eq!(l, expected);
    }

    #[test]
    fn geometry_errors_name_the_layer() {
        let mut s = small();
        s.input_pool = 16;
        assert!(matches!(s.check(), Err(ShapeError::Pool { pool: 16, .. })));
        s.input_pool = 4;
        assert_eq!(
            s.check(),
            Err(ShapeError::Head {
                height: 1,
                width: 1
            })
        );
        s.input_pool = 8;
        assert_eq!(
            s.check(),
            Err(ShapeError::Stage {
                stage: 1,
                height: 1,
                width: 1
            })
        );
    }

    #[test]
    fn a_cell_holds_every_ordered_pair() {
        let mut cell = CellShape::EMPTY;
        for _ in 0..CELL_EDGES_MAX {
            cell.push(edge(0, 1, OpShape::Skip)).unwrap();
        }
        assert_eq!(
            cell.push(edge(0, 1, OpShape::Skip)),
            Err(ShapeError::CellFull)
        );
    }
}
