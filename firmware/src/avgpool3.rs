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
/// (saturating, [`Mode`]). Each output row slides a window of three column sums along
/// `x`, so every input is loaded 3 times instead of 9. A plane whose inputs all lie in
/// `-2^27..2^27` (Q12 currents below 32768.0 in magnitude: every trained network) sums in
/// `i32` with a 32-bit reciprocal division; others in `i64`.
pub fn pool(src: &[i32], c: usize, h: usize, w: usize, dst: &mut [i32], mode: Mode) {
    let plane = h * w;
    if plane == 0 {
        return;
    }
    let (src, dst) = (&src[..c * plane], &mut dst[..c * plane]);
    for (s, d) in src.chunks_exact(plane).zip(dst.chunks_exact_mut(plane)) {
        // -2^27 <= v < 2^27 for every v (v ^ (v >> 31) is v, or -v - 1 for negative v).
        let narrow = s.iter().fold(0u32, |m, &v| m | (v ^ (v >> 31)) as u32) < NARROW;
        match (narrow, mode) {
            (true, Mode::Store) => pool_plane_narrow::<false>(s, h, w, d),
            (true, Mode::Accumulate) => pool_plane_narrow::<true>(s, h, w, d),
            (false, _) => pool_plane_wide(s, h, w, d, mode),
        }
    }
}

/// Inputs whose `v ^ (v >> 31)` is below this (`-2^27 <= v < 2^27`) take the `i32` path.
const NARROW: u32 = 1 << 27;

/// `floor(s / 9)` for `|s| <= 9 * 2^27`: `s + 9 * 2^27` is a `u32`, divided by the
/// reciprocal multiply of [`div9_floor`] (one `UMULL` on ARMv7-M).
#[inline(always)]
fn div9_floor_narrow(s: i32) -> i32 {
    const K: i32 = NARROW as i32;
    let u = s.wrapping_add(9 * K) as u32;
    ((u as u64 * 954_437_177) >> 33) as i32 - K
}

/// One plane of [`pool`] for inputs in `-2^27..2^27` (window sums fit `i32`); `ACC`
/// adds to `d` (saturating) instead of storing.
fn pool_plane_narrow<const ACC: bool>(s: &[i32], h: usize, w: usize, d: &mut [i32]) {
    for y in 0..h {
        let mid = &s[y * w..(y + 1) * w];
        // Missing rows (padding) read `mid` under a zero mask (one code path, less flash).
        let (up, mu) = if y > 0 {
            (&s[(y - 1) * w..y * w], -1)
        } else {
            (mid, 0)
        };
        let (down, md) = if y + 1 < h {
            (&s[(y + 1) * w..(y + 2) * w], -1)
        } else {
            (mid, 0)
        };
        let out = &mut d[y * w..(y + 1) * w];
        if mu & md != 0 {
            // Interior rows (most of them) with no mask to apply.
            row_narrow::<ACC, false>(up, mid, down, mu, md, out);
        } else {
            row_narrow::<ACC, true>(up, mid, down, mu, md, out);
        }
    }
}

/// One output row of [`pool_plane_narrow`]: the rows above and below count where their
/// mask (`mu`, `md`) is all ones and not where it is zero (`MASKED`; without it both
/// count).
#[inline(always)]
fn row_narrow<const ACC: bool, const MASKED: bool>(
    up: &[i32],
    mid: &[i32],
    down: &[i32],
    mu: i32,
    md: i32,
    out: &mut [i32],
) {
    let w = out.len();
    let (up, mid, down) = (&up[..w], &mid[..w], &down[..w]);
    let col = |x: usize| -> i32 {
        if MASKED {
            mid[x] + (up[x] & mu) + (down[x] & md)
        } else {
            mid[x] + up[x] + down[x]
        }
    };
    let put = |o: &mut i32, sum: i32| {
        let q = div9_floor_narrow(sum);
        *o = if ACC { o.saturating_add(q) } else { q };
    };
    let (mut left, mut here) = (0i32, col(0));
    let (body, last) = out.split_at_mut(w - 1);
    for (x, o) in body.iter_mut().enumerate() {
        let right = col(x + 1);
        put(o, left + here + right);
        (left, here) = (here, right);
    }
    put(&mut last[0], left + here);
}

/// One plane of [`pool`] for any inputs: window sums in `i64`.
fn pool_plane_wide(s: &[i32], h: usize, w: usize, d: &mut [i32], mode: Mode) {
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

    /// The i32 path gives the i64 path's result at the edges of its range and off them.
    #[test]
    fn narrow_planes_match_wide_ones() {
        const K: i32 = 1 << 27;
        assert_eq!(div9_floor_narrow(9 * K), K);
        assert_eq!(div9_floor_narrow(-9 * K), -K);
        for v in [
            -9 * K,
            -9 * K + 1,
            -10,
            -9,
            -8,
            -1,
            0,
            1,
            8,
            9,
            9 * K - 1,
            9 * K,
        ] {
            assert_eq!(div9_floor_narrow(v) as i64, div9_floor(v as i64), "{v}");
        }
        for (h, w) in [(1, 1), (1, 4), (3, 1), (2, 2), (4, 5)] {
            for (i, scale) in [K, K - 1, 1000].into_iter().enumerate() {
                let src: Vec<i32> = (0..h * w)
                    .map(|j| match (i + j) % 4 {
                        0 => scale,
                        1 => -scale,
                        2 => (j as i32 * 7919) % scale.min(30000),
                        _ => -((j as i32 * 104_729) % scale.min(30000)),
                    })
                    .collect();
                for mode in [Mode::Store, Mode::Accumulate] {
                    let mut a = vec![i32::MAX - 3; h * w];
                    let mut b = a.clone();
                    pool(&src, 1, h, w, &mut a, mode);
                    pool_plane_wide(&src, h, w, &mut b, mode);
                    assert_eq!(a, b, "{h}x{w} scale {scale}");
                }
            }
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
