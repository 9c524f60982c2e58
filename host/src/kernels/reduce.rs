//! Deterministic parallel reductions: the grouping of every floating-point sum is fixed
//! by the problem size alone, never by rayon's work stealing.
//!
//! `par_iter().fold(..).reduce(..)` splits its range wherever idle threads steal work,
//! so the partial sums (and their rounding) differ from run to run. Here `0..n` is cut
//! into at most [`MAX_CHUNKS`] index ranges computed from `n` and a minimum chunk length;
//! each range is folded in index order into its own partial, and the partials come back
//! in range order for the caller to combine in that order. The result is bit-identical
//! for a given input, whatever the thread count or scheduling.

use std::ops::Range;

use rayon::prelude::*;

/// Most partials one reduction makes: enough to keep 16+ threads busy with some
/// balance, few enough that combining them costs little next to the work they fold.
pub(crate) const MAX_CHUNKS: usize = 32;

/// The fixed index ranges that tile `0..n`: `ceil(n / min_len)` of them, capped at
/// [`MAX_CHUNKS`], with lengths differing by at most one. Empty when `n` is 0.
pub(crate) fn chunk_ranges(n: usize, min_len: usize) -> Vec<Range<usize>> {
    if n == 0 {
        return Vec::new();
    }
    let k = n.div_ceil(min_len.max(1)).clamp(1, MAX_CHUNKS);
    (0..k).map(|i| (i * n / k)..((i + 1) * n / k)).collect()
}

/// Folds each range of [`chunk_ranges`]`(n, min_len)` in index order, in parallel, and
/// returns the partials in range order: `step(acc, i)` adds item `i` to `acc`, which
/// starts as `init()`.
pub(crate) fn ordered_partials<A, I, F>(n: usize, min_len: usize, init: I, step: F) -> Vec<A>
where
    A: Send,
    I: Fn() -> A + Sync,
    F: Fn(A, usize) -> A + Sync,
{
    chunk_ranges(n, min_len)
        .into_par_iter()
        .map(|r| r.fold(init(), &step))
        .collect()
}

/// Sums equal-length partial vectors element-wise in their given order (the first one
/// is reused as the result); `len` zeros when there are none.
pub(crate) fn sum_in_order<T>(parts: Vec<Vec<T>>, len: usize) -> Vec<T>
where
    T: Copy + Default + std::ops::AddAssign,
{
    let mut it = parts.into_iter();
    let Some(mut acc) = it.next() else {
        return vec![T::default(); len];
    };
    for p in it {
        debug_assert_eq!(p.len(), acc.len());
        for (a, b) in acc.iter_mut().zip(&p) {
            *a += *b;
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_tile_and_are_capped() {
        assert!(chunk_ranges(0, 4).is_empty());
        for (n, min) in [(1, 1), (7, 3), (100, 1), (1000, 7), (5, 0), (33, 1)] {
            let r = chunk_ranges(n, min);
            assert!(!r.is_empty() && r.len() <= MAX_CHUNKS, "{n} {min}: {r:?}");
            assert_eq!(r[0].start, 0);
            assert_eq!(r.last().unwrap().end, n);
            for w in r.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert!(w[0].len().abs_diff(w[1].len()) <= 1);
            }
        }
        assert_eq!(chunk_ranges(10, 4).len(), 3);
        assert_eq!(chunk_ranges(1000, 1).len(), MAX_CHUNKS);
    }

    /// Values whose f32 sum depends on grouping; the result must not vary across pools
    /// of different sizes or across repeats.
    #[test]
    fn reduction_is_bitwise_stable_across_thread_counts() {
        let v: Vec<f32> = (0..10_000)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 + if i % 3 == 0 { 1e4 } else { 0.0 })
            .collect();
        let run = || {
            let parts = ordered_partials(
                v.len(),
                16,
                || vec![0f32; 1],
                |mut a, i| {
                    a[0] += v[i];
                    a
                },
            );
            sum_in_order(parts, 1)[0]
        };
        let want = run();
        for threads in [1, 2, 3, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for _ in 0..5 {
                assert_eq!(
                    pool.install(run).to_bits(),
                    want.to_bits(),
                    "{threads} threads"
                );
            }
        }
        assert_eq!(sum_in_order(Vec::<Vec<f32>>::new(), 3), vec![0.0; 3]);
    }
}
