//! 2x2 average pool, stride 2, odd sizes floored, on `[c][y][x]` maps.
//!
//! On spikes it produces counts `0..=4` (the float pool is `count / 4`; the 1/4 folds into
//! the next layer's requantisation). On currents it is `floor(sum / 4)` (`>> 2` of the
//! i64 sum), saturated to i32.

use crate::bits;

/// Counts the spikes of each 2x2 window of a `c x h x w` bit map into
/// `counts[c][h/2][w/2]`.
pub fn count_spikes(spikes: &[u32], c: usize, h: usize, w: usize, counts: &mut [u8]) {
    let (ph, pw) = (h / 2, w / 2);
    if (1..=32).contains(&w) && pw > 0 {
        // A pair of input rows at a time, as words: the 2-bit fields of `u` (`v`) hold the
        // spikes of the upper (lower) row's pairs of columns (0..=2 each).
        const M: u32 = 0x5555_5555;
        let counts = &mut counts[..c * ph * pw];
        // Running offsets instead of chunks (whose lengths are divisions, in software on
        // ARMv6-M): `base` is the bit of the row pair, `o` its first count.
        let (mut base, mut o) = (0, 0);
        for _ in 0..c {
            for _ in 0..ph {
                let (r0, r1) = (bits::row(spikes, base, w), bits::row(spikes, base + w, w));
                let (mut u, mut v) = ((r0 & M) + ((r0 >> 1) & M), (r1 & M) + ((r1 >> 1) & M));
                for out in &mut counts[o..o + pw] {
                    *out = ((u & 3) + (v & 3)) as u8;
                    u >>= 2;
                    v >>= 2;
                }
                base += 2 * w;
                o += pw;
            }
            // An odd last row belongs to no window.
            base += (h - 2 * ph) * w;
        }
        return;
    }
    count_spikes_bits(spikes, c, h, w, counts);
}

/// [`count_spikes`] a bit at a time (maps wider than 32 columns).
fn count_spikes_bits(spikes: &[u32], c: usize, h: usize, w: usize, counts: &mut [u8]) {
    let (ph, pw) = (h / 2, w / 2);
    for ci in 0..c {
        for py in 0..ph {
            for px in 0..pw {
                let base = (ci * h + 2 * py) * w + 2 * px;
                let n = bits::get(spikes, base) as u8
                    + bits::get(spikes, base + 1) as u8
                    + bits::get(spikes, base + w) as u8
                    + bits::get(spikes, base + w + 1) as u8;
                counts[(ci * ph + py) * pw + px] = n;
            }
        }
    }
}

/// `out[c][py][px] = floor(sum of the 2x2 window / 4)` on currents.
pub fn mean_currents(input: &[i32], c: usize, h: usize, w: usize, out: &mut [i32]) {
    let (ph, pw) = (h / 2, w / 2);
    for ci in 0..c {
        for py in 0..ph {
            for px in 0..pw {
                let base = (ci * h + 2 * py) * w + 2 * px;
                let s = input[base] as i64
                    + input[base + 1] as i64
                    + input[base + w] as i64
                    + input[base + w + 1] as i64;
                out[(ci * ph + py) * pw + px] = (s >> 2) as i32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_windows_and_drops_odd_edges() {
        // 1 channel 3x5: rows 0..1 form the only window row; column 4 dropped.
        let x: [u8; 15] = [1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1];
        let mut m = [0u32; 1];
        bits::pack(&x, &mut m);
        let mut c = [9u8; 2];
        count_spikes(&m, 1, 3, 5, &mut c);
        assert_eq!(c, [4, 1]);
        let mut m = [u32::MAX; 2];
        let mut c = [0u8; 2 * 2 * 2];
        count_spikes(&m, 2, 4, 5, &mut c);
        assert_eq!(c, [4; 8]);
        m = [0; 2];
        count_spikes(&m, 2, 4, 5, &mut c);
        assert_eq!(c, [0; 8]);
    }

    #[test]
    fn word_rows_match_bit_reads() {
        let mut seed = 0x1234_5678u32;
        for (c, h, w) in [
            (1, 2, 2),
            (3, 5, 7),
            (2, 8, 8),
            (4, 7, 31),
            (2, 6, 32),
            (1, 4, 33),
        ] {
            let n = c * h * w;
            let mut map = [0u32; 32];
            for word in &mut map[..bits::words(n)] {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *word = seed;
            }
            if n % 32 != 0 {
                map[n / 32] &= (1 << (n % 32)) - 1;
            }
            let len = c * (h / 2) * (w / 2);
            let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
            count_spikes(&map, c, h, w, &mut a[..len]);
            count_spikes_bits(&map, c, h, w, &mut b[..len]);
            assert_eq!(a[..len], b[..len], "{c}x{h}x{w}");
        }
    }

    #[test]
    fn mean_floors_and_does_not_overflow() {
        let mut o = [0; 2];
        mean_currents(&[1, 2, 3, 4, -1, -2, 0, 0, 0], 1, 2, 4, &mut o[..2]);
        // windows: (1,2,-1,-2)=0 ; (3,4,0,0) = 7 -> 1
        assert_eq!(o, [0, 1]);
        mean_currents(&[-1, 0, 0, 0], 1, 2, 2, &mut o[..1]);
        assert_eq!(o[0], -1);
        mean_currents(&[i32::MAX; 4], 1, 2, 2, &mut o[..1]);
        assert_eq!(o[0], i32::MAX);
    }
}
