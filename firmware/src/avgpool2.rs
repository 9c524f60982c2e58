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
