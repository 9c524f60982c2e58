//! Fully connected layers over spikes (binary) or 2x2 spike counts (`0..=4`).
//!
//! Weights are `[in][out]` rows (see [`crate::weights`]); each non-zero input adds its
//! row (times the count) to the `out` accumulators. One accumulate per output and per
//! non-zero input is one synaptic operation.

use crate::bits;
use crate::weights::{with_any_kernel, RowKernel, Weights};

/// `acc = W^T s` for a bit-packed input of `inputs` spikes; `acc.len()` = outputs
/// (zeroed first). Returns the synaptic operations executed.
pub fn from_spikes(spikes: &[u32], inputs: usize, weights: Weights, acc: &mut [i32]) -> u64 {
    let n = acc.len();
    crate::fill::zero(acc);
    if n == 0 {
        return 0;
    }
    let spikes = &spikes[..bits::words(inputs)];
    let a = acc.as_mut_ptr();
    let active = with_any_kernel!(weights, inputs, n, |kern, w| {
        let mut active = 0usize;
        bits::for_each_set(spikes, inputs, |i| {
            // SAFETY: i < inputs rows (checked by `with_any_kernel!`), `n` accumulators.
            unsafe { kern.add(w.add(i * kern.stride()), a) };
            active += 1;
        });
        active
    });
    bits::synops(active, n)
}

/// `acc = W^T x` for small non-negative inputs (spike counts); `acc.len()` = outputs
/// (zeroed first). Returns the synaptic operations executed.
///
/// On ARMv6-M (and off ARM, so the host tests run it) int8 layers whose counts fit take
/// the 16-bit lanes of [`from_counts_lanes`]; the result is the same.
pub fn from_counts(counts: &[u8], weights: Weights, acc: &mut [i32]) -> u64 {
    if COUNT_LANES {
        if let Weights::I8(w) = weights {
            if let Some(ops) = from_counts_lanes(counts, w, acc) {
                return ops;
            }
        }
    }
    let n = acc.len();
    crate::fill::zero(acc);
    if n == 0 {
        return 0;
    }
    let a = acc.as_mut_ptr();
    let active = with_any_kernel!(weights, counts.len(), n, |kern, w| {
        let mut active = 0usize;
        for (i, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            // SAFETY: i < counts.len() rows (checked by `with_any_kernel!`), `n` accumulators.
            unsafe {
                let row = w.add(i * kern.stride());
                if c == 1 {
                    kern.add(row, a);
                } else {
                    kern.mla(row, c as i32, a);
                }
            }
            active += 1;
        }
        active
    });
    bits::synops(active, n)
}

/// True where [`from_counts`] tries [`from_counts_lanes`]: ARMv6-M, where it pays (no
/// `SXTB16`, byte loads for the `i32` row kernels), and off ARM (host tests).
const COUNT_LANES: bool = cfg!(not(all(target_arch = "arm", target_feature = "thumb2")));

/// True where the lane row kernels are the Thumb-1 assembly (word loads need aligned
/// weights there).
const V6M_ASM: bool = cfg!(all(target_arch = "arm", not(target_feature = "thumb2")));

/// Every weight enters a lane as `w + 128` (`0..=255`): the sign bit of each byte flipped.
const LANE_FLIP: u32 = 0x8080_8080;

/// The two lanes of a word: bytes 0 and 2 (or 1 and 3 after a shift by 8).
const LANE_MASK: u32 = 0x00ff_00ff;

/// The largest sum of counts whose lanes cannot carry: `257 * 255 = 65535`.
pub const LANE_COUNT_LIMIT: u32 = 257;

/// [`from_counts`] for int8 weights in 16-bit lanes, `None` (nothing written) where it
/// does not apply: outputs not a multiple of 16, the counts summing to more than
/// [`LANE_COUNT_LIMIT`], or (ARMv6-M) weights not word-aligned.
///
/// A word of four weights `w0..w3` with each sign bit flipped holds `w + 128` in its
/// bytes; masking bytes 0 and 2, and 1 and 3 after a shift by 8, gives two words of two
/// unsigned 16-bit lanes each (outputs `(4g, 4g + 2)` and `(4g + 1, 4g + 3)`, the order
/// of [`crate::weights::packed_index`]), multiplied by the count and added to lane words
/// with one `ADDS` per two outputs. Each lane ends at `sum(c_i * (w_i + 128))`, within
/// `0..=255 * S <= 65535` for a sum of counts `S <= 257`, so no lane carries into the
/// next and `acc = lane - 128 * S` exactly. On ARMv6-M: 42 instructions per 16
/// accumulates for a count of 1, 56 otherwise (about 66 and 100 for the byte-wise `i32`
/// row kernels).
pub fn from_counts_lanes(counts: &[u8], w: &[i8], acc: &mut [i32]) -> Option<u64> {
    let n = acc.len();
    if n == 0 || n % 16 != 0 || counts.len().checked_mul(n).is_none_or(|r| r > w.len()) {
        return None;
    }
    if V6M_ASM && w.as_ptr() as usize % 4 != 0 {
        return None;
    }
    let total: u32 = counts.iter().map(|&c| c as u32).sum();
    if total > LANE_COUNT_LIMIT {
        return None;
    }
    let words = n / 2;
    crate::fill::zero(&mut acc[..words]);
    let lanes = acc.as_mut_ptr() as *mut u32;
    let wp = w.as_ptr() as *const u8;
    let mut active = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        // SAFETY: row `i < counts.len()` of `n` bytes lies inside `w` (checked above), the
        // lanes are the first `n / 2` words of `acc`; aligned on ARMv6-M (checked above).
        unsafe { add_lanes(wp.add(i * n), lanes, n, c as u32) };
        active += 1;
    }
    // Lane words 2g and 2g + 1 become outputs 4g..4g + 4: backwards, so that no word is
    // overwritten before it is read (4g >= 2g + 1 for g >= 1; g = 0 reads first).
    let off = 128 * total as i32;
    for g in (0..n / 4).rev() {
        let (e, o) = (acc[2 * g] as u32, acc[2 * g + 1] as u32);
        let out = &mut acc[4 * g..4 * g + 4];
        out[0] = (e & 0xffff) as i32 - off;
        out[1] = (o & 0xffff) as i32 - off;
        out[2] = (e >> 16) as i32 - off;
        out[3] = (o >> 16) as i32 - off;
    }
    Some(active * n as u64)
}

/// `lanes[2g] += c * ((u ^ LANE_FLIP) & LANE_MASK)` and `lanes[2g + 1] += c * (((u ^
/// LANE_FLIP) >> 8) & LANE_MASK)` (wrapping) for each word `u` (little-endian) of the row
/// `w[4g..4g + 4]`, `g < n / 4`.
///
/// # Safety
/// `n % 16 == 0`, `n >= 16`; `w..w + n` readable (word-aligned on ARMv6-M),
/// `lanes..lanes + n / 2` writable and word-aligned.
#[inline(always)]
unsafe fn add_lanes(w: *const u8, lanes: *mut u32, n: usize, c: u32) {
    #[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
    // SAFETY: the caller guarantees both ranges; each loop ends when the weight pointer
    // reaches `w + n` (16 weights per iteration); r6/r7 are saved and restored.
    unsafe {
        let end = w.add(n);
        if c == 1 {
            macro_rules! group {
                () => {
                    concat!(
                        "ldm r2!, {{r4}}\n",
                        "eors r4, r0\n",
                        "lsrs r5, r4, #8\n",
                        "ands r4, r1\n",
                        "ands r5, r1\n",
                        "ldm r3!, {{r6, r7}}\n",
                        "adds r6, r6, r4\n",
                        "adds r7, r7, r5\n",
                        "subs r3, #8\n",
                        "stm r3!, {{r6, r7}}\n",
                    )
                };
            }
            core::arch::asm!(
                "push {{r6, r7}}",
                "mov r8, r4",
                "2:",
                group!(), group!(), group!(), group!(),
                "cmp r2, r8",
                "bne 2b",
                "pop {{r6, r7}}",
                in("r0") LANE_FLIP,
                in("r1") LANE_MASK,
                inout("r2") w => _,
                inout("r3") lanes => _,
                inout("r4") end => _,
                out("r5") _,
                out("r8") _,
            );
        } else {
            macro_rules! group {
                ($w:literal, $a:literal, $b:literal) => {
                    concat!(
                        "ldr r5, [r2, #",
                        $w,
                        "]\n",
                        "eors r5, r0\n",
                        "lsrs r6, r5, #8\n",
                        "ands r5, r1\n",
                        "ands r6, r1\n",
                        "muls r5, r4, r5\n",
                        "muls r6, r4, r6\n",
                        "ldr r7, [r3, #",
                        $a,
                        "]\n",
                        "adds r7, r7, r5\n",
                        "str r7, [r3, #",
                        $a,
                        "]\n",
                        "ldr r7, [r3, #",
                        $b,
                        "]\n",
                        "adds r7, r7, r6\n",
                        "str r7, [r3, #",
                        $b,
                        "]\n",
                    )
                };
            }
            core::arch::asm!(
                "push {{r6, r7}}",
                "mov r8, r5",
                "2:",
                group!("0", "0", "4"),
                group!("4", "8", "12"),
                group!("8", "16", "20"),
                group!("12", "24", "28"),
                "adds r2, #16",
                "adds r3, #32",
                "cmp r2, r8",
                "bne 2b",
                "pop {{r6, r7}}",
                in("r0") LANE_FLIP,
                in("r1") LANE_MASK,
                inout("r2") w => _,
                inout("r3") lanes => _,
                in("r4") c,
                inout("r5") end => _,
                out("r8") _,
            );
        }
    }
    #[cfg(not(all(target_arch = "arm", not(target_feature = "thumb2"))))]
    // SAFETY: the caller guarantees both ranges.
    unsafe {
        for g in 0..n / 4 {
            let u = u32::from_le((w.add(4 * g) as *const u32).read_unaligned()) ^ LANE_FLIP;
            let (e, o) = (u & LANE_MASK, (u >> 8) & LANE_MASK);
            let l = lanes.add(2 * g);
            *l = (*l).wrapping_add(c.wrapping_mul(e));
            *l.add(1) = (*l.add(1)).wrapping_add(c.wrapping_mul(o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::pack_i4;

    fn dense(x: &[u8], w: &[i8], n: usize) -> Vec<i32> {
        (0..n)
            .map(|o| {
                x.iter()
                    .enumerate()
                    .map(|(i, &v)| v as i32 * w[i * n + o] as i32)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn spikes_and_counts_match_dense_product() {
        let (d, n) = (45, 7);
        let w: Vec<i8> = (0..d * n)
            .map(|i| ((i * 29) % 255) as i32 - 127)
            .map(|v| v as i8)
            .collect();
        let x: Vec<u8> = (0..d).map(|i| ((i * 13) % 3 == 0) as u8).collect();
        let mut map = [0u32; 2];
        bits::pack(&x, &mut map);
        let mut acc = vec![5; n];
        let ops = from_spikes(&map, d, Weights::I8(&w), &mut acc);
        assert_eq!(acc, dense(&x, &w, n));
        assert_eq!(ops, x.iter().filter(|&&v| v != 0).count() as u64 * n as u64);
        let c: Vec<u8> = (0..d).map(|i| (i % 5) as u8).collect();
        let ops = from_counts(&c, Weights::I8(&w), &mut acc);
        assert_eq!(acc, dense(&c, &w, n));
        assert_eq!(ops, 36 * 7);
        // all-zero inputs
        assert_eq!(from_spikes(&[0, 0], d, Weights::I8(&w), &mut acc), 0);
        assert!(acc.iter().all(|&a| a == 0));
    }

    /// The 16-bit lanes equal the dense product at the edges of their domain: every
    /// weight at -128 or 127, counts summing to exactly the limit, and fall back (to the
    /// same result) past it or where the outputs are not a multiple of 16.
    #[test]
    fn count_lanes_match_dense_product() {
        for n in [16usize, 32, 48] {
            for d in [1usize, 7, 33, 70] {
                for (k, fill) in [(0u32, None), (1, Some(-128i8)), (2, Some(127i8))] {
                    let w: Vec<i8> = (0..d * n)
                        .map(|i| {
                            fill.unwrap_or(((i as u32).wrapping_mul(2654435761) >> 7) as u8 as i8)
                        })
                        .collect();
                    // Counts 0..=4, then topped up so that they sum to exactly the limit
                    // where they can.
                    let mut c: Vec<u8> = (0..d).map(|i| ((i as u32 + k) % 5) as u8).collect();
                    let mut total: u32 = c.iter().map(|&v| v as u32).sum();
                    for v in c.iter_mut() {
                        while total < LANE_COUNT_LIMIT && *v < 255 && d * 4 >= 200 {
                            *v += 1;
                            total += 1;
                        }
                    }
                    let want = dense(&c, &w, n);
                    let mut acc = vec![-9; n];
                    let ops = from_counts_lanes(&c, &w, &mut acc);
                    if total <= LANE_COUNT_LIMIT {
                        let active = c.iter().filter(|&&v| v != 0).count() as u64;
                        assert_eq!(ops, Some(active * n as u64), "n {n} d {d}");
                        assert_eq!(acc, want, "n {n} d {d} total {total}");
                    } else {
                        assert_eq!(ops, None);
                    }
                    let mut acc = vec![-9; n];
                    from_counts(&c, Weights::I8(&w), &mut acc);
                    assert_eq!(acc, want, "n {n} d {d}");
                }
            }
        }
        // One count past the limit: no lanes, same result.
        let w = vec![-128i8; 2 * 16];
        let c = [255u8, 3];
        let mut acc = vec![0; 16];
        assert_eq!(from_counts_lanes(&c, &w, &mut acc), None);
        let c = [255u8, 2];
        assert_eq!(from_counts_lanes(&c, &w, &mut acc), Some(32));
        assert_eq!(acc, vec![-128 * 257; 16]);
        // Outputs not a multiple of 16.
        let w = vec![5i8; 3 * 12];
        assert_eq!(from_counts_lanes(&[1, 2, 3], &w, &mut [0; 12]), None);
    }

    #[test]
    fn int4_matches_int8() {
        let (d, n) = (33, 5);
        let w: Vec<i8> = (0..d * n).map(|i| (i % 16) as i8 - 8).collect();
        let mut p = vec![0u8; d * 3];
        pack_i4(&w, n, &mut p).unwrap();
        let c: Vec<u8> = (0..d).map(|i| (i % 5) as u8).collect();
        let (mut a8, mut a4) = (vec![0; n], vec![0; n]);
        from_counts(&c, Weights::I8(&w), &mut a8);
        from_counts(&c, Weights::I4(&p), &mut a4);
        assert_eq!(a8, a4);
        let map = [u32::MAX, 1];
        from_spikes(&map, d, Weights::I8(&w), &mut a8);
        from_spikes(&map, d, Weights::I4(&p), &mut a4);
        assert_eq!(a8, a4);
        assert_eq!(a8, dense(&[1; 33], &w, n));
    }
}
