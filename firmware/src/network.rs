//! The model description and the inference runner.
//!
//! Every type here is plain data borrowing slices, so generated firmware can write a
//! whole network as `static` items (`Weights::I8(&W_STEM)`, `&[Edge { .. }, ..]`) and
//! the host can build one from `Vec`s. Shapes are checked by [`Network::validate`];
//! [`Network::infer`] runs all timesteps of one image:
//!
//! ```text
//! once:      pixels -> input pool -> stem conv (pixels) -> requant         = x0 of stage 0
//! each t:    for each stage s:
//!              s > 0: BN(x3 of s-1) -> LIF -> conv3x3 -> sum-pool 2x2 -> requant = x0
//!              cell:  x1, x2, x3 each = sum of its incoming edges (zeroed first),
//!                     forward edge i->j (i<j) reads x_i of this step,
//!                     backward edge j->i (j>i) reads x_j of the previous step (0 at t=0)
//!            head: BN(x3) -> LIF -> 2x2 spike counts -> linear [-> LIF -> linear] -> vote
//! ```
//!
//! Edges into one node are applied in slice order (this only matters when a sum
//! saturates). The runtime evaluates exactly the edges given: pruning nodes that are not
//! on an input-output path is the exporter's job.

use core::ops::Range;

use crate::conv_spikes::ConvShape;
use crate::error::{Error, Layer};
use crate::layout::{Workspace, WorkspaceLayout};
use crate::lif::{Decay, Lif};
use crate::requant::{Mode, Requant, MAX_SHIFT};
use crate::shape::{Geometry as Geo, NetworkShape, Stages};
use crate::weights::Weights;
use crate::{
    add, avgpool2, avgpool3, conv_lanes, conv_pixels, conv_spikes, input_pool, lif, linear,
    requant, vote,
};

/// A same-size, stride-1 convolution (padding `k / 2`, no bias) with its
/// requantisation (BatchNorm and scales folded, see [`crate::requant`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConvLayer<'a> {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel size (odd: 1 or 3).
    pub k: usize,
    /// `[ci][ky][kx][co]` weights, `cin * k * k` rows of `cout`.
    pub weights: Weights<'a>,
    /// Per-output-channel requantisation (`cout` entries each).
    pub requant: Requant<'a>,
}

/// A fully connected layer with bias folded into its requantisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LinearLayer<'a> {
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
    /// `[in][out]` weights, `inputs` rows of `outputs`.
    pub weights: Weights<'a>,
    /// Per-output requantisation (`outputs` entries each); the float bias goes in `bias`.
    pub requant: Requant<'a>,
}

/// The operation on one cell edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Op<'a> {
    /// Contributes nothing.
    Zero,
    /// Identity on the current.
    Skip,
    /// LIF (this edge's own state) -> convolution -> BatchNorm; `cin = cout = C_s`.
    Conv {
        /// The edge's LIF.
        lif: Lif,
        /// The edge's convolution (k = 1 or 3).
        conv: ConvLayer<'a>,
    },
    /// 3x3 average pool, stride 1, padding 1, count_include_pad.
    AvgPool3,
}

/// One edge of a cell: `x[to] += op(x[from])`; `from > to` is a backward edge (reads the
/// previous timestep's `x[from]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Edge<'a> {
    /// Source node, `0..=3`.
    pub from: u8,
    /// Destination node, `1..=3`, `!= from`.
    pub to: u8,
    /// The operation.
    pub op: Op<'a>,
}

/// A 4-node cell (node 0 = input, node 3 = output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Cell<'a> {
    /// The edges, in evaluation order within each destination node.
    pub edges: &'a [Edge<'a>],
}

/// BatchNorm -> LIF -> conv3x3 -> BatchNorm -> avgpool 2x2 between stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reduction<'a> {
    /// The BatchNorm on the previous stage's output current (`C_{s-1}` channels).
    pub bn: Requant<'a>,
    /// The LIF after it.
    pub lif: Lif,
    /// The convolution `C_{s-1} -> C_s`; its requantisation applies to the 2x2 *sum* of
    /// accumulators, so it must include the pool's 1/4.
    pub conv: ConvLayer<'a>,
}

/// One stage: an optional reduction (required for every stage but the first) and a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stage<'a> {
    /// `None` for stage 0, `Some` for every later stage.
    pub reduction: Option<Reduction<'a>>,
    /// The stage's cell.
    pub cell: Cell<'a>,
}

/// The optional hidden layer of the head: `Linear(D -> fc)` then LIF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hidden<'a> {
    /// `Linear(D -> fc)` over 2x2 spike counts (fold the counts' 1/4 into its `mult`).
    pub fc: LinearLayer<'a>,
    /// The LIF on its output.
    pub lif: Lif,
}

/// BatchNorm -> LIF -> 2x2 spike counts -> flatten `[c][y][x]` -> linear layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Head<'a> {
    /// BatchNorm on the last cell's output current.
    pub bn: Requant<'a>,
    /// The LIF after it.
    pub lif: Lif,
    /// `Some` when the head has a hidden layer (`fc > 0`).
    pub hidden: Option<Hidden<'a>>,
    /// The last layer, `-> classes * cluster`; input is the hidden spikes, or the 2x2
    /// spike counts (fold their 1/4 into `mult`) without a hidden layer.
    pub output: LinearLayer<'a>,
}

/// A whole quantized network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Network<'a> {
    /// Input image channels.
    pub channels: usize,
    /// Input image height.
    pub height: usize,
    /// Input image width.
    pub width: usize,
    /// Input pooling factor `p` (a power of two, 1 = none).
    pub input_pool: usize,
    /// Timesteps per image (`>= 1`).
    pub timesteps: usize,
    /// The stem convolution over pixels (`cin = channels`).
    pub stem: ConvLayer<'a>,
    /// The stages (`>= 1`).
    pub stages: &'a [Stage<'a>],
    /// The classifier head.
    pub head: Head<'a>,
    /// Number of classes.
    pub classes: usize,
    /// Output neurons per class (population vote).
    pub cluster: usize,
}

/// The result of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Inference<'w> {
    /// Predicted class: the first maximum of `scores`.
    pub class: usize,
    /// Spikes emitted by every LIF layer over all timesteps.
    pub spikes: u64,
    /// Synaptic operations (weight accumulates) executed, stem included.
    pub synops: u64,
    /// Per-class scores (sum over timesteps and cluster of the output requantised), Q12.
    pub scores: &'w [i32],
}

/// A validated network with its per-network decisions made ([`Network::prepare`]): run
/// images with [`Prepared::infer`]. It borrows the network, so it cannot outlive or be
/// used with another one.
#[derive(Clone, Copy, Debug)]
pub struct Prepared<'n, 'a> {
    net: &'n Network<'a>,
    /// See [`Network::packed_layers`] (0 where packed accumulators do not pay).
    packed: u64,
    /// Packed layers take [`conv_lanes::scatter`] (ARMv6-M) rather than
    /// [`conv_spikes::scatter_packed`].
    lanes: bool,
}

impl Prepared<'_, '_> {
    /// [`Network::infer`] without the per-network work: checks the workspace and the
    /// image, zeroes all state and runs all timesteps.
    pub fn infer<'w>(
        &self,
        image: &[u8],
        ws: &'w mut Workspace<'_>,
    ) -> Result<Inference<'w>, Error> {
        self.net.run(image, ws, self.packed, self.lanes)
    }
}

/// Offsets of the `currents` buffer and the layout (computed from a validated network).
#[derive(Clone, Copy, Debug)]
struct Plan {
    layout: WorkspaceLayout,
    persistent_off: usize,
    reduction_off: usize,
    slot_off: [usize; 3],
    scores_off: usize,
}

/// Mask of nodes read by backward edges (bit j set: node j must persist across steps).
fn backward_sources(cell: &Cell) -> u8 {
    cell.edges
        .iter()
        .filter(|e| e.from > e.to && !matches!(e.op, Op::Zero))
        .fold(0, |m, e| m | (1 << e.from))
}

fn conv_edges(cell: &Cell) -> usize {
    cell.edges
        .iter()
        .filter(|e| matches!(e.op, Op::Conv { .. }))
        .count()
}

/// `(&buf[src], &mut buf[dst])` for non-overlapping ranges.
fn split(buf: &mut [i32], src: Range<usize>, dst: Range<usize>) -> (&[i32], &mut [i32]) {
    let (others, dst) = carve(buf, dst);
    (others.get(src), dst)
}

/// `buf[dst]`, mutable, beside read access to every range that does not overlap it.
fn carve(buf: &mut [i32], dst: Range<usize>) -> (Others<'_>, &mut [i32]) {
    let (lo, rest) = buf.split_at_mut(dst.start);
    let (mid, hi) = rest.split_at_mut(dst.len());
    let others = Others {
        lo,
        hi,
        hi_start: dst.end,
    };
    (others, mid)
}

/// The parts of a buffer around a range carved out of it ([`carve`]).
struct Others<'a> {
    lo: &'a [i32],
    hi: &'a [i32],
    hi_start: usize,
}

impl<'a> Others<'a> {
    /// `buf[r]`, which lies wholly below or above the carved range.
    fn get(&self, r: Range<usize>) -> &'a [i32] {
        if r.start >= self.hi_start {
            &self.hi[r.start - self.hi_start..r.end - self.hi_start]
        } else {
            &self.lo[r]
        }
    }
}

fn check_len(
    layer: Layer,
    field: &'static str,
    expected: usize,
    found: usize,
) -> Result<(), Error> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::Length {
            layer,
            field,
            expected,
            found,
        })
    }
}

fn check_requant(layer: Layer, rq: &Requant, n: usize) -> Result<(), Error> {
    check_len(layer, "requant.mult", n, rq.mult.len())?;
    check_len(layer, "requant.bias", n, rq.bias.len())?;
    if rq.shift > MAX_SHIFT {
        return Err(Error::Value {
            layer,
            field: "requant.shift",
            found: rq.shift as i64,
            allowed: "0..=62",
        });
    }
    Ok(())
}

fn check_lif(layer: Layer, lif: &Lif) -> Result<(), Error> {
    if lif.threshold <= 0 {
        return Err(Error::Value {
            layer,
            field: "lif.threshold",
            found: lif.threshold as i64,
            allowed: "1..=32767 (Q12)",
        });
    }
    match lif.decay {
        Decay::Shift(n) if n > 15 => Err(Error::Value {
            layer,
            field: "lif.decay",
            found: n as i64,
            allowed: "Shift(0..=15)",
        }),
        Decay::Q15(m) if m < 0 => Err(Error::Value {
            layer,
            field: "lif.decay",
            found: m as i64,
            allowed: "Q15(0..=32767)",
        }),
        _ => Ok(()),
    }
}

/// Accumulators stay far from i32 overflow for at most this many weight rows.
const MAX_ROWS: usize = 65_535;

fn check_conv(
    layer: Layer,
    conv: &ConvLayer,
    cin: usize,
    cout: Option<usize>,
) -> Result<(), Error> {
    check_len(layer, "cin", cin, conv.cin)?;
    if let Some(c) = cout {
        check_len(layer, "cout", c, conv.cout)?;
    }
    if conv.cout == 0 {
        return Err(Error::Value {
            layer,
            field: "cout",
            found: 0,
            allowed: ">= 1",
        });
    }
    if conv.k % 2 == 0 || conv.k > 7 {
        return Err(Error::Value {
            layer,
            field: "k",
            found: conv.k as i64,
            allowed: "1, 3, 5, 7",
        });
    }
    let rows = conv.cin * conv.k * conv.k;
    if rows > MAX_ROWS {
        return Err(Error::Value {
            layer,
            field: "cin * k * k",
            found: rows as i64,
            allowed: "<= 65535",
        });
    }
    check_len(
        layer,
        "weights",
        conv.weights.storage_len(rows, conv.cout),
        conv.weights.len(),
    )?;
    check_requant(layer, &conv.requant, conv.cout)
}

fn check_linear(layer: Layer, fc: &LinearLayer, inputs: usize) -> Result<(), Error> {
    check_len(layer, "inputs", inputs, fc.inputs)?;
    if fc.outputs == 0 {
        return Err(Error::Value {
            layer,
            field: "outputs",
            found: 0,
            allowed: ">= 1",
        });
    }
    if fc.inputs > MAX_ROWS * 16 {
        return Err(Error::Value {
            layer,
            field: "inputs",
            found: fc.inputs as i64,
            allowed: "<= 1048560",
        });
    }
    check_len(
        layer,
        "weights",
        fc.weights.storage_len(fc.inputs, fc.outputs),
        fc.weights.len(),
    )?;
    check_requant(layer, &fc.requant, fc.outputs)
}

/// The same-size convolution `conv` over a map of geometry `g` (its input).
fn conv_shape(conv: &ConvLayer, g: Geo) -> ConvShape {
    ConvShape {
        cin: conv.cin,
        cout: conv.cout,
        k: conv.k,
        h: g.h,
        w: g.w,
    }
}

/// Bit `layer` of a [`Network::packed_layers`] mask.
fn is_packed(mask: u64, layer: u32) -> bool {
    layer < 64 && mask >> layer & 1 != 0
}

/// Convolves the spike map (sum-pooled 2x2 with `pool2`) and requantises it into `dst`
/// (storing or accumulating), in packed `i16` accumulators when `packed` (the caller
/// has checked that they are exact, see [`Network::packed_layers`]): carry lanes
/// ([`conv_lanes::scatter`]) when `lanes` and the scratch holds them, `SXTAB16` lanes
/// otherwise. With `base`, `dst = sat_i32(base + conv)` element by element (`mode` is
/// then ignored): a node's skip edge from `base` folded into its next edge. Returns the
/// synaptic operations.
#[allow(clippy::too_many_arguments)]
// Inlined into its two callers on ARMv6-M (its arguments would pass on the stack);
// ARMv7E-M runs faster with the compiler's choice.
#[cfg_attr(
    all(target_arch = "arm", not(target_feature = "thumb2")),
    inline(always)
)]
fn spike_conv(
    spikes: &[u32],
    shape: &ConvShape,
    conv: &ConvLayer,
    pool2: bool,
    packed: bool,
    lanes: bool,
    scratch: &mut [i32],
    dst: &mut [i32],
    mode: Mode,
    base: Option<&[i32]>,
) -> u64 {
    let n = shape.acc_len(pool2);
    let bound = shape.acc_bound(&conv.weights, if pool2 { 4 } else { 1 });
    let (rq, c) = (&conv.requant, shape.cout);
    // The int8 lanes' transposition adds `base` itself; the others onto a copy of it.
    let lanes16 =
        |acc: &[i16], rq: &Requant, bound, index: fn(usize) -> usize, dst: &mut [i32]| match base {
            Some(b) => requant::hwc16_to_chw_onto(acc, rq, c, bound, index, b, dst),
            None => requant::hwc16_to_chw_bounded(acc, rq, c, bound, index, dst, mode),
        };
    let copied = |dst: &mut [i32]| match base {
        Some(b) => {
            dst.copy_from_slice(b);
            Mode::Accumulate
        }
        None => mode,
    };
    match conv.weights {
        Weights::I8(w)
            if packed
                && lanes
                && conv_lanes::LANES_BUILT
                && conv_lanes::fits(shape, pool2, scratch.len()) =>
        {
            let ops = conv_lanes::scatter(spikes, shape, w, pool2, scratch);
            let acc = &conv_spikes::as_i16(scratch)[..n];
            lanes16(acc, rq, bound, crate::weights::packed_index, dst);
            ops
        }
        weights
            if packed
                && pool2
                && conv_spikes::PACKED_BUILT
                && conv_spikes::pooled_fits(shape, scratch.len()) =>
        {
            // The pre-summed 2 x 2 kernels: the lanes of `scatter_packed(_i4)`.
            let ops = conv_spikes::scatter_packed_pooled(spikes, shape, weights, scratch);
            let acc = &conv_spikes::as_i16(scratch)[..n];
            match weights {
                Weights::I8(_) => lanes16(acc, rq, bound, crate::weights::packed_index, dst),
                Weights::I4(_) => {
                    let rq16 = Requant {
                        shift: rq.shift + 4,
                        ..*rq
                    };
                    let (bound, index) =
                        (bound.saturating_mul(16), crate::weights::packed_index_i4);
                    let mode = copied(dst);
                    requant::hwc16_to_chw_bounded(acc, &rq16, c, bound, index, dst, mode);
                }
            }
            ops
        }
        Weights::I8(w) if packed && conv_spikes::PACKED_BUILT => {
            let ops = conv_spikes::scatter_packed(spikes, shape, w, pool2, scratch);
            let acc = &conv_spikes::as_i16(scratch)[..n];
            lanes16(acc, rq, bound, crate::weights::packed_index, dst);
            ops
        }
        Weights::I4(w) if packed && conv_spikes::PACKED_BUILT => {
            // The lanes hold 16 acc: the same requantisation with the shift raised by 4.
            let ops = conv_spikes::scatter_packed_i4(spikes, shape, w, pool2, scratch);
            let acc = &conv_spikes::as_i16(scratch)[..n];
            let rq16 = Requant {
                shift: rq.shift + 4,
                ..*rq
            };
            let (bound, index) = (bound.saturating_mul(16), crate::weights::packed_index_i4);
            let mode = copied(dst);
            requant::hwc16_to_chw_bounded(acc, &rq16, c, bound, index, dst, mode);
            ops
        }
        weights => {
            let ops = conv_spikes::scatter(spikes, shape, weights, pool2, scratch);
            let mode = copied(dst);
            requant::hwc_to_chw_bounded(&scratch[..n], rq, c, bound, dst, mode);
            ops
        }
    }
}

impl<'a> Network<'a> {
    /// Pixels an input image must have (`channels * height * width`, `[c][y][x]` u8).
    pub const fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The network's structure without its weights.
    pub fn shape(&self) -> NetworkShape<'a> {
        NetworkShape {
            channels: self.channels,
            height: self.height,
            width: self.width,
            input_pool: self.input_pool,
            timesteps: self.timesteps,
            stem_channels: self.stem.cout,
            stem_k: self.stem.k,
            stages: Stages::Network(self.stages),
            hidden: self.head.hidden.as_ref().map_or(0, |h| h.fc.outputs),
            outputs: self.head.output.outputs,
            classes: self.classes,
        }
    }

    /// Geometry of the stem output (stage 0).
    fn geo0(&self) -> Geo {
        self.shape().stem_geometry()
    }

    /// Calls `f(s, stage, input geometry, stage geometry)` for each stage.
    fn for_each_stage<E>(
        &self,
        mut f: impl FnMut(usize, &Stage<'a>, Geo, Geo) -> Result<(), E>,
    ) -> Result<Geo, E> {
        let mut g = self.geo0();
        for (s, st) in self.stages.iter().enumerate() {
            let prev = g;
            if let Some(r) = &st.reduction {
                g = prev.reduced(r.conv.cout);
            }
            f(s, st, prev, g)?;
        }
        Ok(g)
    }

    /// Checks every shape and parameter; see [`Error`] for what is reported.
    pub fn validate(&self) -> Result<(), Error> {
        let net = Layer::Network;
        if !self.input_pool.is_power_of_two() || self.input_pool > 16 {
            return Err(Error::Value {
                layer: net,
                field: "input_pool",
                found: self.input_pool as i64,
                allowed: "1, 2, 4, 8, 16",
            });
        }
        let g0 = self.geo0();
        if self.channels == 0 || g0.h == 0 || g0.w == 0 {
            return Err(Error::Value {
                layer: net,
                field: "height/width/channels",
                found: g0.plane() as i64,
                allowed: "an image of at least input_pool x input_pool pixels and >= 1 channel",
            });
        }
        if self.timesteps == 0 {
            return Err(Error::Value {
                layer: net,
                field: "timesteps",
                found: 0,
                allowed: ">= 1",
            });
        }
        if self.classes == 0 || self.cluster == 0 {
            return Err(Error::Value {
                layer: net,
                field: "classes/cluster",
                found: 0,
                allowed: ">= 1",
            });
        }
        if self.stages.is_empty() {
            return Err(Error::Length {
                layer: net,
                field: "stages",
                expected: 1,
                found: 0,
            });
        }
        check_conv(Layer::Stem, &self.stem, self.channels, None)?;
        let last = self.for_each_stage(|s, st, prev, g| {
            match (&st.reduction, s) {
                (None, 0) => {}
                (Some(_), 0) => {
                    return Err(Error::Value {
                        layer: Layer::Reduction { stage: 0 },
                        field: "reduction",
                        found: 1,
                        allowed: "None for stage 0",
                    })
                }
                (None, _) => {
                    return Err(Error::Value {
                        layer: Layer::Reduction { stage: s },
                        field: "reduction",
                        found: 0,
                        allowed: "Some for every stage after the first",
                    })
                }
                (Some(r), _) => {
                    let layer = Layer::Reduction { stage: s };
                    if g.h == 0 || g.w == 0 {
                        return Err(Error::Value {
                            layer,
                            field: "input height/width",
                            found: prev.plane() as i64,
                            allowed: ">= 2 x 2 (the 2x2 pool would leave nothing)",
                        });
                    }
                    check_requant(layer, &r.bn, prev.c)?;
                    check_lif(layer, &r.lif)?;
                    check_conv(layer, &r.conv, prev.c, None)?;
                }
            }
            for (index, e) in st.cell.edges.iter().enumerate() {
                let layer = Layer::Edge { stage: s, index };
                if e.from > 3 || e.to > 3 || e.to == 0 || e.from == e.to {
                    return Err(Error::Value {
                        layer,
                        field: "from/to",
                        found: (e.from as i64) * 10 + e.to as i64,
                        allowed: "from 0..=3, to 1..=3, from != to (shown as from*10+to)",
                    });
                }
                if let Op::Conv { lif, conv } = &e.op {
                    check_lif(layer, lif)?;
                    check_conv(layer, conv, g.c, Some(g.c))?;
                }
            }
            Ok(())
        })?;
        check_requant(Layer::HeadBn, &self.head.bn, last.c)?;
        check_lif(Layer::HeadBn, &self.head.lif)?;
        if last.h < 2 || last.w < 2 {
            return Err(Error::Value {
                layer: Layer::HeadBn,
                field: "last stage height/width",
                found: last.plane() as i64,
                allowed: ">= 2 x 2 (the head pools 2x2)",
            });
        }
        let d = last.c * (last.h / 2) * (last.w / 2);
        let out_in = match &self.head.hidden {
            Some(h) => {
                check_linear(Layer::Hidden, &h.fc, d)?;
                check_lif(Layer::Hidden, &h.lif)?;
                h.fc.outputs
            }
            None => d,
        };
        check_linear(Layer::Output, &self.head.output, out_in)?;
        check_len(
            Layer::Output,
            "outputs (classes * cluster)",
            self.classes * self.cluster,
            self.head.output.outputs,
        )
    }

    /// Buffer sizes and offsets for a validated network.
    fn plan(&self) -> Plan {
        let l = self.shape().workspace_layout();
        let persistent_off = l.stem_current_i32;
        let reduction_off = persistent_off + l.persistent_nodes_i32;
        let s1 = reduction_off + l.reduction_slot_i32;
        let slot_off = [s1, s1 + l.node_slot_i32, s1 + 2 * l.node_slot_i32];
        let scores_off = s1 + 3 * l.node_slot_i32;
        Plan {
            layout: l,
            persistent_off,
            reduction_off,
            slot_off,
            scores_off,
        }
    }

    /// Validates the network and returns the exact workspace it needs.
    pub fn workspace_layout(&self) -> Result<WorkspaceLayout, Error> {
        self.validate()?;
        Ok(self.plan().layout)
    }

    /// Runs all timesteps on one `[c][y][x]` u8 image. Validates the network and the
    /// workspace first; zeroes all state, so images are independent. The same as
    /// [`Network::prepare`] then [`Prepared::infer`]: firmware that runs many images
    /// prepares once (the per-network checks then cost nothing per image).
    pub fn infer<'w>(
        &self,
        image: &[u8],
        ws: &'w mut Workspace<'_>,
    ) -> Result<Inference<'w>, Error> {
        self.prepare()?.infer(image, ws)
    }

    /// Validates the network and decides, once, which spike convolutions may accumulate
    /// in packed `i16` lanes (where that is faster, ARMv7E-M, and exact for the layer's
    /// weights: [`ConvShape::fits_i16`], which reads the weights of the larger layers).
    pub fn prepare(&self) -> Result<Prepared<'_, 'a>, Error> {
        self.validate()?;
        let lanes = conv_lanes::LANES_PAYS;
        let packed = if conv_spikes::PACKED_PAYS || lanes {
            self.packed_layers()
        } else {
            0
        };
        Ok(Prepared {
            net: self,
            packed,
            lanes,
        })
    }

    /// Bit `k` set: spike convolution `k` (reductions and conv edges, stage by stage,
    /// edges in slice order) accumulates in packed `i16` lanes
    /// ([`conv_spikes::scatter_packed`], [`conv_spikes::scatter_packed_i4`]), which is
    /// exact for it (int8 weights, `cout` a multiple of 4, [`ConvShape::fits_i16`]; int4
    /// weights, `cout` a multiple of 8, [`ConvShape::fits_i4_lanes`]). Layers past the
    /// 64th stay `i32`.
    fn packed_layers(&self) -> u64 {
        // Shifts 17..=31 requantise |acc| <= 2^15 with one SMMULR (the fast path of
        // `requant::hwc16_to_chw_bounded`), 17..=46 with two 32-bit multiplies on ARMv6-M;
        // other shifts stay i32 (exact either way). Int4 layers: the lanes hold 16 acc,
        // requantised with the shift raised by 4.
        let top = if conv_lanes::LANES_PAYS { 46 } else { 31 };
        let ok = |shape: &ConvShape, conv: &ConvLayer, pool2: bool| match conv.weights {
            Weights::I8(_) => {
                shape.cout % 4 == 0
                    && (17..=top).contains(&conv.requant.shift)
                    && shape.fits_i16(&conv.weights, pool2)
            }
            Weights::I4(_) => {
                // The int4 lanes are ARMv7E-M's (`SXTAB16`); ARMv6-M keeps int4 in i32.
                !conv_lanes::LANES_PAYS
                    && shape.cout % 8 == 0
                    && (13..=27).contains(&conv.requant.shift)
                    && shape.fits_i4_lanes(&conv.weights, pool2)
            }
        };
        let (mut mask, mut k) = (0u64, 0u32);
        let mut mark = |on: bool| {
            if on && k < 64 {
                mask |= 1 << k;
            }
            k += 1;
        };
        let _ = self.for_each_stage::<()>(|_, st, prev, g| {
            if let Some(r) = &st.reduction {
                mark(ok(&conv_shape(&r.conv, prev), &r.conv, true));
            }
            for e in st.cell.edges {
                if let Op::Conv { conv, .. } = &e.op {
                    mark(ok(&conv_shape(conv, g), conv, false));
                }
            }
            Ok(())
        });
        mask
    }

    /// [`Network::infer`], with (`packed`) or without packed accumulators where they are
    /// exact: both give the same result (the tests check it on every network).
    /// With `lanes`, packed layers take the carry lanes of ARMv6-M
    /// ([`conv_lanes::scatter`]) where the scratch holds them.
    #[cfg(test)]
    fn infer_with<'w>(
        &self,
        image: &[u8],
        ws: &'w mut Workspace<'_>,
        packed: bool,
        lanes: bool,
    ) -> Result<Inference<'w>, Error> {
        self.validate()?;
        let mask = if packed { self.packed_layers() } else { 0 };
        self.run(image, ws, mask, lanes)
    }

    /// One image on a validated network, packed accumulators for the layers of `packed`
    /// (a [`Network::packed_layers`] mask or a part of it).
    fn run<'w>(
        &self,
        image: &[u8],
        ws: &'w mut Workspace<'_>,
        packed: u64,
        lanes: bool,
    ) -> Result<Inference<'w>, Error> {
        let plan = self.plan();
        ws.check(&plan.layout)?;
        if image.len() != self.input_len() {
            return Err(Error::Image {
                expected: self.input_len(),
                found: image.len(),
            });
        }
        let l = &plan.layout;
        crate::fill::zero_i16(&mut ws.membranes[..l.membranes_i16]);
        // Every other current is written before it is read in each step: only the
        // backward-edge nodes (read at t = 0) and the class scores start at zero.
        crate::fill::zero(&mut ws.currents[plan.persistent_off..plan.reduction_off]);
        crate::fill::zero(&mut ws.currents[plan.scores_off..l.currents_i32]);
        let (mut spikes, mut synops) = (0u64, 0u64);

        // Direct encoding: the stem current is the same at every step.
        let g0 = self.geo0();
        let stem_shape = ConvShape {
            cin: self.channels,
            cout: g0.c,
            k: self.stem.k,
            h: g0.h,
            w: g0.w,
        };
        let pixels: &[u8] = if self.input_pool > 1 {
            let out = &mut ws.bytes[..l.pooled_input_u8];
            input_pool::pool(
                image,
                self.channels,
                self.height,
                self.width,
                self.input_pool,
                out,
            );
            out
        } else {
            image
        };
        synops += conv_pixels::scatter(pixels, &stem_shape, self.stem.weights, ws.scratch);
        requant::hwc_to_chw_bounded(
            &ws.scratch[..g0.n()],
            &self.stem.requant,
            g0.c,
            stem_shape.acc_bound(&self.stem.weights, 255),
            &mut ws.currents[..g0.n()],
            Mode::Store,
        );

        let scores = plan.scores_off..plan.scores_off + self.classes;
        for _t in 0..self.timesteps {
            let mut layer = 0u32;
            let mut mem = 0usize;
            let mut persistent = plan.persistent_off;
            let mut out = 0..g0.n();
            let last = self.for_each_stage::<()>(|s, st, prev, g| {
                let n = g.n();
                let mask = backward_sources(&st.cell);
                let base = persistent;
                let node = move |j: u8| -> Range<usize> {
                    let start = match j {
                        0 if s == 0 => 0,
                        0 => plan.reduction_off,
                        3 if mask & 8 != 0 => base + ((mask & 4 != 0) as usize) * n,
                        2 if mask & 4 != 0 => base,
                        _ => plan.slot_off[j as usize - 1],
                    };
                    start..start + n
                };
                if let Some(r) = &st.reduction {
                    let (src, dst) = split(ws.currents, out.clone(), node(0));
                    let v = &mut ws.membranes[mem..mem + prev.n()];
                    mem += prev.n();
                    // The scratch holds >= every stage's neurons (see `plan`).
                    let (tmp, plane) = (&mut *ws.scratch, prev.plane());
                    spikes +=
                        lif::layer_affine(&r.lif, v, src, &r.bn, plane, tmp, ws.spikes) as u64;
                    let shape = conv_shape(&r.conv, prev);
                    let p = is_packed(packed, layer);
                    layer += 1;
                    let mode = Mode::Store;
                    synops += spike_conv(
                        ws.spikes, &shape, &r.conv, true, p, lanes, ws.scratch, dst, mode, None,
                    );
                }
                let edge_base = layer;
                layer += conv_edges(&st.cell) as u32;
                // The spike map of the last conv edge's LIF in evaluation order (its
                // source node, direction and neuron) and its spike count. A conv edge whose
                // LIF matches it sees the same input current at every step from the same
                // zero state, so its membranes would equal that edge's forever: it reuses
                // the spikes (and counts them again) instead of recomputing them. The
                // decision depends only on the cell, so it is the same at every step.
                let mut last_lif: Option<(u8, bool, Lif, u32)> = None;
                for j in 1..=3u8 {
                    let dst_range = node(j);
                    // The first edge into the node stores (sat(0 + x) = x), the others
                    // accumulate; a node without edges is zero.
                    let mut written = false;
                    // A first edge that is a skip is not copied at once: the next
                    // convolution edge adds onto its source directly (the same sums in the
                    // same order); any other next edge, or none, copies it first.
                    let mut skip_from: Option<u8> = None;
                    let mut conv_index = 0;
                    for e in st.cell.edges {
                        let v_off = mem + conv_index * n;
                        let edge_layer = edge_base + conv_index as u32;
                        conv_index += matches!(e.op, Op::Conv { .. }) as usize;
                        if e.to != j {
                            continue;
                        }
                        if matches!(e.op, Op::Zero) {
                            continue;
                        }
                        let mode = if written {
                            Mode::Accumulate
                        } else {
                            Mode::Store
                        };
                        written = true;
                        if matches!(e.op, Op::Skip) && mode == Mode::Store {
                            skip_from = Some(e.from);
                            continue;
                        }
                        let (others, dst) = carve(ws.currents, dst_range.clone());
                        let src = others.get(node(e.from));
                        let base = skip_from.take().map(|f| others.get(node(f)));
                        if let (Some(b), false) = (base, matches!(e.op, Op::Conv { .. })) {
                            dst.copy_from_slice(b);
                        }
                        match &e.op {
                            Op::Zero => {}
                            Op::Skip => add::accumulate(src, dst),
                            Op::AvgPool3 => avgpool3::pool(src, g.c, g.h, g.w, dst, mode),
                            Op::Conv { lif, conv } => {
                                let key = (e.from, e.from < e.to, *lif);
                                let fired = match last_lif {
                                    Some((f, d, l, k)) if (f, d, l) == key => k,
                                    _ => {
                                        let v = &mut ws.membranes[v_off..v_off + n];
                                        lif::layer(lif, v, src, ws.spikes)
                                    }
                                };
                                last_lif = Some((key.0, key.1, key.2, fired));
                                spikes += fired as u64;
                                let shape = conv_shape(conv, g);
                                let p = is_packed(packed, edge_layer);
                                synops += spike_conv(
                                    ws.spikes, &shape, conv, false, p, lanes, ws.scratch, dst,
                                    mode, base,
                                );
                            }
                        }
                    }
                    if let Some(f) = skip_from {
                        let (others, dst) = carve(ws.currents, dst_range.clone());
                        dst.copy_from_slice(others.get(node(f)));
                    }
                    if !written {
                        crate::fill::zero(&mut ws.currents[dst_range]);
                    }
                }
                mem += conv_edges(&st.cell) * n;
                persistent += mask.count_ones() as usize * n;
                out = node(3);
                Ok(())
            });
            let last = last.unwrap_or(g0);

            // Head.
            let head = &self.head;
            let v = &mut ws.membranes[mem..mem + last.n()];
            mem += last.n();
            spikes += lif::layer_affine(
                &head.lif,
                v,
                &ws.currents[out],
                &head.bn,
                last.plane(),
                ws.scratch,
                ws.spikes,
            ) as u64;
            let counts = &mut ws.bytes[..l.head_counts_u8];
            avgpool2::count_spikes(ws.spikes, last.c, last.h, last.w, counts);
            let first = head.hidden.as_ref().map_or(&head.output, |h| &h.fc);
            let acc = &mut ws.scratch[..first.outputs];
            synops += linear::from_counts(counts, first.weights, acc);
            requant::in_place(acc, &first.requant);
            if let Some(h) = &head.hidden {
                let f = h.fc.outputs;
                let v = &mut ws.membranes[mem..mem + f];
                spikes += lif::layer(&h.lif, v, &ws.scratch[..f], ws.spikes) as u64;
                let acc = &mut ws.scratch[..head.output.outputs];
                synops += linear::from_spikes(ws.spikes, f, head.output.weights, acc);
                requant::in_place(acc, &head.output.requant);
            }
            let outputs = &ws.scratch[..head.output.outputs];
            vote::accumulate(outputs, self.cluster, &mut ws.currents[scores.clone()]);
        }
        let ws: &'w Workspace<'_> = ws;
        let scores = &ws.currents[scores];
        Ok(Inference {
            class: vote::argmax(scores),
            spikes,
            synops,
            scores,
        })
    }
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
