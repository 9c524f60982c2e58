//! 3x3 average pool, stride 1, padding 1, `count_include_pad` (always divide by 9),
//! on `[c][y][x]` Q12 currents, accumulated into a cell node.
//!
//! Each output is `floor(sum / 9)` of the window sum taken in `i64`, saturated to `i32`,
//! then added (saturating) to the destination (or stored, for the first edge into a node). The division uses a multiply by the
//! 32-bit reciprocal (exact for every `u32`) so Cortex-M0 needs no divide routine.

use crate::requant::Mode;

/// `floor(s / 9)` for any `i64` (fast path for sums that fit 32 bits).
#[inline(always)]
pub const fn div9_floor(s: i64) -> i64 {
    if s >= 0 && s <= u32::MAX as i64 {
        ((s as u64 * 954_437_177) >> 33) as i64
    } else if s < 0 && s >= -(u32::MAX as i64 - 8) {
        // floor(s/9) = -ceil(-s/9) = -floor((-s + 8) / 9)
        -(((((-s + 8) as u64) * 954_437_177) >> 33) as i64)
    } else {
        s.div_euclid(9)
    }
}

/// `dst[c][y][x] = sat(dst + floor(window_sum(src, c, y, x) / 9))` for a `c x h x w` map.
pub fn accumulate(src: &[i32], c: usize, h: usize, w: usize, dst: &mut [i32]) {
    pool(src, c, h, w, dst, Mode::Accumulate);
}

/// `floor(window_sum / 9)` of every output, stored into `dst` or added to it
/// (saturating, [`Mode`]). Each output row slides a window of three column sums
/// (`i64`, 3 rows each) along `x`, so every input is loaded 3 times instead of 9.
pub fn pool(src: &[i32], c: usize, h: usize, w: usize, dst: &mut [i32], mode: Mode) {
    let plane = h * w;
    if plane == 0 {
        return;
    }
    let (src, dst) = (&src[..c * plane], &mut dst[..c * plane]);
    for (s, d) in src.chunks_exact(plane).zip(dst.chunks_exact_mut(plane)) {
        for y in 0..h {
            let mid = &s[y * w..(y + 1) * w];
            // Missing rows (padding) read `mid` and count 0.
            let (has_up, has_down) = (y > 0, y + 1 < h);
            let up = if has_up { &s[(y - 1) * w..y * w] } else { mid };
            let down = if has_down {
                &s[(y + 1) * w..(y + 2) * w]
            } else {
                mid
            };
            let col = |x: usize| -> i64 {
                let mut v = mid[x] as i64;
                if has_up {
                    v += up[x] as i64;
                }
                if has_down {
                    v += down[x] as i64;
                }
                v
            };
            let (mut left, mut here) = (0i64, col(0));
            for (x, o) in d[y * w..(y + 1) * w].iter_mut().enumerate() {
                let right = if x + 1 < w { col(x + 1) } else { 0 };
                let q = div9_floor(left + here + right).clamp(i32::MIN as i64, i32::MAX as i64);
                let q = q as i32;
                *o = match mode {
                    Mode::Store => q,
                    Mode::Accumulate => o.saturating_add(q),
                };
                (left, here) = (here, right);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn div9_is_floor_division() {
        let mut xs: Vec<i64> = (-2000..2000).collect();
        for &b in &[
            u32::MAX as i64,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX / 3,
            i64::MIN / 3,
        ] {
            for d in -20..20 {
                xs.push(b + d);
                xs.push(-b + d);
            }
        }
        for &x in &xs {
            assert_eq!(div9_floor(x), x.div_euclid(9), "x={x}");
        }
    }

    #[test]
    fn matches_float_pool_with_padding() {
        let (c, h, w) = (2, 4, 5);
        let src: Vec<i32> = (0..c * h * w)
            .map(|i| (i as i32 * 7919) % 20000 - 10000)
            .collect();
        let mut dst = vec![100; c * h * w];
        accumulate(&src, c, h, w, &mut dst);
        for ci in 0..c {
            for y in 0..h as isize {
                for x in 0..w as isize {
                    let mut s = 0.0;
                    for dy in -1..=1 {
                        for dx in -1..=1 {
                            let (yy, xx) = (y + dy, x + dx);
                            if yy >= 0 && xx >= 0 && yy < h as isize && xx < w as isize {
                                s += src[(ci * h + yy as usize) * w + xx as usize] as f64;
                            }
                        }
                    }
                    let expect = 100.0 + (s / 9.0).floor();
                    assert_eq!(dst[(ci * h + y as usize) * w + x as usize] as f64, expect);
                }
            }
        }
    }

    #[test]
    fn store_equals_accumulate_into_zero() {
        for (c, h, w) in [(1, 1, 1), (2, 1, 5), (1, 4, 1), (3, 5, 6)] {
            let src: Vec<i32> = (0..c * h * w)
                .map(|i| (i as i32).wrapping_mul(-1_640_531_527))
                .collect();
            let mut acc = vec![0; c * h * w];
            accumulate(&src, c, h, w, &mut acc);
            let mut st = vec![123; c * h * w];
            pool(&src, c, h, w, &mut st, Mode::Store);
            assert_eq!(acc, st, "{c}x{h}x{w}");
        }
    }

    #[test]
    fn single_pixel_and_saturation() {
        let mut d = [0];
        accumulate(&[900], 1, 1, 1, &mut d);
        assert_eq!(d, [100]);
        let mut d = [0; 4];
        accumulate(&[i32::MAX; 4], 1, 2, 2, &mut d);
        assert_eq!(d, [(4 * i32::MAX as i64 / 9) as i32; 4]);
        let mut d = [i32::MIN + 5; 4];
        accumulate(&[-100; 4], 1, 2, 2, &mut d);
        assert_eq!(d, [i32::MIN; 4]);
    }
}
