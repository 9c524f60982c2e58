//! Convolution over a bit-packed spike map: event-driven scatter.
//!
//! For every set input bit `(ci, y, x)` and every kernel tap `(ky, kx)` whose output
//! `(oy, ox) = (y + k/2 - ky, x + k/2 - kx)` lies inside the map (zero padding `k/2`,
//! stride 1, same size), the weight row `[ci][ky][kx][..]` is added to the accumulator
//! row `[oy][ox][..]` (`[y][x][co]` layout, output channels contiguous). Only executed
//! accumulates cost anything: the inner loop is one load, one add and one store per
//! output channel (unrolled by 4).
//!
//! With `pool2`, the output is the 2x2 *sum* pool of the convolution (stride 2, odd
//! sizes floored): taps land on `[oy/2][ox/2][..]` and outputs in the dropped last
//! row/column are skipped. The 1/4 of the average folds into the requantisation.

use crate::bits;
use crate::weights::{with_kernel, RowKernel, Weights};

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

/// Calls `f(y_bits_row, c, y, x0, bits)` for every row segment of a `[c][h][w]` bit
/// map: `bits` holds columns `x0..x0 + 32` of row `(c, y)` (bit `i` = column `x0 + i`;
/// columns past `w` are zero). Rows are read whole when `w <= 32`.
#[inline(always)]
pub(crate) fn for_each_row(
    map: &[u32],
    c: usize,
    h: usize,
    w: usize,
    mut f: impl FnMut(usize, usize, usize, u32),
) {
    let n = c * h * w;
    let map = &map[..bits::words(n)];
    let mut start = 0usize;
    for ci in 0..c {
        for y in 0..h {
            let mut x0 = 0;
            while x0 < w {
                let len = if w - x0 < 32 { w - x0 } else { 32 };
                let (wi, sh) = (start / 32, (start % 32) as u32);
                let mut v = map[wi] >> sh;
                if sh as usize + len > 32 {
                    v |= map[wi + 1] << (32 - sh);
                }
                if len < 32 {
                    v &= (1u32 << len) - 1;
                }
                if v != 0 {
                    f(ci, y, x0, v);
                }
                x0 += len;
                start += len;
            }
        }
    }
}

/// The scatter loop for one row kernel (see [`scatter`]); returns the taps executed.
///
/// # Safety
/// `w` must hold `shape.rows()` rows of `kern.stride()` bytes and `acc` must hold
/// `shape.acc_len(pool2)` accumulators; `kern.n() == shape.cout`.
#[inline(always)]
unsafe fn scatter_rows<K: RowKernel>(
    spikes: &[u32],
    s: &ConvShape,
    kern: K,
    w: *const u8,
    pool2: bool,
    acc: *mut i32,
) -> usize {
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        let (k, pad, cout, stride) = (s.k, s.k / 2, s.cout, kern.stride());
        let mut taps = 0usize;
        if !pool2 {
            // Weight rows of one spike advance by `stride` along kx and `k * stride` along ky;
            // its outputs move back by `cout` along kx and `w * cout` along ky.
            let (wy, ay) = (k * stride, s.w * cout);
            for_each_row(spikes, s.cin, s.h, s.w, |ci, y, x0, mut bits| {
                let (ky0, ky1) = tap_range(y, pad, k, s.h);
                if ky0 > ky1 {
                    return;
                }
                let ny = ky1 + 1 - ky0;
                let w_c = (ci * k + ky0) * k;
                let a_y = (y + pad - ky0) * s.w;
                while bits != 0 {
                    let x = x0 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let (kx0, kx1) = tap_range(x, pad, k, s.w);
                    if kx0 > kx1 {
                        continue;
                    }
                    let nx = kx1 + 1 - kx0;
                    taps += ny * nx;
                    // In bounds: row (ci*k + ky)*k + kx < cin*k*k and output
                    // (y + pad - ky, x + pad - kx) inside h x w for every ky, kx of the ranges.
                    let mut wr = w.add((w_c + kx0) * stride);
                    let mut ar = acc.add((a_y + x + pad - kx0) * cout);
                    if nx == 3 {
                        // The interior of a 3x3 kernel: offsets are constants of the kernel.
                        for _ in 0..ny {
                            kern.add(wr, ar);
                            kern.add(wr.add(stride), ar.sub(cout));
                            kern.add(wr.add(2 * stride), ar.sub(2 * cout));
                            wr = wr.wrapping_add(wy);
                            ar = ar.wrapping_sub(ay);
                        }
                    } else {
                        for _ in 0..ny {
                            let (mut wp, mut ap) = (wr, ar);
                            for _ in 0..nx {
                                kern.add(wp, ap);
                                wp = wp.wrapping_add(stride);
                                ap = ap.wrapping_sub(cout);
                            }
                            wr = wr.wrapping_add(wy);
                            ar = ar.wrapping_sub(ay);
                        }
                    }
                }
            });
        } else {
            // Outputs of the 2x2 sum pool: the convolution output (oy, ox) lands on
            // (oy / 2, ox / 2) when oy < 2 * (h / 2) and ox < 2 * (w / 2).
            let (oh, ow, pw) = (s.h & !1, s.w & !1, s.w / 2);
            for_each_row(spikes, s.cin, s.h, s.w, |ci, y, x0, mut bits| {
                let (ky0, ky1) = tap_range(y, pad, k, oh);
                if ky0 > ky1 {
                    return;
                }
                while bits != 0 {
                    let x = x0 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let (kx0, kx1) = tap_range(x, pad, k, ow);
                    if kx0 > kx1 {
                        continue;
                    }
                    taps += (ky1 + 1 - ky0) * (kx1 + 1 - kx0);
                    for ky in ky0..=ky1 {
                        let row = ((y + pad - ky) >> 1) * pw;
                        let wr = w.add(((ci * k + ky) * k) * stride);
                        for kx in kx0..=kx1 {
                            // In bounds as above, with the pooled output inside h/2 x w/2.
                            let a = acc.add((row + ((x + pad - kx) >> 1)) * cout);
                            kern.add(wr.add(kx * stride), a);
                        }
                    }
                }
            });
        }
        taps
    }
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
    acc.fill(0);
    if cout == 0 || shape.k == 0 {
        return 0;
    }
    let acc = acc.as_mut_ptr();
    let taps = with_kernel!(weights, shape.rows(), cout, |kern, w| {
        // SAFETY: `with_kernel!` checked the weight storage, `acc` has acc_len entries
        // and the kernel's row length is `cout`.
        unsafe { scatter_rows(spikes, shape, kern, w, pool2, acc) }
    });
    taps as u64 * cout as u64
}

#[cfg(test)]
mod tests {
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

    fn pattern(n: usize, seed: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 7 + seed) % 5 < 2) as u8).collect()
    }

    fn weights(n: usize, range: i32) -> Vec<i8> {
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
