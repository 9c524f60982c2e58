//! spikenas-firmware: the `no_std` integer runtime for spiking neural networks.
//!
//! This crate is the single numeric truth of spikenas: the host evaluates quantized
//! networks by calling these kernels, and the board application links the same code
//! with the weights as `static` data. There is no heap, no panic handler, no logger
//! and no linker script here; those belong to the board application.
//!
//! # The network
//!
//! [`Network`] describes the float network the host trains (SNASNet-style cells):
//! input pooling, a stem convolution whose current is computed once (direct encoding),
//! stages of (optional) reduction + one 4-node cell, a head (BatchNorm, LIF, 2x2 pool of
//! spikes, one or two linear layers) and a population vote. [`Network::infer`] runs all
//! timesteps of one image in caller-provided memory ([`Workspace`], sized by
//! [`Network::workspace_layout`]). [`NetworkShape`] is its structure without weights
//! (what [`Network::shape`] returns and what the host derives its memory model, MAC
//! counts and layer order from); [`descriptor`] gives the description's own size on
//! the device.
//!
//! # Numeric contract
//!
//! Every choice below is implemented in exactly one place (the file named).
//!
//! * **Pixels** are `u8`, channel-major (`[c][y][x]`). Input pooling ([`input_pool`])
//!   is `floor(sum / p^2)` over non-overlapping `p x p` windows, odd sizes floored.
//! * **Weights** are signed, symmetric, per output channel: `int8` ([`Weights::I8`]) or
//!   `int4` packed two per byte ([`Weights::I4`]: weight `2i` in the low nibble, `2i+1`
//!   in the high nibble, two's complement `-8..=7`, every row padded to a whole byte).
//!   Convolution weights are laid out `[ci][ky][kx][co]`, linear weights `[in][out]`,
//!   so the inner loop over output channels is contiguous (see [`weights`]).
//! * **Accumulators** are `i32` and wrap (they cannot overflow for the layer sizes the
//!   validator accepts: `|acc| <= rows * 128 * 255`).
//! * **Currents** are `i32` in Q12 (`4096` = 1.0) in the *LIF-input domain*: every
//!   current carries spikingjelly's `1/tau = 0.75` input factor already, i.e. the integer
//!   current is `round(4096 * 0.75 * I_float)`. Because all the operations between LIF
//!   layers (convolution, BatchNorm, sums, skip, average pools) are linear, the exporter
//!   folds 0.75 into every requantisation (stem, convolutions, BatchNorm affines, the
//!   hidden linear layer) and the LIF update needs no multiply.
//! * **Requantisation** ([`requant`]): per output channel `c`,
//!   `I = sat_i32(((acc * mult[c] + 2^(shift-1)) >> shift) + bias[c])` in `i64`, i.e.
//!   rounding half up; `bias` is in output (Q12) units; `shift <= 62`; `shift = 0` adds
//!   no rounding term. A standalone BatchNorm on a current is the same formula with the
//!   current as `acc`. BatchNorm, the weight scale, `1/255` for pixels, pooling divisors
//!   and the 0.75 LIF factor all fold into `(mult, shift, bias)`; [`requant::quantize_multiplier`]
//!   is the helper that turns a real scale into `(mult, shift)`.
//! * **Membranes** are `i16` Q12 (threshold 1.0 = 4096, range [-8, 8)), saturating
//!   ([`lif`]): `v = sat_i16(decay(v) + I)`, spike iff `v >= threshold`, then `v = 0`
//!   ([`Reset::Hard`]) or `v -= threshold` ([`Reset::Subtract`]). `decay(v)` is
//!   `v >> n` ([`Decay::Shift`], arithmetic, floor; `n = 2` is tau = 4/3) or
//!   `(v * m) >> 15` ([`Decay::Q15`], floor). State persists over the timesteps of one
//!   image and is zeroed per image.
//! * **Spike maps** are bit-packed `u32` words ([`bits`]): bit `i` of a map is bit
//!   `i % 32` of word `i / 32`, `i = (c * H + y) * W + x`; unused high bits are zero.
//! * **Convolution over spikes** ([`conv_spikes`]) scatters each set bit's weight rows
//!   into `[y][x][co]` accumulators; the reduction's 2x2 average pool is applied by
//!   scattering into the pooled accumulator (a sum: the 1/4 folds into `mult`).
//! * **Average pool 3x3** ([`avgpool3`]) is stride 1, padding 1, count_include_pad:
//!   `floor(sum / 9)` of the i64 window sum, saturated to i32.
//! * **Head pool** ([`avgpool2`]) counts spikes in 2x2 windows (`0..=4`, odd sizes
//!   floored); the linear layer multiplies the count (the 1/4 folds into `mult`).
//! * **Sums of currents** (cell nodes, skip edges, pool edges, requantised outputs,
//!   vote scores) saturate at the `i32` range ([`add`]).
//! * **Vote** ([`vote`]): output neuron `k * cluster + j` belongs to class `k`; a class
//!   score is the saturating sum of its neurons' requantised outputs over all timesteps;
//!   the prediction is the first maximum.
//! * **Counters**: a *synaptic operation* is one executed weight accumulate (one output
//!   channel of one tap of one non-zero input); [`Inference::synops`] counts them.
//!   [`Inference::spikes`] counts every spike of every LIF layer over all timesteps.
//!
//! # Cost on Cortex-M
//!
//! Measured with `scripts/bench-firmware` (QEMU instruction counts over whole
//! inferences, `--release`, rustc 1.96; it prints each network's figures beside the
//! figures before issue 13, recorded in `scripts/bench-firmware.baseline`);
//! `scripts/profile-firmware` shows where they go (per kernel, symbol and line).
//!
//! * **ARMv7E-M** (`thumbv7em-none-eabihf`, Cortex-M4F/M7): spike convolutions with int8
//!   weights accumulate in *packed* `i16` lanes (two per word, [`weights::packed_index`]
//!   order): per 8 output channels two word loads of the weights, one `LDM`, four
//!   `SXTAB16` and one `STM` (1 instruction per synaptic accumulate), fully unrolled for
//!   8, 16 and 32 channels. That is exact only where no accumulator can leave the `i16`
//!   range: [`Network::prepare`] checks it once per network from the weights (per output
//!   channel the sums of the positive and of the negative weights, or for a 2x2-pooled
//!   3x3 convolution the exact bound over a pooled output's 4x4 input window,
//!   [`conv_spikes::ConvShape::fits_i16`]); other layers use `i32` accumulators (the
//!   [`weights`] row kernel: one word load, one `LDM`, four `SXTAB`, one `STM` per 4
//!   channels, 1.75 per accumulate; spike counts and pixels `SXTB16` + `SMLAxB`, 2.25;
//!   int4 `SBFX`). Int4 spike convolutions accumulate in packed lanes too
//!   ([`conv_spikes::scatter_packed_i4`]): a shift and two masks turn a word of 8 nibbles
//!   into bytes that hold 16 times each weight, four `SXTAB16` add them (10 instructions
//!   per 8 accumulates) and the requantisation takes the lanes with its shift raised by 4
//!   (exact; [`conv_spikes::ConvShape::fits_i4_lanes`] proves `|acc| <= 2047`). The 3x3
//!   average pool sums in `i32` with a reciprocal-multiply division where every input
//!   lies within `+-2^27`. Packed int8 3x3 convolutions of 8 and 16 channels on maps at
//!   most 32 wide take the spikes a row at a time: the kernel rows that land, and where,
//!   are worked out once per row, an interior spike runs its nine taps in one assembly
//!   block (three pixel runs of lanes, `LDRD` weights at constant offsets: 7 instructions
//!   per 8 lanes of a tap), a border one tests per-row and per-spike flags. Elsewhere
//!   [`conv_spikes::scatter`] decodes each spike with one `UDIV`; an interior spike of a
//!   3x3 convolution runs its 9 taps with no test, a border one tests flags computed once
//!   per spike. A 3x3 convolution fused with the 2x2 pool
//!   ([`conv_spikes::scatter_packed_pooled`], int8 and int4) sums each input channel's
//!   taps once into four parity kernels of 2 x 2 blocks in `i16` lanes (`SXTB16`,
//!   `SADD16`; one assembly block of 96 instructions per 4 int8 channels), so a spike adds at most two runs of lanes (`LDM`, four `SADD16`, `STM`
//!   per 8 lanes) instead of nine taps; interior columns of rows whose two pooled rows
//!   exist take a loop without tests. Requantisation is `SMMULR` (or `SMMUL`, an add
//!   and a shift for shifts >= 33) and a `QADD`, with no range test where the layer's
//!   accumulator bound allows it, two outputs per loop iteration. A cell node whose
//!   first edge is a skip is not copied: the next convolution's requantisation adds
//!   onto the skip's source directly (the same saturating sums in the same order).
//!   SNASNet's neuron (shift decay, hard reset) runs in assembly, 32 neurons per spike
//!   word, in pairs (one word load and store of two membranes, `LDRD` of two currents,
//!   `QADD`, `SSAT`, then with the decay shift of 2 the threshold tested in both 16-bit
//!   lanes by one `SSUB16`, the reset and the spike bits by two `SEL` and one rotating
//!   `ORR`: 8.5 instructions per neuron; other shifts a conditional reset and spike bit
//!   each, 10.5); a BatchNorm before it is requantised into the scratch first. Conv edges
//!   that read the same node with the same neuron in a row share one LIF layer. The main
//!   job's network shape (16 channels, two stages, fc 256, pool 2) costs 1.90
//!   instructions per synaptic operation (4.69 before issue 13), the 32-channel bench
//!   network 1.55 (3.40), the 8-channel ones 2.88 and 2.46 (5.51, 5.27), the int4
//!   network with skip and average pool edges 3.70 (9.22). The Cortex-M7 (mps2-an500) runs the same code, same counts.
//! * **ARMv6-M** (`thumbv6m-none-eabi`, Cortex-M0/M0+): no divide, no 64-bit multiply,
//!   no unaligned loads, eight low registers. Spike convolutions with int8 weights whose
//!   accumulators fit `i16` ([`conv_spikes::ConvShape::fits_i16`]) run in *carry lanes*
//!   ([`conv_lanes`]): a word holds two accumulators as the integer `lo + 2^16 hi`, so one
//!   `ADDS` adds two; each input channel's weights are expanded into such words when its
//!   first spike arrives, ordered so that the taps of one kernel row are one run of words
//!   on adjacent accumulators (`LDM`/`ADDS`/`STM`, 7 instructions per 6 accumulates,
//!   unrolled for 4- and 8-channel layers, border spikes and pooled kernels included);
//!   2x2-pooled reductions pre-sum the taps that land on one
//!   pooled output (four parity kernels per channel). Other layers use the Thumb-1
//!   assembly row kernels: per 4 output channels one `LDM` and one `STM` of the
//!   accumulators and `LDRB`, `SXTB`, `ADDS` per weight (`MULS` in addition for spike
//!   counts and pixels). The int8 3x3 stem of 4 or 8 channels runs an output row at a
//!   time in assembly, a pixel's accumulators in registers across its three taps of a
//!   kernel row and a zero pixel skipped by one compare. Spike rows are read `32 / w` at
//!   a time ([`bits::for_each_row`]): a group of empty rows costs one read and one test.
//!   Spike coordinates and /9 are multiplies. Requantisation has a
//!   32-bit path for `|acc| <= 2^15` (two `MULS` on the halves of the multiplier) with the
//!   bias folded into the rounding term where nothing can overflow, in assembly for
//!   transposing layers (12 instructions per element stored, 15 accumulated, 16 onto a
//!   skip edge's source, which it reads in place of a copy), their channels queued eight
//!   per call (one `LDM` of six words per channel); the BatchNorm affine the same way, a
//!   current outside the `i16` range stopping its run for the formula; the linear
//!   outputs in runs of 26 instructions per element.
//!   SNASNet's neuron with decay shift 2 runs in assembly (10 instructions per neuron
//!   that does not fire: one unsigned compare sends firing, underflowing and overflowing
//!   neurons to a slow path, which also counts the spike; a whole layer per call, partial
//!   spike word included), a BatchNorm before it
//!   requantised into the scratch first. Input pooling reads aligned images by words (two
//!   16-bit lanes). Linear layers over 2x2 spike counts add
//!   `w + 128` in unsigned 16-bit lanes ([`linear::from_counts_lanes`]: a word of four
//!   weights, one flip and two masks, a `MULS` per two outputs for counts above 1)
//!   where the counts sum to at most 257, and weight expansions read aligned words (the
//!   generated firmware aligns its weights). About 9.95 instructions per synaptic
//!   operation on the main job's 4-channel digits network (20.67 before issue 13), 9.67
//!   and 17.60 on the two 4-channel fc-32 networks (21.52 and 35.33): 2.23 and 2.01
//!   times fewer instructions per inference. Accumulating a 3x3
//!   convolution into the map with a one-pixel border (no per-tap tests) was measured
//!   slower on every core at these map sizes (8x8 and smaller: the wasted border taps
//!   and the larger zeroing cost more).
//!
//! Every fast path returns exactly what the portable formula returns (the unit tests
//! compare them on the host; the device tests compare the device with the host).
#![cfg_attr(not(test), no_std)]

pub mod add;
pub mod avgpool2;
pub mod avgpool3;
pub mod bits;
pub mod conv_lanes;
pub mod conv_pixels;
pub mod conv_spikes;
pub mod descriptor;
pub mod error;
pub mod fill;
pub mod input_pool;
pub mod layout;
pub mod lif;
pub mod linear;
pub mod network;
pub mod requant;
pub mod shape;
pub mod vote;
pub mod weights;

pub use error::{Error, Layer};
pub use layout::{Workspace, WorkspaceLayout};
pub use lif::{Decay, Lif, Reset};
pub use network::{
    Cell, ConvLayer, Edge, Head, Hidden, Inference, LinearLayer, Network, Op, Prepared, Reduction,
    Stage,
};
pub use requant::Requant;
pub use shape::{CellShape, EdgeShape, Geometry, LayerShape, NetworkShape, OpShape, ShapeError};
pub use weights::Weights;

/// Q12 fixed point: the integer that stands for 1.0 in currents and membranes.
pub const ONE_Q12: i32 = 4096;

/// Q15 fixed point: the integer that stands for 1.0 in a [`Decay::Q15`] factor.
pub const ONE_Q15: i32 = 32768;

/// The integer that stands for 1.0 in the output layer's logits and the class scores:
/// Q12, without the `1/tau` input factor of currents (they feed no neuron).
pub const LOGIT_ONE: i32 = ONE_Q12;
