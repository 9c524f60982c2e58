//! The stem convolution: `u8` pixels times int8/int4 weights, event-driven scatter.
//!
//! Same geometry and layouts as [`crate::conv_spikes`] (`[ci][ky][kx][co]` weights,
//! `[y][x][co]` accumulators, padding `k/2`, stride 1), but each non-zero pixel `p`
//! multiplies its weight rows (`acc += p * w`). Zero pixels cost nothing; each executed
//! multiply-accumulate counts as one synaptic operation. The `1/255` pixel scale folds
//! into the requantisation.

use crate::conv_spikes::{for_each_tap, ConvShape};
use crate::weights::{with_any_kernel, RowKernel, Weights};

/// Convolves `[ci][y][x]` pixels into `acc` (zeroed first, `shape.acc_len(false)`
/// entries). Returns the synaptic operations executed.
pub fn scatter(pixels: &[u8], shape: &ConvShape, weights: Weights, acc: &mut [i32]) -> u64 {
    let cout = shape.cout;
    let acc = &mut acc[..shape.acc_len(false)];
    crate::fill::zero(acc);
    let plane = shape.h * shape.w;
    let pixels = &pixels[..shape.cin * plane];
    if cout == 0 || shape.k == 0 {
        return 0;
    }
    if let Some(taps) = rows3_v6m(pixels, shape, weights, acc) {
        return crate::bits::synops(taps, cout);
    }
    let acc = acc.as_mut_ptr();
    let taps = with_any_kernel!(weights, shape.rows(), cout, |kern, w| {
        each_tap(pixels, shape, |r, off, p| {
            // SAFETY: `with_any_kernel!` checked that the weights hold `shape.rows()`
            // rows and `each_tap` only yields rows < rows and outputs whose `cout`
            // accumulators lie inside `acc` (acc_len(false) entries).
            unsafe { kern.mla(w.add(r * kern.stride()), p, acc.add(off)) };
        })
    });
    crate::bits::synops(taps, cout)
}

/// The int8 3 x 3 stem with 4 or 8 output channels on maps at least 3 wide, on ARMv6-M:
/// output-row by output-row in assembly ([`row3_i8_v6m`]), the accumulators of an output
/// pixel in registers while its three taps of one kernel row add on, a zero pixel
/// skipped by one compare. `None` (nothing done) for other layers and cores. Returns the
/// taps executed: per input row and kernel row that lands, three per non-zero pixel,
/// one fewer for each of the two end columns.
#[inline(always)]
fn rows3_v6m(pixels: &[u8], shape: &ConvShape, weights: Weights, acc: &mut [i32]) -> Option<usize> {
    let (h, w, cout) = (shape.h, shape.w, shape.cout);
    let Weights::I8(wq) = weights else {
        return None;
    };
    if !cfg!(all(target_arch = "arm", not(target_feature = "thumb2")))
        || shape.k != 3
        || w < 3
        || !(cout == 4 || cout == 8)
    {
        return None;
    }
    assert!(wq.len() >= shape.rows() * cout && acc.len() >= h * w * cout);
    assert!(pixels.len() >= shape.cin * h * w);
    let mut taps = 0;
    let mut rows = pixels.chunks_exact(w);
    for ci in 0..shape.cin {
        for (iy, row) in (0..h).zip(&mut rows) {
            let nz = row.iter().filter(|&&p| p != 0).count();
            if nz == 0 {
                continue;
            }
            let ends = (row[0] != 0) as usize + (row[w - 1] != 0) as usize;
            for ky in 0..3 {
                // Output row iy + 1 - ky.
                let oy = (iy + 1).wrapping_sub(ky);
                if oy >= h {
                    continue;
                }
                taps += 3 * nz - ends;
                let wk = &wq[(ci * 3 + ky) * 3 * cout..][..3 * cout];
                let out = &mut acc[oy * w * cout..][..w * cout];
                // SAFETY: `row` holds w >= 3 pixels, `wk` the 3 taps of `cout` weights
                // and `out` the w pixels of `cout` accumulators of the output row.
                unsafe {
                    if cout == 4 {
                        row3_i8_v6m::<4>(row, wk.as_ptr(), out.as_mut_ptr());
                    } else {
                        row3_i8_v6m::<8>(row, wk.as_ptr(), out.as_mut_ptr());
                        row3_i8_v6m::<8>(row, wk.as_ptr().add(4), out.as_mut_ptr().add(4));
                    }
                }
            }
        }
    }
    Some(taps)
}

/// One kernel row of the int8 3 x 3 stem over one input row `row` (`w >= 3` pixels) on
/// ARMv6-M: `out[ox][0..4] += sum_kx row[ox - 1 + kx] * wk[kx][0..4]` for every output
/// column `ox` (the taps inside the row), `C` the accumulators' and weights' channel
/// stride (4 or 8; one group of 4 channels per call). Per output pixel: one `LDM` and
/// one `STM` of its four accumulators and per tap a load and a compare, and for a
/// non-zero pixel `LDRB`, `SXTB`, `MULS`, `ADDS` per channel.
///
/// # Safety
/// `wk..wk + 2C + 4` readable, `out..out + (w - 1) C + 4` (i32, aligned) writable.
#[inline(always)]
#[allow(unused_variables)]
unsafe fn row3_i8_v6m<const C: usize>(row: &[u8], wk: *const i8, out: *mut i32) {
    #[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
    {
        // One tap: pixel at byte `px` from r5, weights at byte `wo` from r4.
        macro_rules! tap {
            ($px:literal, $wo:literal) => {
                concat!(
                    "ldrb r7, [r5, #",
                    $px,
                    "]\n",
                    "cmp r7, #0\n",
                    "beq 1f\n",
                    "ldrb r6, [r4, #",
                    $wo,
                    "]\n",
                    "sxtb r6, r6\n",
                    "muls r6, r7, r6\n",
                    "adds r0, r0, r6\n",
                    "ldrb r6, [r4, #",
                    $wo,
                    "+1]\n",
                    "sxtb r6, r6\n",
                    "muls r6, r7, r6\n",
                    "adds r1, r1, r6\n",
                    "ldrb r6, [r4, #",
                    $wo,
                    "+2]\n",
                    "sxtb r6, r6\n",
                    "muls r6, r7, r6\n",
                    "adds r2, r2, r6\n",
                    "ldrb r6, [r4, #",
                    $wo,
                    "+3]\n",
                    "sxtb r6, r6\n",
                    "muls r6, r7, r6\n",
                    "adds r3, r3, r6\n",
                    "1:\n",
                )
            };
        }
        // Load and store the accumulators of the output pixel at r8, then step it by C
        // (`STM` steps 4).
        macro_rules! load {
            () => {
                "mov r6, r8\nldm r6!, {{r0, r1, r2, r3}}\n"
            };
        }
        macro_rules! store {
            () => {
                "mov r6, r8\nstm r6!, {{r0, r1, r2, r3}}\nmov r8, r6\n"
            };
            ($step:literal) => {
                concat!(
                    "mov r6, r8\nstm r6!, {{r0, r1, r2, r3}}\nadds r6, #",
                    $step,
                    "\nmov r8, r6\n"
                )
            };
        }
        let w = row.len();
        // r5 = the pixel left of the output column (column -1 for the first, never read).
        let p = row.as_ptr().wrapping_sub(1);
        let end = row.as_ptr().wrapping_add(w - 2);
        // The row with the weights of kx = 1 and 2 at byte offsets `w1`, `w2` (kx = 0 at 0)
        // and the accumulators stepped by `STM` and `step` more bytes per pixel.
        macro_rules! row {
            ($w1:literal, $w2:literal $(, $step:literal)?) => {
                core::arch::asm!(
                    "push {{r6, r7}}",
                    "mov r8, r0",
                    "mov r10, r1",
                    // Column 0: taps kx = 1, 2.
                    load!(), tap!("1", $w1), tap!("2", $w2), store!($($step)?),
                    "adds r5, #1",
                    // Columns 1..w - 1: kx = 0, 1, 2.
                    "2:",
                    load!(), tap!("0", "0"), tap!("1", $w1), tap!("2", $w2), store!($($step)?),
                    "adds r5, #1",
                    "cmp r5, r10",
                    "bne 2b",
                    // Column w - 1: kx = 0, 1.
                    load!(), tap!("0", "0"), tap!("1", $w1), store!($($step)?),
                    "pop {{r6, r7}}",
                    inout("r0") out => _,
                    inout("r1") end => _,
                    out("r2") _,
                    out("r3") _,
                    inout("r4") wk => _,
                    inout("r5") p => _,
                    out("r8") _,
                    out("r10") _,
                )
            };
        }
        // SAFETY: reads pixels 0..w of `row`, weights `wk..wk + 2C + 4` and writes the w
        // output pixels; r6/r7 are restored before the end.
        unsafe {
            if C == 4 {
                row!("4", "8");
            } else {
                row!("8", "16", "16");
            }
        }
    }
}

/// Calls `f(row, acc_offset, pixel)` for every tap of every non-zero pixel (channel, row
/// and column by nested loops: no division, which ARMv6-M does in software); returns the
/// taps.
#[inline(always)]
fn each_tap(pixels: &[u8], shape: &ConvShape, mut f: impl FnMut(usize, usize, i32)) -> usize {
    let mut taps = 0usize;
    let mut rows = pixels.chunks_exact(shape.w.max(1));
    for ci in 0..shape.cin {
        for (y, row) in (0..shape.h).zip(&mut rows) {
            for (x, &p) in row.iter().enumerate() {
                if p == 0 {
                    continue;
                }
                for_each_tap(shape, false, ci, y, x, |r, off| {
                    f(r, off, p as i32);
                    taps += 1;
                });
            }
        }
    }
    taps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requant::{hwc_to_chw, quantize_multiplier, Mode, Requant};
    use crate::weights::pack_i4;

    #[test]
    fn stem_matches_float_conv_bn_within_rounding() {
        // Float layer: x = pixel / 255, w_f = w_q * s_w[co], y = a[co] * conv + b[co];
        // the integer current is 4096 * 0.75 * y.
        let s = ConvShape {
            cin: 2,
            cout: 3,
            k: 3,
            h: 5,
            w: 4,
        };
        let wq: Vec<i8> = (0..s.rows() * 3)
            .map(|i| ((i * 53 + 7) % 255) as i32 - 127)
            .map(|v| v as i8)
            .collect();
        let s_w: [f64; 3] = [0.01, 0.003, 0.02];
        let (a, b): ([f64; 3], [f64; 3]) = ([1.3, -0.7, 0.4], [0.1, -0.25, 0.0]);
        let px: Vec<u8> = (0..2 * 5 * 4).map(|i| ((i * 97) % 256) as u8).collect();
        let mut mult = [0; 3];
        let mut bias = [0; 3];
        let mut shift = 0;
        for c in 0..3 {
            // One shared shift: pick the smallest per-channel shift.
            let (_, sh) = quantize_multiplier(4096.0 * 0.75 * a[c] * s_w[c] / 255.0).unwrap();
            shift = if c == 0 { sh } else { shift.min(sh) };
        }
        for c in 0..3 {
            let real = 4096.0 * 0.75 * a[c] * s_w[c] / 255.0;
            mult[c] = (real * (1u64 << shift) as f64).round() as i32;
            bias[c] = (4096.0 * 0.75 * b[c]).round() as i32;
        }
        let rq = Requant {
            mult: &mult,
            bias: &bias,
            shift,
        };
        let mut acc = vec![0; s.acc_len(false)];
        let ops = scatter(&px, &s, Weights::I8(&wq), &mut acc);
        let mut cur = vec![0; 3 * 20];
        hwc_to_chw(&acc, &rq, 3, &mut cur, Mode::Store);
        let nonzero = px.iter().filter(|&&p| p != 0).count() as u64;
        assert!(ops > 0 && ops <= nonzero * 9 * 3);
        for co in 0..3 {
            for oy in 0..5isize {
                for ox in 0..4isize {
                    let mut sum = 0.0;
                    for ci in 0..2 {
                        for ky in 0..3isize {
                            for kx in 0..3isize {
                                let (y, x) = (oy + ky - 1, ox + kx - 1);
                                if y < 0 || x < 0 || y >= 5 || x >= 4 {
                                    continue;
                                }
                                let p = px[(ci * 5 + y as usize) * 4 + x as usize] as f64 / 255.0;
                                let w = wq[((ci * 3 + ky as usize) * 3 + kx as usize) * 3 + co]
                                    as f64
                                    * s_w[co];
                                sum += p * w;
                            }
                        }
                    }
                    let y = 4096.0 * 0.75 * (a[co] * sum + b[co]);
                    let got = cur[(co * 5 + oy as usize) * 4 + ox as usize] as f64;
                    assert!((got - y).abs() <= 1.0, "co{co} ({oy},{ox}): {got} vs {y}");
                }
            }
        }
    }

    #[test]
    fn zero_image_costs_nothing_and_int4_matches() {
        let s = ConvShape {
            cin: 1,
            cout: 5,
            k: 3,
            h: 3,
            w: 3,
        };
        let w8: Vec<i8> = (0..45).map(|i| (i % 16) as i8 - 8).collect();
        let mut w4 = vec![0u8; 9 * 3];
        pack_i4(&w8, 5, &mut w4).unwrap();
        let mut acc = vec![7; 45];
        assert_eq!(scatter(&[0; 9], &s, Weights::I8(&w8), &mut acc), 0);
        assert!(acc.iter().all(|&a| a == 0));
        let px = [255u8, 0, 3, 9, 200, 1, 0, 0, 17];
        let (mut a8, mut a4) = (vec![0; 45], vec![0; 45]);
        let o8 = scatter(&px, &s, Weights::I8(&w8), &mut a8);
        let o4 = scatter(&px, &s, Weights::I4(&w4), &mut a4);
        assert_eq!((a8, o8), (a4, o4));
        // The centre pixel (200) reaches all 9 outputs: 9 taps x 5 channels.
        let mut acc = vec![0; 45];
        assert_eq!(
            scatter(
                &[0, 0, 0, 0, 200, 0, 0, 0, 0],
                &s,
                Weights::I8(&w8),
                &mut acc
            ),
            45
        );
        // output (0,0) channel 0 gets tap (ky=2,kx=2): row 8
        assert_eq!(acc[0], 200 * w8[8 * 5] as i32);
    }
}
