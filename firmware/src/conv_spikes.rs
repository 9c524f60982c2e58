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
use crate::weights::{with_rows, Rows, Weights};

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
    let mut taps = 0u64;
    with_rows!(weights, cout, |rows| {
        bits::for_each_set_chw(spikes, shape.cin, shape.h, shape.w, |ci, y, x| {
            for_each_tap(shape, pool2, ci, y, x, |r, off| {
                rows.add(r, &mut acc[off..off + cout]);
                taps += 1;
            });
        })
    });
    taps * cout as u64
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
