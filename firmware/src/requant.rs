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

/// How a kernel writes its output current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mode {
    /// `out = value`.
    Store,
    /// `out = sat_i32(out + value)` (a cell node summing its incoming edges).
    Accumulate,
}

/// Requantises `[p][c]` accumulators (`p` = pixel, `channels` inner) into a `[c][p]`
/// current map, storing or accumulating.
pub fn hwc_to_chw(acc: &[i32], rq: &Requant, channels: usize, out: &mut [i32], mode: Mode) {
    if channels == 0 {
        return;
    }
    let plane = acc.len() / channels;
    for c in 0..channels {
        let (m, b) = (rq.mult[c], rq.bias[c]);
        let dst = &mut out[c * plane..(c + 1) * plane];
        let src = acc[c..].iter().step_by(channels);
        match mode {
            Mode::Store => {
                for (o, &a) in dst.iter_mut().zip(src) {
                    *o = requantize(a, m, rq.shift, b);
                }
            }
            Mode::Accumulate => {
                for (o, &a) in dst.iter_mut().zip(src) {
                    *o = o.saturating_add(requantize(a, m, rq.shift, b));
                }
            }
        }
    }
}

/// Requantises a vector in place, element `o` with channel `o` (linear layers).
pub fn in_place(values: &mut [i32], rq: &Requant) {
    for (o, v) in values.iter_mut().enumerate() {
        *v = rq.apply(*v, o);
    }
}

/// Per-channel affine on a `[c][plane]` current map: `out[c][i] = requantize(input[c][i])`
/// (a standalone BatchNorm).
pub fn affine_chw(input: &[i32], rq: &Requant, plane: usize, out: &mut [i32]) {
    if plane == 0 {
        return;
    }
    for (c, (o, x)) in out.chunks_mut(plane).zip(input.chunks(plane)).enumerate() {
        for (o, &x) in o.iter_mut().zip(x) {
            *o = rq.apply(x, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
