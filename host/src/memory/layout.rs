//! The network's memory, layer by layer, and the RAM buffers. This file is the one place
//! that lists every byte the model takes, and on microcontrollers it mirrors what the
//! generated firmware declares (host/src/firmware/codegen.rs) exactly.
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
//! | descriptors | [`EDGE_BYTES`] per non-zero cell edge, [`STAGE_BYTES`] per stage, [`NETWORK_BYTES`] once (LIF parameters, shapes and slices live in them) |
//! | code | the target's `code_reserve_bytes`: the template's vector table, `.text` and its own `.rodata`, the same for every network (the template reads the network through `black_box`, so LTO cannot specialise the runtime for one network) |
//!
//! # RAM buffers, integer runtime (each placed whole into one region)
//!
//! Exactly the `static mut` arrays of the generated `model.rs`, sized by
//! [`workspace_layout`], which computes `spikenas_firmware::Network::workspace_layout()`
//! from the architecture alone:
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

use spikenas_firmware::WorkspaceLayout;

use crate::arch::{Arch, Op};

use super::{Buffer, BufferKind, InputShape, LayerRow, Numerics};

/// Flash bytes of one `Edge` of a generated network on a 32-bit Cortex-M (measured with
/// `arm-none-eabi-nm -S` on the `EDGES_S*` arrays of built images: 56 per edge).
pub const EDGE_BYTES: u64 = 56;
/// Flash bytes of one `Stage` on a 32-bit Cortex-M (the `STAGES` array: 80 per stage).
pub const STAGE_BYTES: u64 = 80;
/// Flash bytes of the `Network` static on a 32-bit Cortex-M (`NETWORK`: 196).
pub const NETWORK_BYTES: u64 = 196;

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

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Zero => "zero",
        Op::Skip => "skip",
        Op::Conv1x1 => "conv1x1",
        Op::Conv3x3 => "conv3x3",
        Op::AvgPool3x3 => "avgpool3x3",
    }
}

/// Spatial geometry of one activation map (`c x h x w`).
#[derive(Clone, Copy)]
struct Geo {
    c: usize,
    h: usize,
    w: usize,
}

impl Geo {
    fn n(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// The workspace `spikenas_firmware::Network::workspace_layout()` returns for any
/// network exported from `arch` on `input`, computed from the architecture alone (the
/// same formulas as the firmware's `Network::plan`, on the validated cell's non-zero
/// edges, which is what the quantizer and the synthetic networks export). An error says
/// why the shapes do not work.
pub fn workspace_layout(arch: &Arch, input: &InputShape) -> Result<WorkspaceLayout, String> {
    let cell = arch.cell.validated().map_err(|e| e.to_string())?;
    let edges = cell.edges();
    let pool = arch.input_pool.max(1);
    let g0 = Geo {
        c: arch.stage_channels(0),
        h: input.height / pool,
        w: input.width / pool,
    };
    if g0.h == 0 || g0.w == 0 {
        return Err(format!(
            "input {}x{} pooled by {pool} leaves no pixels; use a smaller pool",
            input.height, input.width
        ));
    }
    let words = |n: usize| n.div_ceil(32);
    let convs = edges.iter().filter(|e| e.op.kernel().is_some()).count();
    // Nodes read by backward edges persist across timesteps (one slot each).
    let persistent = (1..crate::arch::NODES)
        .filter(|&j| edges.iter().any(|e| e.backward && e.from == j))
        .count();
    let mut l = WorkspaceLayout {
        stem_current_i32: g0.n(),
        scratch_i32: g0.n(),
        scores_i32: input.classes,
        pooled_input_u8: if pool > 1 {
            input.channels * g0.h * g0.w
        } else {
            0
        },
        ..WorkspaceLayout::default()
    };
    let mut g = g0;
    for s in 0..arch.stages {
        let prev = g;
        if s > 0 {
            g = Geo {
                c: arch.stage_channels(s),
                h: prev.h / 2,
                w: prev.w / 2,
            };
            if g.h == 0 || g.w == 0 {
                return Err(format!(
                    "stage {s} halves a {}x{} map to nothing; use fewer stages or pool",
                    prev.h, prev.w
                ));
            }
            l.membranes_i16 += prev.n();
            l.spikes_u32 = l.spikes_u32.max(words(prev.n()));
            l.scratch_i32 = l.scratch_i32.max(g.n());
            l.reduction_slot_i32 = l.reduction_slot_i32.max(g.n());
        }
        l.membranes_i16 += convs * g.n();
        if convs > 0 {
            l.spikes_u32 = l.spikes_u32.max(words(g.n()));
            l.scratch_i32 = l.scratch_i32.max(g.n());
        }
        l.persistent_nodes_i32 += persistent * g.n();
        l.node_slot_i32 = l.node_slot_i32.max(g.n());
    }
    if g.h < 2 || g.w < 2 {
        return Err(format!(
            "the head's avgpool2 turns the last {}x{} map into nothing; use fewer stages or pool",
            g.h, g.w
        ));
    }
    l.membranes_i16 += g.n();
    l.spikes_u32 = l.spikes_u32.max(words(g.n()));
    l.head_counts_u8 = g.c * (g.h / 2) * (g.w / 2);
    if arch.fc > 0 {
        l.membranes_i16 += arch.fc;
        l.spikes_u32 = l.spikes_u32.max(words(arch.fc));
        l.scratch_i32 = l.scratch_i32.max(arch.fc);
    }
    l.scratch_i32 = l.scratch_i32.max(input.classes * arch.cluster);
    l.bytes_u8 = l.pooled_input_u8.max(l.head_counts_u8);
    l.currents_i32 = l.stem_current_i32
        + l.persistent_nodes_i32
        + l.reduction_slot_i32
        + 3 * l.node_slot_i32
        + l.scores_i32;
    Ok(l)
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
    let workspace = match n {
        Numerics::Integer { .. } => Some(workspace_layout(arch, input)?),
        Numerics::Float32 => None,
    };
    let mut w = Walk {
        n,
        rows: Vec::with_capacity(32),
        buffers: Vec::with_capacity(48),
    };

    let image = cin * as64(input.height) * as64(input.width);
    w.row("input".into());
    w.input(image);

    let (mut h, mut wd) = (
        as64(input.height / arch.input_pool),
        as64(input.width / arch.input_pool),
    );
    if h == 0 || wd == 0 {
        return Err(format!(
            "input {}x{} pooled by {} leaves no pixels; use a smaller pool",
            input.height, input.width, arch.input_pool
        ));
    }
    if arch.input_pool > 1 {
        w.scratch(n.byte_buffer_bytes(cin * h * wd));
    }
    let c0 = as64(arch.channels);
    w.row("stem".into());
    w.weights(c0, cin * 9);
    w.folded_batch_norm(c0);
    w.scratch(4 * c0 * h * wd);
    w.current("stem.out".into(), c0 * h * wd);

    let cell = arch.cell.validated().map_err(|e| e.to_string())?;
    let edges = cell.edges();
    let mut c = c0;
    for s in 0..arch.stages {
        let cs = as64(arch.stage_channels(s));
        if s > 0 {
            let (hp, wp) = (h, wd);
            (h, wd) = (h / 2, wd / 2);
            if h == 0 || wd == 0 {
                return Err(format!(
                    "stage {s} halves a {hp}x{wp} map to nothing; use fewer stages or pool"
                ));
            }
            let name = format!("s{s}.reduce");
            w.row(name.clone());
            w.batch_norm(c);
            w.lif(&name, c * hp * wp);
            w.weights(cs, c * 9);
            w.folded_batch_norm(cs);
            w.scratch(4 * cs * h * wd);
            w.current(format!("s{s}.node0"), cs * h * wd);
        }
        c = cs;
        let plane = c * h * wd;
        for e in &edges {
            let dir = if e.backward { 'b' } else { 'e' };
            let name = format!("s{s}.{dir}{}{}.{}", e.from, e.to, op_name(e.op));
            w.row(name.clone());
            if let Some(kernel) = e.op.kernel() {
                let prefix = format!("s{s}.{dir}{}{}", e.from, e.to);
                w.lif(&prefix, plane);
                w.weights(c, c * as64(kernel * kernel));
                w.folded_batch_norm(c);
                w.scratch(4 * plane);
            }
        }
        w.row(format!("s{s}.nodes"));
        for j in 1..crate::arch::NODES {
            if edges.iter().any(|e| e.to == j) {
                w.current(format!("s{s}.node{j}"), plane);
            }
        }
        for j in 1..crate::arch::NODES {
            if edges.iter().any(|e| e.backward && e.from == j) {
                w.current(format!("s{s}.node{j}.prev"), plane);
            }
        }
    }

    let (hh, wh) = (h / 2, wd / 2);
    if hh == 0 || wh == 0 {
        return Err(format!(
            "the head's avgpool2 turns the last {h}x{wd} map into nothing; use fewer stages or pool"
        ));
    }
    let d = c * hh * wh;
    w.row("head".into());
    w.batch_norm(c);
    w.lif("head", c * h * wd);
    w.scratch(n.byte_buffer_bytes(d));
    let mut width = d;
    let fc = as64(arch.fc);
    if fc > 0 {
        w.row("head.fc".into());
        w.weights(fc, d);
        w.linear_bias(fc);
        w.lif("head.fc", fc);
        w.scratch(4 * fc);
        width = fc;
    }
    w.row("head.out".into());
    w.weights(k, width);
    w.linear_bias(k);
    w.scratch(4 * k);
    w.current("head.out.acc".into(), k);

    if let Some(ws) = &workspace {
        // The network description: the edge arrays, the stages and the `Network`.
        w.row("descriptors".into());
        let stages = as64(arch.stages);
        w.flash(EDGE_BYTES * as64(edges.len()) * stages + STAGE_BYTES * stages + NETWORK_BYTES);
        w.finish_integer(ws, image);
    } else {
        w.finish_f32();
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
