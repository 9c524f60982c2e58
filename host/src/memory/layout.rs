//! The network's memory, layer by layer, and the RAM buffers. This file is the one place
//! that lists every byte the model takes, and on microcontrollers it mirrors what the
//! generated firmware declares (host/src/board_app/codegen.rs) exactly. The layers and
//! their geometry come from the firmware's `NetworkShape` ([`Arch::shape`]); this file
//! only prices them.
//!
//! # The network (exactly what is trained and quantized)
//!
//! ```text
//! input u8 [Cin,H,W] -> avgpool p x p -> stem conv3x3(Cin->C, pad 1) + BN
//! stage s = 0..S, C_s = C * 2^s, H_s = H_{s-1} / 2 (floor):
//!   s > 0: reduction  BN -> LIF -> conv3x3(C_{s-1}->C_s) + BN -> avgpool2   (= node 0)
//!   cell: 4 nodes; node 0 is the stage input (stage 0: the stem output itself)
//!         forward edge i->j reads node i now; backward edge j->i reads node j's
//!         previous-step value; ops: zero, skip, LIF->conv1x1+BN, LIF->conv3x3+BN,
//!         avgpool3x3; every conv edge has its own LIF.
//! head: BN -> LIF -> avgpool2 (floor) -> flatten (D) -> Linear(D->fc) + LIF
//!       -> Linear(fc -> classes*cluster)      (fc = 0: one Linear(D -> classes*cluster))
//! ```
//!
//! # Flash (per layer), integer runtime
//!
//! The generated `model.rs` holds each layer's weights and requantisation as `static`
//! arrays, and the network description (`Network`, `Stage`s, `Edge`s) as `static`
//! structs pointing at them:
//!
//! | item | bytes |
//! |---|---|
//! | weights (conv, linear) | the firmware's storage: `rows = cin * k * k` (conv) or `inputs` (linear) rows of `cout` weights; int8: `cout` bytes a row, int4: `ceil(cout / 2)` (each row padded to a whole byte); the array rounded up to 4 |
//! | requantisation (conv + BN, linear + bias, stand-alone BN) | i32 `mult` + i32 `bias` per output channel (8 B); the shift is a field of the descriptor |
//! | descriptors | `size_of` on the device of the firmware's own `Edge` per non-zero cell edge, `Stage` per stage and `Network` once ([`spikenas_firmware::descriptor::DEVICE`]; LIF parameters, shapes and slices live in them) |
//! | code | the target's `code_reserve_bytes`: the template's vector table, `.text` and its own `.rodata`, the same for every network (the template reads the network through `black_box`, so LTO cannot specialise the runtime for one network) |
//!
//! # RAM buffers, integer runtime (each placed whole into one region)
//!
//! Exactly the `static mut` arrays of the generated `model.rs`, sized by
//! [`workspace_layout`]: the firmware's own `NetworkShape::workspace_layout` of the
//! architecture's shape, the very function `Network::workspace_layout()` calls:
//!
//! | buffer | type | elements |
//! |---|---|---|
//! | `membranes` | i16 | every LIF neuron: reductions, conv edges, head, hidden |
//! | `currents` | i32 | stem current + backward-edge source nodes + reduction slot + 3 node slots + class scores |
//! | `spikes` | u32 | one bit-packed spike map, the largest LIF layer's |
//! | `scratch` | i32 | the largest accumulator (a convolution's output or a linear layer's) |
//! | `bytes` | u8 | max(pooled input image, head's 2x2 spike counts) |
//! | `image` | u8 | the input image, `Cin * H * W` |
//! | `reserve` | | stack + runtime from the board profile |
//!
//! Each buffer is rounded up to a multiple of 4 bytes (the linker's padding between them).
//!
//! # f32 (Linux boards)
//!
//! Every weight and constant takes 4 bytes (a stand-alone BN 8 per channel, a folded one
//! 4); the RAM holds the weights (`weights`), the input, every LIF layer's membrane and
//! spike map (`.v`, `.spikes`), the current buffers (`stem.out`, `sS.node0`, `sS.nodeJ`,
//! `sS.nodeJ.prev`), the output accumulators and one `scratch`, all f32.

use spikenas_firmware::descriptor;
use spikenas_firmware::shape::{LayerShape, NetworkShape, OpShape};
use spikenas_firmware::WorkspaceLayout;

use crate::arch::Arch;

use super::{Buffer, BufferKind, InputShape, LayerRow, Numerics};

/// The rows and buffers of one network.
#[derive(Debug)]
pub(super) struct Layout {
    pub rows: Vec<LayerRow>,
    pub buffers: Vec<Buffer>,
}

fn align4(bytes: u64) -> u64 {
    bytes.div_ceil(4) * 4
}

impl Numerics {
    /// Weights of a layer of `rows` input taps with `cols` outputs each.
    fn weight_bytes(self, cols: u64, rows: u64) -> u64 {
        match self {
            Numerics::Integer { weight_bits } => {
                let row = (cols * weight_bits as u64).div_ceil(8);
                align4(rows * row)
            }
            Numerics::Float32 => cols * rows * 4,
        }
    }

    /// Constants of a conv/linear layer with BN or bias folded in.
    fn folded_const_bytes(self, channels: u64) -> u64 {
        match self {
            Numerics::Integer { .. } => 8 * channels,
            Numerics::Float32 => 4 * channels,
        }
    }

    /// Constants of a stand-alone batch-norm.
    fn batch_norm_const_bytes(self, channels: u64) -> u64 {
        8 * channels
    }

    fn membrane_bytes(self, neurons: u64) -> u64 {
        match self {
            Numerics::Integer { .. } => 2 * neurons,
            Numerics::Float32 => 4 * neurons,
        }
    }

    fn spike_bytes(self, neurons: u64) -> u64 {
        match self {
            Numerics::Integer { .. } => neurons.div_ceil(32) * 4,
            Numerics::Float32 => 4 * neurons,
        }
    }

    /// A byte-wide buffer (input image, pooled spike counts).
    fn byte_buffer_bytes(self, elements: u64) -> u64 {
        match self {
            Numerics::Integer { .. } => elements,
            Numerics::Float32 => 4 * elements,
        }
    }
}

/// Walks the network, adding rows (and, for the f32 model, one buffer per tensor).
struct Walk {
    n: Numerics,
    rows: Vec<LayerRow>,
    buffers: Vec<Buffer>,
}

impl Walk {
    fn per_tensor_buffers(&self) -> bool {
        self.n == Numerics::Float32
    }

    fn row(&mut self, name: String) {
        self.rows.push(LayerRow {
            name,
            ..LayerRow::default()
        });
    }

    fn last(&mut self) -> &mut LayerRow {
        self.rows.last_mut().expect("a row was started")
    }

    fn buffer(&mut self, name: String, kind: BufferKind, bytes: u64) {
        self.buffers.push(Buffer {
            name,
            kind,
            bytes: align4(bytes),
            region: String::new(),
        });
    }

    /// Weights of `out` outputs with `rows` inputs each.
    fn weights(&mut self, out: u64, rows: u64) {
        let bytes = self.n.weight_bytes(out, rows);
        let row = self.last();
        row.params += out * rows;
        row.weight_bytes += bytes;
        row.flash_bytes += bytes;
    }

    /// A batch-norm folded into the preceding conv (2 trained parameters per channel).
    fn folded_batch_norm(&mut self, channels: u64) {
        let bytes = self.n.folded_const_bytes(channels);
        let row = self.last();
        row.params += 2 * channels;
        row.const_bytes += bytes;
        row.flash_bytes += bytes;
    }

    /// A linear layer's bias, folded like a batch-norm.
    fn linear_bias(&mut self, channels: u64) {
        let bytes = self.n.folded_const_bytes(channels);
        let row = self.last();
        row.params += channels;
        row.const_bytes += bytes;
        row.flash_bytes += bytes;
    }

    /// A stand-alone batch-norm (on a sum of currents, so nothing to fold into).
    fn batch_norm(&mut self, channels: u64) {
        let bytes = self.n.batch_norm_const_bytes(channels);
        let row = self.last();
        row.params += 2 * channels;
        row.const_bytes += bytes;
        row.flash_bytes += bytes;
    }

    /// Flash of descriptors or code charged to the current row.
    fn flash(&mut self, bytes: u64) {
        self.last().flash_bytes += bytes;
    }

    fn input(&mut self, elements: u64) {
        let bytes = self.n.byte_buffer_bytes(elements);
        self.last().activation_bytes += bytes;
        if self.per_tensor_buffers() {
            self.buffer("input".into(), BufferKind::Input, bytes);
        }
    }

    /// A current buffer (i32; f32 on Linux).
    fn current(&mut self, name: String, elements: u64) {
        let bytes = 4 * elements;
        self.last().activation_bytes += bytes;
        if self.per_tensor_buffers() {
            self.buffer(name, BufferKind::Current, bytes);
        }
    }

    /// A LIF layer: its membrane state and its spike map.
    fn lif(&mut self, prefix: &str, neurons: u64) {
        let (state, spikes) = (self.n.membrane_bytes(neurons), self.n.spike_bytes(neurons));
        let row = self.last();
        row.state_bytes += state;
        row.spike_bytes += spikes;
        if self.per_tensor_buffers() {
            self.buffer(format!("{prefix}.v"), BufferKind::Membrane, state);
            self.buffer(format!("{prefix}.spikes"), BufferKind::Spikes, spikes);
        }
    }

    fn scratch(&mut self, bytes: u64) {
        let row = self.last();
        row.scratch_bytes = row.scratch_bytes.max(bytes);
    }

    /// The f32 model's shared scratch buffer and its weights.
    fn finish_f32(&mut self) {
        let scratch = self.rows.iter().map(|r| r.scratch_bytes).max().unwrap_or(0);
        if scratch > 0 {
            self.buffer("scratch".into(), BufferKind::Scratch, scratch);
        }
        let weights = self
            .rows
            .iter()
            .map(|r| r.weight_bytes + r.const_bytes)
            .sum();
        self.buffer("weights".into(), BufferKind::Weights, weights);
    }

    /// The integer runtime's buffers: exactly the generated firmware's statics.
    fn finish_integer(&mut self, ws: &WorkspaceLayout, image_bytes: u64) {
        let as64 = |v: usize| v as u64;
        self.buffer(
            "membranes".into(),
            BufferKind::Membrane,
            2 * as64(ws.membranes_i16),
        );
        self.buffer(
            "currents".into(),
            BufferKind::Current,
            4 * as64(ws.currents_i32),
        );
        self.buffer("spikes".into(), BufferKind::Spikes, 4 * as64(ws.spikes_u32));
        self.buffer(
            "scratch".into(),
            BufferKind::Scratch,
            4 * as64(ws.scratch_i32),
        );
        self.buffer("bytes".into(), BufferKind::Scratch, as64(ws.bytes_u8));
        self.buffer("image".into(), BufferKind::Input, image_bytes);
    }
}

fn op_name(op: OpShape) -> String {
    match op {
        OpShape::Zero => "zero".into(),
        OpShape::Skip => "skip".into(),
        OpShape::Conv { k } => format!("conv{k}x{k}"),
        OpShape::AvgPool3 => "avgpool3x3".into(),
    }
}

/// The validated shape of `arch` on `input` (dead nodes removed, as the quantizer and
/// the synthetic networks export it), or why its shapes do not work.
fn checked_shape(arch: &Arch, input: &InputShape) -> Result<NetworkShape<'static>, String> {
    let cell = arch.cell.validated().map_err(|e| e.to_string())?;
    let shape = Arch { cell, ..*arch }.shape(input);
    shape.check().map_err(|e| e.to_string())?;
    Ok(shape)
}

/// The workspace `spikenas_firmware::Network::workspace_layout()` returns for any
/// network exported from `arch` on `input`, computed from the architecture alone: the
/// firmware's own [`NetworkShape::workspace_layout`] of the validated architecture's
/// shape. An error says why the shapes do not work.
pub fn workspace_layout(arch: &Arch, input: &InputShape) -> Result<WorkspaceLayout, String> {
    Ok(checked_shape(arch, input)?.workspace_layout())
}

/// Lay out `arch` on `input`; an error says why the shapes do not work.
pub(super) fn layout(
    arch: &Arch,
    input: &InputShape,
    n: Numerics,
    code_bytes: u64,
    reserve_bytes: u64,
) -> Result<Layout, String> {
    let as64 = |v: usize| v as u64;
    let (cin, k) = (as64(input.channels), as64(input.classes * arch.cluster));
    if cin == 0 || k == 0 || arch.channels == 0 || arch.input_pool == 0 {
        return Err(format!(
            "empty network: input channels {cin}, outputs {k}, ch {}, pool {}",
            arch.channels, arch.input_pool
        ));
    }
    let shape = checked_shape(arch, input)?;
    let mut w = Walk {
        n,
        rows: Vec::with_capacity(32),
        buffers: Vec::with_capacity(48),
    };

    let image = cin * as64(input.height) * as64(input.width);
    w.row("input".into());
    w.input(image);
    if arch.input_pool > 1 {
        w.scratch(n.byte_buffer_bytes(as64(input.channels * shape.stem_geometry().plane())));
    }
    let node = |s: usize, j: usize| format!("s{s}.node{j}");
    shape
        .for_each_layer::<()>(|layer| {
            match layer {
                LayerShape::Stem { cin, k, out } => {
                    w.row("stem".into());
                    w.weights(as64(out.c), as64(cin * k * k));
                    w.folded_batch_norm(as64(out.c));
                    w.scratch(4 * as64(out.n()));
                    w.current("stem.out".into(), as64(out.n()));
                }
                LayerShape::Reduction {
                    stage,
                    k,
                    input,
                    out,
                } => {
                    let name = format!("s{stage}.reduce");
                    w.row(name.clone());
                    w.batch_norm(as64(input.c));
                    w.lif(&name, as64(input.n()));
                    w.weights(as64(out.c), as64(input.c * k * k));
                    w.folded_batch_norm(as64(out.c));
                    w.scratch(4 * as64(out.n()));
                    w.current(node(stage, 0), as64(out.n()));
                }
                LayerShape::Edge { stage, edge, g, .. } => {
                    let dir = if edge.is_backward() { 'b' } else { 'e' };
                    let prefix = format!("s{stage}.{dir}{}{}", edge.from, edge.to);
                    w.row(format!("{prefix}.{}", op_name(edge.op)));
                    if let Some(k) = edge.kernel() {
                        w.lif(&prefix, as64(g.n()));
                        w.weights(as64(g.c), as64(g.c * k * k));
                        w.folded_batch_norm(as64(g.c));
                        w.scratch(4 * as64(g.n()));
                    }
                }
                LayerShape::Nodes {
                    stage,
                    g,
                    written,
                    persistent,
                } => {
                    w.row(format!("s{stage}.nodes"));
                    for j in 1..crate::arch::NODES {
                        if written >> j & 1 != 0 {
                            w.current(node(stage, j), as64(g.n()));
                        }
                    }
                    for j in 1..crate::arch::NODES {
                        if persistent >> j & 1 != 0 {
                            w.current(format!("{}.prev", node(stage, j)), as64(g.n()));
                        }
                    }
                }
                LayerShape::Head { input } => {
                    w.row("head".into());
                    w.batch_norm(as64(input.c));
                    w.lif("head", as64(input.n()));
                    w.scratch(n.byte_buffer_bytes(as64(input.pooled2())));
                }
                LayerShape::Hidden { inputs, outputs } => {
                    w.row("head.fc".into());
                    w.weights(as64(outputs), as64(inputs));
                    w.linear_bias(as64(outputs));
                    w.lif("head.fc", as64(outputs));
                    w.scratch(4 * as64(outputs));
                }
                LayerShape::Output { inputs, outputs } => {
                    w.row("head.out".into());
                    w.weights(as64(outputs), as64(inputs));
                    w.linear_bias(as64(outputs));
                    w.scratch(4 * as64(outputs));
                    w.current("head.out.acc".into(), as64(outputs));
                }
            }
            Ok(())
        })
        .map_err(|()| "unreachable: the walk does not fail".to_string())?;

    match n {
        Numerics::Integer { .. } => {
            // The network description: the edge arrays, the stages and the `Network`.
            w.row("descriptors".into());
            let d = descriptor::DEVICE.total(shape.stage_count(), shape.edge_count());
            w.flash(as64(d));
            w.finish_integer(&shape.workspace_layout(), image);
        }
        Numerics::Float32 => w.finish_f32(),
    }
    if code_bytes > 0 {
        w.row("code".into());
        w.flash(code_bytes);
    }
    if reserve_bytes > 0 {
        w.buffer("reserve".into(), BufferKind::Reserve, reserve_bytes);
    }
    Ok(Layout {
        rows: w.rows,
        buffers: w.buffers,
    })
}
