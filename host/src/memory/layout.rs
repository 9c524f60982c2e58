//! The network's memory, layer by layer. This file is the one place that lists every
//! buffer the integer runtime holds, so it can be reconciled with the firmware's exact
//! workspace layout.
//!
//! # The network (exactly what is trained and quantized)
//!
//! ```text
//! input u8 [Cin,H,W] -> avgpool p x p (in place) -> stem conv3x3(Cin->C, pad 1) + BN
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
//! # Flash (per layer)
//!
//! | item | integer runtime | f32 (Linux) |
//! |---|---|---|
//! | weights | per output channel, `bits` wide, packed 2 per byte at 4 bits (each channel's row padded to a byte), the layer's blob padded to 4 bytes | 4 B each |
//! | conv + BN, linear | per output channel: i32 multiplier + i32 bias (8 B) and a u8 shift (array padded to 4 B) | 4 B bias |
//! | stand-alone BN | the same 8 B + shift per channel, no weights | 4 B scale + 4 B bias |
//! | code | the target's `code_reserve_bytes` | 0 |
//!
//! LIF decay and threshold are global fixed-point constants in the runtime code.
//!
//! # RAM buffers (each placed whole into one region)
//!
//! | buffer | elements | integer runtime | f32 (Linux) |
//! |---|---|---|---|
//! | `input` | Cin*H*W image; pooling by p is done in place | u8 | f32 |
//! | `stem.out` | C*H_0*W_0 stem current, kept for all T (constant input); also stage 0's node 0 | i32 | f32 |
//! | `sS.reduce.v` / `.spikes` | C_{s-1}*H_{s-1}*W_{s-1} LIF membrane / spike map | i16 / bit-packed u32 words | f32 / f32 |
//! | `sS.node0` | C_s*H_s*W_s reduction output (s > 0) | i32 | f32 |
//! | `sS.eIJ.v` / `.spikes` | C_s*H_s*W_s per conv edge (`bIJ` for backward) | i16 / u32 words | f32 / f32 |
//! | `sS.nodeJ` | C_s*H_s*W_s for every node J in 1..=3 that has an incoming edge | i32 | f32 |
//! | `sS.nodeJ.prev` | previous-step copy of every node J that feeds a backward edge | i32 | f32 |
//! | `head.v` / `.spikes` | C_S*H_S*W_S, the head's LIF | i16 / u32 words | f32 / f32 |
//! | `head.fc.v` / `.spikes` | fc, the hidden classifier LIF (fc > 0) | i16 / u32 words | f32 / f32 |
//! | `head.out.acc` | classes*cluster output accumulators, summed over T | i32 | f32 |
//! | `scratch` | one buffer, the largest need of any layer: the reduction conv's output plane before pooling (H_{s-1}*W_{s-1}) and the head's pooled spike counts (D) | i32 / u8 | f32 |
//! | `weights` | Linux only: the f32 model file loaded into DRAM | | f32 |
//! | `reserve` | stack + runtime from the board profile | | |
//!
//! Every buffer is rounded up to a multiple of 4 bytes.

use crate::arch::{Arch, Op};

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
    fn weight_bytes(self, out_channels: u64, per_channel: u64) -> u64 {
        match self {
            Numerics::Integer { weight_bits } => {
                let row = (per_channel * weight_bits as u64).div_ceil(8);
                align4(out_channels * row)
            }
            Numerics::Float32 => out_channels * per_channel * 4,
        }
    }

    /// Constants of a conv/linear layer with BN or bias folded in.
    fn folded_const_bytes(self, channels: u64) -> u64 {
        match self {
            Numerics::Integer { .. } => 8 * channels + align4(channels),
            Numerics::Float32 => 4 * channels,
        }
    }

    /// Constants of a stand-alone batch-norm.
    fn batch_norm_const_bytes(self, channels: u64) -> u64 {
        match self {
            Numerics::Integer { .. } => 8 * channels + align4(channels),
            Numerics::Float32 => 8 * channels,
        }
    }

    fn membrane_bytes(self, neurons: u64) -> u64 {
        match self {
            Numerics::Integer { .. } => align4(2 * neurons),
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
            Numerics::Integer { .. } => align4(elements),
            Numerics::Float32 => 4 * elements,
        }
    }
}

/// Walks the network, adding rows and buffers. Every buffer is created by one of
/// `input`, `current`, `lif` or `finish`.
struct Walk {
    n: Numerics,
    rows: Vec<LayerRow>,
    buffers: Vec<Buffer>,
}

impl Walk {
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

    /// Weights of `out` output channels with `per_channel` inputs each.
    fn weights(&mut self, out: u64, per_channel: u64) {
        let bytes = self.n.weight_bytes(out, per_channel);
        let row = self.last();
        row.params += out * per_channel;
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

    fn input(&mut self, elements: u64) {
        let bytes = align4(self.n.byte_buffer_bytes(elements));
        self.last().activation_bytes += bytes;
        self.buffer("input".into(), BufferKind::Input, bytes);
    }

    /// An i32 current buffer (f32 on Linux).
    fn current(&mut self, name: String, elements: u64) {
        let bytes = 4 * elements;
        self.last().activation_bytes += bytes;
        self.buffer(name, BufferKind::Current, bytes);
    }

    /// A LIF layer: its membrane state and its spike map.
    fn lif(&mut self, prefix: &str, neurons: u64) {
        let (state, spikes) = (self.n.membrane_bytes(neurons), self.n.spike_bytes(neurons));
        let row = self.last();
        row.state_bytes += state;
        row.spike_bytes += spikes;
        self.buffer(format!("{prefix}.v"), BufferKind::Membrane, state);
        self.buffer(format!("{prefix}.spikes"), BufferKind::Spikes, spikes);
    }

    fn scratch(&mut self, bytes: u64) {
        let row = self.last();
        row.scratch_bytes = row.scratch_bytes.max(align4(bytes));
    }

    /// The shared scratch buffer, the f32 weights on Linux, the reserve.
    fn finish(&mut self, reserve_bytes: u64) {
        let scratch = self.rows.iter().map(|r| r.scratch_bytes).max().unwrap_or(0);
        if scratch > 0 {
            self.buffer("scratch".into(), BufferKind::Scratch, scratch);
        }
        if self.n == Numerics::Float32 {
            let weights = self
                .rows
                .iter()
                .map(|r| r.weight_bytes + r.const_bytes)
                .sum();
            self.buffer("weights".into(), BufferKind::Weights, weights);
        }
        if reserve_bytes > 0 {
            self.buffer("reserve".into(), BufferKind::Reserve, reserve_bytes);
        }
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
    let mut w = Walk {
        n,
        rows: Vec::with_capacity(32),
        buffers: Vec::with_capacity(48),
    };

    w.row("input".into());
    w.input(cin * as64(input.height) * as64(input.width));

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
    let c0 = as64(arch.channels);
    w.row("stem".into());
    w.weights(c0, cin * 9);
    w.folded_batch_norm(c0);
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
            w.scratch(4 * hp * wp);
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
        width = fc;
    }
    w.row("head.out".into());
    w.weights(k, width);
    w.linear_bias(k);
    w.current("head.out.acc".into(), k);

    if code_bytes > 0 {
        w.row("code".into());
        w.last().flash_bytes = code_bytes;
    }
    w.finish(reserve_bytes);
    Ok(Layout {
        rows: w.rows,
        buffers: w.buffers,
    })
}
