//! Per-channel requantisation and affine (BatchNorm) kernels on Q12 currents.
//!
//! The one formula ([`requantize`]):
//!
//! ```text
//! I = sat_i32( ((acc * mult[c] + r) >> shift) + bias[c] ),  r = 2^(shift-1) (0 if shift = 0)
//! ```
//!
//! computed in `i64` (`|acc * mult| < 2^62`), `>>` arithmetic, so the shift rounds half
//! up (towards +inf); `bias` is in output units (Q12 current). For a float layer
//! `y = a_c * (s_w * acc_real) + b_c` whose output is a current in the LIF-input domain,
//! the exporter sets `mult / 2^shift = 4096 * 0.75 * a_c * s_w * s_in` (with `s_in` the
//! input scale: `1/255` for pixels, `1` for spikes, `1/4` for 2x2 spike counts or pooled
//! accumulators, `1/(4096 * 0.75)` for a current) and `bias = round(4096 * 0.75 * b_c)`.
//! [`quantize_multiplier`] computes `(mult, shift)` from the real factor.

/// Per-channel `(mult, bias)` with one shift: a requantisation or a BatchNorm affine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Requant<'a> {
    /// Multiplier per output channel (signed: a negative BatchNorm gamma is allowed).
    pub mult: &'a [i32],
    /// Offset per output channel, in output units (Q12), added after the shift.
    pub bias: &'a [i32],
    /// Right shift, `0..=62`, shared by all channels.
    pub shift: u8,
}

/// Largest shift [`requantize`] accepts.
pub const MAX_SHIFT: u8 = 62;

/// The requantisation formula (see the module docs): the numeric truth for every layer.
#[inline(always)]
pub const fn requantize(acc: i32, mult: i32, shift: u8, bias: i32) -> i32 {
    let round = if shift == 0 { 0 } else { 1i64 << (shift - 1) };
    let v = ((acc as i64 * mult as i64 + round) >> shift) + bias as i64;
    if v > i32::MAX as i64 {
        i32::MAX
    } else if v < i32::MIN as i64 {
        i32::MIN
    } else {
        v as i32
    }
}

/// Chooses `(mult, shift)` with `mult / 2^shift ~= real`, `|mult|` in `[2^30, 2^31)`
/// when possible (shift capped at [`MAX_SHIFT`]). `real = 0` gives `(0, 0)`.
///
/// Returns `None` when `|real| >= 2^31` or `real` is not finite.
pub fn quantize_multiplier(real: f64) -> Option<(i32, u8)> {
    if real.is_nan() || real.is_infinite() {
        return None;
    }
    if real == 0.0 {
        return Some((0, 0));
    }
    let neg = real < 0.0;
    let mut m = if neg { -real } else { real };
    if m >= 2147483648.0 {
        return None;
    }
    let mut shift = 0u8;
    while m < 1073741824.0 && shift < MAX_SHIFT {
        m *= 2.0;
        shift += 1;
    }
    // Round half up (m > 0); `as` truncates.
    let mut q = (m + 0.5) as i64;
    if q >= 1 << 31 {
        if shift == 0 {
            return None;
        }
        q >>= 1;
        shift -= 1;
    }
    let q = q as i32;
    Some((if neg { -q } else { q }, shift))
}

impl Requant<'_> {
    /// Requantises `acc` for channel `c`.
    #[inline(always)]
    pub fn apply(&self, acc: i32, c: usize) -> i32 {
        requantize(acc, self.mult[c], self.shift, self.bias[c])
    }
}

/// [`requantize`] for one shift, decoded once per layer so that the per-element work is
/// 32-bit: one `SMLAL`-style 64-bit product, a funnel shift and a saturating add. Every
/// variant returns exactly what [`requantize`] returns (the unit tests compare them).
pub(crate) trait Requantizer: Copy {
    /// `requantize(acc, mult, shift, bias)`.
    fn apply(self, acc: i32, mult: i32, bias: i32) -> i32;
}

/// `shift = 0`: the general formula.
#[derive(Clone, Copy)]
pub(crate) struct ShiftZero;

/// `1 <= shift <= 31`: the shifted product may exceed 32 bits (then the general formula).
#[derive(Clone, Copy)]
pub(crate) struct ShiftLow(pub u32);

/// `32 <= shift <= 62`: the shifted product always fits 32 bits (`|acc * mult| <= 2^62`).
#[derive(Clone, Copy)]
pub(crate) struct ShiftHigh(pub u32);

impl Requantizer for ShiftZero {
    #[inline(always)]
    fn apply(self, acc: i32, mult: i32, bias: i32) -> i32 {
        requantize(acc, mult, 0, bias)
    }
}

impl Requantizer for ShiftLow {
    #[inline(always)]
    fn apply(self, acc: i32, mult: i32, bias: i32) -> i32 {
        let s = self.0;
        if NO_LONG_MUL && s >= 17 && narrow(acc) {
            return requantize_narrow(acc, mult, s, bias);
        }
        // -2^(s-1) <= acc < 2^(s-1) (nearly every accumulator): acc << (32 - s) fits i32
        // and SMMULR's (a * m + 2^31) >> 32 of it is exactly (acc * m + 2^(s-1)) >> s,
        // which fits i32 (|.| < 2^30): one shift, one multiply, one saturating add.
        if !NO_LONG_MUL && ((acc as u32).wrapping_add(1 << (s - 1))) < 1u32 << s {
            return smmulr(acc << (32 - s), mult).saturating_add(bias);
        }
        // Bits s..s+32 of t = acc * mult + 2^(s-1) (`v`), and the bits above them (`top`):
        // t >> s fits i32 iff `top` is the sign extension of `v`.
        let (v, top) = funnel_shift(acc, mult, s);
        if top == v >> 31 {
            // Both terms fit i32, so the i32 saturating add is the i64 sum saturated.
            v.saturating_add(bias)
        } else {
            requantize(acc, mult, s as u8, bias)
        }
    }
}

/// True on cores without a 32x32 -> 64-bit multiply (ARMv6-M: Cortex-M0/M0+), where an
/// `i64` product and shift are library calls (`__aeabi_lmul`, `__aeabi_lasr`).
const NO_LONG_MUL: bool = cfg!(all(target_arch = "arm", not(target_feature = "thumb2")));

/// `|acc| <= 2^15` (`acc` in `-2^15..2^15`).
#[inline(always)]
fn narrow(acc: i32) -> bool {
    (acc as u32).wrapping_add(1 << 15) < 1 << 16
}

/// [`requantize`] with 32-bit multiplies only, for `-2^15 <= acc < 2^15` and
/// `17 <= shift <= 46`: with `mult = mh * 2^16 + ml` (`ml` unsigned 16-bit),
/// `floor(t / 2^16) = acc * mh + floor(acc * ml / 2^16) + 2^(shift-17)` exactly (the
/// rounding term is a multiple of 2^16), every term and the sum fit `i32`, and the rest
/// of the shift is one arithmetic shift of the sum.
#[inline(always)]
pub(crate) fn requantize_narrow(acc: i32, mult: i32, shift: u32, bias: i32) -> i32 {
    let (mh, ml) = (mult >> 16, mult & 0xffff);
    let sum = acc * mh + ((acc * ml) >> 16) + (1 << (shift - 17));
    (sum >> (shift - 16)).saturating_add(bias)
}

/// `((t >> s) as i32, (t >> (s + 32)) as i32)` for `t = acc * mult + 2^(s-1)`, `1 <= s <= 31`.
#[inline(always)]
fn funnel_shift(acc: i32, mult: i32, s: u32) -> (i32, i32) {
    #[cfg(all(target_arch = "arm", target_feature = "thumb2"))]
    {
        // One SMLAL onto the rounding term, then the 64-bit shift in 4 instructions
        // (the compiler's version masks the shift amounts: 7 or more).
        let (v, top): (i32, i32);
        // SAFETY: register-only arithmetic; 1 <= s <= 31 so both shifts are defined.
        unsafe {
            core::arch::asm!(
                "smlal {lo}, {hi}, {a}, {m}",
                "lsr.w {lo}, {lo}, {s}",
                "lsl.w {t}, {hi}, {ls}",
                "orr.w {lo}, {lo}, {t}",
                "asr.w {hi}, {hi}, {s}",
                lo = inout(reg) 1u32 << (s - 1) => v,
                hi = inout(reg) 0i32 => top,
                a = in(reg) acc,
                m = in(reg) mult,
                s = in(reg) s,
                ls = in(reg) 32 - s,
                t = out(reg) _,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        (v, top)
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "thumb2")))]
    {
        let t = acc as i64 * mult as i64 + (1i64 << (s - 1));
        ((t >> s) as i32, (t >> (s + 32)) as i32)
    }
}

/// `(a * b + 2^31) >> 32`: the high word of the product, rounded (ARMv7E-M's SMMULR).
#[inline(always)]
fn smmulr(a: i32, b: i32) -> i32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: i32;
        // SAFETY: register-only arithmetic.
        unsafe {
            core::arch::asm!("smmulr {r}, {a}, {b}", a = in(reg) a, b = in(reg) b,
                r = lateout(reg) r, options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        ((a as i64 * b as i64 + (1 << 31)) >> 32) as i32
    }
}

/// `(a * b) >> 32`: the high word of the product, floored (ARMv7E-M's SMMUL).
#[inline(always)]
fn smmul(a: i32, b: i32) -> i32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: i32;
        // SAFETY: register-only arithmetic.
        unsafe {
            core::arch::asm!("smmul {r}, {a}, {b}", a = in(reg) a, b = in(reg) b,
                r = lateout(reg) r, options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        ((a as i64 * b as i64) >> 32) as i32
    }
}

impl Requantizer for ShiftHigh {
    #[inline(always)]
    fn apply(self, acc: i32, mult: i32, bias: i32) -> i32 {
        if NO_LONG_MUL && self.0 <= 46 && narrow(acc) {
            return requantize_narrow(acc, mult, self.0, bias);
        }
        if !NO_LONG_MUL {
            // With s >= 33 the rounding term 2^(s-1) is a multiple of 2^32, so
            // (p + 2^(s-1)) >> s = ((p >> 32) + 2^(s-33)) >> (s - 32) for p = acc * mult;
            // s = 32 is SMMULR. |p >> 32| < 2^30, so nothing overflows.
            let v = if self.0 == 32 {
                smmulr(acc, mult)
            } else {
                (smmul(acc, mult) + (1 << (self.0 - 33))) >> (self.0 - 32)
            };
            return v.saturating_add(bias);
        }
        let t = acc as i64 * mult as i64 + (1i64 << (self.0 - 1));
        // t >> shift = (high word of t) >> (shift - 32), |t| < 2^63, so it fits i32.
        (((t >> 32) as i32) >> (self.0 - 32)).saturating_add(bias)
    }
}

/// Runs `$body` with `$r` bound to the [`Requantizer`] for `$shift` (`<= MAX_SHIFT`).
macro_rules! with_requantizer {
    ($shift:expr, |$r:ident| $body:expr) => {{
        let shift: u8 = $shift;
        assert!(
            shift <= $crate::requant::MAX_SHIFT,
            "requant shift {shift} > 62"
        );
        match shift {
            0 => {
                let $r = $crate::requant::ShiftZero;
                $body
            }
            1..=31 => {
                let $r = $crate::requant::ShiftLow(shift as u32);
                $body
            }
            _ => {
                let $r = $crate::requant::ShiftHigh(shift as u32);
                $body
            }
        }
    }};
}
pub(crate) use with_requantizer;

/// How a kernel writes its output current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mode {
    /// `out = value`.
    Store,
    /// `out = sat_i32(out + value)` (a cell node summing its incoming edges).
    Accumulate,
}

/// One channel of [`hwc_to_chw`]: `out[i] (=|+=) r(acc[i * stride])` for `i < out.len()`
/// (`T`: `i32` accumulators, or `i16` lanes of packed ones).
#[inline(always)]
fn channel<R: Requantizer, T: Copy + Into<i32>, const ACC: bool>(
    r: R,
    acc: &[T],
    stride: usize,
    m: i32,
    b: i32,
    out: &mut [i32],
) {
    channel_onto::<R, T, ACC>(r, acc, stride, m, b, None, out);
}

/// [`channel`], accumulating onto `base` instead of `out` itself when it is given
/// (`out[i] = sat_i32(base[i] + r(acc[i * stride]))`, `ACC` true, `base.len() >= out.len()`).
#[inline(always)]
fn channel_onto<R: Requantizer, T: Copy + Into<i32>, const ACC: bool>(
    r: R,
    acc: &[T],
    stride: usize,
    m: i32,
    b: i32,
    base: Option<&[i32]>,
    out: &mut [i32],
) {
    if out.is_empty() {
        return;
    }
    // One check for the whole channel instead of one per element.
    assert!((out.len() - 1) * stride < acc.len());
    let mut src = acc.as_ptr();
    let mut next = || {
        // SAFETY: element i is read at i * stride <= (len - 1) * stride < acc.len(),
        // and `next` is called once per output element.
        let a: i32 = unsafe { *src }.into();
        src = src.wrapping_add(stride);
        r.apply(a, m, b)
    };
    if NO_LONG_MUL && base.is_none() {
        // ARMv6-M's eight low registers make the pairs below slower there.
        for o in out.iter_mut() {
            let v = next();
            *o = if ACC { o.saturating_add(v) } else { v };
        }
        return;
    }
    // Two elements per iteration (one loop test per pair), through pointers (the
    // compiler's indexed loop over `chunks_exact_mut` took 10 instructions an element
    // accumulating, this one 8). Accumulating reads `base`, or `out` itself.
    let n = out.len();
    let o0 = out.as_mut_ptr();
    let p0 = match base {
        Some(base) => {
            assert!(ACC && base.len() >= n);
            base.as_ptr()
        }
        None => o0 as *const i32,
    };
    let (mut o, mut p) = (o0, p0);
    // SAFETY: `o` and `p` step over the first `n` elements of `out` and of `base` (or
    // `out`), two at a time, then the last one when `n` is odd; `p` is read only where
    // accumulating, before `o` (possibly the same element) is written.
    unsafe {
        let end = o.add(n & !1);
        while o != end {
            let (v0, v1) = (next(), next());
            if ACC {
                let (p0, p1) = (*p, *p.add(1));
                *o = p0.saturating_add(v0);
                *o.add(1) = p1.saturating_add(v1);
            } else {
                *o = v0;
                *o.add(1) = v1;
            }
            o = o.add(2);
            p = p.add(2);
        }
        if n % 2 == 1 {
            let v = next();
            *o = if ACC { (*p).saturating_add(v) } else { v };
        }
    }
}

/// Requantises `[p][c]` accumulators (`p` = pixel, `channels` inner) into a `[c][p]`
/// current map, storing or accumulating.
pub fn hwc_to_chw(acc: &[i32], rq: &Requant, channels: usize, out: &mut [i32], mode: Mode) {
    hwc_to_chw_bounded(acc, rq, channels, u32::MAX, out, mode);
}

/// [`hwc_to_chw`] for accumulators known to satisfy `|acc| <= bound` (a convolution's
/// bound follows from its shape: rows x largest |weight| x largest input). When the
/// bound is below `2^(shift-1)`, every element takes the SMMULR path of the
/// requantisation without a range test. A wrong bound gives wrong currents: callers
/// pass what the layer's shape guarantees, `u32::MAX` when unknown.
pub fn hwc_to_chw_bounded(
    acc: &[i32],
    rq: &Requant,
    channels: usize,
    bound: u32,
    out: &mut [i32],
    mode: Mode,
) {
    transpose_any(acc, |c| c, rq, channels, bound, out, mode);
}

/// [`hwc_to_chw_bounded`] for the `i16` lanes of packed accumulators
/// ([`crate::conv_spikes::scatter_packed`]): channel `c` of pixel `p` is lane
/// `p * channels + index(c)` ([`crate::weights::packed_index`], or
/// [`crate::weights::packed_index_i4`] for [`crate::conv_spikes::scatter_packed_i4`],
/// whose lanes hold 16 times the accumulators: pass its requantisation with the shift
/// raised by 4 and its bound times 16); `channels % 4 == 0`.
#[allow(clippy::too_many_arguments)]
pub fn hwc16_to_chw_bounded(
    acc: &[i16],
    rq: &Requant,
    channels: usize,
    bound: u32,
    index: fn(usize) -> usize,
    out: &mut [i32],
    mode: Mode,
) {
    let Some((plane, path)) = lanes16_path(acc.len(), rq, channels, bound) else {
        return;
    };
    let (mult, bias) = (&rq.mult[..channels], &rq.bias[..channels]);
    let out = &mut out[..channels * plane];
    let s = rq.shift;
    if path == Lanes16::Smmulr {
        let r = ShiftLowBounded(s as u32);
        transpose(r, acc, index, mult, bias, plane, out, mode);
    } else if path == Lanes16::Narrow {
        transpose_narrow(acc, index, mult, bias, plane, out, mode, s as u32);
    } else {
        for (c, dst) in out.chunks_exact_mut(plane.max(1)).enumerate() {
            let src = acc[index(c)..].iter().step_by(channels);
            for (o, &a) in dst.iter_mut().zip(src) {
                let v = requantize(a as i32, mult[c], s, bias[c]);
                *o = match mode {
                    Mode::Store => v,
                    Mode::Accumulate => o.saturating_add(v),
                };
            }
        }
    }
}

/// How [`hwc16_to_chw_bounded`] transposes a layer's lanes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lanes16 {
    /// `|acc| <= 2^15` below `2^(shift-1)`, shifts 1..=31 with a long multiply: SMMULR.
    Smmulr,
    /// ARMv6-M, shifts 17..=46: 32-bit multiplies only ([`transpose_narrow`]).
    Narrow,
    /// The formula in a plain loop (shifts `Network::prepare` does not pack: little flash).
    Formula,
}

/// The plane (pixels per channel) of `len` packed lanes of `channels` channels and the
/// path their transposition takes; `None` for no channels. Layers have 4, 8, 16, ...
/// channels: a shift where ARMv6-M would divide in software (cores that divide in
/// hardware keep the division, which compiles to faster code around it there).
#[inline(always)]
fn lanes16_path(len: usize, rq: &Requant, channels: usize, bound: u32) -> Option<(usize, Lanes16)> {
    assert!(
        channels % 4 == 0,
        "packed accumulators need channels % 4 == 0"
    );
    if channels == 0 {
        return None;
    }
    let plane = if !crate::conv_spikes::HW_DIV && channels.is_power_of_two() {
        len >> channels.trailing_zeros()
    } else {
        len / channels
    };
    let s = rq.shift;
    // |acc| <= 2^15: shifts 17..=31 always take the SMMULR path.
    let bound = bound.min(i16::MAX as u32 + 1);
    let path = if !NO_LONG_MUL && (1..=31).contains(&s) && (bound as u64) < 1u64 << (s - 1) {
        Lanes16::Smmulr
    } else if NO_LONG_MUL && (17..=46).contains(&s) {
        Lanes16::Narrow
    } else {
        Lanes16::Formula
    };
    Some((plane, path))
}

/// [`hwc16_to_chw_bounded`] onto another current map: `out = sat_i32(base + value)`
/// element by element (a cell node whose first edge is a skip from `base` and whose next
/// is this convolution: the same sums, in the same order, as copying `base` into `out`
/// and accumulating). Where the transposition takes the `SMMULR` path it reads `base`
/// itself; elsewhere it accumulates onto a copy.
#[allow(clippy::too_many_arguments)]
pub fn hwc16_to_chw_onto(
    acc: &[i16],
    rq: &Requant,
    channels: usize,
    bound: u32,
    index: fn(usize) -> usize,
    base: &[i32],
    out: &mut [i32],
) {
    let Some((plane, path)) = lanes16_path(acc.len(), rq, channels, bound) else {
        return;
    };
    let (mult, bias) = (&rq.mult[..channels], &rq.bias[..channels]);
    let out = &mut out[..channels * plane];
    let base = &base[..out.len()];
    let s = rq.shift;
    match path {
        Lanes16::Narrow => {
            let m = Mode::Accumulate;
            return transpose_narrow_onto::<_, true>(
                acc, index, mult, bias, plane, out, m, s as u32, base,
            );
        }
        Lanes16::Formula => {
            out.copy_from_slice(base);
            return hwc16_to_chw_bounded(acc, rq, channels, bound, index, out, Mode::Accumulate);
        }
        Lanes16::Smmulr => {}
    }
    let r = ShiftLowBounded(s as u32);
    for (c, (dst, from)) in out
        .chunks_exact_mut(plane.max(1))
        .zip(base.chunks_exact(plane.max(1)))
        .enumerate()
    {
        let src = &acc[index(c)..];
        channel_onto::<_, _, true>(r, src, channels, mult[c], bias[c], Some(from), dst);
    }
}

/// [`hwc_to_chw_bounded`] over any accumulator element and channel order.
#[inline(always)]
fn transpose_any<T: Copy + Into<i32>>(
    acc: &[T],
    index: impl Fn(usize) -> usize + Copy,
    rq: &Requant,
    channels: usize,
    bound: u32,
    out: &mut [i32],
    mode: Mode,
) {
    if channels == 0 {
        return;
    }
    let plane = acc.len() / channels;
    let (mult, bias) = (&rq.mult[..channels], &rq.bias[..channels]);
    let out = &mut out[..channels * plane];
    let s = rq.shift;
    if !NO_LONG_MUL && (1..=31).contains(&s) && (bound as u64) < 1u64 << (s - 1) {
        let r = ShiftLowBounded(s as u32);
        transpose(r, acc, index, mult, bias, plane, out, mode);
    } else if NO_LONG_MUL && bound < 1 << 15 && (17..=46).contains(&s) {
        transpose_narrow(acc, index, mult, bias, plane, out, mode, s as u32);
    } else {
        with_requantizer!(s, |r| transpose(
            r, acc, index, mult, bias, plane, out, mode
        ))
    }
}

/// The channel loop of [`hwc_to_chw_bounded`] for one requantiser; channel `c` of a
/// pixel is element `index(c)` of its row of `mult.len()` accumulators.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn transpose<R: Requantizer, T: Copy + Into<i32>>(
    r: R,
    acc: &[T],
    index: impl Fn(usize) -> usize,
    mult: &[i32],
    bias: &[i32],
    plane: usize,
    out: &mut [i32],
    mode: Mode,
) {
    let channels = mult.len();
    for (c, dst) in out.chunks_exact_mut(plane.max(1)).enumerate() {
        let (m, b, src) = (mult[c], bias[c], &acc[index(c)..]);
        match mode {
            Mode::Store => channel::<_, _, false>(r, src, channels, m, b, dst),
            Mode::Accumulate => channel::<_, _, true>(r, src, channels, m, b, dst),
        }
    }
}

/// [`transpose`] for accumulators with `|acc| < 2^15` and `17 <= shift <= 46` on cores
/// without a long multiply: [`requantize_narrow`] with the channel's `mult` split once and
/// its bias folded into the rounding term (`floor((t + b * 2^k) / 2^k) = floor(t / 2^k) + b`),
/// where that term stays below `2^30 - 2^16` (then no sum overflows `i32` and nothing
/// saturates: two multiplies, two shifts and two adds per element). Other channels take
/// the formula.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn transpose_narrow<T: Copy + Into<i32>>(
    acc: &[T],
    index: impl Fn(usize) -> usize,
    mult: &[i32],
    bias: &[i32],
    plane: usize,
    out: &mut [i32],
    mode: Mode,
    s: u32,
) {
    transpose_narrow_onto::<T, false>(acc, index, mult, bias, plane, out, mode, s, &[]);
}

/// [`transpose_narrow`], accumulating onto `base` (`[c][plane]`, as `out`) instead of
/// `out` itself when `ONTO` (`mode` is then ignored). On ARMv6-M a layer whose biases
/// all fold into the rounding term ([`all_fold`]) takes the queued assembly runs of
/// [`transpose_narrow_v6m`]; any other layer, and other cores, the loop below.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn transpose_narrow_onto<T: Copy + Into<i32>, const ONTO: bool>(
    acc: &[T],
    index: impl Fn(usize) -> usize,
    mult: &[i32],
    bias: &[i32],
    plane: usize,
    out: &mut [i32],
    mode: Mode,
    s: u32,
    base: &[i32],
) {
    let mode = if ONTO { Mode::Accumulate } else { mode };
    let channels = mult.len();
    let k = s - 16;
    if plane == 0 {
        return;
    }
    // A channel's accumulators span `span + 1` elements from its first.
    let span = (plane - 1) * channels;
    if NO_LONG_MUL && all_fold(s, bias) {
        return transpose_narrow_v6m::<T, ONTO>(acc, &index, mult, bias, plane, out, mode, s, base);
    }
    // Channel by channel, `out` (and `base`) split a plane at a time: no multiply, and no
    // division as `chunks_exact_mut` has (in software on ARMv6-M), per channel.
    let mut out_rest = &mut out[..channels * plane];
    let mut base_rest = if ONTO {
        &base[..channels * plane]
    } else {
        &[][..]
    };
    for (c, (&m, &b)) in mult.iter().zip(bias).enumerate() {
        let (dst, rest) = core::mem::take(&mut out_rest).split_at_mut(plane);
        out_rest = rest;
        // Onto `base`: added onto a copy of it.
        let from = if ONTO {
            let (from, rest) = base_rest.split_at(plane);
            base_rest = rest;
            from
        } else {
            &[][..]
        };
        let src = &acc[index(c)..];
        let (mh, ml) = (m >> 16, m & 0xffff);
        let round = folded_round(s, b);
        if ONTO {
            dst.copy_from_slice(from);
        }
        // One check for the whole channel instead of one per element.
        assert!(span < src.len());
        let mut p = src.as_ptr();
        let mut next = || {
            // SAFETY: element i is read at i * channels <= (len - 1) * channels < src.len(),
            // and `next` is called once per output element.
            let a: i32 = unsafe { *p }.into();
            p = p.wrapping_add(channels);
            a
        };
        let Some(round) = round else {
            for o in dst.iter_mut() {
                let v = requantize_narrow(next(), m, s, b);
                *o = match mode {
                    Mode::Store => v,
                    Mode::Accumulate => o.saturating_add(v),
                };
            }
            continue;
        };
        let f = |a: i32| (a * mh + ((a * ml) >> 16) + round) >> k;
        // |a * mh| <= 2^30, |(a * ml) >> 16| <= 2^15, |round| < 2^30 - 2^16: no overflow.
        match mode {
            Mode::Store => dst.iter_mut().for_each(|o| *o = f(next())),
            Mode::Accumulate => dst
                .iter_mut()
                .for_each(|o| *o = o.saturating_add(f(next()))),
        }
    }
}

/// The rounding term of [`transpose_narrow`] with the bias folded in, `2^(s-17) + b 2^(s-16)`,
/// where its magnitude stays below `2^30 - 2^16`, else `None`. Per channel, in 32-bit
/// arithmetic where `|b| <= 2^(44-s)` proves the bound (then `|round| <= 2^28 + 2^29`):
/// ARMv6-M has no 64-bit shift instruction (a library call each).
#[inline(always)]
fn folded_round(s: u32, b: i32) -> Option<i32> {
    let k = s - 16;
    if k <= 28 && (b.wrapping_add(1 << (28 - k)) as u32) <= 1 << (29 - k) {
        return Some((1 << (k - 1)) + (b << k));
    }
    folded_round_wide(s, b)
}

/// [`folded_round`] in 64-bit arithmetic, out of line (rare: not hoisted into the callers'
/// loops, whose every call would pay the 64-bit shift of ARMv6-M's library).
#[inline(never)]
#[cold]
fn folded_round_wide(s: u32, b: i32) -> Option<i32> {
    let round = (1i64 << (s - 17)) + ((b as i64) << (s - 16));
    (round.unsigned_abs() < (1 << 30) - (1 << 16)).then_some(round as i32)
}

/// The folded-bias requantisation of one element in ARMv6-M assembly: `r0 = (a mh +
/// ((a ml) >> 16) + round) >> k` for `a` in r0 and r1, `mh` in r4, `ml` in r5, `k` in r6
/// and `round` in r8 (two multiplies, two shifts, two adds); r1 is clobbered.
#[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
macro_rules! folded_v6m {
    () => {
        concat!(
            "muls r1, r4, r1\n",
            "muls r0, r5, r0\n",
            "asrs r0, r0, #16\n",
            "adds r0, r0, r1\n",
            "add r0, r8\n",
            "asrs r0, r6\n",
        )
    };
}

/// The head of a queued run in ARMv6-M assembly ([`NarrowRun`], label `1`): its six
/// words from the queue at lr (which steps on), to label `8` at the end marker, else
/// `round` into r8, the plane's end into r10 and `k` from r11 into r6.
#[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
macro_rules! next_run_v6m {
    () => {
        concat!(
            "1:\n",
            "mov r6, lr\n",
            "ldm r6!, {{r0, r1, r2, r4, r5, r7}}\n",
            "mov lr, r6\n",
            "cmp r1, #0\n",
            "beq 8f\n",
            "mov r8, r0\n",
            "mov r10, r1\n",
            "mov r6, r11\n",
        )
    };
}

/// True when every bias of the layer folds into the rounding term by [`folded_round`]'s
/// 32-bit test (`|b| <= 2^(44-s)`, `s <= 44`).
#[inline(always)]
fn all_fold(s: u32, bias: &[i32]) -> bool {
    if s > 44 {
        return false;
    }
    // The bounds once for the layer (the compiler does not hoist them out of a per-bias
    // call of that test on ARMv6-M).
    let lim = 1i32 << (44 - s);
    let span = 2 * lim as u32;
    bias.iter().all(|&b| (b.wrapping_add(lim) as u32) <= span)
}

/// [`transpose_narrow_onto`] on ARMv6-M where every bias folds into the rounding term
/// ([`all_fold`]): the channels are queued a batch at a time, each as the six words one
/// `LDM` of [`narrow_runs_v6m`] reads, by a loop with few live values and no branch (a
/// channel through its own call took 86 instructions of Rust around it, the compiler
/// spilling the loop's state).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn transpose_narrow_v6m<T: Copy + Into<i32>, const ONTO: bool>(
    acc: &[T],
    index: &impl Fn(usize) -> usize,
    mult: &[i32],
    bias: &[i32],
    plane: usize,
    out: &mut [i32],
    mode: Mode,
    s: u32,
    base: &[i32],
) {
    let mode = if ONTO { Mode::Accumulate } else { mode };
    let channels = mult.len().min(bias.len());
    let n = channels * plane;
    let out = &mut out[..n];
    let base = if ONTO { &base[..n] } else { &[][..] };
    // Channel c's accumulators are index(c) + i * channels, i < plane: index(c) < lim.
    let span = (plane - 1) * channels;
    assert!(acc.len() > span);
    let lim = acc.len() - span;
    // Onto `base`: its byte offset from `out`, the same for every channel.
    let onto_off = (base.as_ptr() as isize).wrapping_sub(out.as_ptr() as isize);
    let k = s - 16;
    let half = 1i32 << (k - 1);
    let mut runs = [core::mem::MaybeUninit::<NarrowRun>::uninit(); RUN_BATCH + 1];
    let mut dst = out.as_mut_ptr();
    let mut c = 0;
    while c < channels {
        let batch = (channels - c).min(RUN_BATCH);
        for (run, (&m, &b)) in runs[..batch]
            .iter_mut()
            .zip(mult[c..].iter().zip(&bias[c..]))
        {
            let idx = index(c);
            assert!(idx < lim);
            let end = dst.wrapping_add(plane);
            run.write(NarrowRun {
                round: (b << k) + half,
                end,
                // One stride early: the loop reads [p + s] before stepping p.
                src: acc.as_ptr().wrapping_add(idx).wrapping_sub(channels) as *const u8,
                mh: m >> 16,
                ml: m & 0xffff,
                dst,
            });
            dst = end;
            c += 1;
        }
        // SAFETY: `batch` runs were written; each reads idx + i * channels < acc.len()
        // and writes (and onto `base`, reads) its own plane of `out` (inside `n`).
        unsafe { narrow_runs_v6m::<T, ONTO>(&mut runs, batch, channels, k, mode, onto_off) };
    }
}

/// One channel of [`transpose_narrow_v6m`] queued for [`narrow_runs_v6m`]: its folded
/// rounding term and split multiplier, the end and start of its output plane, and its
/// first accumulator minus one stride. Six words in the order one `LDM` reads them.
#[repr(C)]
#[derive(Clone, Copy)]
struct NarrowRun {
    round: i32,
    end: *mut i32,
    src: *const u8,
    mh: i32,
    ml: i32,
    dst: *mut i32,
}

/// Channels per [`narrow_runs_v6m`] call (the queue lives on the stack, one more entry
/// for the end marker).
const RUN_BATCH: usize = 8;

/// The folded-bias loop of [`transpose_narrow`] on ARMv6-M over the first `n` queued
/// channels of `runs` (written; entry `n` is overwritten as the end marker): `out[i]
/// (=|+=) (a mh + ((a ml) >> 16) + round) >> k` for `a = src[i * stride]` (`i32` or
/// `i16`), onto `base` (at byte offset `onto_off` from each output) when `ONTO`. 12
/// instructions per element (15 accumulating, whose `i32` overflow saturates as
/// `saturating_add` does), against about 20 for the compiler's loop; about 12 per
/// channel, whose parameters one `LDM` brings. All eight low registers hold loop values
/// (r6/r7 saved and restored), the rounding term, the plane's end, the onto offset, `k`
/// and the queue in high registers.
///
/// # Safety
/// Runs `0..n` written; each reads `end - dst >= 1` elements `stride` apart from one
/// stride past its `src` and writes `dst..end` (reading `base` there when `ONTO`);
/// `n <= RUN_BATCH`.
#[inline(always)]
#[allow(unused_variables)]
unsafe fn narrow_runs_v6m<T: Copy + Into<i32>, const ONTO: bool>(
    runs: &mut [core::mem::MaybeUninit<NarrowRun>; RUN_BATCH + 1],
    n: usize,
    stride: usize,
    k: u32,
    mode: Mode,
    onto_off: isize,
) {
    // The end marker: a run whose end is null (the only field read of it).
    // SAFETY: `end` is the second word of the entry.
    unsafe {
        (runs[n].as_mut_ptr() as *mut *mut i32)
            .add(1)
            .write(core::ptr::null_mut())
    };
    #[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
    {
        let s = stride * core::mem::size_of::<T>();
        // Per run: lr = the queue, r11 = k, r12 = the onto offset; in the loop r0 = a,
        // r1 = t, r2 = p, r3 = s, r4 = mh, r5 = ml, r6 = k, r7 = o, r8 = round,
        // r10 = end.
        macro_rules! run {
            ($load:literal, $($acc:tt)*) => {
                // SAFETY: the caller guarantees every queued run; r6/r7 are restored
                // before the end.
                unsafe {
                    core::arch::asm!(
                        "push {{r6, r7}}",
                        "mov lr, r0",
                        "mov r11, r1",
                        "mov r12, r5",
                        next_run_v6m!(),
                        "2:",
                        $load,
                        "adds r2, r2, r3",
                        "movs r1, r0",
                        folded_v6m!(),
                        $($acc)*,
                        "stm r7!, {{r0}}",
                        "cmp r7, r10",
                        "bne 2b",
                        "b 1b",
                        "8:",
                        "pop {{r6, r7}}",
                        inout("r0") runs.as_ptr() => _,
                        inout("r1") k => _,
                        out("r2") _,
                        inout("r3") s => _,
                        out("r4") _,
                        inout("r5") onto_off => _,
                        out("r8") _,
                        out("r10") _,
                        out("r11") _,
                        out("r12") _,
                        out("lr") _,
                    );
                }
            };
        }
        // Accumulate: an i32 overflow (V) saturates towards the old value's sign. Onto
        // `base`: the old value from [o + r12] (one more instruction).
        macro_rules! sat {
            ($old:literal) => {
                concat!(
                    $old,
                    "adds r0, r0, r1\nbvc 3f\nasrs r0, r1, #31\nmovs r1, #1\n",
                    "lsls r1, r1, #31\nsubs r1, r1, #1\neors r0, r1\n3:"
                )
            };
        }
        let half = core::mem::size_of::<T>() == 2;
        match (half, ONTO, mode) {
            (true, true, _) => run!(
                "ldrsh r0, [r2, r3]",
                sat!("mov r1, r12\nldr r1, [r7, r1]\n")
            ),
            (false, true, _) => run!("ldr r0, [r2, r3]", sat!("mov r1, r12\nldr r1, [r7, r1]\n")),
            (true, false, Mode::Store) => run!("ldrsh r0, [r2, r3]", ""),
            (false, false, Mode::Store) => run!("ldr r0, [r2, r3]", ""),
            (true, false, Mode::Accumulate) => run!("ldrsh r0, [r2, r3]", sat!("ldr r1, [r7]\n")),
            (false, false, Mode::Accumulate) => run!("ldr r0, [r2, r3]", sat!("ldr r1, [r7]\n")),
        }
    }
    #[cfg(not(all(target_arch = "arm", not(target_feature = "thumb2"))))]
    for run in &runs[..n] {
        // SAFETY: the caller wrote runs 0..n and guarantees their ranges.
        unsafe {
            let run = run.assume_init_ref();
            let len = run.end.offset_from(run.dst) as usize;
            let src = (run.src as *const T).add(stride);
            for i in 0..len {
                let a: i32 = (*src.add(i * stride)).into();
                let v = (a * run.mh + ((a * run.ml) >> 16) + run.round) >> k;
                let o = run.dst.add(i);
                *o = match mode {
                    _ if ONTO => {
                        let b = (o as *const u8).offset(onto_off) as *const i32;
                        (*b).saturating_add(v)
                    }
                    Mode::Store => v,
                    Mode::Accumulate => (*o).saturating_add(v),
                };
            }
        }
    }
}

/// `out[i] = (a mh + ((a ml) >> 16) + round) >> k` for `a = src[i]` while `a` is narrow
/// (`params = [k, round, mh, ml]`, `|round| < 2^30 - 2^16` as [`folded_round`] gives):
/// returns how many elements it wrote, `out.len()` unless it stopped before the first
/// wide accumulator (which the caller requantises by the formula). On ARMv6-M 13
/// instructions per element: the narrow test is `SXTH` and a compare, whose result is
/// also the copy of `a` the multiply by `mh` needs.
#[inline(always)]
fn narrow_affine_run(src: &[i32], out: &mut [i32], params: &[i32; 4]) -> usize {
    let n = src.len().min(out.len());
    #[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
    {
        if n == 0 {
            return 0;
        }
        let o = out.as_mut_ptr();
        let end = o.wrapping_add(n);
        let stop: *mut i32;
        // In the loop r0 = a, r1 = sxth(a), r2 = src, r4 = mh, r5 = ml, r6 = k, r7 = o;
        // r8 = round, r10 = end. r7 leaves in r3.
        // SAFETY: reads `src[..n]` and writes `out[..n]` (n = the shorter length);
        // r6/r7 are restored before the end.
        unsafe {
            core::arch::asm!(
                "push {{r6, r7}}",
                "ldr r6, [r1, #4]",
                "mov r8, r6",
                "mov r10, r0",
                "mov r7, r3",
                "ldr r6, [r1, #0]",
                "ldr r4, [r1, #8]",
                "ldr r5, [r1, #12]",
                "2:",
                "ldm r2!, {{r0}}",
                "sxth r1, r0",
                "cmp r1, r0",
                "bne 4f",
                folded_v6m!(),
                "stm r7!, {{r0}}",
                "cmp r7, r10",
                "bne 2b",
                "4:",
                "mov r3, r7",
                "pop {{r6, r7}}",
                inout("r0") end => _,
                inout("r1") params.as_ptr() => _,
                inout("r2") src.as_ptr() => _,
                inout("r3") o => stop,
                out("r4") _,
                out("r5") _,
                out("r8") _,
                out("r10") _,
            );
        }
        (stop as usize - o as usize) / 4
    }
    #[cfg(not(all(target_arch = "arm", not(target_feature = "thumb2"))))]
    {
        let [k, round, mh, ml] = *params;
        for i in 0..n {
            let a = src[i];
            if !narrow(a) {
                return i;
            }
            out[i] = (a * mh + ((a * ml) >> 16) + round) >> k;
        }
        n
    }
}

/// `1 <= shift <= 31` for accumulators with `|acc| < 2^(shift-1)` on cores with a long
/// multiply: always the SMMULR path of [`ShiftLow`].
#[derive(Clone, Copy)]
pub(crate) struct ShiftLowBounded(pub u32);

impl Requantizer for ShiftLowBounded {
    #[inline(always)]
    fn apply(self, acc: i32, mult: i32, bias: i32) -> i32 {
        smmulr(acc << (32 - self.0), mult).saturating_add(bias)
    }
}

/// [`requantize`] for `shift = k + 16`, `1 <= k <= 28`, in 32-bit arithmetic: for
/// `|acc| <= 2^15` and `|bias| < 2^(28-k)` [`requantize_narrow`] with the bias folded into
/// the rounding term (`|round| < 2^29`, so nothing overflows or saturates), for other
/// narrow accumulators [`requantize_narrow`], the formula otherwise.
#[inline(always)]
fn requantize_small(acc: i32, mult: i32, k: u32, bias: i32) -> i32 {
    if !narrow(acc) {
        return requantize(acc, mult, (k + 16) as u8, bias);
    }
    if (bias.wrapping_add(1 << (28 - k)) as u32) < 1 << (29 - k) {
        let round = (1 << (k - 1)) + (bias << k);
        (acc * (mult >> 16) + ((acc * (mult & 0xffff)) >> 16) + round) >> k
    } else {
        requantize_narrow(acc, mult, k + 16, bias)
    }
}

/// True where [`in_place`] and [`affine_chw`] take [`requantize_small`].
const fn small_path(shift: u8) -> bool {
    NO_LONG_MUL && shift >= 17 && shift <= 44
}

/// Requantises a vector in place, element `o` with channel `o` (linear layers).
pub fn in_place(values: &mut [i32], rq: &Requant) {
    in_place_with(values, rq, small_path(rq.shift));
}

/// [`in_place`], with [`requantize_small`] when `small` (shift `17..=44`).
fn in_place_with(values: &mut [i32], rq: &Requant, small: bool) {
    let n = values.len();
    let (mult, bias) = (&rq.mult[..n], &rq.bias[..n]);
    if small {
        let k = rq.shift as u32 - 16;
        // Runs of elements the folded loop takes; any other by the formula.
        let mut i = 0;
        loop {
            i += small_in_place_run(&mut values[i..], &mult[i..], &bias[i..], k);
            if i == n {
                break;
            }
            values[i] = requantize_small(values[i], mult[i], k, bias[i]);
            i += 1;
        }
        return;
    }
    with_requantizer!(rq.shift, |r| {
        for ((v, &m), &b) in values.iter_mut().zip(mult).zip(bias) {
            *v = r.apply(*v, m, b);
        }
    })
}

/// [`requantize_small`] of `values[i]` with `mult[i]` and `bias[i]` in place (`1 <= k <=
/// 28`), while the element is narrow and its bias folds into the rounding term (the
/// first branch of `requantize_small`): returns how many elements it wrote, all of them
/// unless it stopped before one that needs the formula. On ARMv6-M 26 instructions per
/// element, against 37 for the compiler's loop (which spills).
#[inline(always)]
fn small_in_place_run(values: &mut [i32], mult: &[i32], bias: &[i32], k: u32) -> usize {
    let n = values.len().min(mult.len()).min(bias.len());
    #[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
    {
        if n == 0 {
            return 0;
        }
        let done: usize;
        // SAFETY: reads `mult[..n]`, `bias[..n]` and updates `values[..n]` (byte offset
        // r7 runs 0..4n); r6/r7 are restored before the end.
        unsafe {
            core::arch::asm!(
                // r0 = v, r1 = m, r2 = b, r3 = t, r4 = values, r5 = mult, r6 = bias,
                // r7 = byte offset; r8 = k, r10 = 2^(28-k), r11 = 2^(29-k), r12 = 4n,
                // lr = 2^(k-1). The four constants come in r0-r3.
                "push {{r6, r7}}",
                "mov r6, r3",
                "mov r8, r0",
                "movs r7, #1",
                "lsls r7, r1",
                "mov r10, r7",
                "lsls r7, r7, #1",
                "mov r11, r7",
                "mov r12, r2",
                "movs r7, #1",
                "subs r0, r0, #1",
                "lsls r7, r0",
                "mov lr, r7",
                "movs r7, #0",
                "2:",
                "ldr r0, [r4, r7]",
                "sxth r3, r0",
                "cmp r3, r0",
                "bne 9f",
                "ldr r2, [r6, r7]",
                "mov r3, r10",
                "adds r3, r3, r2",
                "cmp r3, r11",
                "bhs 9f",
                "ldr r1, [r5, r7]",
                "mov r3, r8",
                "lsls r2, r3",
                "add r2, lr",
                "asrs r3, r1, #16",
                "muls r3, r0, r3",
                "uxth r1, r1",
                "muls r1, r0, r1",
                "asrs r1, r1, #16",
                "adds r3, r3, r1",
                "adds r3, r3, r2",
                "mov r1, r8",
                "asrs r3, r1",
                "str r3, [r4, r7]",
                "adds r7, #4",
                "cmp r7, r12",
                "bne 2b",
                "9:",
                "lsrs r3, r7, #2",
                "pop {{r6, r7}}",
                inout("r0") k => _,
                inout("r1") 28 - k => _,
                inout("r2") 4 * n => _,
                inout("r3") bias.as_ptr() => done,
                in("r4") values.as_mut_ptr(),
                in("r5") mult.as_ptr(),
                out("r8") _,
                out("r10") _,
                out("r11") _,
                out("r12") _,
                out("lr") _,
            );
        }
        done
    }
    #[cfg(not(all(target_arch = "arm", not(target_feature = "thumb2"))))]
    {
        for i in 0..n {
            let (a, m, b) = (values[i], mult[i], bias[i]);
            if !narrow(a) || (b.wrapping_add(1 << (28 - k)) as u32) >= 1 << (29 - k) {
                return i;
            }
            values[i] = requantize_small(a, m, k, b);
        }
        n
    }
}

/// [`affine_chw`]'s 32-bit path for a map of whole planes (`mult.len() * plane ==
/// out.len() <= input.len()`) whose biases all fold into the rounding term ([`all_fold`]):
/// the channels queued eight at a time for [`affine_runs`], each as the six words one
/// `LDM` reads; an element outside the `i16` range stops the run, takes the formula
/// here, and the run goes on from the next. Returns false (nothing done) for other maps.
fn affine_chw_queued(input: &[i32], rq: &Requant, plane: usize, out: &mut [i32]) -> bool {
    let (s, channels) = (rq.shift as u32, rq.mult.len());
    if !(17..=44).contains(&s)
        || rq.bias.len() < channels
        || channels * plane != out.len()
        || input.len() < out.len()
        || !all_fold(s, &rq.bias[..channels])
    {
        return false;
    }
    let (k, half) = (s - 16, 1i32 << (s - 17));
    let mut runs = [core::mem::MaybeUninit::<NarrowRun>::uninit(); RUN_BATCH + 1];
    let (mut src, mut dst) = (input.as_ptr(), out.as_mut_ptr());
    let mut c = 0;
    while c < channels {
        let batch = (channels - c).min(RUN_BATCH);
        for (run, (&m, &b)) in runs[..batch]
            .iter_mut()
            .zip(rq.mult[c..].iter().zip(&rq.bias[c..]))
        {
            let end = dst.wrapping_add(plane);
            run.write(NarrowRun {
                round: (b << k) + half,
                end,
                src: src as *const u8,
                mh: m >> 16,
                ml: m & 0xffff,
                dst,
            });
            (src, dst) = (src.wrapping_add(plane), end);
        }
        c += batch;
        // SAFETY: `batch` runs were written, each over its own plane of `input` and
        // `out` (inside both: channels * plane == out.len() <= input.len()).
        unsafe {
            let mut start = runs.as_mut_ptr() as *mut NarrowRun;
            (*start.add(batch)).end = core::ptr::null_mut();
            loop {
                let (stop, run, next) = affine_runs(start, k);
                if stop.is_null() {
                    break;
                }
                // `stop` is the output of the wide element at `next - 1` of `run`.
                let r = &mut *run;
                let m = (r.mh << 16) | r.ml;
                let b = (r.round - half) >> k;
                *stop = requantize_small(*(next as *const i32).sub(1), m, k, b);
                r.src = next;
                r.dst = stop.add(1);
                start = if r.dst == r.end { run.add(1) } else { run };
            }
        }
    }
    true
}

/// The runs of [`affine_chw_queued`] from `start` to the end marker (a null `end`):
/// `dst[i] = (x mh + ((x ml) >> 16) + round) >> k` for `x = src[i]` (`i32`, read with
/// `LDM`), 13 instructions per element on ARMv6-M, about 12 per run. Stops before an
/// element outside the `i16` range: returns its output, its run and the source just past
/// it; a null output when every run is done.
///
/// # Safety
/// Every run from `start` to the marker reads `end - dst >= 1` `i32` from `src` and
/// writes `dst..end`.
#[inline(never)]
unsafe fn affine_runs(start: *mut NarrowRun, k: u32) -> (*mut i32, *mut NarrowRun, *const u8) {
    #[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
    {
        let (stop, after, next): (*mut i32, *mut NarrowRun, *const u8);
        // SAFETY: the caller guarantees every run; r6/r7 are restored before the end.
        // Per run: lr = the queue, r11 = k; in the loop r0 = x, r1 = t, r2 = src,
        // r4 = mh, r5 = ml, r6 = k, r7 = dst, r8 = round, r10 = end.
        unsafe {
            core::arch::asm!(
                "push {{r6, r7}}",
                "mov lr, r0",
                "mov r11, r1",
                next_run_v6m!(),
                "2:",
                "ldm r2!, {{r0}}",
                "sxth r1, r0",
                "cmp r1, r0",
                "bne 7f",
                folded_v6m!(),
                "stm r7!, {{r0}}",
                "cmp r7, r10",
                "bne 2b",
                "b 1b",
                "7:",
                "mov r0, r7",
                "b 9f",
                "8:",
                "movs r0, #0",
                "9:",
                "mov r1, lr",
                "subs r1, #24",
                "pop {{r6, r7}}",
                inout("r0") start => stop,
                inout("r1") k => after,
                out("r2") next,
                out("r3") _,
                out("r4") _,
                out("r5") _,
                out("r8") _,
                out("r10") _,
                out("r11") _,
                out("lr") _,
            );
        }
        (stop, after, next)
    }
    #[cfg(not(all(target_arch = "arm", not(target_feature = "thumb2"))))]
    // SAFETY: the caller guarantees every run.
    unsafe {
        let mut run = start;
        while !(*run).end.is_null() {
            let r = &*run;
            let (mut x, mut o) = (r.src as *const i32, r.dst);
            while o != r.end {
                let a = *x;
                x = x.add(1);
                if !narrow(a) {
                    return (o, run, x as *const u8);
                }
                *o = (a * r.mh + ((a * r.ml) >> 16) + r.round) >> k;
                o = o.add(1);
            }
            run = run.add(1);
        }
        (core::ptr::null_mut(), run, core::ptr::null())
    }
}

/// Per-channel affine on a `[c][plane]` current map: `out[c][i] = requantize(input[c][i])`
/// (a standalone BatchNorm).
pub fn affine_chw(input: &[i32], rq: &Requant, plane: usize, out: &mut [i32]) {
    affine_chw_with(input, rq, plane, out, small_path(rq.shift));
}

/// [`affine_chw`], with [`requantize_small`] when `small` (shift `17..=44`).
fn affine_chw_with(input: &[i32], rq: &Requant, plane: usize, out: &mut [i32], small: bool) {
    if plane == 0 {
        return;
    }
    let params = rq.mult.iter().zip(rq.bias);
    if small && affine_chw_queued(input, rq, plane, out) {
        return;
    }
    if small {
        let k = rq.shift as u32 - 16;
        // A plane at a time by splitting (what `chunks` gives without the division its
        // length takes, in software on ARMv6-M).
        let (mut o_rest, mut x_rest) = (out, input);
        for (&m, &b) in params {
            if o_rest.is_empty() || x_rest.is_empty() {
                break;
            }
            let (no, nx) = (plane.min(o_rest.len()), plane.min(x_rest.len()));
            let (o, rest) = core::mem::take(&mut o_rest).split_at_mut(no);
            o_rest = rest;
            let (x, rest) = x_rest.split_at(nx);
            x_rest = rest;
            let n = o.len().min(x.len());
            let (o, x) = (&mut o[..n], &x[..n]);
            if let Some(round) = folded_round(rq.shift as u32, b) {
                // Runs of narrow elements in the folded loop; a wide one by the formula.
                let params = [k as i32, round, m >> 16, m & 0xffff];
                let mut i = 0;
                loop {
                    i += narrow_affine_run(&x[i..], &mut o[i..], &params);
                    if i == n {
                        break;
                    }
                    o[i] = requantize_small(x[i], m, k, b);
                    i += 1;
                }
                continue;
            }
            for (o, &x) in o.iter_mut().zip(x) {
                *o = requantize_small(x, m, k, b);
            }
        }
        return;
    }
    with_requantizer!(rq.shift, |r| {
        for ((o, x), (&m, &b)) in out.chunks_mut(plane).zip(input.chunks(plane)).zip(params) {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = r.apply(x, m, b);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::packed_index;

    /// A xorshift32 stream from `x` (test data).
    fn xorshift(mut x: u32) -> impl FnMut() -> u32 {
        move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        }
    }

    /// The 32-bit rounding term equals the 64-bit one wherever that one is in range, and
    /// is `None` exactly where it is not, around every boundary of the fast test.
    #[test]
    fn folded_round_matches_64_bit_arithmetic() {
        for s in 17..=46u32 {
            let k = s - 16;
            let mut biases = vec![0, 1, -1, i32::MAX, i32::MIN, 12345, -54321];
            for e in [28i32 - k as i32, 29 - k as i32, 30 - k as i32] {
                if (0..31).contains(&e) {
                    for d in -2..=2 {
                        biases.push((1i32 << e) + d);
                        biases.push(-(1i32 << e) + d);
                    }
                }
            }
            for b in biases {
                let wide = (1i64 << (s - 17)) + ((b as i64) << k);
                let want = (wide.unsigned_abs() < (1 << 30) - (1 << 16)).then_some(wide as i32);
                assert_eq!(folded_round(s, b), want, "s {s} b {b}");
            }
        }
    }

    /// Every decoded requantiser equals the formula, near every boundary of every shift.
    #[test]
    fn requantizers_match_the_formula() {
        let accs = [
            i32::MIN,
            i32::MIN + 1,
            -(1 << 30),
            -65536,
            -4097,
            -3,
            -2,
            -1,
            0,
            1,
            2,
            3,
            4095,
            65535,
            1 << 30,
            i32::MAX - 1,
            i32::MAX,
        ];
        let mults = [
            i32::MIN,
            -(1 << 30) - 12345,
            -3,
            -1,
            0,
            1,
            2,
            7,
            1 << 30,
            (1 << 30) + 987_654,
            i32::MAX,
        ];
        let biases = [i32::MIN, -1_000_000, -5, 0, 5, 1_000_000, i32::MAX];
        let mut x = 0x1234_5678u32;
        for shift in 0..=MAX_SHIFT {
            for &m in &mults {
                for &b in &biases {
                    let check = |a: i32| {
                        let want = requantize(a, m, shift, b);
                        let got = with_requantizer!(shift, |r| r.apply(a, m, b));
                        assert_eq!(got, want, "acc {a} mult {m} shift {shift} bias {b}");
                    };
                    for &a in &accs {
                        check(a);
                    }
                    for _ in 0..8 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        check(x as i32 >> (x % 24));
                    }
                }
            }
        }
    }

    /// The bounded requantiser equals the formula inside its bound, and the bounded
    /// transposition equals the unbounded one.
    #[test]
    fn bounded_requantizer_matches_the_formula() {
        let mut x = 0x2545_f491u32;
        for shift in 1..=31u32 {
            let lim = (1i64 << (shift - 1)) - 1;
            for &m in &[
                i32::MIN,
                -(1 << 30) - 5,
                -1,
                0,
                1,
                12345,
                (1 << 30) + 77,
                i32::MAX,
            ] {
                for b in [i32::MIN, -9, 0, 4096, i32::MAX] {
                    let check = |a: i64| {
                        let a = a as i32;
                        assert_eq!(
                            ShiftLowBounded(shift).apply(a, m, b),
                            requantize(a, m, shift as u8, b),
                            "acc {a} mult {m} shift {shift} bias {b}"
                        );
                    };
                    for a in [-lim, -lim + 1, -1, 0, 1, lim - 1, lim] {
                        if a.abs() <= lim {
                            check(a);
                        }
                    }
                    for _ in 0..8 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        check((x as i64) % (lim + 1));
                    }
                }
            }
        }
        let acc: Vec<i32> = (0..24).map(|i| (i * 37 % 61) - 30).collect();
        let rq = Requant {
            mult: &[(1 << 30) + 3, -(1 << 29), 7],
            bias: &[5, -4096, 0],
            shift: 9,
        };
        for mode in [Mode::Store, Mode::Accumulate] {
            let (mut a, mut b) = (vec![11; 24], vec![11; 24]);
            hwc_to_chw(&acc, &rq, 3, &mut a, mode);
            hwc_to_chw_bounded(&acc, &rq, 3, 30, &mut b, mode);
            assert_eq!(a, b);
        }
    }

    /// The narrow transposition of cores without a long multiply (bias folded into the
    /// rounding term where it fits, the formula elsewhere) equals the general one.
    #[test]
    fn narrow_transposition_matches_the_formula() {
        let (channels, plane) = (6, 7);
        let mut rnd = xorshift(0x1357_9bdfu32);
        for s in 17..=46u8 {
            let acc: Vec<i32> = (0..channels * plane)
                .map(|i| match i {
                    0 => -32767,
                    1 => 32767,
                    _ => (rnd() as i32) >> 17,
                })
                .collect();
            let mult = [
                i32::MIN,
                -(1 << 30) - 5,
                -1,
                65536,
                (1 << 30) + 4321,
                i32::MAX,
            ];
            let bias = [i32::MIN, -(1 << 29), -4096, 0, 77, i32::MAX];
            let rq = Requant {
                mult: &mult,
                bias: &bias,
                shift: s,
            };
            for mode in [Mode::Store, Mode::Accumulate] {
                let init: Vec<i32> = (0..acc.len()).map(|i| [0, i32::MAX, -5][i % 3]).collect();
                let (mut a, mut b) = (init.clone(), init);
                hwc_to_chw(&acc, &rq, channels, &mut a, mode);
                transpose_narrow(&acc, |c| c, &mult, &bias, plane, &mut b, mode, s as u32);
                assert_eq!(a, b, "shift {s}");
            }
        }
    }

    /// The ARMv6-M transposition's queue (batches and their end marker, onto a base)
    /// gives the generic loop's currents; on the host its runs take the portable loop,
    /// on the device the assembly (the device tests).
    #[test]
    fn queued_runs_match_the_transposition() {
        let mut rnd = xorshift(0x2468_ace1u32);
        let mults = [-(1 << 30) - 5, 65536, (1 << 30) + 4321, -77_777, i32::MAX];
        for (channels, plane) in [(3, 5), (8, 1), (11, 4), (20, 3)] {
            let mult: Vec<i32> = (0..channels).map(|c| mults[c % mults.len()]).collect();
            let acc: Vec<i16> = (0..channels * plane).map(|_| rnd() as i16).collect();
            let base: Vec<i32> = (0..channels * plane).map(|_| (rnd() as i32) >> 3).collect();
            let index = |c: usize| {
                if channels % 4 == 0 {
                    packed_index(c)
                } else {
                    c
                }
            };
            for s in [17u32, 24, 33, 44] {
                // Biases at both ends of what folds.
                let lim = 1i32 << (44 - s);
                let edge = [0, lim / 2, -lim, lim, -(lim / 3), 1];
                let bias: Vec<i32> = (0..channels).map(|c| edge[c % edge.len()]).collect();
                assert!(
                    all_fold(s, &bias) && !all_fold(s, &[lim + 1]) && !all_fold(s, &[-lim - 1])
                );
                for mode in [Mode::Store, Mode::Accumulate] {
                    let init: Vec<i32> = (0..acc.len()).map(|i| [0, i32::MAX, -5][i % 3]).collect();
                    let (mut a, mut b) = (init.clone(), init);
                    transpose_narrow_onto::<i16, false>(
                        &acc,
                        index,
                        &mult,
                        &bias,
                        plane,
                        &mut a,
                        mode,
                        s,
                        &[],
                    );
                    transpose_narrow_v6m::<i16, false>(
                        &acc,
                        &index,
                        &mult,
                        &bias,
                        plane,
                        &mut b,
                        mode,
                        s,
                        &[],
                    );
                    assert_eq!(a, b, "channels {channels} plane {plane} shift {s}");
                }
                let (mut a, mut b) = (vec![1; acc.len()], vec![2; acc.len()]);
                let m = Mode::Store;
                transpose_narrow_onto::<i16, true>(
                    &acc, index, &mult, &bias, plane, &mut a, m, s, &base,
                );
                transpose_narrow_v6m::<i16, true>(
                    &acc, &index, &mult, &bias, plane, &mut b, m, s, &base,
                );
                assert_eq!(a, b, "onto: channels {channels} plane {plane} shift {s}");
            }
        }
        assert!(!all_fold(45, &[0]));
    }

    /// The queued affine (batches, wide elements stopping a run at its start, middle and
    /// end) equals the formula; maps it does not take fall back.
    #[test]
    fn queued_affine_matches_the_formula() {
        let mut rnd = xorshift(0x1234_5679u32);
        let mults = [
            -(1 << 30) - 5,
            65536,
            (1 << 30) + 4321,
            -77_777,
            i32::MAX,
            3,
        ];
        for (channels, plane) in [(1, 1), (3, 5), (8, 2), (11, 4), (20, 3)] {
            for s in [17u8, 24, 33, 44] {
                let lim = 1i32 << (44 - s);
                let edge = [0, lim / 2, -lim, lim, -(lim / 3), 1];
                let mult: Vec<i32> = (0..channels).map(|c| mults[c % mults.len()]).collect();
                let bias: Vec<i32> = (0..channels).map(|c| edge[c % edge.len()]).collect();
                let n = channels * plane;
                let input: Vec<i32> = (0..n)
                    .map(|i| match (i * 7 + s as usize) % 9 {
                        0 => 32768,
                        1 => -32769,
                        2 => i32::MIN,
                        _ => (rnd() as i32) >> 16,
                    })
                    .collect();
                let rq = Requant {
                    mult: &mult,
                    bias: &bias,
                    shift: s,
                };
                let mut out = vec![0; n];
                assert!(affine_chw_queued(&input, &rq, plane, &mut out));
                for (i, (&o, &v)) in out.iter().zip(&input).enumerate() {
                    let c = i / plane;
                    assert_eq!(o, requantize(v, mult[c], s, bias[c]), "c {c} i {i} s {s}");
                }
                // Not whole planes, or a bias that does not fold: not taken.
                assert!(!affine_chw_queued(&input, &rq, plane + 1, &mut out));
                let wide = [i32::MAX; 1];
                let rq1 = Requant {
                    mult: &mult[..1],
                    bias: &wide,
                    shift: s,
                };
                assert!(!affine_chw_queued(&input, &rq1, n, &mut out));
            }
        }
    }

    /// The 32-bit requantisation of cores without a long multiply (and the vector and
    /// affine loops that use it) equals the formula.
    #[test]
    fn small_path_matches_the_formula() {
        let mut rnd = xorshift(0x0bad_f00du32);
        let mults = [
            i32::MIN,
            -(1 << 30) - 5,
            -1,
            0,
            65535,
            (1 << 30) + 4321,
            i32::MAX,
        ];
        for shift in 17..=44u8 {
            let k = shift as u32 - 16;
            let lim = 1i32 << (28 - k);
            let biases = [
                i32::MIN,
                -lim - 1,
                -lim,
                -lim + 1,
                -3,
                0,
                lim - 1,
                lim,
                i32::MAX,
            ];
            for &m in &mults {
                for &b in &biases {
                    for a in [-32769, -32768, -1, 0, 1, 32767, 32768, i32::MAX] {
                        let want = requantize(a, m, shift, b);
                        assert_eq!(requantize_small(a, m, k, b), want, "{a} {m} {shift} {b}");
                    }
                    for _ in 0..8 {
                        let a = (rnd() as i32) >> (rnd() % 20);
                        let want = requantize(a, m, shift, b);
                        assert_eq!(requantize_small(a, m, k, b), want, "{a} {m} {shift} {b}");
                    }
                }
            }
            let n = 24;
            // Runs of narrow values broken by wide ones, both ends of the i16 range.
            let edges = [-32769, -32768, 32767, 32768];
            let vals: Vec<i32> = (0..n)
                .map(|i| match i % 7 {
                    3 => edges[i % 4],
                    _ => (rnd() as i32) >> (rnd() % 20),
                })
                .collect();
            let mult: Vec<i32> = (0..n).map(|i| mults[i % mults.len()]).collect();
            let bias: Vec<i32> = (0..n).map(|i| biases[i % biases.len()]).collect();
            let rq = Requant {
                mult: &mult,
                bias: &bias,
                shift,
            };
            let (mut a, mut b) = (vals.clone(), vals.clone());
            in_place_with(&mut a, &rq, false);
            in_place_with(&mut b, &rq, true);
            assert_eq!(a, b, "shift {shift}");
            for plane in [2, 6] {
                let (mut a, mut b) = (vec![0; n], vec![0; n]);
                affine_chw_with(&vals, &rq, plane, &mut a, false);
                affine_chw_with(&vals, &rq, plane, &mut b, true);
                assert_eq!(a, b, "shift {shift} plane {plane}");
            }
        }
    }

    /// Packed i16 accumulators requantise as the same values in i32 do.
    #[test]
    fn packed_transposition_matches_the_i32_one() {
        let (channels, plane) = (8, 5);
        let acc: Vec<i32> = (0..channels * plane)
            .map(|i| (i as i32 * 7919 % 65536) - 32768)
            .collect();
        let mut lanes = vec![0i16; acc.len()];
        for (p, row) in acc.chunks(channels).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                lanes[p * channels + packed_index(c)] = v as i16;
            }
        }
        let mult: Vec<i32> = (0..channels as i32).map(|c| (1 << 30) + c * 999).collect();
        let bias: Vec<i32> = (0..channels as i32).map(|c| c * 100 - 300).collect();
        for shift in [0u8, 9, 17, 30, 31, 32, 40] {
            let rq = Requant {
                mult: &mult,
                bias: &bias,
                shift,
            };
            for mode in [Mode::Store, Mode::Accumulate] {
                let (mut a, mut b) = (vec![3; acc.len()], vec![3; acc.len()]);
                hwc_to_chw(&acc, &rq, channels, &mut a, mode);
                hwc16_to_chw_bounded(&lanes, &rq, channels, 32768, packed_index, &mut b, mode);
                assert_eq!(a, b, "shift {shift}");
            }
            // Onto another map: a copy of it, accumulated (saturating at both ends).
            let base: Vec<i32> = (0..acc.len())
                .map(|i| match i % 5 {
                    0 => i32::MAX - 7,
                    1 => i32::MIN + 7,
                    _ => i as i32 * 1000 - 9000,
                })
                .collect();
            for bound in [32768, 255] {
                let mut b = vec![3; acc.len()];
                let small: Vec<i16> = lanes.iter().map(|&v| v.clamp(-255, 255)).collect();
                let lanes = if bound == 255 { &small } else { &lanes };
                let mut a = base.clone();
                let acc32: Vec<i32> = (0..acc.len())
                    .map(|i| {
                        let (p, c) = (i / channels, i % channels);
                        lanes[p * channels + packed_index(c)] as i32
                    })
                    .collect();
                hwc_to_chw(&acc32, &rq, channels, &mut a, Mode::Accumulate);
                hwc16_to_chw_onto(lanes, &rq, channels, bound, packed_index, &base, &mut b);
                assert_eq!(a, b, "onto, shift {shift}, bound {bound}");
            }
        }
    }

    /// The 32-bit path of cores without a long multiply, over its whole domain's edges.
    #[test]
    fn narrow_path_matches_the_formula() {
        let accs = [
            -32768, -32767, -4097, -2, -1, 0, 1, 2, 255, 4096, 32766, 32767,
        ];
        let mults = [
            i32::MIN,
            -(1 << 30) - 77,
            -65537,
            -65536,
            -1,
            0,
            1,
            65535,
            65536,
        ];
        let mults = mults.iter().chain(&[(1 << 30) + 12_345, i32::MAX]);
        let mut x = 0x9e37_79b9u32;
        for shift in 17..=46u32 {
            for &m in mults.clone() {
                for b in [i32::MIN, -3, 0, 9, i32::MAX] {
                    let check = |a: i32| {
                        assert_eq!(
                            requantize_narrow(a, m, shift, b),
                            requantize(a, m, shift as u8, b),
                            "acc {a} mult {m} shift {shift} bias {b}"
                        );
                    };
                    for &a in &accs {
                        check(a);
                    }
                    for _ in 0..16 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        check((x as i32) >> 16);
                    }
                }
            }
        }
        assert!(narrow(-32768) && narrow(32767) && !narrow(32768) && !narrow(-32769));
    }

    #[test]
    fn rounds_half_up_and_adds_bias() {
        assert_eq!(requantize(3, 1, 1, 0), 2); // 1.5 -> 2
        assert_eq!(requantize(-3, 1, 1, 0), -1); // -1.5 -> -1
        assert_eq!(requantize(5, 3, 2, 10), 14); // 15/4 = 3.75 -> 4, +10
        assert_eq!(requantize(7, -2, 0, 1), -13);
    }

    #[test]
    fn saturates() {
        assert_eq!(requantize(i32::MAX, i32::MAX, 0, 0), i32::MAX);
        assert_eq!(requantize(i32::MIN, i32::MAX, 0, 0), i32::MIN);
        assert_eq!(requantize(0, 0, 5, i32::MIN), i32::MIN);
        assert_eq!(requantize(i32::MAX, i32::MAX, 62, 0), 1);
    }

    #[test]
    fn multiplier_is_accurate() {
        for &r in &[1.0, 0.75, 1e-3, 3.3e-6, 123.456, -0.0421, 2.0e9] {
            let (m, s) = quantize_multiplier(r).unwrap();
            let back = m as f64 / (1u64 << s) as f64;
            assert!(((back - r) / r).abs() < 1e-9, "{r} -> {m}/2^{s}");
            assert!(m.unsigned_abs() >= 1 << 30);
        }
        assert_eq!(quantize_multiplier(0.0), Some((0, 0)));
        assert_eq!(quantize_multiplier(3e9), None);
        assert_eq!(quantize_multiplier(f64::NAN), None);
        // Requantising with it matches the real product within rounding.
        let (m, s) = quantize_multiplier(0.0123).unwrap();
        for acc in [-100000, -7, 0, 1, 999, 1 << 20] {
            let exact = acc as f64 * 0.0123 + 5.0;
            let got = requantize(acc, m, s, 5) as f64;
            assert!((got - exact).abs() <= 0.5 + 1e-6, "{acc}: {got} vs {exact}");
        }
    }

    #[test]
    fn transposes_and_accumulates() {
        // 2 channels x 3 pixels, acc in [p][c]
        let acc = [1, 10, 2, 20, 3, 30];
        let rq = Requant {
            mult: &[2, 1],
            bias: &[0, -1],
            shift: 0,
        };
        let mut out = [100; 6];
        hwc_to_chw(&acc, &rq, 2, &mut out, Mode::Store);
        assert_eq!(out, [2, 4, 6, 9, 19, 29]);
        hwc_to_chw(&acc, &rq, 2, &mut out, Mode::Accumulate);
        assert_eq!(out, [4, 8, 12, 18, 38, 58]);
        let mut big = [i32::MAX - 1; 2];
        hwc_to_chw(
            &[5, 5],
            &Requant {
                mult: &[1, 1],
                bias: &[0, 0],
                shift: 0,
            },
            2,
            &mut big,
            Mode::Accumulate,
        );
        assert_eq!(big, [i32::MAX; 2]);
    }

    #[test]
    fn affine_is_per_channel() {
        let rq = Requant {
            mult: &[1 << 12, -(1 << 11)],
            bias: &[7, 0],
            shift: 12,
        };
        let mut out = [0; 4];
        affine_chw(&[4096, 8192, 4096, -3], &rq, 2, &mut out);
        assert_eq!(out, [4103, 8199, -2048, 2]); // -3 * -0.5 = 1.5 -> 2
        let mut v = [10, 10];
        in_place(&mut v, &rq);
        assert_eq!(v, [17, -5]);
    }
}
