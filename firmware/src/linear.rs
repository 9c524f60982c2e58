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
    active as u64 * n as u64
}

/// `acc = W^T x` for small non-negative inputs (spike counts); `acc.len()` = outputs
/// (zeroed first). Returns the synaptic operations executed.
pub fn from_counts(counts: &[u8], weights: Weights, acc: &mut [i32]) -> u64 {
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
    active as u64 * n as u64
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
