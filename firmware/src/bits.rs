//! Bit-packed spike maps: bit `i` is bit `i % 32` of word `i / 32` (LSB first).
//!
//! A map of `C x H x W` neurons uses index `i = (c * H + y) * W + x` and
//! [`words`]`(C * H * W)` words; bits past the end are kept zero by every writer.

/// Number of `u32` words holding `n` bits.
pub const fn words(n: usize) -> usize {
    n.div_ceil(32)
}

/// Reads bit `i`.
#[inline(always)]
pub fn get(map: &[u32], i: usize) -> bool {
    (map[i / 32] >> (i % 32)) & 1 != 0
}

/// Sets bit `i` to `on`.
#[inline(always)]
pub fn set(map: &mut [u32], i: usize, on: bool) {
    let m = 1u32 << (i % 32);
    if on {
        map[i / 32] |= m;
    } else {
        map[i / 32] &= !m;
    }
}

/// Number of set bits among the first `n` bits.
pub fn count(map: &[u32], n: usize) -> u32 {
    let full = n / 32;
    let mut total: u32 = map[..full].iter().map(|w| w.count_ones()).sum();
    if n % 32 != 0 {
        total += (map[full] & ((1u32 << (n % 32)) - 1)).count_ones();
    }
    total
}

/// Packs booleans (non-zero bytes) into `map`, clearing the tail bits.
pub fn pack(values: &[u8], map: &mut [u32]) {
    let n = values.len();
    map[..words(n)].fill(0);
    for (i, &v) in values.iter().enumerate() {
        if v != 0 {
            map[i / 32] |= 1 << (i % 32);
        }
    }
}

/// Bits `start..start + n` of `map` (`1 <= n <= 32`) as the low `n` bits of a word (bit
/// `start` lowest).
#[inline(always)]
pub fn row(map: &[u32], start: usize, n: usize) -> u32 {
    let (i, s) = (start / 32, (start % 32) as u32);
    let mut v = map[i] >> s;
    if s as usize + n > 32 {
        v |= map[i + 1] << (32 - s);
    }
    if n < 32 {
        v &= (1u32 << n) - 1;
    }
    v
}

/// `events * per` as a count of synaptic operations: a 32-bit multiply where both fit 16
/// bits (ARMv6-M has no long multiply; the 64-bit one is a library call), else the wide one.
#[inline(always)]
pub fn synops(events: usize, per: usize) -> u64 {
    if events < 1 << 16 && per < 1 << 16 {
        (events as u32 * per as u32) as u64
    } else {
        events as u64 * per as u64
    }
}

/// `32 / w` for `w <= 32` (0 for 0): rows of `w` bits per word, without a division
/// (in software on ARMv6-M).
const ROWS_PER_WORD: [u8; 33] = {
    let mut t = [0u8; 33];
    let mut w = 1;
    while w <= 32 {
        t[w] = (32 / w) as u8;
        w += 1;
    }
    t
};

/// Calls `f(y, row)` for every non-zero row `y < rows` of `w` bits (`1 <= w <= 32`, bit
/// `start` the first of row 0; [`row`] gives a row), reading the rows `32 / w` at a time:
/// a group of empty rows costs one read and one test.
#[inline(always)]
pub fn for_each_row(
    map: &[u32],
    start: usize,
    rows: usize,
    w: usize,
    mut f: impl FnMut(usize, u32),
) {
    assert!((1..=32).contains(&w), "a row holds 1 to 32 bits");
    let per = ROWS_PER_WORD[w] as usize;
    let mask = if w == 32 { u32::MAX } else { (1 << w) - 1 };
    let (mut y, mut bit) = (0, start);
    while y < rows {
        let n = per.min(rows - y);
        let mut g = row(map, bit, n * w);
        bit += n * w;
        let mut yy = y;
        while g != 0 {
            let r = g & mask;
            if r != 0 {
                f(yy, r);
            }
            // Two shifts: `w` may be 32.
            g = (g >> (w - 1)) >> 1;
            yy += 1;
        }
        y += n;
    }
}

/// Calls `f(i)` for every set bit `i < n`, in increasing order.
#[inline(always)]
pub fn for_each_set(map: &[u32], n: usize, mut f: impl FnMut(usize)) {
    for (wi, &word) in map[..words(n)].iter().enumerate() {
        let mut w = word;
        while w != 0 {
            let i = wi * 32 + w.trailing_zeros() as usize;
            if i >= n {
                return;
            }
            f(i);
            w &= w - 1;
        }
    }
}

/// Calls `f(c, y, x)` for every set bit of a `[c][h][w]` map, in increasing index order,
/// decoding coordinates incrementally (no division: Cortex-M0 has no divider).
#[inline(always)]
pub fn for_each_set_chw(
    map: &[u32],
    c: usize,
    h: usize,
    w: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let (mut ci, mut y, mut x, mut last) = (0usize, 0usize, 0usize, 0usize);
    if w == 0 || h == 0 {
        return;
    }
    let plane = h * w;
    for_each_set(map, c * plane, |i| {
        let mut d = i - last;
        last = i;
        // Whole planes first, then whole rows, then columns.
        while d >= plane {
            d -= plane;
            ci += 1;
        }
        x += d;
        while x >= w {
            x -= w;
            y += 1;
        }
        while y >= h {
            y -= h;
            ci += 1;
        }
        f(ci, y, x);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_count_pack() {
        let mut m = [0u32; 3];
        for i in [0, 5, 31, 32, 63, 64, 70] {
            set(&mut m, i, true);
        }
        assert!(get(&m, 31) && get(&m, 32) && !get(&m, 33));
        assert_eq!(count(&m, 71), 7);
        assert_eq!(count(&m, 64), 5);
        set(&mut m, 31, false);
        assert!(!get(&m, 31));
        let v: Vec<u8> = (0..40).map(|i| (i % 3 == 0) as u8).collect();
        let mut p = [u32::MAX; 2];
        pack(&v, &mut p);
        assert_eq!(count(&p, 40), 14);
        assert_eq!(p[1] >> 8, 0, "tail bits cleared");
    }

    #[test]
    fn chw_decode_matches_division() {
        for (c, h, w) in [(3, 5, 7), (2, 1, 1), (1, 9, 33), (4, 7, 1)] {
            let n = c * h * w;
            let mut m = vec![0u32; words(n)];
            // all-one map, then a sparse one
            for pattern in [1usize, 3, 17] {
                m.fill(0);
                for i in (0..n).step_by(pattern) {
                    set(&mut m, i, true);
                }
                let mut got = vec![];
                for_each_set_chw(&m, c, h, w, |ci, y, x| got.push((ci, y, x)));
                let expect: Vec<_> = (0..n)
                    .step_by(pattern)
                    .map(|i| (i / (h * w), (i / w) % h, i % w))
                    .collect();
                assert_eq!(got, expect, "c{c} h{h} w{w} step{pattern}");
            }
        }
    }

    #[test]
    fn rows_read_across_words() {
        let v: Vec<u8> = (0..100).map(|i| (i % 3 == 0 || i % 7 == 1) as u8).collect();
        let mut m = [0u32; 4];
        pack(&v, &mut m);
        for start in 0..100 {
            for n in 1..=32.min(100 - start) {
                let expect = (0..n).fold(0u32, |a, k| a | (v[start + k] as u32) << k);
                assert_eq!(row(&m, start, n), expect, "start {start} n {n}");
            }
        }
    }

    #[test]
    fn grouped_rows_visit_every_non_zero_row() {
        let v: Vec<u8> = (0..300)
            .map(|i| (i % 11 == 0 || i % 17 == 3) as u8)
            .collect();
        let mut m = [0u32; 10];
        pack(&v, &mut m);
        for w in 1..=32 {
            for start in [0, 5, 31, 32] {
                let rows = (300 - start) / w;
                let mut got = Vec::new();
                for_each_row(&m, start, rows, w, |y, r| got.push((y, r)));
                let want: Vec<(usize, u32)> = (0..rows)
                    .map(|y| (y, row(&m, start + y * w, w)))
                    .filter(|&(_, r)| r != 0)
                    .collect();
                assert_eq!(got, want, "w {w} start {start}");
            }
        }
    }

    #[test]
    fn synops_multiply_narrow_and_wide() {
        assert_eq!(synops(3, 5), 15);
        assert_eq!(synops(65535, 65535), 65535 * 65535);
        assert_eq!(synops(70_000, 3), 210_000);
        assert_eq!(synops(1 << 16, 1 << 16), 1 << 32);
    }

    #[test]
    fn empty_map_visits_nothing() {
        let m = [0u32; 4];
        let mut k = 0;
        for_each_set(&m, 128, |_| k += 1);
        assert_eq!(k, 0);
    }
}
