//! Leaky integrate-and-fire neurons in fixed point (spikingjelly `LIFNode`, decay_input).
//!
//! Membrane `v` is `i16` Q12 (1.0 = 4096, range [-8, 8)). The input current `I` is `i32`
//! Q12 in the LIF-input domain (it already carries the `1/tau` factor, see the crate
//! docs), so one step is
//!
//! ```text
//! v = sat_i16(decay(v) + I);  spike = v >= threshold;  if spike { v = 0 | v - threshold }
//! ```
//!
//! For tau = 4/3, spikingjelly's `v + (I - v) / tau = 0.25 v + 0.75 I` is
//! [`Decay::Shift`]`(2)` with the 0.75 folded into `I`: [`Lif::SNASNET`].

use crate::bits;
use crate::requant::{with_requantizer, Requant, Requantizer};

/// How the membrane leaks each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Decay {
    /// `v >> n` (arithmetic shift: floor). `n = 2` keeps 0.25 v (tau = 4/3). `n <= 15`.
    Shift(u8),
    /// `(v * m) >> 15` in i32 (floor): keeps `m / 32768` of v. `0 <= m <= 32767`.
    Q15(i16),
}

impl Decay {
    /// Largest shift [`Decay::from_keep`] chooses (and the runtime accepts).
    pub const MAX_SHIFT: u8 = 15;

    /// The share of the membrane kept per step: `2^-n` or `m / 32768`.
    pub fn keep(self) -> f64 {
        match self {
            Decay::Shift(n) => {
                let mut k = 1.0;
                for _ in 0..n {
                    k *= 0.5;
                }
                k
            }
            Decay::Q15(m) => m as f64 / crate::ONE_Q15 as f64,
        }
    }

    /// The decay that keeps `keep` (in `[0, 1)`) of the membrane: a shift where `keep`
    /// is a power of two (within `1e-6`), else the nearest Q15 factor (at most 32767).
    pub fn from_keep(keep: f64) -> Decay {
        for n in 0..=Decay::MAX_SHIFT {
            let d = keep - Decay::Shift(n).keep();
            if (if d < 0.0 { -d } else { d }) < 1e-6 {
                return Decay::Shift(n);
            }
        }
        // Round half away from zero (`f64::round` is not in `core`); exact here.
        let x = keep * crate::ONE_Q15 as f64;
        let t = x as i64;
        let m = if x - t as f64 >= 0.5 { t + 1 } else { t };
        Decay::Q15(m.clamp(0, i16::MAX as i64) as i16)
    }
}

/// What happens to the membrane after a spike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reset {
    /// `v = 0` (spikingjelly's default, `v_reset = 0`).
    Hard,
    /// `v = v - threshold` (`v_reset = None`).
    Subtract,
}

/// Parameters of one LIF layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Lif {
    /// Leak per step.
    pub decay: Decay,
    /// Firing threshold in Q12 (`4096` = 1.0), `> 0`.
    pub threshold: i16,
    /// Reset rule.
    pub reset: Reset,
}

impl Lif {
    /// SNASNet's neuron: tau = 4/3 (keep 0.25 v), threshold 1.0, hard reset to 0.
    pub const SNASNET: Lif = Lif {
        decay: Decay::Shift(2),
        threshold: 4096,
        reset: Reset::Hard,
    };
}

/// Saturates an i32 to the i16 range.
#[inline(always)]
pub const fn sat_i16(x: i32) -> i16 {
    if x > i16::MAX as i32 {
        i16::MAX
    } else if x < i16::MIN as i32 {
        i16::MIN
    } else {
        x as i16
    }
}

/// [`sat_i16`] as an `i32`. On ARMv7-M it is one `SSAT` kept opaque to the compiler,
/// which otherwise splits the clamp around the threshold test into several branches.
#[inline(always)]
fn sat_i16_i32(x: i32) -> i32 {
    #[cfg(all(target_arch = "arm", target_feature = "thumb2"))]
    {
        let y: i32;
        // SAFETY: a register-only instruction; it may set the Q flag, which nothing reads.
        unsafe {
            core::arch::asm!("ssat {y}, #16, {x}", x = in(reg) x, y = lateout(reg) y,
                options(pure, nomem, nostack));
        }
        y
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "thumb2")))]
    {
        x.clamp(i16::MIN as i32, i16::MAX as i32)
    }
}

/// `decay(v)` (see [`Decay`]).
#[inline(always)]
pub const fn decay(v: i16, d: Decay) -> i32 {
    match d {
        Decay::Shift(n) => (v as i32) >> n,
        Decay::Q15(m) => (v as i32 * m as i32) >> 15,
    }
}

/// One neuron, one step: updates `v` with input current `i` and returns whether it fired.
#[inline(always)]
pub fn step(lif: &Lif, v: &mut i16, i: i32) -> bool {
    let u = sat_i16(decay(*v, lif.decay).saturating_add(i));
    let fire = u >= lif.threshold;
    *v = match (fire, lif.reset) {
        (false, _) => u,
        (true, Reset::Hard) => 0,
        (true, Reset::Subtract) => u - lif.threshold,
    };
    fire
}

/// Steps a whole layer: `v[i]` with `input[i]`, writing spike bit `i` of `spikes`
/// (`bits::words(v.len())` words, tail bits cleared). Returns the number of spikes.
pub fn layer(lif: &Lif, v: &mut [i16], input: &[i32], spikes: &mut [u32]) -> u32 {
    let input = &input[..v.len()];
    // Whole spike words of SNASNet's neuron in assembly where there is one.
    let (done, fired) = words_shift_hard(lif, v, input, spikes);
    if done == v.len() {
        return fired;
    }
    let (v, input) = (&mut v[done..], &input[done..]);
    let mut out = BitWriter::new(&mut spikes[done / 32..], v.len());
    with_neuron!(lif, |decay, reset| neurons(
        v,
        input,
        lif.threshold as i32,
        &decay,
        &reset,
        |x| x,
        &mut out
    ));
    fired + out.finish()
}

/// True where [`layer`] runs `lif` with a word kernel: [`word_shift_hard`] (ARMv7E-M,
/// shift decay, hard reset) or `word_shift_hard_v6m` (ARMv6-M, SNASNet's shift of 2).
const fn word_kernel(lif: &Lif) -> bool {
    match (lif.decay, lif.reset) {
        (Decay::Shift(n), Reset::Hard) => {
            cfg!(all(target_arch = "arm", target_feature = "dsp"))
                || (n == 2 && cfg!(all(target_arch = "arm", not(target_feature = "thumb2"))))
        }
        _ => false,
    }
}

/// The first `32 * (v.len() / 32)` neurons of [`layer`] for SNASNet-type neurons
/// ([`Decay::Shift`], [`Reset::Hard`]) on ARMv7E-M, one spike word at a time
/// ([`word_shift_hard`]), all of them (the last word partial) on ARMv6-M with SNASNet's
/// shift of 2 (`word_shift_hard_v6m`); returns `(neurons done, spikes)`. `(0, 0)`
/// elsewhere.
#[inline(always)]
fn words_shift_hard(lif: &Lif, v: &mut [i16], input: &[i32], spikes: &mut [u32]) -> (usize, u32) {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    if let (Decay::Shift(n), Reset::Hard) = (lif.decay, lif.reset) {
        let words = v.len().min(input.len()) / 32;
        let (mut vp, mut xp) = (v.as_mut_ptr(), input.as_ptr());
        let mut fired = 0;
        for s in &mut spikes[..words] {
            // SAFETY: word k reads input[32k..32k + 32] and updates v[32k..32k + 32],
            // k < words <= len / 32 of both.
            let b = unsafe {
                if n == 2 {
                    word_shift2_hard(&mut vp, &mut xp, lif.threshold)
                } else {
                    word_shift_hard(&mut vp, &mut xp, n as u32, lif.threshold as i32)
                }
            };
            *s = b;
            fired += b.count_ones();
        }
        return (words * 32, fired);
    }
    #[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
    if let (Decay::Shift(2), Reset::Hard) = (lif.decay, lif.reset) {
        // Every neuron: the whole words in one call, then the partial last word.
        let n = v.len().min(input.len());
        let (full, rest) = (n / 32, n % 32);
        let spikes = &mut spikes[..n.div_ceil(32)];
        let mut xp = input.as_ptr();
        let thr = lif.threshold as i32;
        // SAFETY: word k reads input[32k..32k + m] and updates v[32k..32k + m] (m = 32
        // for the whole words, `rest` for the last), inside both; `spikes` holds
        // `n.div_ceil(32)` words; `v` is i16-aligned, `input` i32-aligned.
        let mut fired = 0;
        unsafe {
            let vp = v.as_mut_ptr();
            if full > 0 {
                let s = spikes.as_mut_ptr();
                fired += words_shift_hard_v6m::<2>(vp.add(32), 32, full, &mut xp, thr, s);
            }
            if rest > 0 {
                let s = &mut spikes[full];
                fired += words_shift_hard_v6m::<2>(vp.add(n), rest, 1, &mut xp, thr, s);
                *s >>= 32 - rest;
            }
        }
        return (n, fired);
    }
    let _ = (lif, v, input, spikes);
    (0, 0)
}

/// [`word_shift_hard`] for ARMv6-M (Thumb-1, no saturating instructions), decay
/// `v >> N`: `groups` groups of `m <= 32` neurons, the first ending at `v_end`, the next
/// `m` neurons on (membranes read and written at a negative offset that counts up to 0,
/// which ends a group), storing each group's spike bits as one word of `spikes` in its
/// *top* `m` bits (neuron `j` at bit `32 - m + j`). 10 instructions per neuron on the
/// common path (against 14 for a compare per bound, 25 for the compiler's loop), 9 per
/// group: one unsigned compare of `u + 2^15` against `thr + 2^15` sends every neuron
/// that fires or leaves the `i16` range below to the slow path, an `i32` overflow of
/// `(v >> N) + x` included (its wrapped sum lies outside both); there a neuron that fires
/// stores 0, one below the range `i16::MIN`, and an overflow saturates as `QADD` does.
/// Advances `x` by `groups * m` currents; returns the spikes (counted on the stack as
/// they fire: cheaper than a population count per word on a core without one).
///
/// # Safety
/// `v_end - m..v_end + (groups - 1) m` (i16, aligned) writable, `*x..*x + groups m` (i32,
/// aligned) readable, `spikes..spikes + groups` (u32) writable, `groups >= 1`,
/// `1 <= m <= 32`, `N <= 15`, `1 <= thr <= i16::MAX`.
#[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
#[inline(always)]
unsafe fn words_shift_hard_v6m<const N: u32>(
    v_end: *mut i16,
    m: usize,
    groups: usize,
    x: &mut *const i32,
    thr: i32,
    spikes: *mut u32,
) -> u32 {
    let fired: u32;
    // SAFETY: the caller guarantees every range; r6/r7 are restored before the end (the
    // flags are clobbered, which `asm!` assumes without `preserves_flags`).
    unsafe {
        core::arch::asm!(
            // r0 = u, r1 = x, r2 = t, r3 = 2^15, r4 = x pointer, r5 = v_end, r6 = byte
            // offset (-2m..0), r7 = bits; r8 = thr + 2^15, r10 = thr, r11 = -2m,
            // r12 = spikes, lr = the end of spikes (brought in r2, r3).
            "push {{r6, r7}}",
            "mov r11, r0",
            "mov r12, r2",
            "mov lr, r3",
            // The spike count, on the stack.
            "movs r2, #0",
            "push {{r2}}",
            "movs r3, #1",
            "lsls r3, r3, #15",
            "mov r10, r1",
            "adds r2, r1, r3",
            "mov r8, r2",
            "1:",
            "mov r6, r11",
            "movs r7, #0",
            "2:",
            "ldrsh r0, [r5, r6]",
            "asrs r0, r0, #{n}",
            "ldm r4!, {{r1}}",
            "adds r0, r0, r1",
            "adds r2, r0, r3",
            "cmp r2, r8",
            "bhs 5f",
            "strh r0, [r5, r6]",
            "3:",
            "adds r6, #2",
            "bne 2b",
            "9:",
            "mov r0, r12",
            "stm r0!, {{r7}}",
            "mov r12, r0",
            "mov r0, r11",
            "subs r5, r5, r0",
            "cmp r12, lr",
            "bne 1b",
            "b 8f",
            // Fires, leaves the range below, or the i32 sum overflowed (recomputed: V).
            "5:",
            "subs r2, r0, r1",
            "adds r2, r2, r1",
            "bvs 7f",
            "cmp r0, r10",
            "bge 6f",
            "4:",
            "movs r0, #1",
            "lsls r0, r0, #15",
            "negs r0, r0",
            "strh r0, [r5, r6]",
            "b 3b",
            // Overflow: i32::MAX (fires) when x > 0, else i32::MIN (clamps to i16::MIN).
            "7:",
            "cmp r1, #0",
            "ble 4b",
            "6:",
            "ldr r2, [sp]",
            "adds r2, #1",
            "str r2, [sp]",
            "movs r0, #0",
            "strh r0, [r5, r6]",
            "asrs r2, r6, #1",
            "adds r2, #32",
            "movs r0, #1",
            "lsls r0, r2",
            "orrs r7, r0",
            "b 3b",
            "8:",
            "pop {{r0}}",
            "pop {{r6, r7}}",
            n = const N,
            inout("r0") -2 * m as isize => fired,
            inout("r1") thr => _,
            inout("r2") spikes => _,
            inout("r3") spikes.add(groups) => _,
            inout("r4") *x,
            inout("r5") v_end => _,
            out("r8") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        );
    }
    fired
}

/// 32 SNASNet-type neurons (`v = sat_i16(sat_i32((v >> n) + x))`, spike iff
/// `v >= thr`, then `v = 0`) in pairs: one word load and store of two membranes, one
/// `LDRD` of two currents, `QADD` + `SSAT` each and a conditional reset and spike bit
/// (11 instructions per neuron, against 17 for the compiler's loop). Advances both
/// pointers by 32 neurons; returns the spike word (bit `i` = neuron `i`).
///
/// # Safety
/// `*v..*v + 32` (i16, any alignment: LDR/STR may be unaligned on ARMv7-M) writable,
/// `*x..*x + 32` (i32, aligned) readable; `n <= 15`.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn word_shift_hard(v: &mut *mut i16, x: &mut *const i32, n: u32, thr: i32) -> u32 {
    let bits: u32;
    // SAFETY: the caller guarantees both ranges; registers only otherwise. QADD/SSAT may
    // set the Q flag, which nothing reads.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {vv}, [{v}]",
            "ldrd {x0}, {x1}, [{x}], #8",
            "sxth {t}, {vv}",
            "asr {t}, {t}, {n}",
            "asr {vv}, {vv}, {n16}",
            "qadd {x0}, {t}, {x0}",
            "qadd {x1}, {vv}, {x1}",
            "ssat {x0}, #16, {x0}",
            "ssat {x1}, #16, {x1}",
            "cmp {x0}, {thr}",
            "itt ge",
            "movge {x0}, #0",
            "orrge {bits}, {bits}, {mask}",
            "cmp {x1}, {thr}",
            "itt ge",
            "movge {x1}, #0",
            "orrge {bits}, {bits}, {mask}, lsl #1",
            "pkhbt {vv}, {x0}, {x1}, lsl #16",
            "str {vv}, [{v}], #4",
            "lsls {mask}, {mask}, #2",
            "bne 2b",
            v = inout(reg) *v,
            x = inout(reg) *x,
            n = in(reg) n,
            n16 = in(reg) n + 16,
            thr = in(reg) thr,
            mask = inout(reg) 1u32 => _,
            bits = inout(reg) 0u32 => bits,
            vv = out(reg) _,
            x0 = out(reg) _,
            x1 = out(reg) _,
            t = out(reg) _,
            options(nostack),
        );
    }
    bits
}

/// [`word_shift_hard`] with SNASNet's decay `v >> 2` (tau 4/3), the threshold test in
/// both 16-bit lanes at once: after `QADD` and `SSAT` per neuron, `PKHBT` packs the two
/// membranes, `SSUB16` against the threshold in both lanes sets the GE flags of the
/// neurons that fire, one `SEL` zeroes their membranes (the hard reset) and another
/// picks their spike bits (bits 15 and 16), which one `ORR` with the spike word rotated
/// right by 2 adds (the word is rotated into place once at the end): 17 instructions a
/// pair, against 21 with a compare and a conditional reset per neuron.
///
/// # Safety
/// As [`word_shift_hard`]; `thr > 0`.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn word_shift2_hard(v: &mut *mut i16, x: &mut *const i32, thr: i16) -> u32 {
    let bits: u32;
    let thr2 = (thr as u16 as u32) * 0x0001_0001;
    // SAFETY: the caller guarantees both ranges (32 membranes and 32 currents); the loop
    // ends when `v` has advanced by 32 membranes. QADD/SSAT may set the Q flag and SSUB16
    // sets the GE flags, which nothing else reads.
    unsafe {
        let end = (*v).add(32);
        core::arch::asm!(
            "2:",
            "ldr {vv}, [{v}]",
            "ldrd {x0}, {x1}, [{x}], #8",
            "sxth {t}, {vv}",
            "asr {t}, {t}, #2",
            "asr {vv}, {vv}, #18",
            "qadd {x0}, {t}, {x0}",
            "qadd {x1}, {vv}, {x1}",
            "ssat {x0}, #16, {x0}",
            "ssat {x1}, #16, {x1}",
            "pkhbt {vv}, {x0}, {x1}, lsl #16",
            "ssub16 {t}, {vv}, {thr}",
            "sel {vv}, {zero}, {vv}",
            "sel {t}, {lanes}, {zero}",
            "orr {bits}, {t}, {bits}, ror #2",
            "str {vv}, [{v}], #4",
            "cmp {v}, {end}",
            "bne 2b",
            // Pair k's bits went in at 15 and 16 and were rotated right by 2 for each of
            // the 15 - k pairs after it: rotating right by 17 more puts them at 2k, 2k + 1.
            "ror {bits}, {bits}, #17",
            v = inout(reg) *v,
            x = inout(reg) *x,
            end = in(reg) end,
            thr = in(reg) thr2,
            zero = in(reg) 0u32,
            lanes = in(reg) 0x0001_8000u32,
            bits = inout(reg) 0u32 => bits,
            vv = out(reg) _,
            x0 = out(reg) _,
            x1 = out(reg) _,
            t = out(reg) _,
            options(nostack),
        );
    }
    bits
}

/// Steps a layer whose input is a `[c][plane]` current map passed through a per-channel
/// affine first (BatchNorm -> LIF): the input of neuron `i` is
/// `requantize(input[i], bn.mult[c], bn.shift, bn.bias[c])`, `c = i / plane`.
///
/// `tmp` (at least `v.len()` entries, contents irrelevant) holds the requantised
/// currents where the neuron has an assembly kernel (ARMv7E-M, SNASNet's neuron): one
/// requantisation pass, then [`layer`]; elsewhere the two are fused and `tmp` is unused.
pub fn layer_affine(
    lif: &Lif,
    v: &mut [i16],
    input: &[i32],
    bn: &Requant,
    plane: usize,
    tmp: &mut [i32],
    spikes: &mut [u32],
) -> u32 {
    let input = &input[..v.len()];
    if word_kernel(lif) {
        let tmp = &mut tmp[..v.len()];
        crate::requant::affine_chw(input, bn, plane, tmp);
        return layer(lif, v, tmp, spikes);
    }
    let mut out = BitWriter::new(spikes, v.len());
    if plane > 0 {
        // Channel by channel, each with its (mult, bias) read once: no division per neuron.
        let channels = v.len().div_ceil(plane);
        let params = bn.mult[..channels].iter().zip(&bn.bias[..channels]);
        let thr = lif.threshold as i32;
        with_requantizer!(bn.shift, |r| with_neuron!(lif, |decay, reset| {
            for ((vs, xs), (&m, &b)) in v.chunks_mut(plane).zip(input.chunks(plane)).zip(params) {
                neurons(vs, xs, thr, &decay, &reset, |x| r.apply(x, m, b), &mut out);
            }
        }));
    }
    out.finish()
}

/// Runs `$body` with `$decay: Fn(i16) -> i32` and `$reset: Fn(i32) -> i32` bound to the
/// layer's rules (decoded once per layer, so the neuron loop has no branch on them).
/// SNASNet's neuron (shift decay, hard reset) gets its own loop; the other three share
/// one (two instantiations instead of four keep the code small): a shift by `n` is the
/// same floor as a Q15 multiply by `2^(15-n)`, and a hard reset is `(u - thr) & 0`.
macro_rules! with_neuron {
    ($lif:expr, |$decay:ident, $reset:ident| $body:expr) => {{
        let thr = $lif.threshold as i32;
        match ($lif.decay, $lif.reset) {
            (Decay::Shift(n), Reset::Hard) => {
                let ($decay, $reset) = (move |v: i16| (v as i32) >> n, |_: i32| 0);
                $body
            }
            (decay, reset) => {
                // |v| <= 2^15, so v * m fits i32; a shift past 15 leaves only the sign.
                let m: i32 = match decay {
                    Decay::Shift(n) => 1 << (15 - n.min(15)),
                    Decay::Q15(m) => m as i32,
                };
                let keep: i32 = match reset {
                    Reset::Hard => 0,
                    Reset::Subtract => -1,
                };
                let ($decay, $reset) = (
                    move |v: i16| (v as i32 * m) >> 15,
                    move |u: i32| (u - thr) & keep,
                );
                $body
            }
        }
    }};
}
use with_neuron;

/// Packs spike bits LSB first into words, counting them.
struct BitWriter<'a> {
    words: core::slice::IterMut<'a, u32>,
    word: u32,
    mask: u32,
    total: u32,
}

impl<'a> BitWriter<'a> {
    /// A writer for `n` bits into `spikes` (`bits::words(n)` words are written).
    fn new(spikes: &'a mut [u32], n: usize) -> Self {
        BitWriter {
            words: spikes[..bits::words(n)].iter_mut(),
            word: 0,
            mask: 1,
            total: 0,
        }
    }

    #[inline(always)]
    fn push(&mut self, fire: bool) {
        if fire {
            self.word |= self.mask;
        }
        self.mask = self.mask.rotate_left(1);
        if self.mask == 1 {
            self.flush();
        }
    }

    #[inline(always)]
    fn flush(&mut self) {
        self.total += self.word.count_ones();
        if let Some(w) = self.words.next() {
            *w = self.word;
        }
        self.word = 0;
    }

    /// Writes the last partial word (tail bits zero); returns the number of spikes.
    fn finish(mut self) -> u32 {
        if self.mask != 1 {
            self.flush();
        }
        self.total
    }
}

/// [`step`] over neurons `v` with inputs `current(x)`, `x` from `xs` (same length).
#[inline(always)]
fn neurons(
    v: &mut [i16],
    xs: &[i32],
    thr: i32,
    decay: &impl Fn(i16) -> i32,
    reset: &impl Fn(i32) -> i32,
    current: impl Fn(i32) -> i32,
    out: &mut BitWriter,
) {
    for (vi, &x) in v.iter_mut().zip(xs) {
        // As `step`: v = sat_i16(decay(v) + I); spike iff v >= threshold, then reset.
        let u = sat_i16_i32(decay(*vi).saturating_add(current(x)));
        let fire = u >= thr;
        *vi = if fire { reset(u) } else { u } as i16;
        out.push(fire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_mapping_round_trips() {
        assert_eq!(Decay::from_keep(0.25), Decay::Shift(2));
        assert_eq!(Decay::from_keep(1.0 / 32768.0), Decay::Shift(15));
        assert_eq!(Decay::from_keep(0.0), Decay::Q15(0));
        // 0.3 * 32768 = 9830.4; 0.99999 rounds to 32768 and is capped at 32767.
        assert_eq!(Decay::from_keep(0.3), Decay::Q15(9830));
        assert_eq!(Decay::from_keep(0.99999), Decay::Q15(32767));
        assert_eq!(Decay::Shift(2).keep(), 0.25);
        assert_eq!(Decay::Q15(16384).keep(), 0.5);
        // Halves round away from zero, as `f64::round` does.
        assert_eq!(Decay::from_keep(4.5 / 32768.0), Decay::Q15(5));
    }

    /// spikingjelly LIFNode in f64: v += (x - v) / tau; spike v >= 1; hard reset 0.
    fn float_lif(xs: &[f64]) -> Vec<bool> {
        let mut v = 0.0;
        xs.iter()
            .map(|&x| {
                v += (x - v) / (4.0 / 3.0);
                let s = v >= 1.0;
                if s {
                    v = 0.0;
                }
                s
            })
            .collect()
    }

    #[test]
    fn fires_exactly_at_threshold_and_resets_hard() {
        let lif = Lif::SNASNET;
        let mut v = 0;
        assert!(!step(&lif, &mut v, 4095));
        assert_eq!(v, 4095);
        let mut v = 0;
        assert!(step(&lif, &mut v, 4096));
        assert_eq!(v, 0);
        // decay: 4095 >> 2 = 1023, + 3073 = 4096 -> fires
        let mut v = 4095;
        assert!(step(&lif, &mut v, 3073));
        assert_eq!(v, 0);
        let mut v = 4095;
        assert!(!step(&lif, &mut v, 3072));
        assert_eq!(v, 4095);
    }

    #[test]
    fn decay_floors_negative_and_q15_matches_shift() {
        assert_eq!(decay(-5, Decay::Shift(2)), -2);
        assert_eq!(decay(-4096, Decay::Shift(2)), -1024);
        for v in [-32768i16, -4097, -1, 0, 1, 4095, 32767] {
            assert_eq!(
                decay(v, Decay::Q15(8192)),
                decay(v, Decay::Shift(2)),
                "v={v}"
            );
        }
        assert_eq!(decay(1000, Decay::Q15(16384 + 8192)), 750);
        assert_eq!(decay(1000, Decay::Q15(0)), 0);
    }

    #[test]
    fn saturates_membrane() {
        let lif = Lif {
            threshold: i16::MAX,
            ..Lif::SNASNET
        };
        let mut v = 0;
        assert!(step(&lif, &mut v, i32::MAX));
        let mut v = 0;
        assert!(!step(&lif, &mut v, i32::MIN));
        assert_eq!(v, i16::MIN);
        assert!(!step(&lif, &mut v, -100_000));
        assert_eq!(v, i16::MIN);
        let mut v = 0;
        assert!(!step(&lif, &mut v, 32766));
        assert_eq!(v, 32766);
    }

    /// The shared loop (shift as a multiply, reset as a mask) equals `step` for every rule.
    #[test]
    fn layer_equals_step_for_every_rule() {
        let rules = [
            (Decay::Shift(0), Reset::Hard),
            (Decay::Shift(2), Reset::Subtract),
            (Decay::Shift(7), Reset::Hard),
            (Decay::Shift(15), Reset::Subtract),
            (Decay::Q15(0), Reset::Hard),
            (Decay::Q15(24576), Reset::Subtract),
            (Decay::Q15(32767), Reset::Hard),
        ];
        for (decay, reset) in rules {
            let lif = Lif {
                decay,
                threshold: 3000,
                reset,
            };
            let n = 70;
            let mut v: Vec<i16> = (0..n).map(|i| (i as i16 - 35) * 900).collect();
            let mut v_ref = v.clone();
            for t in 0..5 {
                let input: Vec<i32> = (0..n as i32)
                    .map(|i| ((i * 7919 + t * 104_729) % 20_000) - 9_000)
                    .collect();
                let mut spikes = [0u32; 3];
                let k = layer(&lif, &mut v, &input, &mut spikes);
                let mut k_ref = 0;
                for i in 0..n {
                    let fired = step(&lif, &mut v_ref[i], input[i]);
                    k_ref += fired as u32;
                    assert_eq!(
                        bits::get(&spikes, i),
                        fired,
                        "{decay:?} {reset:?} t{t} i{i}"
                    );
                }
                assert_eq!((k, &v), (k_ref, &v_ref), "{decay:?} {reset:?} t{t}");
            }
        }
    }

    #[test]
    fn subtractive_reset_keeps_the_excess() {
        let lif = Lif {
            reset: Reset::Subtract,
            ..Lif::SNASNET
        };
        let mut v = 0;
        assert!(step(&lif, &mut v, 5000));
        assert_eq!(v, 5000 - 4096);
        assert!(!step(&lif, &mut v, 0));
        assert_eq!(v, 904 >> 2);
    }

    #[test]
    fn matches_float_lif_on_a_ramp() {
        // Currents are in the LIF-input domain: I_q = round(4096 * 0.75 * x).
        let xs: Vec<f64> = (0..60)
            .map(|t| 0.2 + 0.9 * ((t as f64) * 0.37).sin().abs())
            .collect();
        let expect = float_lif(&xs);
        let lif = Lif::SNASNET;
        let mut v = 0;
        let got: Vec<bool> = xs
            .iter()
            .map(|&x| step(&lif, &mut v, (x * 0.75 * 4096.0).round() as i32))
            .collect();
        let differ = got.iter().zip(&expect).filter(|(a, b)| a != b).count();
        assert!(differ <= 1, "{differ} of 60 steps differ");
        assert!(expect.iter().any(|&s| s) && expect.iter().any(|&s| !s));
    }

    #[test]
    fn layer_packs_bits_and_counts() {
        let lif = Lif::SNASNET;
        for n in [1usize, 31, 32, 33, 70] {
            let mut v = vec![0i16; n];
            let input: Vec<i32> = (0..n)
                .map(|i| if i % 3 == 0 { 5000 } else { 100 })
                .collect();
            let mut spikes = vec![u32::MAX; bits::words(n)];
            let k = layer(&lif, &mut v, &input, &mut spikes);
            assert_eq!(k as usize, n.div_ceil(3));
            for i in 0..n {
                assert_eq!(bits::get(&spikes, i), i % 3 == 0);
            }
            assert_eq!(
                bits::count(&spikes, spikes.len() * 32),
                k,
                "tail bits clear"
            );
        }
        // all-one and all-zero inputs
        let mut v = vec![0i16; 40];
        let mut s = vec![0u32; 2];
        assert_eq!(layer(&lif, &mut v, &[4096; 40], &mut s), 40);
        assert_eq!(layer(&lif, &mut v, &[0; 40], &mut s), 0);
        assert_eq!(s, [0, 0]);
    }

    #[test]
    fn layer_affine_applies_channel_params() {
        let lif = Lif::SNASNET;
        // 2 channels x 3: channel 0 doubles, channel 1 negates.
        let bn = Requant {
            mult: &[2, -1],
            bias: &[0, 0],
            shift: 0,
        };
        let mut v = [0i16; 6];
        let mut s = [0u32; 1];
        let k = layer_affine(
            &lif,
            &mut v,
            &[2048, 2047, 0, -5000, 5000, -4096],
            &bn,
            3,
            &mut [0; 6],
            &mut s,
        );
        assert_eq!(k, 3);
        assert_eq!(s[0], 0b101001);
        assert_eq!(v, [0, 4094, 0, 0, -5000, 0]);
    }
}
