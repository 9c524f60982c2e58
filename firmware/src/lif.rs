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
use crate::requant::{requantize, Requant};

/// How the membrane leaks each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Decay {
    /// `v >> n` (arithmetic shift: floor). `n = 2` keeps 0.25 v (tau = 4/3). `n <= 15`.
    Shift(u8),
    /// `(v * m) >> 15` in i32 (floor): keeps `m / 32768` of v. `0 <= m <= 32767`.
    Q15(i16),
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
    layer_with(lif, v, spikes, |i| input[i])
}

/// Steps a layer whose input is a `[c][plane]` current map passed through a per-channel
/// affine first (BatchNorm -> LIF): the input of neuron `i` is
/// `requantize(input[i], bn.mult[c], bn.shift, bn.bias[c])`, `c = i / plane`.
pub fn layer_affine(
    lif: &Lif,
    v: &mut [i16],
    input: &[i32],
    bn: &Requant,
    plane: usize,
    spikes: &mut [u32],
) -> u32 {
    // Channel tracked incrementally (no division per neuron).
    let (mut c, mut left) = (0usize, plane);
    layer_with(lif, v, spikes, |i| {
        if left == 0 {
            c += 1;
            left = plane;
        }
        left -= 1;
        requantize(input[i], bn.mult[c], bn.shift, bn.bias[c])
    })
}

/// Shared body: `current(i)` is called once per neuron in increasing `i`.
#[inline(always)]
fn layer_with(
    lif: &Lif,
    v: &mut [i16],
    spikes: &mut [u32],
    mut current: impl FnMut(usize) -> i32,
) -> u32 {
    let mut total = 0;
    let words = bits::words(v.len());
    for (wi, (word, vs)) in spikes[..words].iter_mut().zip(v.chunks_mut(32)).enumerate() {
        let mut w = 0u32;
        for (b, vi) in vs.iter_mut().enumerate() {
            if step(lif, vi, current(wi * 32 + b)) {
                w |= 1 << b;
            }
        }
        total += w.count_ones();
        *word = w;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

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
            &mut s,
        );
        assert_eq!(k, 3);
        assert_eq!(s[0], 0b101001);
        assert_eq!(v, [0, 4094, 0, 0, -5000, 0]);
    }
}
