//! Convolution over a bit-packed spike map: event-driven scatter.
//!
//! For every set input bit `(ci, y, x)` and every kernel tap `(ky, kx)` whose output
//! `(oy, ox) = (y + k/2 - ky, x + k/2 - kx)` lies inside the map (zero padding `k/2`,
//! stride 1, same size), the weight row `[ci][ky][kx][..]` is added to the accumulator
//! row `[oy][ox][..]` (`[y][x][co]` layout, output channels contiguous). Only executed
//! accumulates cost anything: the inner loop is one load, one add and one store per
//! output channel (unrolled by 4).
//!
//! [`scatter_packed`] does the same into `i16` lanes, two per word (ARMv7E-M's `SXTAB16`
//! adds two weights per instruction), for layers whose weights keep every accumulator in
//! the `i16` range ([`ConvShape::fits_i16`]).
//!
//! With `pool2`, the output is the 2x2 *sum* pool of the convolution (stride 2, odd
//! sizes floored): taps land on `[oy/2][ox/2][..]` and outputs in the dropped last
//! row/column are skipped. The 1/4 of the average folds into the requantisation.

use crate::bits;
use crate::weights::{with_kernel, I4x2Any, I4x2Fixed, I8x2Any, I8x2Fixed, RowKernel, Weights};

/// Shape of a same-size, stride-1 convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConvShape {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel size (odd; padding `k / 2`).
    pub k: usize,
    /// Input (and unpooled output) height.
    pub h: usize,
    /// Input (and unpooled output) width.
    pub w: usize,
}

impl ConvShape {
    /// Number of `i32` accumulators the output needs (`[y][x][co]`).
    pub const fn acc_len(&self, pool2: bool) -> usize {
        if pool2 {
            (self.h / 2) * (self.w / 2) * self.cout
        } else {
            self.h * self.w * self.cout
        }
    }

    /// Number of weight rows (`cin * k * k`).
    pub const fn rows(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// An upper bound of `|acc|` for inputs in `0..=max_input` (1 for spikes, 4 for the
    /// pooled scatter's 2x2 sums, 255 for pixels): rows x largest |weight| x max_input,
    /// saturated at `u32::MAX` (what [`crate::requant::hwc_to_chw_bounded`] takes).
    pub fn acc_bound(&self, weights: &Weights, max_input: u32) -> u32 {
        let w: u64 = match weights {
            Weights::I8(_) => 128,
            Weights::I4(_) => 8,
        };
        let b = self.rows() as u64 * w * max_input as u64;
        b.min(u32::MAX as u64) as u32
    }

    /// True when every accumulator of [`scatter`] over binary spikes stays in the `i16`
    /// range for *every* spike map, so that [`scatter_packed`] is exact: per output
    /// channel, the sum of the positive weights and the sum of the negative weights are
    /// at most `2^15 - 1` in magnitude. With `pool2` a pooled output receives a weight row
    /// from up to four input positions: the test takes four times the sums, then, for
    /// 3x3 kernels that fail it, the exact bound over the 4x4 input window of a pooled
    /// output (`pooled_column_bound`). Int8 weights only (`false` for int4). Reads every
    /// weight unless `rows * 128` (times 4) already fits.
    pub fn fits_i16(&self, weights: &Weights, pool2: bool) -> bool {
        let Weights::I8(w) = weights else {
            return false;
        };
        let (rows, cout) = (self.rows(), self.cout);
        let lim: u32 = if pool2 { 32767 / 4 } else { 32767 };
        if rows * 128 <= lim as usize {
            return true;
        }
        if w.len() < rows * cout {
            return false;
        }
        let w = &w[..rows * cout];
        // The column sums first (fast); for pooled 3x3 kernels that fail them, the exact
        // (slower) window test.
        let fits = if cout % 4 == 0 {
            column_sums_fit_x4(w, cout, lim)
        } else {
            column_sums_fit(w, cout, lim)
        };
        fits || (pool2 && self.k == 3 && pooled_column_bound(w, self.cin, cout) <= 32767)
    }

    /// True when [`scatter_packed_i4`] is exact: int4 weights, and 16 times every
    /// accumulator of [`scatter`] over binary spikes stays in the `i16` range for every
    /// spike map (the lanes hold `16 acc`), i.e. `|acc| <= 2047`. The same tests as
    /// [`ConvShape::fits_i16`] with that limit: `rows * 8` (times 4 with `pool2`), then the
    /// per-channel sums of the positive and of the negative weights, then for 2x2-pooled
    /// 3x3 kernels the exact bound over a pooled output's 4x4 input window.
    pub fn fits_i4_lanes(&self, weights: &Weights, pool2: bool) -> bool {
        const LIM: u32 = 32767 / 16;
        let Weights::I4(_) = weights else {
            return false;
        };
        let (rows, cout) = (self.rows(), self.cout);
        let lim = if pool2 { LIM / 4 } else { LIM };
        if rows * 8 <= lim as usize {
            return true;
        }
        if weights.len() < weights.storage_len(rows, cout) {
            return false;
        }
        let get = |r: usize, c: usize| weights.get(r, cout, c) as i32;
        column_sums_fit_by(rows, cout, lim, get)
            || (pool2 && self.k == 3 && pooled_column_bound_by(self.cin, cout, get) <= LIM)
    }
}

/// Calls `f(row, acc_offset)` for every kernel tap of input `(ci, y, x)` that lands
/// inside the output (pooled output with `pool2`).
#[inline(always)]
pub(crate) fn for_each_tap(
    s: &ConvShape,
    pool2: bool,
    ci: usize,
    y: usize,
    x: usize,
    mut f: impl FnMut(usize, usize),
) {
    let pad = s.k / 2;
    let p = pool2 as usize;
    // Rows/columns of the convolution output that survive the (optional) pool.
    let (oh, ow) = ((s.h >> p) << p, (s.w >> p) << p);
    let acc_w = s.w >> p;
    for ky in 0..s.k {
        let oy = (y + pad).wrapping_sub(ky);
        if oy >= oh {
            continue;
        }
        let row_base = (ci * s.k + ky) * s.k;
        let acc_row = (oy >> p) * acc_w;
        for kx in 0..s.k {
            let ox = (x + pad).wrapping_sub(kx);
            if ox >= ow {
                continue;
            }
            f(row_base + kx, (acc_row + (ox >> p)) * s.cout);
        }
    }
}

/// `[lo, hi]` of the kernel offsets `kk` whose output `c + pad - kk` lies in `0..size`
/// (empty, `lo > hi`, when none does).
#[inline(always)]
fn tap_range(c: usize, pad: usize, k: usize, size: usize) -> (usize, usize) {
    let lo = (c + pad + 1).saturating_sub(size);
    let hi = if c + pad < k { c + pad } else { k - 1 };
    (lo, hi)
}

/// True when, for every column `c` of the `rows x cout` matrix `w`, the sum of its
/// positive entries and the magnitude of the sum of its negative entries are both
/// `<= lim`.
pub(crate) fn column_sums_fit(w: &[i8], cout: usize, lim: u32) -> bool {
    if cout == 0 {
        return true;
    }
    column_sums_fit_by(w.len() / cout, cout, lim, |r, c| w[r * cout + c] as i32)
}

/// [`column_sums_fit`] over a `rows x cout` matrix read through `get(row, col)`.
fn column_sums_fit_by(
    rows: usize,
    cout: usize,
    lim: u32,
    get: impl Fn(usize, usize) -> i32,
) -> bool {
    (0..cout).all(|c| {
        let (mut pos, mut neg) = (0u32, 0u32);
        for r in 0..rows {
            let v = get(r, c);
            if v > 0 {
                pos += v as u32;
            } else {
                neg += v.unsigned_abs();
            }
        }
        pos <= lim && neg <= lim
    })
}

/// The largest `|acc|` that a 3x3 convolution (weights `[ci][ky][kx][co]`) sum-pooled
/// 2x2 can reach over binary inputs: a pooled output sums the convolution over a 2x2
/// block, which reads a 4x4 input window; input offset `(dy, dx)` of that window meets
/// the taps `ky` in `{0}, {0, 1}, {1, 2}, {2}` for `dy = 0..4` (the same for `kx`), so its
/// weight is `T = sum of w over those taps` and, per output channel, the accumulator lies
/// in `[-sum of max(-T, 0), sum of max(T, 0)]` over channels and offsets (border outputs
/// see fewer inputs). Returns the maximum over output channels of both ends.
pub(crate) fn pooled_column_bound(w: &[i8], cin: usize, cout: usize) -> u32 {
    pooled_column_bound_by(cin, cout, |r, c| w[r * cout + c] as i32)
}

/// [`pooled_column_bound`] over weights read through `get(row, col)`.
fn pooled_column_bound_by(cin: usize, cout: usize, get: impl Fn(usize, usize) -> i32) -> u32 {
    let mut worst = 0u32;
    for co in 0..cout {
        let (mut pos, mut neg) = (0u32, 0u32);
        for ci in 0..cin {
            let tap = |ky: usize, kx: usize| get(ci * 9 + ky * 3 + kx, co);
            // Row sums over the kx sets, then column sums over the ky sets.
            let mut r = [[0i32; 4]; 3];
            for (ky, row) in r.iter_mut().enumerate() {
                let (a, b, c) = (tap(ky, 0), tap(ky, 1), tap(ky, 2));
                *row = [a, a + b, b + c, c];
            }
            for ((&a, &b), &c) in r[0].iter().zip(&r[1]).zip(&r[2]) {
                for t in [a, a + b, b + c, c] {
                    if t > 0 {
                        pos += t as u32;
                    } else {
                        neg += t.unsigned_abs();
                    }
                }
            }
        }
        worst = worst.max(pos).max(neg);
    }
    worst
}

/// [`column_sums_fit`] for `cout % 4 == 0`, four columns at a time in 16-bit lanes
/// ([`column_group_sums`]): per column the saturating (at 65535) sum of the positive
/// entries `P` and the saturating (at +-2^15) signed sum `S`; the negative part is
/// `N = P - S`. Conservative: saturation makes `P` or the computed `N` exceed any
/// `lim < 2^15` (a positive saturation of `S` needs `P > 2^15`; after a negative one,
/// `S` can only rise by the positive entries that follow, so `P - S >= 2^15`).
fn column_sums_fit_x4(w: &[i8], cout: usize, lim: u32) -> bool {
    let rows = w.len() / cout;
    (0..cout / 4).all(|g| {
        let [p0, p1, s0, s1] = column_group_sums(w, cout, rows, 4 * g);
        // Lane order: word 0 holds columns (4g, 4g + 2), word 1 (4g + 1, 4g + 3).
        [(p0, s0), (p1, s1)].iter().all(|&(p, s)| {
            [
                (p & 0xffff, s as u16 as i16),
                (p >> 16, (s >> 16) as u16 as i16),
            ]
            .iter()
            .all(|&(p, s)| p <= lim && p as i32 - s as i32 <= lim as i32)
        })
    })
}

/// Columns `j..j + 4` of the `rows x cout` matrix `w` in 16-bit lanes: `[P0, P1, S0, S1]`,
/// `P` the sums of `max(w, 0)` saturated at 65535 (`UQADD16`), `S` the signed sums
/// saturated at the i16 range (`QADD16`); word 0 = columns `(j, j + 2)`, word 1 =
/// `(j + 1, j + 3)`, low lane first. One `SXTB16` pair, two `QADD16`, two `USAT16` and two
/// `UQADD16` per row on ARMv7E-M.
fn column_group_sums(w: &[i8], cout: usize, rows: usize, j: usize) -> [u32; 4] {
    assert!(rows == 0 || j + 4 + (rows - 1) * cout <= w.len());
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let (mut p0, mut p1, mut s0, mut s1) = (0u32, 0u32, 0u32, 0u32);
        if rows > 0 {
            // SAFETY: reads 4 bytes (unaligned LDR, allowed) at j + r * cout for
            // r < rows, inside `w` by the assertion above; registers only otherwise.
            unsafe {
                core::arch::asm!(
                    "2:",
                    "ldr {t}, [{p}]",
                    "add {p}, {p}, {stride}",
                    "sxtb16 {a}, {t}",
                    "sxtb16 {t}, {t}, ror #8",
                    "qadd16 {s0}, {s0}, {a}",
                    "qadd16 {s1}, {s1}, {t}",
                    "usat16 {a}, #15, {a}",
                    "usat16 {t}, #15, {t}",
                    "uqadd16 {p0}, {p0}, {a}",
                    "uqadd16 {p1}, {p1}, {t}",
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    p = inout(reg) w.as_ptr().add(j) => _,
                    stride = in(reg) cout,
                    n = inout(reg) rows => _,
                    t = out(reg) _,
                    a = out(reg) _,
                    p0 = inout(reg) p0,
                    p1 = inout(reg) p1,
                    s0 = inout(reg) s0,
                    s1 = inout(reg) s1,
                    options(nostack, readonly),
                );
            }
        }
        [p0, p1, s0, s1]
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        // The same lane arithmetic in portable code.
        let mut lanes = [[0u16; 2]; 2];
        let mut sums = [[0i16; 2]; 2];
        for r in 0..rows {
            let row = &w[j + r * cout..j + r * cout + 4];
            for (k, &v) in row.iter().enumerate() {
                let (word, lane) = (k & 1, k >> 1);
                lanes[word][lane] = lanes[word][lane].saturating_add(v.max(0) as u16);
                sums[word][lane] = sums[word][lane].saturating_add(v as i16);
            }
        }
        let pack = |lo: u16, hi: u16| lo as u32 | (hi as u32) << 16;
        [
            pack(lanes[0][0], lanes[0][1]),
            pack(lanes[1][0], lanes[1][1]),
            pack(sums[0][0] as u16, sums[0][1] as u16),
            pack(sums[1][0] as u16, sums[1][1] as u16),
        ]
    }
}

/// True where [`scatter_packed`] is faster than [`scatter`] (ARMv7E-M's `SXTAB16`), so
/// that [`crate::Network::infer`] uses it wherever it is exact.
pub const PACKED_PAYS: bool = cfg!(all(target_arch = "arm", target_feature = "dsp"));

/// True where the packed path is compiled at all: where it pays, and off ARM (the host,
/// whose tests compare it with the `i32` path); ARMv6-M firmware leaves it out.
pub(crate) const PACKED_BUILT: bool = PACKED_PAYS || cfg!(not(target_arch = "arm"));

/// True where division is one instruction (ARMv7-M's UDIV, or not an ARM core at all).
pub(crate) const HW_DIV: bool = cfg!(any(not(target_arch = "arm"), target_feature = "thumb2"));

/// Division by a layer constant `d`: a hardware divide, or on cores without one
/// (ARMv6-M) a multiply by `ceil(2^16 / d)` and a shift, exact for every `n` with
/// `n * d < 2^16` (checked when the divider is made; larger maps divide in software).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DivBy {
    d: usize,
    magic: u32,
    multiply: bool,
}

impl DivBy {
    /// A divider by `d >= 1` for numerators `n <= max`.
    pub(crate) fn new(d: usize, max: usize, hardware: bool) -> Self {
        let multiply = !hardware && max.saturating_mul(d) < 1 << 16;
        DivBy {
            d,
            magic: (1u32 << 16).div_ceil(d as u32),
            multiply,
        }
    }

    /// `n / d`.
    #[inline(always)]
    pub(crate) fn div(self, n: usize) -> usize {
        if self.multiply {
            ((n as u32 * self.magic) >> 16) as usize
        } else {
            n / self.d
        }
    }
}

/// Calls `f(c, pix)` for every set bit `c * plane + pix` of the first `channels * plane`
/// bits of `map`, in increasing order (bits past the end are ignored).
#[inline(always)]
pub(crate) fn for_each_spike(
    map: &[u32],
    channels: usize,
    plane: usize,
    mut f: impl FnMut(usize, usize),
) {
    let n = channels * plane;
    if n == 0 {
        return;
    }
    let words = bits::words(n);
    let tail = if n % 32 == 0 {
        u32::MAX
    } else {
        (1u32 << (n % 32)) - 1
    };
    let (mut c, mut c_start, mut c_end) = (0usize, 0usize, plane);
    for (wi, &word) in map[..words].iter().enumerate() {
        let mut bits = if wi + 1 == words { word & tail } else { word };
        while bits != 0 {
            let i = wi * 32 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            while i >= c_end {
                c += 1;
                c_start = c_end;
                c_end += plane;
            }
            f(c, i - c_start);
        }
    }
}

/// The three taps `kx = 0, 1, 2` of one kernel row: weight rows `w + kx * stride` into
/// accumulators `a + c_off[kx]` where `cols[kx]` (unrolled, so that the offsets stay in
/// registers).
///
/// # Safety
/// Every row/accumulator pair with `cols[kx]` set must be valid for `kern.add`.
#[inline(always)]
unsafe fn tap_row<K: RowKernel>(
    kern: K,
    w: *const u8,
    a: *mut K::Acc,
    cols: [bool; 3],
    c_off: [usize; 3],
) {
    let stride = kern.stride();
    // SAFETY: the caller guarantees the pairs that are used.
    unsafe {
        if cols[0] {
            kern.add(w, a.wrapping_add(c_off[0]));
        }
        if cols[1] {
            kern.add(w.wrapping_add(stride), a.wrapping_add(c_off[1]));
        }
        if cols[2] {
            kern.add(w.wrapping_add(2 * stride), a.wrapping_add(c_off[2]));
        }
    }
}

/// True where packed int8 3 x 3 layers take [`scatter_rows3`] (ARMv7E-M, whose nine-tap
/// kernel is in assembly; the host, whose tests compare it with the float convolution).
const ROWS3: bool = !cfg!(all(target_arch = "arm", not(target_feature = "thumb2")));

/// True for the packed int8 convolutions [`scatter_packed`] takes a spike row at a time
/// on ARMv7E-M (`scatter_rows3`): 3 x 3 kernels without the pool, 8 or 16 output
/// channels, maps at most 32 wide. Their weight rows cost little beyond their synaptic
/// operations there; the host's latency model counts them apart.
pub const fn row_wise(k: usize, cout: usize, w: usize, pool2: bool) -> bool {
    k == 3 && !pool2 && (cout == 8 || cout == 16) && w <= 32
}

/// [`scatter_rows`] for a 3 x 3 kernel without the pool on rows of at most 32 columns, a
/// spike row at a time: the kernel rows that land, and where, are worked out once per
/// row instead of per spike (no division), and the columns `1..w - 1` of rows inside
/// the map take [`RowKernel::add3x3`] with no test. Not inlined (one copy per width).
/// Returns the taps executed.
///
/// # Safety
/// As [`scatter_rows`], with `s.k == 3` and `s.w <= 32`.
#[inline(never)]
unsafe fn scatter_rows3<K: RowKernel>(
    spikes: &[u32],
    s: &ConvShape,
    kern: K,
    w: *const u8,
    acc: *mut K::Acc,
) -> usize {
    let (cin, h, wd, cout, stride) = (s.cin, s.h, s.w, s.cout, kern.stride());
    let ay = wd * cout;
    let interior = if wd > 2 {
        ((1u32 << (wd - 1)) - 1) & !1
    } else {
        0
    };
    let mut taps = 0usize;
    // SAFETY (every pointer below): tap (ky, kx) of input (c, y, x) reads weight row
    // (c * 3 + ky) * 3 + kx and writes output (y + 1 - ky, x + 1 - kx), which the ranges
    // keep inside the h x w map; pointers stepped past the last tap are never used.
    unsafe {
        for c in 0..cin {
            let wc = w.add(c * 9 * stride);
            crate::bits::for_each_row(spikes, c * h * wd, h, wd, |y, mut r| {
                if y >= 1 && y + 1 < h {
                    // Output rows y + 1, y, y - 1 all exist: the interior columns take the
                    // nine taps, from the output left of and below the spike.
                    let mut inner = r & interior;
                    r &= !interior;
                    let a_row = acc.add((y + 1) * ay).wrapping_sub(cout);
                    while inner != 0 {
                        let x = inner.trailing_zeros() as usize;
                        inner &= inner - 1;
                        taps += 9;
                        kern.add3x3(wc, a_row.add(x * cout), cout, ay);
                    }
                }
                // The other spikes: kernel row ky lands on output row y + 1 - ky where
                // it exists (flags per row), column kx on x + 1 - kx (flags per spike).
                let rows = [y + 1 < h, true, y > 0];
                let nky = 1 + rows[0] as usize + rows[2] as usize;
                let a_row = acc.add(y * ay);
                while r != 0 {
                    let x = r.trailing_zeros() as usize;
                    r &= r - 1;
                    let cols = [x + 1 < wd, true, x > 0];
                    taps += nky * (1 + cols[0] as usize + cols[2] as usize);
                    let c_off = [
                        (x + 1) * cout,
                        x * cout,
                        x.wrapping_sub(1).wrapping_mul(cout),
                    ];
                    for (ky, &land) in rows.iter().enumerate() {
                        if land {
                            let a = a_row.wrapping_add(ay).wrapping_sub(ky * ay);
                            tap_row(kern, wc.add(3 * ky * stride), a, cols, c_off);
                        }
                    }
                }
            });
        }
    }
    taps
}

/// The scatter loop for one row kernel (see [`scatter`]); returns the taps executed.
///
/// # Safety
/// `w` must hold `shape.rows()` rows of `kern.stride()` bytes and `acc` must hold
/// `shape.acc_len(pool2)` accumulators; the kernel's rows hold `shape.cout` weights.
#[inline(always)]
unsafe fn scatter_rows<K: RowKernel>(
    spikes: &[u32],
    s: &ConvShape,
    kern: K,
    w: *const u8,
    pool2: bool,
    acc: *mut K::Acc,
) -> usize {
    let (k, pad, cout, stride) = (s.k, s.k / 2, s.cout, kern.stride());
    let (h, wd) = (s.h, s.w);
    let plane = h * wd;
    if plane == 0 {
        return 0;
    }
    let div = DivBy::new(wd, plane - 1, HW_DIV);
    // Weight bytes per input channel; output strides of one row and one column.
    let (wc_len, ay) = (k * k * stride, wd * cout);
    let (k1, k3) = (k == 1 && !pool2, k == 3 && !pool2);
    let (p3, pw) = (k == 3 && pool2, wd / 2);
    let mut taps = 0usize;
    // SAFETY (every pointer below): a tap (ky, kx) of input (c, y, x) reads weight row
    // (c * k + ky) * k + kx < cin * k * k and, when its output (y + pad - ky,
    // x + pad - kx) lies inside the h x w map (or its pooled output inside
    // h/2 x w/2), writes the `cout` accumulators of that output; the ranges below keep
    // exactly those taps. Pointers that step past the last tap are never dereferenced.
    for_each_spike(spikes, s.cin, plane, |c, pix| unsafe {
        let wc = w.add(c * wc_len);
        if k1 {
            taps += 1;
            kern.add(wc, acc.add(pix * cout));
            return;
        }
        let y = div.div(pix);
        let x = pix - y * wd;
        if k3 && y.wrapping_sub(1) < h.wrapping_sub(2) && x.wrapping_sub(1) < wd.wrapping_sub(2) {
            // An interior spike (most of them): all 9 taps land, the weight rows are
            // consecutive and tap (ky, kx) writes output (y + 1 - ky, x + 1 - kx): no
            // per-tap test, one pointer step per tap.
            taps += 9;
            kern.add3x3(wc, acc.add((pix + wd - 1) * cout), cout, ay);
        } else if k3 || p3 {
            // The three rows and columns of taps: ky = 0, 1, 2 land on output row y + 1, y,
            // y - 1 (kx the same for columns); with the pool, on pooled row (y + 1) / 2,
            // y / 2, (y - 1) / 2 when y + 1, y, y - 1 lie in 0..2 * (h / 2). Per tap:
            // one test of a flag computed once per spike and one row kernel call.
            let (oh, ow) = if pool2 { (h & !1, wd & !1) } else { (h, wd) };
            let p = pool2 as usize;
            let rows = [y + 1 < oh, y < oh, y > 0];
            let cols = [x + 1 < ow, x < ow, x > 0];
            let n = |v: [bool; 3]| v[0] as usize + v[1] as usize + v[2] as usize;
            taps += n(rows) * n(cols);
            // Accumulator offsets (elements) of the three output rows and columns; invalid
            // ones are never used (their wrapping values are harmless).
            let row_w = (wd >> p) * cout;
            let r_off = [
                ((y + 1) >> p) * row_w,
                (y >> p) * row_w,
                (y.wrapping_sub(1) >> p).wrapping_mul(row_w),
            ];
            let c_off = [
                ((x + 1) >> p) * cout,
                (x >> p) * cout,
                (x.wrapping_sub(1) >> p).wrapping_mul(cout),
            ];
            for ky in 0..3 {
                if rows[ky] {
                    tap_row(
                        kern,
                        wc.wrapping_add(3 * ky * stride),
                        acc.wrapping_add(r_off[ky]),
                        cols,
                        c_off,
                    );
                }
            }
        } else if !pool2 {
            let (ky0, ky1) = tap_range(y, pad, k, h);
            let (kx0, kx1) = tap_range(x, pad, k, wd);
            if ky0 > ky1 || kx0 > kx1 {
                return;
            }
            let (ny, nx) = (ky1 + 1 - ky0, kx1 + 1 - kx0);
            taps += ny * nx;
            let mut wr = wc.add((ky0 * k + kx0) * stride);
            let mut ar = acc.add(((y + pad - ky0) * wd + x + pad - kx0) * cout);
            for _ in 0..ny {
                let (mut wp, mut ap) = (wr, ar);
                for _ in 0..nx {
                    kern.add(wp, ap);
                    wp = wp.wrapping_add(stride);
                    ap = ap.wrapping_sub(cout);
                }
                wr = wr.wrapping_add(k * stride);
                ar = ar.wrapping_sub(ay);
            }
        } else {
            // The 2x2 sum pool: output (oy, ox) lands on (oy / 2, ox / 2) when
            // oy < 2 * (h / 2) and ox < 2 * (w / 2).
            let (ky0, ky1) = tap_range(y, pad, k, h & !1);
            let (kx0, kx1) = tap_range(x, pad, k, wd & !1);
            if ky0 > ky1 || kx0 > kx1 {
                return;
            }
            taps += (ky1 + 1 - ky0) * (kx1 + 1 - kx0);
            for ky in ky0..=ky1 {
                let row = ((y + pad - ky) >> 1) * pw;
                let wr = wc.add(ky * k * stride);
                for kx in kx0..=kx1 {
                    let a = acc.add((row + ((x + pad - kx) >> 1)) * cout);
                    kern.add(wr.add(kx * stride), a);
                }
            }
        }
    });
    taps
}

/// Convolves the spike map `spikes` (`[ci][y][x]` bits) into `acc` (zeroed first,
/// `shape.acc_len(pool2)` entries, `[y][x][co]`). Returns the synaptic operations
/// executed (accumulates).
pub fn scatter(
    spikes: &[u32],
    shape: &ConvShape,
    weights: Weights,
    pool2: bool,
    acc: &mut [i32],
) -> u64 {
    let cout = shape.cout;
    let acc = &mut acc[..shape.acc_len(pool2)];
    crate::fill::zero(acc);
    if cout == 0 || shape.k == 0 {
        return 0;
    }
    let acc = acc.as_mut_ptr();
    let taps = with_kernel!(weights, shape.rows(), cout, |kern, w| {
        // SAFETY: `with_kernel!` checked the weight storage, `acc` has acc_len entries
        // and the kernel's row length is `cout`.
        unsafe { scatter_rows(spikes, shape, kern, w, pool2, acc) }
    });
    bits::synops(taps, cout)
}

/// [`scatter`] into *packed* `i16` accumulators: `acc` holds `shape.acc_len(pool2) / 2`
/// words, each two `i16` lanes, channels of a pixel in the order of
/// [`crate::weights::packed_index`] (read them with [`as_i16`] and
/// [`crate::requant::hwc16_to_chw_bounded`]). Needs `shape.cout % 4 == 0`; the result
/// equals [`scatter`]'s only where [`ConvShape::fits_i16`] holds (the lanes wrap).
/// Returns the synaptic operations executed.
pub fn scatter_packed(
    spikes: &[u32],
    shape: &ConvShape,
    weights: &[i8],
    pool2: bool,
    acc: &mut [i32],
) -> u64 {
    let cout = shape.cout;
    assert!(cout % 4 == 0, "packed accumulators need cout % 4 == 0");
    let w = weights.as_ptr() as *const u8;
    let len = shape.rows() * cout;
    // SAFETY (every arm): the weights hold `rows` rows of `cout` bytes (checked by
    // `scatter_lanes`), and the kernel's rows hold `cout` weights.
    let rows3 = ROWS3 && row_wise(shape.k, cout, shape.w, pool2);
    scatter_lanes(shape, pool2, acc, weights.len() >= len, |acc| unsafe {
        match cout {
            8 if rows3 => scatter_rows3(spikes, shape, I8x2Fixed::<8>, w, acc),
            16 if rows3 => scatter_rows3(spikes, shape, I8x2Fixed::<16>, w, acc),
            8 => scatter_rows(spikes, shape, I8x2Fixed::<8>, w, pool2, acc),
            16 => scatter_rows(spikes, shape, I8x2Fixed::<16>, w, pool2, acc),
            32 => scatter_rows(spikes, shape, I8x2Fixed::<32>, w, pool2, acc),
            _ => scatter_rows(spikes, shape, I8x2Any(cout), w, pool2, acc),
        }
    })
}

/// [`scatter_packed`] for packed int4 weights (rows of `cout / 2` bytes): the lanes hold
/// **16 times** [`scatter`]'s accumulators, channels in the order of
/// [`crate::weights::packed_index_i4`] (requantise them with the shift raised by 4, see
/// [`crate::weights`]). Needs `shape.cout % 8 == 0`; exact only where
/// [`ConvShape::fits_i4_lanes`] holds. Returns the synaptic operations executed.
pub fn scatter_packed_i4(
    spikes: &[u32],
    shape: &ConvShape,
    weights: &[u8],
    pool2: bool,
    acc: &mut [i32],
) -> u64 {
    let cout = shape.cout;
    assert!(cout % 8 == 0, "packed int4 accumulators need cout % 8 == 0");
    let w = weights.as_ptr();
    let len = shape.rows() * cout / 2;
    // SAFETY (every arm): the weights hold `rows` rows of `cout / 2` bytes (checked by
    // `scatter_lanes`), and the kernel's rows hold `cout` weights. Two unrolled widths
    // only (int4 networks are the small ones): each costs flash.
    scatter_lanes(shape, pool2, acc, weights.len() >= len, |acc| unsafe {
        match cout {
            8 => scatter_rows(spikes, shape, I4x2Fixed::<8>, w, pool2, acc),
            16 => scatter_rows(spikes, shape, I4x2Fixed::<16>, w, pool2, acc),
            _ => scatter_rows(spikes, shape, I4x2Any(cout), w, pool2, acc),
        }
    })
}

/// The common part of the packed scatters: zeroes the `acc_len / 2` words of lanes,
/// checks the weight storage (`weights_fit`) and runs `run` on the word-aligned lanes;
/// returns the synaptic operations (taps times `cout`).
fn scatter_lanes(
    shape: &ConvShape,
    pool2: bool,
    acc: &mut [i32],
    weights_fit: bool,
    run: impl FnOnce(*mut i16) -> usize,
) -> u64 {
    let acc = &mut acc[..shape.acc_len(pool2) / 2];
    crate::fill::zero(acc);
    if shape.cout == 0 || shape.k == 0 {
        return 0;
    }
    assert!(weights_fit, "weights hold too few rows");
    let taps = run(acc.as_mut_ptr() as *mut i16);
    bits::synops(taps, shape.cout)
}

/// `i16` lanes of the pre-summed 2 x 2 kernels one input channel takes in
/// [`scatter_packed_pooled`]: four parities, each a 2 x 2 block of `cout` lanes.
pub const fn pooled_kernel_lanes(cout: usize) -> usize {
    16 * cout
}

/// Where a spike at input coordinate `y` lands along one axis of a 3x3 convolution
/// followed by the 2x2 pool, `oh` being the axis' pooled extent in input pixels (the
/// size floored to even): `(a, b, taps)`, `a` and `b` 1 where pooled position A =
/// `(y + 1) / 2 - 1` (kernel rows `{2}` for an even `y`, `{1, 2}` for an odd one) and
/// B = A + 1 (`{0, 1}` or `{0}`) exist, and the kernel taps they take together. The
/// same for rows and columns, and for every kernel that pools this way.
#[inline(always)]
pub(crate) const fn pooled_reach(y: usize, oh: usize) -> (usize, usize, usize) {
    let p = y & 1;
    let a = (y > 0) as usize;
    let b = if p == 0 { y < oh } else { y + 1 < oh } as usize;
    (a, b, a * (1 + p) + b * (2 - p))
}

/// True when [`scatter_packed_pooled`] applies to a 2x2-pooled layer: a 3 x 3 kernel,
/// rows of at most 32 columns, and the lanes and one input channel's pre-summed kernels
/// fit in `scratch_len` words.
pub fn pooled_fits(shape: &ConvShape, scratch_len: usize) -> bool {
    shape.k == 3
        && (1..=32).contains(&shape.w)
        && shape.cout % 8 == 0
        && shape.acc_len(true) / 2 + pooled_kernel_lanes(shape.cout) / 2 <= scratch_len
}

/// [`scatter_packed`] (int8) or [`scatter_packed_i4`] (int4: the lanes hold 16 times the
/// sums) of a 3 x 3 convolution with the 2x2 sum pool, in the same lanes and lane order,
/// through pre-summed kernels: a spike at `(y, x)` reaches at most 2 x 2 pooled outputs,
/// and which taps land on which of them depends only on the parity of `y` and `x`
/// (pooled row A = `(y + 1) / 2 - 1` takes kernel rows `{2}` for an even `y`, `{1, 2}`
/// for an odd one, row B = A + 1 takes `{0, 1}` or `{0}`; columns the same). So the
/// up to 9 taps of a spike are at most two runs of `2 cout` lanes, the kernels of one
/// input channel being summed once (when its first spike arrives) into `scratch` behind
/// the lanes. Synaptic operations count every tap that lands, as [`scatter`] does. The
/// lanes wrap as the tap-by-tap kernels' do: exact where those are. Needs
/// [`pooled_fits`]; returns the synaptic operations executed.
pub fn scatter_packed_pooled(
    spikes: &[u32],
    shape: &ConvShape,
    weights: Weights,
    scratch: &mut [i32],
) -> u64 {
    let (cin, cout, h, w) = (shape.cin, shape.cout, shape.h, shape.w);
    assert!(pooled_fits(shape, scratch.len()), "layer or scratch unfit");
    assert!(
        weights.len() >= weights.storage_len(shape.rows(), cout),
        "weights hold too few rows"
    );
    let words = shape.acc_len(true) / 2;
    let (acc, rest) = scratch.split_at_mut(words);
    crate::fill::zero(acc);
    let kw = pooled_kernel_lanes(cout) / 2;
    // SAFETY: the words behind the lanes, `kw` of them (checked by `pooled_fits`), as u32.
    let kern = unsafe { core::slice::from_raw_parts_mut(rest.as_mut_ptr() as *mut u32, kw) };
    let (oh, ow, pw) = (h & !1, w & !1, w / 2);
    let half = cout / 2;
    let row = pw * half;
    let a = acc.as_mut_ptr() as *mut u32;
    let e = kern.as_ptr();
    let mut taps = 0usize;
    for c in 0..cin {
        let mut summed = false;
        crate::bits::for_each_row(spikes, c * h * w, h, w, |y, mut r| {
            if !summed {
                summed = true;
                sum_pooled_kernels(&weights, c, cout, kern);
            }
            let py = y & 1;
            let (a_ok, b_ok, row_taps) = pooled_reach(y, oh);
            let nr = a_ok + b_ok;
            // Block of parity (py, px): [A: cA, cB][B: cA, cB], `half` words each.
            let er = (py * 8 + (1 - a_ok) * 2) * half;
            let ar = (((y + 1) >> 1) - a_ok) * row;
            // Interior columns (1 <= x, x + 1 < ow: both pooled columns, three taps):
            // one test, a shift and two runs of `2 half` words when both rows land (most
            // spikes); the rest take the general path below.
            if nr == 2 {
                let interior = if ow > 2 {
                    ((1u32 << (ow - 1)) - 1) & !1
                } else {
                    0
                };
                let mut inner = r & interior;
                r &= !interior;
                taps += row_taps * 3 * inner.count_ones() as usize;
                while inner != 0 {
                    let x = inner.trailing_zeros() as usize;
                    inner &= inner - 1;
                    let ex = er + (x & 1) * 4 * half;
                    let ax = ar + ((x - 1) >> 1) * half;
                    // SAFETY: as for the general path below with ca_ok = cb_ok = 1,
                    // a_ok = b_ok = 1 (nr = 2) and col = (x - 1) / 2.
                    unsafe {
                        add16_words(e.add(ex), a.add(ax), 2 * half);
                        add16_words(e.add(ex + cout), a.add(ax + row), 2 * half);
                    }
                }
            }
            while r != 0 {
                let x = r.trailing_zeros() as usize;
                r &= r - 1;
                let px = x & 1;
                let (ca_ok, cb_ok, col_taps) = pooled_reach(x, ow);
                taps += row_taps * col_taps;
                let nc = ca_ok + cb_ok;
                if nr == 0 || nc == 0 {
                    continue;
                }
                let col = ((x + 1) >> 1) - ca_ok;
                let ex = er + (px * 4 + 1 - ca_ok) * half;
                let ax = ar + col * half;
                for i in 0..nr {
                    // SAFETY: run i reads words `ex + i * cout..+ nc * half` of the kernels
                    // (inside the block of its parity) and writes the lanes of pooled row
                    // `A + (1 - a_ok) + i`, columns `col..col + nc`, inside the ph x pw map
                    // by the flags above.
                    unsafe { add16_words(e.add(ex + i * cout), a.add(ax + i * row), nc * half) };
                }
            }
        });
    }
    bits::synops(taps, cout)
}

/// The pre-summed kernels of input channel `c` (see [`scatter_packed_pooled`]): for each
/// parity `(py, px)` at word `(py * 2 + px) * 2 * cout`, the 2 x 2 block `[r][col]` of
/// `cout / 2` words (`cout` lanes) each (channel `j` at lane `packed_index(j)`, int4:
/// `packed_index_i4(j)`, times 16), entry `K[r][col] = sum of w[ky][kx]` over `ky` in
/// row group `r` and `kx` in column group `col` of that parity. A word of weights at a
/// time: its lanes sign-extended as the tap-by-tap kernels do (`SXTB16`), summed lane-wise.
fn sum_pooled_kernels(weights: &Weights, c: usize, cout: usize, kern: &mut [u32]) {
    let half = cout / 2;
    let kern = &mut kern[..8 * cout];
    // One word of the channel's nine weight rows (`w`: the channel's bytes, checked once
    // per channel); a word load where unaligned loads are allowed (ARMv7-M).
    let word = |w: &[u8], i: usize| {
        debug_assert!(i + 4 <= w.len());
        // SAFETY: every caller's `i + 4 <= w.len()` (the group loops stay inside the
        // channel's `9 * row` bytes, which `w` holds by the slicing below).
        u32::from_le(unsafe { (w.as_ptr().add(i) as *const u32).read_unaligned() })
    };
    match weights {
        Weights::I8(w) => {
            // SAFETY: i8 and u8 have the same layout.
            let w = unsafe { core::slice::from_raw_parts(w.as_ptr() as *const u8, w.len()) };
            let w = &w[c * 9 * cout..(c + 1) * 9 * cout];
            #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
            {
                let (wp, kp) = (w.as_ptr(), kern.as_mut_ptr());
                // SAFETY: group g reads bytes 4g.. of the nine rows of `w` (9 cout bytes)
                // and writes words 2g.. of the 16 blocks of `half` words (8 cout words).
                let run = |f: unsafe fn(*const u8, *mut u32)| unsafe {
                    for g in 0..cout / 4 {
                        f(wp.add(4 * g), kp.add(2 * g));
                    }
                };
                match cout {
                    8 => return run(pooled_group_i8::<8>),
                    16 => return run(pooled_group_i8::<16>),
                    32 => return run(pooled_group_i8::<32>),
                    _ => {}
                }
            }
            for g in 0..cout / 4 {
                let u: [u32; 9] = core::array::from_fn(|k| word(w, k * cout + 4 * g));
                put_pooled(kern, half, 2 * g, &u.map(sxtb16));
                put_pooled(kern, half, 2 * g + 1, &u.map(|u| sxtb16(u.rotate_right(8))));
            }
        }
        Weights::I4(w) => {
            let w = &w[c * 9 * half..(c + 1) * 9 * half];
            for g in 0..cout / 8 {
                let u: [u32; 9] = core::array::from_fn(|k| word(w, k * half + 4 * g));
                // Each byte of `e` (`o`) holds an even (odd) nibble in its high half: 16 w.
                let e = u.map(|u| (u << 4) & 0xf0f0_f0f0);
                let o = u.map(|u| u & 0xf0f0_f0f0);
                put_pooled(kern, half, 4 * g, &e.map(sxtb16));
                put_pooled(kern, half, 4 * g + 1, &o.map(sxtb16));
                put_pooled(kern, half, 4 * g + 2, &e.map(|e| sxtb16(e.rotate_right(8))));
                put_pooled(kern, half, 4 * g + 3, &o.map(|o| sxtb16(o.rotate_right(8))));
            }
        }
    }
}

/// Words `2g` and `2g + 1` (output channels `4g..4g + 4`) of every block of
/// [`sum_pooled_kernels`] for int8 rows of `C` weights (`C` = 8, 16 or 32) on ARMv7E-M: the
/// nine weight words of the group sign-extended (`SXTB16`, then with `ROR #8`), each
/// kernel row's column groups summed (`SADD16`) and the row groups of each parity, every
/// word stored at a constant offset: 96 instructions per group, no call, no spill
/// (against about 240 for the compiler's code).
///
/// # Safety
/// `w` holds the channel's nine rows of `C` bytes from the group's first byte on,
/// `k..k + 16 * C / 2` words (the kernels, offset by `2g` words) writable, word-aligned.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn pooled_group_i8<const C: usize>(w: *const u8, k: *mut u32) {
    // Both halves of the group (`SXTB16` of each weight word as it is, then rotated by 8;
    // stores at the `h*` offsets, then at the `h*x` ones, a word further).
    #[rustfmt::skip]
    macro_rules! half {
        ($ror:literal, $x:literal) => {
            concat!(
                "ldr {a0}, [{w}, #{c0}]\n",
                "ldr {a1}, [{w}, #{c1}]\n",
                "ldr {a2}, [{w}, #{c2}]\n",
                "sxtb16 {a0}, {a0}", $ror, "\n",
                "sxtb16 {a1}, {a1}", $ror, "\n",
                "sxtb16 {a2}, {a2}", $ror, "\n",
                "sadd16 {a3}, {a0}, {a1}\n",
                "sadd16 {a1}, {a1}, {a2}\n",
                "str {a2}, [{k}, #{h10", $x, "}]\n",
                "str {a3}, [{k}, #{h11", $x, "}]\n",
                "str {a1}, [{k}, #{h14", $x, "}]\n",
                "str {a0}, [{k}, #{h15", $x, "}]\n",
                "ldr {b0}, [{w}, #{c3}]\n",
                "ldr {b1}, [{w}, #{c4}]\n",
                "ldr {b2}, [{w}, #{c5}]\n",
                "sxtb16 {b0}, {b0}", $ror, "\n",
                "sxtb16 {b1}, {b1}", $ror, "\n",
                "sxtb16 {b2}, {b2}", $ror, "\n",
                "sadd16 {b3}, {b0}, {b1}\n",
                "sadd16 {b1}, {b1}, {b2}\n",
                "sadd16 {t}, {a2}, {b2}\n",
                "str {t}, [{k}, #{h2", $x, "}]\n",
                "sadd16 {t}, {a3}, {b3}\n",
                "str {t}, [{k}, #{h3", $x, "}]\n",
                "sadd16 {t}, {a1}, {b1}\n",
                "str {t}, [{k}, #{h6", $x, "}]\n",
                "sadd16 {t}, {a0}, {b0}\n",
                "str {t}, [{k}, #{h7", $x, "}]\n",
                "ldr {a0}, [{w}, #{c6}]\n",
                "ldr {a1}, [{w}, #{c7}]\n",
                "ldr {a2}, [{w}, #{c8}]\n",
                "sxtb16 {a0}, {a0}", $ror, "\n",
                "sxtb16 {a1}, {a1}", $ror, "\n",
                "sxtb16 {a2}, {a2}", $ror, "\n",
                "sadd16 {a3}, {a0}, {a1}\n",
                "sadd16 {a1}, {a1}, {a2}\n",
                "str {a2}, [{k}, #{h0", $x, "}]\n",
                "str {a3}, [{k}, #{h1", $x, "}]\n",
                "str {a1}, [{k}, #{h4", $x, "}]\n",
                "str {a0}, [{k}, #{h5", $x, "}]\n",
                "sadd16 {t}, {a2}, {b2}\n",
                "str {t}, [{k}, #{h8", $x, "}]\n",
                "sadd16 {t}, {a3}, {b3}\n",
                "str {t}, [{k}, #{h9", $x, "}]\n",
                "sadd16 {t}, {a1}, {b1}\n",
                "str {t}, [{k}, #{h12", $x, "}]\n",
                "sadd16 {t}, {a0}, {b0}\n",
                "str {t}, [{k}, #{h13", $x, "}]\n",
            )
        };
    }
    // SAFETY: the caller guarantees the nine words read (any alignment: LDR may be
    // unaligned on ARMv7-M) and the 32 words written; registers only otherwise.
    unsafe {
        core::arch::asm!(
            half!("", ""),
            half!(", ror #8", "x"),
            w = in(reg) w,
            k = in(reg) k,
            a0 = out(reg) _,
            a1 = out(reg) _,
            a2 = out(reg) _,
            a3 = out(reg) _,
            b0 = out(reg) _,
            b1 = out(reg) _,
            b2 = out(reg) _,
            b3 = out(reg) _,
            t = out(reg) _,
            c0 = const 0 * C,
            c1 = const 1 * C,
            c2 = const 2 * C,
            c3 = const 3 * C,
            c4 = const 4 * C,
            c5 = const 5 * C,
            c6 = const 6 * C,
            c7 = const 7 * C,
            c8 = const 8 * C,
            h0 = const 0 * 2 * C,
            h1 = const 1 * 2 * C,
            h2 = const 2 * 2 * C,
            h3 = const 3 * 2 * C,
            h4 = const 4 * 2 * C,
            h5 = const 5 * 2 * C,
            h6 = const 6 * 2 * C,
            h7 = const 7 * 2 * C,
            h8 = const 8 * 2 * C,
            h9 = const 9 * 2 * C,
            h10 = const 10 * 2 * C,
            h11 = const 11 * 2 * C,
            h12 = const 12 * 2 * C,
            h13 = const 13 * 2 * C,
            h14 = const 14 * 2 * C,
            h15 = const 15 * 2 * C,
            h0x = const 0 * 2 * C + 4,
            h1x = const 1 * 2 * C + 4,
            h2x = const 2 * 2 * C + 4,
            h3x = const 3 * 2 * C + 4,
            h4x = const 4 * 2 * C + 4,
            h5x = const 5 * 2 * C + 4,
            h6x = const 6 * 2 * C + 4,
            h7x = const 7 * 2 * C + 4,
            h8x = const 8 * 2 * C + 4,
            h9x = const 9 * 2 * C + 4,
            h10x = const 10 * 2 * C + 4,
            h11x = const 11 * 2 * C + 4,
            h12x = const 12 * 2 * C + 4,
            h13x = const 13 * 2 * C + 4,
            h14x = const 14 * 2 * C + 4,
            h15x = const 15 * 2 * C + 4,
            options(nostack, preserves_flags),
        );
    }
}

/// Word `q` (lanes `2q`, `2q + 1`) of every block of [`sum_pooled_kernels`] from the same
/// word `t[ky * 3 + kx]` of the nine taps. Not inlined: one copy serves every call (flash).
#[inline(never)]
fn put_pooled(kern: &mut [u32], half: usize, q: usize, t: &[u32; 9]) {
    assert!(
        q < half && kern.len() >= 16 * half,
        "kernel words out of range"
    );
    let k = kern.as_mut_ptr().wrapping_add(q);
    // Per kernel row, the column groups of each parity: [px][A, B].
    let g = |ky: usize| {
        let (t0, t1, t2) = (t[ky * 3], t[ky * 3 + 1], t[ky * 3 + 2]);
        [[t2, add16(t0, t1)], [add16(t1, t2), t0]]
    };
    let (r0, r1, r2) = (g(0), g(1), g(2));
    for px in 0..2 {
        let blk0 = [
            r2[px][0],
            r2[px][1],
            add16(r0[px][0], r1[px][0]),
            add16(r0[px][1], r1[px][1]),
        ];
        let blk1 = [
            add16(r1[px][0], r2[px][0]),
            add16(r1[px][1], r2[px][1]),
            r0[px][0],
            r0[px][1],
        ];
        for (i, (&a, &b)) in blk0.iter().zip(&blk1).enumerate() {
            // SAFETY: word q + (px * 4 + i) * half (and (8 + px * 4 + i) * half) lies below
            // 16 * half <= kern.len() (checked above, q < half).
            unsafe {
                *k.add((px * 4 + i) * half) = a;
                *k.add((8 + px * 4 + i) * half) = b;
            }
        }
    }
}

/// Bytes 0 and 2 of `u`, sign-extended into the two `i16` lanes (`SXTB16`).
#[inline(always)]
fn sxtb16(u: u32) -> u32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: u32;
        // SAFETY: register-only arithmetic.
        unsafe {
            core::arch::asm!("sxtb16 {r}, {u}", r = out(reg) r, u = in(reg) u,
                options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        (u as u8 as i8 as i16 as u16 as u32) | ((u >> 16) as u8 as i8 as i16 as u16 as u32) << 16
    }
}

/// Lane-wise wrapping `i16` sum of two words (`SADD16`).
#[inline(always)]
fn add16(x: u32, y: u32) -> u32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: u32;
        // SAFETY: register-only arithmetic (SADD16 sets the GE flags, which nothing reads).
        unsafe {
            core::arch::asm!("sadd16 {r}, {x}, {y}", r = out(reg) r, x = in(reg) x, y = in(reg) y,
                options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        let lo = (x as u16).wrapping_add(y as u16) as u32;
        let hi = ((x >> 16) as u16).wrapping_add((y >> 16) as u16) as u32;
        lo | hi << 16
    }
}

/// `a[i] += e[i]` lane-wise (two wrapping `i16` lanes per word) for `n` words, `n % 4 == 0`
/// (on ARMv7E-M four `SADD16` per four words).
///
/// # Safety
/// `e..e + n` readable, `a..a + n` writable, both word-aligned.
#[inline(always)]
unsafe fn add16_words(e: *const u32, a: *mut u32, n: usize) {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    // SAFETY: the caller guarantees both ranges; the loop ends when `a` reaches `a + n`.
    unsafe {
        macro_rules! group {
            () => {
                concat!(
                    "ldm {e}!, {{r0, r1, r2, r3}}\n",
                    "ldm {a}, {{r4, r5, r8, r12}}\n",
                    "sadd16 r4, r4, r0\n",
                    "sadd16 r5, r5, r1\n",
                    "sadd16 r8, r8, r2\n",
                    "sadd16 r12, r12, r3\n",
                    "stm {a}!, {{r4, r5, r8, r12}}\n",
                )
            };
        }
        // Four words a group (9 instructions; unrolling further costs more on the short
        // runs of 8-channel layers than it saves).
        core::arch::asm!(
            "2:",
            group!(),
            "cmp {a}, {end}",
            "bne 2b",
            e = inout(reg) e => _,
            a = inout(reg) a => _,
            end = in(reg) a.add(n),
            out("r0") _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            out("r4") _,
            out("r5") _,
            out("r8") _,
            out("r12") _,
            options(nostack),
        );
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    // SAFETY: the caller guarantees both ranges.
    unsafe {
        for i in 0..n {
            let (x, y) = (*a.add(i), *e.add(i));
            let lo = (x as u16).wrapping_add(y as u16) as u32;
            let hi = ((x >> 16) as u16).wrapping_add((y >> 16) as u16) as u32;
            *a.add(i) = lo | hi << 16;
        }
    }
}

/// The `i16` lanes of packed accumulators (see [`scatter_packed`]).
pub fn as_i16(acc: &[i32]) -> &[i16] {
    // SAFETY: the same memory as two i16 per word (i32 alignment suffices for i16, and
    // every bit pattern is a valid i16); the borrow is shared.
    unsafe { core::slice::from_raw_parts(acc.as_ptr() as *const i16, acc.len() * 2) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::weights::pack_i4;

    /// Dense gather convolution in f64 on 0/1 inputs, CHW output.
    fn float_conv(x: &[u8], s: &ConvShape, w: &[i8]) -> Vec<f64> {
        let pad = (s.k / 2) as isize;
        let mut out = vec![0.0; s.cout * s.h * s.w];
        for co in 0..s.cout {
            for oy in 0..s.h as isize {
                for ox in 0..s.w as isize {
                    let mut sum = 0.0;
                    for ci in 0..s.cin {
                        for ky in 0..s.k as isize {
                            for kx in 0..s.k as isize {
                                let (y, xx) = (oy + ky - pad, ox + kx - pad);
                                if y < 0 || xx < 0 || y >= s.h as isize || xx >= s.w as isize {
                                    continue;
                                }
                                let xi = x[(ci * s.h + y as usize) * s.w + xx as usize] as f64;
                                let wi =
                                    (((ci * s.k) + ky as usize) * s.k + kx as usize) * s.cout + co;
                                sum += xi * w[wi] as f64;
                            }
                        }
                    }
                    out[(co * s.h + oy as usize) * s.w + ox as usize] = sum;
                }
            }
        }
        out
    }

    /// A fixed spike pattern of `n` bits (about 2 in 5 set), shifted by `seed`.
    pub(crate) fn pattern(n: usize, seed: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 7 + seed) % 5 < 2) as u8).collect()
    }

    /// `n` fixed weights spread over `-range..=range`.
    pub(crate) fn weights(n: usize, range: i32) -> Vec<i8> {
        (0..n)
            .map(|i| ((i as i32 * 37 + 11) % (2 * range + 1) - range) as i8)
            .collect()
    }

    #[test]
    fn matches_dense_convolution_for_all_patterns_and_borders() {
        for (cin, cout, k, h, w) in [
            (2, 3, 3, 5, 7),
            (1, 1, 3, 1, 1),
            (3, 5, 1, 4, 3),
            (2, 4, 3, 6, 6),
            (1, 2, 3, 7, 2),
            // Row kernels of every specialised width, wide rows, k = 5 (general path).
            (2, 8, 3, 4, 5),
            (1, 16, 3, 3, 4),
            (2, 12, 3, 3, 3),
            (1, 3, 3, 2, 35),
            (2, 6, 5, 6, 5),
            (1, 9, 5, 2, 3),
        ] {
            let s = ConvShape { cin, cout, k, h, w };
            let wq = weights(s.rows() * cout, 127);
            for seed in 0..4 {
                let x = match seed {
                    0 => vec![0u8; cin * h * w],
                    1 => vec![1u8; cin * h * w],
                    _ => pattern(cin * h * w, seed),
                };
                let mut map = vec![0u32; bits::words(x.len())];
                bits::pack(&x, &mut map);
                let mut acc = vec![99; s.acc_len(false)];
                let ops = scatter(&map, &s, Weights::I8(&wq), false, &mut acc);
                let expect = float_conv(&x, &s, &wq);
                for co in 0..cout {
                    for p in 0..h * w {
                        assert_eq!(
                            acc[p * cout + co] as f64,
                            expect[co * h * w + p],
                            "{s:?} seed {seed}"
                        );
                    }
                }
                // synops: each spike times its in-range taps times cout
                let pad = k / 2;
                let mut taps = 0;
                for (i, _) in x.iter().enumerate().filter(|(_, &v)| v != 0) {
                    let (y, xx) = ((i / w) % h, i % w);
                    for ky in 0..k {
                        for kx in 0..k {
                            if y + pad >= ky
                                && y + pad - ky < h
                                && xx + pad >= kx
                                && xx + pad - kx < w
                            {
                                taps += 1;
                            }
                        }
                    }
                }
                assert_eq!(ops, (taps * cout) as u64);
                if seed == 0 {
                    assert_eq!(ops, 0);
                    assert!(acc.iter().all(|&a| a == 0));
                }
            }
        }
    }

    /// A packed scatter (`packed`) against [`scatter`] on empty, full and patterned spike
    /// maps: the same synaptic operations, lane `index(c)` of a pixel holds `scale` times
    /// its channel `c`.
    fn check_lanes(
        s: &ConvShape,
        pool2: bool,
        weights: Weights,
        packed: impl Fn(&[u32], &mut [i32]) -> u64,
        index: fn(usize) -> usize,
        scale: i32,
    ) {
        let n = s.cin * s.h * s.w;
        for seed in 0..4 {
            let x = match seed {
                0 => vec![0u8; n],
                1 => vec![1u8; n],
                _ => pattern(n, seed),
            };
            let mut map = vec![0u32; bits::words(x.len())];
            bits::pack(&x, &mut map);
            let mut a32 = vec![7; s.acc_len(pool2)];
            let mut a16 = vec![7; s.acc_len(pool2)];
            let o32 = scatter(&map, s, weights, pool2, &mut a32);
            assert_eq!(o32, packed(&map, &mut a16));
            let lanes = as_i16(&a16);
            for (p, row) in a32.chunks(s.cout).enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    let got = lanes[p * s.cout + index(c)] as i32;
                    assert_eq!(got, scale * v, "{s:?} pool {pool2} seed {seed}");
                }
            }
        }
    }

    /// The packed i16 scatter gives the i32 scatter's accumulators (in packed order) on
    /// every shape and border case, with and without the pool, for weights that fit.
    #[test]
    fn packed_scatter_matches_the_i32_scatter() {
        for (cin, cout, k, h, w) in [
            (2, 4, 3, 5, 7),
            (3, 8, 3, 6, 6),
            (2, 16, 3, 4, 5),
            (1, 32, 3, 3, 4),
            (2, 12, 3, 3, 3),
            (3, 8, 1, 4, 3),
            (1, 20, 5, 6, 5),
        ] {
            let s = ConvShape { cin, cout, k, h, w };
            let wq = weights(s.rows() * cout, 127);
            for pool2 in [false, true] {
                assert!(s.fits_i16(&Weights::I8(&wq), pool2), "{s:?}");
                let packed =
                    |map: &[u32], acc: &mut [i32]| scatter_packed(map, &s, &wq, pool2, acc);
                let index = crate::weights::packed_index;
                check_lanes(&s, pool2, Weights::I8(&wq), packed, index, 1);
            }
        }
    }

    /// The packed int4 scatter holds 16 times the i32 scatter's accumulators (in
    /// [`crate::weights::packed_index_i4`] order) on every shape and border case, with and
    /// without the pool, for weights that fit; the widest weights of a large layer do not.
    #[test]
    fn packed_int4_scatter_matches_the_i32_scatter() {
        for (cin, cout, k, h, w) in [
            (2, 8, 3, 5, 7),
            (3, 8, 3, 6, 6),
            (2, 16, 3, 4, 5),
            (1, 32, 3, 3, 4),
            (2, 24, 3, 3, 3),
            (3, 8, 1, 4, 3),
            (1, 16, 5, 6, 5),
        ] {
            let s = ConvShape { cin, cout, k, h, w };
            let vals: Vec<i8> = weights(s.rows() * cout, 8)
                .iter()
                .map(|&v| v.clamp(-8, 7))
                .collect();
            let mut w4 = vec![0u8; s.rows() * cout / 2];
            pack_i4(&vals, cout, &mut w4).unwrap();
            for pool2 in [false, true] {
                assert!(s.fits_i4_lanes(&Weights::I4(&w4), pool2), "{s:?}");
                let packed =
                    |map: &[u32], acc: &mut [i32]| scatter_packed_i4(map, &s, &w4, pool2, acc);
                let index = crate::weights::packed_index_i4;
                check_lanes(&s, pool2, Weights::I4(&w4), packed, index, 16);
            }
        }
        // 256 rows of -8: 2048 * 16 leaves the i16 range (and int8 weights never fit).
        let big = ConvShape {
            cin: 256,
            cout: 8,
            k: 1,
            h: 2,
            w: 2,
        };
        let mut w4 = vec![0u8; 256 * 4];
        pack_i4(&[-8; 256 * 8], 8, &mut w4).unwrap();
        assert!(!big.fits_i4_lanes(&Weights::I4(&w4), false));
        pack_i4(&[7; 256 * 8], 8, &mut w4).unwrap();
        assert!(big.fits_i4_lanes(&Weights::I4(&w4), false));
        assert!(!big.fits_i4_lanes(&Weights::I4(&w4), true));
        assert!(!big.fits_i4_lanes(&Weights::I8(&[0; 256 * 8]), false));
    }

    /// The pre-summed pooled kernels give the tap-by-tap packed scatters' lanes (int8 and
    /// int4, odd and even maps, every border case) and their synaptic operations.
    #[test]
    fn pooled_kernels_match_the_i32_scatter() {
        for (cin, cout, h, w) in [
            (2, 8, 5, 7),
            (3, 8, 6, 6),
            (2, 16, 4, 5),
            (1, 8, 3, 3),
            (2, 8, 2, 32),
            (1, 16, 7, 9),
        ] {
            let s = ConvShape {
                cin,
                cout,
                k: 3,
                h,
                w,
            };
            let words = s.acc_len(true) / 2;
            let need = words + pooled_kernel_lanes(cout) / 2;
            assert!(pooled_fits(&s, need) && !pooled_fits(&s, need - 1), "{s:?}");
            let run = |weights: Weights, map: &[u32], acc: &mut [i32]| {
                let mut scratch = vec![7; need];
                let ops = scatter_packed_pooled(map, &s, weights, &mut scratch);
                acc[..words].copy_from_slice(&scratch[..words]);
                ops
            };
            let wq = weights(s.rows() * cout, 127);
            let w8 = Weights::I8(&wq);
            let packed = |map: &[u32], acc: &mut [i32]| run(w8, map, acc);
            check_lanes(&s, true, w8, packed, crate::weights::packed_index, 1);
            let vals: Vec<i8> = weights(s.rows() * cout, 8)
                .iter()
                .map(|&v| v.clamp(-8, 7))
                .collect();
            let mut w4 = vec![0u8; s.rows() * cout / 2];
            pack_i4(&vals, cout, &mut w4).unwrap();
            let w4 = Weights::I4(&w4);
            let packed = |map: &[u32], acc: &mut [i32]| run(w4, map, acc);
            check_lanes(&s, true, w4, packed, crate::weights::packed_index_i4, 16);
        }
        let wide = ConvShape {
            cin: 1,
            cout: 8,
            k: 3,
            h: 4,
            w: 34,
        };
        assert!(!pooled_fits(&wide, 1 << 16));
        let narrow = ConvShape {
            cin: 1,
            cout: 4,
            k: 3,
            h: 4,
            w: 4,
        };
        assert!(!pooled_fits(&narrow, 1 << 16));
    }

    /// The pooled bound is reached: spikes exactly where an offset's tap sum is positive
    /// (negative) put that sum on an interior pooled output.
    #[test]
    fn pooled_bound_is_exact() {
        let s = ConvShape {
            cin: 3,
            cout: 4,
            k: 3,
            h: 8,
            w: 8,
        };
        let wq = weights(s.rows() * 4, 127);
        let bound = pooled_column_bound(&wq, 3, 4);
        let mut best = 0i32;
        for co in 0..4 {
            for sign in [1i32, -1] {
                // Pooled output (1, 1): conv outputs 2..4 x 2..4, input window 1..5.
                let mut x = vec![0u8; 3 * 64];
                for ci in 0..3 {
                    for dy in 0..4 {
                        for dx in 0..4 {
                            let (y, xx): (usize, usize) = (1 + dy, 1 + dx);
                            let mut t = 0;
                            for oy in 2..4 {
                                for ox in 2..4 {
                                    let (ky, kx) =
                                        ((y + 1).wrapping_sub(oy), (xx + 1).wrapping_sub(ox));
                                    if ky < 3 && kx < 3 {
                                        t += wq[(ci * 9 + ky * 3 + kx) * 4 + co] as i32;
                                    }
                                }
                            }
                            x[(ci * 8 + y) * 8 + xx] = (sign * t > 0) as u8;
                        }
                    }
                }
                let mut map = vec![0u32; bits::words(x.len())];
                bits::pack(&x, &mut map);
                let mut acc = vec![0; s.acc_len(true)];
                scatter(&map, &s, Weights::I8(&wq), true, &mut acc);
                best = best.max(sign * acc[(4 + 1) * 4 + co]);
            }
        }
        assert_eq!(best as u32, bound);
        // 32767 fits, 32768 does not.
        let big = ConvShape { cin: 70, ..s };
        let mut w = vec![0i8; big.rows() * 4];
        let mut left = 32767 / 4;
        for ci in 0..70 {
            // The centre tap meets all four outputs of the block.
            let v = left.min(127);
            w[(ci * 9 + 4) * 4] = v as i8;
            left -= v;
        }
        assert_eq!(left, 0);
        assert_eq!(pooled_column_bound(&w, 70, 4), (32767 / 4) * 4);
        assert!(big.fits_i16(&Weights::I8(&w), true));
        w[(69 * 9) * 4] = 127;
        assert!(!big.fits_i16(&Weights::I8(&w), true));
    }

    /// The lane version of the column-sum test agrees with the plain one, including
    /// columns whose sums saturate the lanes.
    #[test]
    fn column_sums_in_lanes_match_the_plain_ones() {
        let mut x = 0x1234_5678u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for rows in [1usize, 7, 64, 144, 288, 600, 1100] {
            for trial in 0..12 {
                let cout = 4 * (1 + trial % 3);
                // Mixed signs, mostly positive, mostly negative, and drifting columns
                // (large positive then large negative runs: saturation then recovery).
                let w: Vec<i8> = (0..rows * cout)
                    .map(|i| {
                        let r = rnd();
                        let v = (r % 256) as i32 - 128;
                        match trial % 4 {
                            0 => v as i8,
                            1 => (v.abs() / (1 + (r >> 8) as i32 % 3)) as i8,
                            2 => (-(v.abs()) / (1 + (r >> 8) as i32 % 5)) as i8,
                            _ if (i / cout) < rows / 2 => -128,
                            _ => 127,
                        }
                    })
                    .collect();
                for lim in [100u32, 8191, 20000, 32767] {
                    assert_eq!(
                        column_sums_fit_x4(&w, cout, lim),
                        column_sums_fit(&w, cout, lim),
                        "rows {rows} trial {trial} lim {lim}"
                    );
                }
            }
        }
    }

    /// `fits_i16` against the all-ones map's accumulators and the column sums.
    #[test]
    fn fits_i16_bounds_the_accumulators() {
        let s = ConvShape {
            cin: 40,
            cout: 4,
            k: 3,
            h: 3,
            w: 3,
        };
        let rows = s.rows();
        // Column 0: all +127 up to a total of `pos`, column 1 all -128: the extremes.
        for (pos, pool2, fits) in [
            (32767, false, true),
            (32768, false, false),
            (8191, true, true),
            (8192, true, false),
        ] {
            let mut wq = vec![0i8; rows * 4];
            let mut left = pos;
            for r in 0..rows {
                let v = left.min(127);
                wq[r * 4] = v as i8;
                left -= v;
            }
            assert_eq!(left, 0);
            assert_eq!(s.fits_i16(&Weights::I8(&wq), pool2), fits, "{pos} {pool2}");
            let mut neg = vec![0i8; rows * 4];
            let mut left = pos;
            for r in 0..rows {
                let v = left.min(128);
                neg[r * 4 + 1] = (-v) as i8;
                left -= v;
            }
            assert_eq!(
                s.fits_i16(&Weights::I8(&neg), pool2),
                fits,
                "-{pos} {pool2}"
            );
        }
        // Small layers fit without reading the weights; int4 never takes the path.
        let small = ConvShape { cin: 28, ..s };
        assert!(small.fits_i16(&Weights::I8(&[127; 28 * 9 * 4]), false));
        assert!(!s.fits_i16(&Weights::I4(&[0; 40 * 9 * 2]), false));
        // The bound is reached: an all-ones map on a 3x3 map puts every row on the centre.
        let wq: Vec<i8> = (0..rows * 4)
            .map(|i| if i % 4 == 0 { 100 } else { -1 })
            .collect();
        let mut acc = vec![0; s.acc_len(false)];
        let map = vec![u32::MAX; bits::words(40 * 9)];
        scatter(&map, &s, Weights::I8(&wq), false, &mut acc);
        assert_eq!(acc[4 * 4], 100 * rows as i32);
    }

    #[test]
    fn division_by_multiply_is_exact_where_enabled() {
        for d in 1..=300usize {
            for max in [d, 7 * d, 65536 / d, 65536 / d + 1, 5000] {
                let div = DivBy::new(d, max, false);
                for n in 0..=max {
                    assert_eq!(div.div(n), n / d, "{n} / {d} (max {max})");
                }
            }
        }
    }

    #[test]
    fn spikes_past_the_map_are_ignored_and_channels_tracked() {
        // 3 channels of 5: bits 0..15; the tail bits (15..64) are set and must not count.
        let map = [0b1000_0100_0010_0001u32 | 0xffff_0000, u32::MAX];
        let mut got = vec![];
        for_each_spike(&map, 3, 5, |c, p| got.push((c, p)));
        assert_eq!(got, [(0, 0), (1, 0), (2, 0)]);
        let mut got = vec![];
        for_each_spike(&[u32::MAX; 2], 2, 20, |c, p| got.push((c, p)));
        assert_eq!(got.len(), 40);
        assert_eq!((got[19], got[20], got[39]), ((0, 19), (1, 0), (1, 19)));
    }

    #[test]
    fn int4_equals_int8_when_weights_fit() {
        let s = ConvShape {
            cin: 3,
            cout: 5,
            k: 3,
            h: 6,
            w: 5,
        };
        let w8 = weights(s.rows() * s.cout, 8)
            .iter()
            .map(|&v| v.clamp(-8, 7))
            .collect::<Vec<_>>();
        let mut w4 = vec![0u8; s.rows() * 3];
        pack_i4(&w8, s.cout, &mut w4).unwrap();
        let x = pattern(3 * 6 * 5, 1);
        let mut map = vec![0u32; bits::words(x.len())];
        bits::pack(&x, &mut map);
        for pool2 in [false, true] {
            let (mut a8, mut a4) = (vec![0; s.acc_len(pool2)], vec![0; s.acc_len(pool2)]);
            let o8 = scatter(&map, &s, Weights::I8(&w8), pool2, &mut a8);
            let o4 = scatter(&map, &s, Weights::I4(&w4), pool2, &mut a4);
            assert_eq!((a8, o8), (a4, o4));
        }
    }

    #[test]
    fn pool2_sums_windows_and_floors_odd_sizes() {
        for (h, w) in [(5, 7), (4, 4), (3, 2)] {
            let s = ConvShape {
                cin: 2,
                cout: 3,
                k: 3,
                h,
                w,
            };
            let wq = weights(s.rows() * 3, 100);
            let x = pattern(2 * h * w, 3);
            let mut map = vec![0u32; bits::words(x.len())];
            bits::pack(&x, &mut map);
            let mut pooled = vec![0; s.acc_len(true)];
            scatter(&map, &s, Weights::I8(&wq), true, &mut pooled);
            let full = float_conv(&x, &s, &wq);
            let (ph, pw) = (h / 2, w / 2);
            for co in 0..3 {
                for py in 0..ph {
                    for px in 0..pw {
                        let mut sum = 0.0;
                        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                            sum += full[(co * h + 2 * py + dy) * w + 2 * px + dx];
                        }
                        assert_eq!(pooled[(py * pw + px) * 3 + co] as f64, sum);
                    }
                }
            }
        }
    }
}
