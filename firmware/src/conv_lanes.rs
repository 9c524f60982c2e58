//! Spike convolutions in *carry lanes* over per-channel expanded weights: the packed
//! accumulators of cores without SIMD (ARMv6-M, Cortex-M0/M0+).
//!
//! [`crate::conv_spikes::scatter_packed`] adds two sign-extended weights to the two
//! `i16` lanes of a word with one `SXTAB16`; ARMv6-M has no such instruction. Here a
//! word holds the *integer* `lo + 2^16 hi` (mod `2^32`) of its two lanes, so one plain
//! 32-bit `ADDS` adds two accumulators at once (a negative low lane borrows from the
//! high one, which the sum of integers keeps exact). The weights of one input channel
//! are turned into such words once, when its first spike arrives (`expand_row`:
//! weight pair `(w[4g], w[4g + 2])` into one word, `(w[4g + 1], w[4g + 3])` into the
//! next, the lane order of [`crate::weights::packed_index`]), in an order where the taps
//! of one kernel row that land on adjacent output pixels are adjacent words: each
//! (spike, kernel row) is one run of words added to one run of accumulator words
//! (`LDM`, `ADDS`, `STM`: 7 instructions per 6 accumulates in the unrolled interior
//! case, against about 4 per accumulate for the byte-wise `i32` row kernels).
//!
//! Every accumulator word starts at [`BIAS`] (`2^15` in the low lane): as long as the
//! final low lane lies in the `i16` range, `2^15 + lo` lies in `0..2^16` and nothing
//! borrows from the high lane, so the high half of the word *is* `hi` and one `EOR` of
//! the bias leaves the two's complement lanes of [`crate::conv_spikes::scatter_packed`]
//! (read them with [`crate::conv_spikes::as_i16`]). Intermediate sums may leave the
//! range: only the final value matters (integer arithmetic mod `2^32`). The caller uses
//! this path only where [`crate::conv_spikes::ConvShape::fits_i16`] holds.
//!
//! With the 2x2 sum pool (reductions), the taps of a spike that land on the same pooled
//! output are summed in the expansion: a spike at `(y, x)` reaches at most 2 x 2 pooled
//! outputs, and which kernel rows and columns land on which of them depends only on the
//! parity of `y` and `x`, so four pre-summed 2 x 2 kernels per input channel turn its
//! up to 9 taps into at most 4 accumulates. Synaptic operations still count every tap
//! that lands (the contract's definition), exactly as [`crate::conv_spikes::scatter`]
//! counts them.
//!
//! The expanded weights live in the scratch behind the accumulators (half the scratch
//! an `i32` accumulator map takes), so the workspace is unchanged: [`fits`] says
//! whether a layer's expansion fits there (the `i32` path runs otherwise).

use crate::bits;
use crate::conv_spikes::{for_each_spike, pooled_reach, ConvShape, DivBy, HW_DIV};

/// True where [`scatter`] is faster than the `i32` scatter (ARMv6-M, which has neither
/// `SXTAB16` nor word loads of unaligned weights).
pub const LANES_PAYS: bool = cfg!(all(target_arch = "arm", not(target_feature = "thumb2")));

/// True where [`scatter`] is compiled: where it pays, and off ARM (host tests).
pub(crate) const LANES_BUILT: bool = LANES_PAYS || cfg!(not(target_arch = "arm"));

/// The start value of every accumulator word (see the module docs).
pub const BIAS: u32 = 0x8000;

/// Words of expanded weights one input channel takes: `cout / 2` per tap for 1x1 and
/// 3x3 kernels; with the pool, the 9 taps and the four pre-summed 2 x 2 kernels. `None`
/// where this path does not apply (`cout % 4 != 0`, other kernels, a pooled 1x1).
pub const fn expanded_words(k: usize, cout: usize, pool2: bool) -> Option<usize> {
    if cout % 4 != 0 || cout == 0 {
        return None;
    }
    match (k, pool2) {
        (1, false) => Some(cout / 2),
        (3, false) => Some(9 * cout / 2),
        (3, true) => Some(9 * cout / 2 + 8 * cout),
        _ => None,
    }
}

/// True when [`scatter`] applies to the layer and its accumulators and expanded weights
/// fit in `scratch_len` `i32` words. A 3 x 3 layer reads its spikes a row at a time:
/// rows of at most 32 columns.
pub fn fits(shape: &ConvShape, pool2: bool, scratch_len: usize) -> bool {
    if shape.k == 3 && shape.w > 32 {
        return false;
    }
    match expanded_words(shape.k, shape.cout, pool2) {
        Some(e) => shape.acc_len(pool2) / 2 + e <= scratch_len,
        None => false,
    }
}

/// `out[j] = w[4g + r] + 2^16 w[4g + r + 2]` (mod `2^32`) for word `j = 2g + r` of a row of
/// `n` int8 weights (`n % 4 == 0`): `n / 2` words.
///
/// Word-aligned rows (the generated firmware aligns its weights) are read a word at a
/// time ([`expand_words`]).
///
/// # Safety
/// `w..w + n` readable, `out..out + n / 2` writable.
#[inline(always)]
unsafe fn expand_row(w: *const u8, out: *mut u32, n: usize) {
    // SAFETY: the caller guarantees both ranges; the word path reads whole aligned words
    // inside `w..w + n` (n % 4 == 0).
    unsafe {
        if w as usize % 4 == 0 {
            expand_words(w as *const u32, out, n / 4);
        } else {
            expand_bytes(w, out, n);
        }
    }
}

/// [`expand_row`] a byte at a time (rows that are not word-aligned).
///
/// # Safety
/// As [`expand_row`].
#[inline(never)]
unsafe fn expand_bytes(w: *const u8, out: *mut u32, n: usize) {
    // SAFETY: the caller guarantees both ranges.
    unsafe {
        let mut g = 0;
        while g < n {
            let b = |i: usize| *w.add(g + i) as i8 as i32;
            let lo = b(0).wrapping_add(b(2) << 16);
            let hi = b(1).wrapping_add(b(3) << 16);
            *out.add(g / 2) = lo as u32;
            *out.add(g / 2 + 1) = hi as u32;
            g += 4;
        }
    }
}

/// [`expand_row`] of `words` aligned words of weights (`4 * words` weights) into
/// `2 * words` words: bytes with their sign bit flipped hold `w + 128`; masking bytes 0
/// and 2 (1 and 3 after a shift by 8) and subtracting `128 + 2^16 * 128` leaves
/// `w0 + 2^16 w2` (mod `2^32`) with no per-byte sign extension. Returns the end of
/// `src`. Not inlined: one loop serves every width but the unrolled 4- and 8-channel
/// 3x3 expansions ([`expand3_words`]), whose flash the ARMv6-M targets pay for.
///
/// # Safety
/// `src..src + words` readable (aligned), `dst..dst + 2 * words` writable.
#[inline(never)]
unsafe fn expand_words(src: *const u32, dst: *mut u32, words: usize) -> *const u32 {
    const FLIP: u32 = 0x8080_8080;
    const MASK: u32 = 0x00ff_00ff;
    const UNBIAS: u32 = 0x0080_0080;
    // SAFETY: the caller guarantees both ranges.
    unsafe {
        let (mut src, mut dst) = (src, dst);
        let end = src.add(words);
        while src != end {
            let u = u32::from_le(src.read()) ^ FLIP;
            *dst = (u & MASK).wrapping_sub(UNBIAS);
            *dst.add(1) = ((u >> 8) & MASK).wrapping_sub(UNBIAS);
            src = src.add(1);
            dst = dst.add(2);
        }
        src
    }
}

/// `a[0..n] += e[0..n]` (wrapping words), `n` even and `>= 2`.
///
/// # Safety
/// `e..e + n` readable, `a..a + n` writable, both word-aligned.
#[inline(always)]
unsafe fn add_words(e: *const u32, a: *mut u32, n: usize) {
    #[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
    // SAFETY: the caller guarantees both ranges; the loop stops when `a` reaches
    // `a + n` (n even, two words per iteration); registers r0-r3 and r8 only otherwise (r0 brings the length in bytes).
    unsafe {
        core::arch::asm!(
            "adds r0, r0, {a}",
            "mov r8, r0",
            "2:",
            "ldm {e}!, {{r0, r1}}",
            "ldm {a}!, {{r2, r3}}",
            "adds r2, r2, r0",
            "adds r3, r3, r1",
            "subs {a}, #8",
            "stm {a}!, {{r2, r3}}",
            "cmp {a}, r8",
            "bne 2b",
            e = inout(reg) e => _,
            a = inout(reg) a => _,
            inout("r0") n * 4 => _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            out("r8") _,
            options(nostack),
        );
    }
    #[cfg(not(all(target_arch = "arm", not(target_feature = "thumb2"))))]
    // SAFETY: the caller guarantees both ranges.
    unsafe {
        for j in 0..n {
            *a.add(j) = (*a.add(j)).wrapping_add(*e.add(j));
        }
    }
}

/// `rows` runs of `n` words: run `r` adds `e + r * e_step` to `a + r * a_step` (offsets in
/// words, `a_step` may be negative).
///
/// # Safety
/// Every run must be valid for [`add_words`].
#[inline(always)]
unsafe fn add_runs(
    e: *const u32,
    e_step: usize,
    a: *mut u32,
    a_step: isize,
    rows: usize,
    n: usize,
) {
    // SAFETY: the caller guarantees every run.
    unsafe {
        let (mut e, mut a) = (e, a);
        for _ in 0..rows {
            add_words(e, a, n);
            e = e.wrapping_add(e_step);
            a = a.wrapping_offset(a_step);
        }
    }
}

/// `rows` runs of `COLS * HALF` words: run `r` adds the expanded weights at `e + r *
/// E_COLS * HALF` to the accumulators at `a + r * a_step` (words; `a_step` may be
/// negative). The blocks of one spike: `E_COLS = 3` for the 3 x 3 taps (two columns of
/// an edge spike, or fewer than three rows), `E_COLS = 2` for the pre-summed 2 x 2
/// kernels of the pool. On ARMv6-M one run is unrolled (`LDM`/`ADDS`/`STM` groups of two
/// or three words, r6 and r7 saved and restored where a group of three takes them) and
/// the runs loop until `e` reaches its end: 4 instructions per run against about 17.
///
/// # Safety
/// As [`add_runs`] with `n = COLS * HALF`, `e_step = E_COLS * HALF`, `1 <= rows`.
#[inline(always)]
unsafe fn add_block<const HALF: usize, const COLS: usize, const E_COLS: usize>(
    e: *const u32,
    a: *mut u32,
    a_step: isize,
    rows: usize,
) {
    let n = COLS * HALF;
    #[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
    {
        // After a run `a` has moved n words on, `e` as well: the next run starts `a_step`
        // (`E_COLS * HALF`) words from the previous start.
        let a_skip = (a_step - n as isize) * 4;
        let e_end = e.wrapping_add(rows * E_COLS * HALF);
        macro_rules! g2 {
            () => {
                concat!(
                    "ldm r4!, {{r0, r1}}\n",
                    "ldm r5!, {{r2, r3}}\n",
                    "adds r2, r2, r0\n",
                    "adds r3, r3, r1\n",
                    "subs r5, #8\n",
                    "stm r5!, {{r2, r3}}\n",
                )
            };
        }
        macro_rules! g3 {
            () => {
                concat!(
                    "ldm r4!, {{r0, r1, r2}}\n",
                    "ldm r5!, {{r3, r6, r7}}\n",
                    "adds r3, r3, r0\n",
                    "adds r6, r6, r1\n",
                    "adds r7, r7, r2\n",
                    "subs r5, #12\n",
                    "stm r5!, {{r3, r6, r7}}\n",
                )
            };
        }
        // r4 = e, r5 = a, r8 = a skip (bytes), r10 = e end.
        macro_rules! run {
            ($skip:literal, $($g:ident)*) => {{
                // SAFETY: the caller guarantees every run; r6/r7 are restored.
                unsafe {
                    core::arch::asm!(
                        "mov r8, r0",
                        "mov r10, r1",
                        "push {{r6, r7}}",
                        "2:",
                        $($g!(),)*
                        $skip,
                        "add r5, r8",
                        "cmp r4, r10",
                        "bne 2b",
                        "pop {{r6, r7}}",
                        inout("r4") e => _,
                        inout("r5") a => _,
                        inout("r0") a_skip => _,
                        inout("r1") e_end => _,
                        out("r2") _, out("r3") _, out("r8") _, out("r10") _,
                    );
                }
                return;
            }};
        }
        match (HALF, COLS, E_COLS) {
            (2, 1, 2) => run!("adds r4, #8", g2),
            (2, 2, 2) => run!("", g2 g2),
            (2, 2, 3) => run!("adds r4, #8", g2 g2),
            (2, 3, 3) => run!("", g3 g3),
            (4, 1, 2) => run!("adds r4, #16", g2 g2),
            (4, 2, 2) => run!("", g3 g3 g2),
            (4, 2, 3) => run!("adds r4, #16", g3 g3 g2),
            (4, 3, 3) => run!("", g3 g3 g3 g3),
            _ => {}
        }
    }
    // SAFETY: the caller guarantees every run.
    unsafe { add_runs(e, E_COLS * HALF, a, a_step, rows, n) }
}

/// [`add_block`] for the widths it unrolls (`half` = 2 or 4, `cols` = 1 to 3), [`add_runs`]
/// otherwise.
///
/// # Safety
/// As [`add_runs`] with `n = cols * half`, `e_step = E_COLS * half`, `1 <= rows`.
#[inline(always)]
unsafe fn add_cols<const E_COLS: usize>(
    e: *const u32,
    a: *mut u32,
    a_step: isize,
    rows: usize,
    cols: usize,
    half: usize,
) {
    // SAFETY: the caller guarantees every run.
    unsafe {
        match (half, cols) {
            (2, 1) if E_COLS == 2 => add_block::<2, 1, E_COLS>(e, a, a_step, rows),
            (2, 2) => add_block::<2, 2, E_COLS>(e, a, a_step, rows),
            (2, 3) if E_COLS == 3 => add_block::<2, 3, E_COLS>(e, a, a_step, rows),
            (4, 1) if E_COLS == 2 => add_block::<4, 1, E_COLS>(e, a, a_step, rows),
            (4, 2) => add_block::<4, 2, E_COLS>(e, a, a_step, rows),
            (4, 3) if E_COLS == 3 => add_block::<4, 3, E_COLS>(e, a, a_step, rows),
            _ => add_runs(e, E_COLS * half, a, a_step, rows, cols * half),
        }
    }
}

/// The full 3 x 3 block of an interior spike: three runs of `3 * HALF` words (`HALF =
/// cout / 2`), the expanded rows consecutive, the accumulator rows `a_step` words apart.
/// On ARMv6-M fully unrolled for `HALF` = 2 and 4 (4- and 8-channel layers): three words
/// per `LDM`/`ADDS`/`STM` group, r6 and r7 saved and restored around the block.
///
/// # Safety
/// As [`add_runs`] with `rows = 3`, `n = 3 * HALF`, `e_step = n`.
#[inline(always)]
unsafe fn add_block3<const HALF: usize>(e: *const u32, a: *mut u32, a_step: isize) {
    #[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
    if HALF == 2 || HALF == 4 {
        // After each row `a` has moved 3 * HALF words on; the next row starts `a_step`
        // words from the previous start.
        let step = (a_step - 3 * HALF as isize) * 4;
        macro_rules! group {
            () => {
                concat!(
                    "ldm r4!, {{r0, r1, r2}}\n",
                    "ldm r5!, {{r3, r6, r7}}\n",
                    "adds r3, r3, r0\n",
                    "adds r6, r6, r1\n",
                    "adds r7, r7, r2\n",
                    "subs r5, #12\n",
                    "stm r5!, {{r3, r6, r7}}\n",
                )
            };
        }
        // SAFETY: the caller guarantees the three runs; r6/r7 are restored.
        unsafe {
            if HALF == 2 {
                core::arch::asm!(
                    "mov r8, r0",
                    "push {{r6, r7}}",
                    group!(), group!(), "add r5, r8",
                    group!(), group!(), "add r5, r8",
                    group!(), group!(),
                    "pop {{r6, r7}}",
                    inout("r4") e => _,
                    inout("r5") a => _,
                    inout("r0") step => _,
                    out("r1") _, out("r2") _, out("r3") _, out("r8") _,
                );
            } else {
                core::arch::asm!(
                    "mov r8, r0",
                    "push {{r6, r7}}",
                    group!(), group!(), group!(), group!(), "add r5, r8",
                    group!(), group!(), group!(), group!(), "add r5, r8",
                    group!(), group!(), group!(), group!(),
                    "pop {{r6, r7}}",
                    inout("r4") e => _,
                    inout("r5") a => _,
                    inout("r0") step => _,
                    out("r1") _, out("r2") _, out("r3") _, out("r8") _,
                );
            }
        }
        return;
    }
    // SAFETY: the caller guarantees the three runs.
    unsafe { add_runs(e, 3 * HALF, a, a_step, 3, 3 * HALF) }
}

/// Convolves the spike map into carry lanes and leaves them as `i16` lanes: `scratch`
/// holds `shape.acc_len(pool2) / 2` accumulator words (channels of a pixel in
/// [`crate::weights::packed_index`] order, as [`crate::conv_spikes::scatter_packed`]
/// leaves them) followed by the expanded weights of one input channel. Exact where
/// [`ConvShape::fits_i16`] holds; needs [`fits`]. Returns the synaptic operations.
/// Not inlined: its loops keep their registers apart from the caller's (ARMv6-M has eight).
#[inline(never)]
pub fn scatter(
    spikes: &[u32],
    shape: &ConvShape,
    weights: &[i8],
    pool2: bool,
    scratch: &mut [i32],
) -> u64 {
    let (cin, cout, k, h, w) = (shape.cin, shape.cout, shape.k, shape.h, shape.w);
    assert!(fits(shape, pool2, scratch.len()), "layer or scratch unfit");
    assert!(
        weights.len() >= shape.rows() * cout,
        "weights hold too few rows"
    );
    let words = shape.acc_len(pool2) / 2;
    let (acc, rest) = scratch.split_at_mut(words);
    crate::fill::fill(acc, BIAS as i32);
    let plane = h * w;
    if plane == 0 {
        return 0;
    }
    let half = cout / 2;
    let e_len = expanded_words(k, cout, pool2).unwrap_or(0);
    let e = rest[..e_len].as_mut_ptr() as *mut u32;
    let a = acc.as_mut_ptr() as *mut u32;
    let wp = weights.as_ptr() as *const u8;
    let mut taps = 0usize;
    let mut current = usize::MAX;
    // SAFETY (every pointer below): `e` holds `e_len` words and `a` `words` words (checked
    // by `fits`); channel `c`'s weights are rows `c * k * k..(c + 1) * k * k` of `cout`
    // bytes (checked above); each run below stays inside the accumulators by the tap
    // ranges computed for its spike (the same taps `conv_spikes::scatter` keeps).
    match (k, pool2) {
        (1, false) => for_each_spike(spikes, cin, plane, |c, pix| unsafe {
            if c != current {
                current = c;
                expand_row(wp.add(c * cout), e, cout);
            }
            taps += 1;
            add_words(e, a.add(pix * half), half);
        }),
        (3, false) if w >= 3 => {
            // Row by row of the input map: the kernel rows a spike reaches depend on its row
            // only, so per spike only the column is left to decode; the first and last
            // columns (two kernel columns land) are taken apart from the others (three).
            let row = (w * half) as isize;
            for c in 0..cin {
                let mut expanded = false;
                bits::for_each_row(spikes, c * h * w, h, w, |y, r| {
                    if !expanded {
                        expanded = true;
                        unsafe { expand3(wp.add(c * 9 * cout), e, cout) };
                    }
                    // Kernel rows ky0..=ky1 land on output rows y + 1 - ky inside 0..h.
                    let ky0 = (y + 1 >= h) as usize;
                    let nr = if y >= 1 { 3 } else { 2 } - ky0;
                    let er = unsafe { e.add(ky0 * 3 * half) };
                    // Output row y + 1 - ky0, column -1 (never written: a spike in column
                    // x writes columns x - 1 + j for the run positions j it keeps).
                    let ar = a
                        .wrapping_add(((y + 1 - ky0) * w) * half)
                        .wrapping_sub(half);
                    unsafe {
                        if r & 1 != 0 {
                            taps += 2 * nr;
                            add_cols::<3>(er.add(half), ar.add(half), -row, nr, 2, half);
                        }
                        if r >> (w - 1) != 0 {
                            taps += 2 * nr;
                            let last = ar.add((w - 1) * half);
                            add_cols::<3>(er, last, -row, nr, 2, half);
                        }
                    }
                    let mut m = r & !1 & !(1 << (w - 1));
                    while m != 0 {
                        let x = m.trailing_zeros() as usize;
                        m &= m - 1;
                        taps += 3 * nr;
                        let ax = ar.wrapping_add(x * half);
                        unsafe {
                            match (nr, half) {
                                (3, 2) => add_block3::<2>(er, ax, -row),
                                (3, 4) => add_block3::<4>(er, ax, -row),
                                _ => add_cols::<3>(er, ax, -row, nr, 3, half),
                            }
                        }
                    }
                });
            }
        }
        (3, false) => {
            // Maps narrower than 3 columns: spike by spike (the divider costs a division:
            // built only here).
            let div = DivBy::new(w, plane - 1, HW_DIV);
            let row = (w * half) as isize;
            for_each_spike(spikes, cin, plane, |c, pix| unsafe {
                if c != current {
                    current = c;
                    expand3(wp.add(c * 9 * cout), e, cout);
                }
                let y = div.div(pix);
                let x = pix - y * w;
                // Kernel rows ky0..=ky1 land on output rows y + 1 - ky inside 0..h; run
                // positions j0..j1 (kx = 2 - j) on columns x - 1 + j inside 0..w.
                let ky0 = (y + 1 >= h) as usize;
                let ky1 = if y >= 1 { 2 } else { 1 };
                let j0 = (x == 0) as usize;
                let j1 = if x + 1 < w { 3 } else { 2 };
                let (nr, nc) = (ky1 + 1 - ky0, j1 - j0);
                taps += nr * nc;
                let er = e.add((ky0 * 3 + j0) * half);
                let ar = a.add(((y + 1 - ky0) * w + x + j0 - 1) * half);
                add_runs(er, 3 * half, ar, -row, nr, nc * half);
            })
        }
        (3, true) => {
            let (oh, ow, pw) = (h & !1, w & !1, w / 2);
            let row = (pw * half) as isize;
            for c in 0..cin {
                let mut expanded = false;
                bits::for_each_row(spikes, c * h * w, h, w, |y, mut r| {
                    if !expanded {
                        expanded = true;
                        unsafe { expand_pooled(wp.add(c * 9 * cout), e, cout) };
                    }
                    let py = y & 1;
                    // Pooled rows A and B (see `pooled_reach`; columns the same).
                    let (a_ok, b_ok, row_taps) = pooled_reach(y, oh);
                    let nr = a_ok + b_ok;
                    // Block of parity (py, px): [A: cA, cB][B: cA, cB], `half` words each.
                    let er = unsafe { e.add(9 * half + (py * 8 + (1 - a_ok) * 2) * half) };
                    let ar = a.wrapping_add(((((y + 1) >> 1) - a_ok) * pw) * half);
                    while r != 0 {
                        let x = r.trailing_zeros() as usize;
                        r &= r - 1;
                        let px = x & 1;
                        let (ca_ok, cb_ok, col_taps) = pooled_reach(x, ow);
                        taps += row_taps * col_taps;
                        let nc = ca_ok + cb_ok;
                        if nr == 0 || nc == 0 {
                            continue;
                        }
                        let col = ((x + 1) >> 1) - ca_ok;
                        unsafe {
                            let ex = er.add((px * 4 + 1 - ca_ok) * half);
                            add_cols::<2>(ex, ar.add(col * half), row, nr, nc, half);
                        }
                    }
                });
            }
        }
        _ => unreachable!("checked by fits"),
    }
    for v in acc.iter_mut() {
        *v ^= BIAS as i32;
    }
    bits::synops(taps, cout)
}

/// The expanded weights of one input channel of a 3x3 convolution: tap `(ky, kx)` at run
/// position `ky * 3 + (2 - kx)` (`cout / 2` words each): the taps of one kernel row land
/// on columns `x + 1`, `x`, `x - 1`, so in this order on ascending accumulators.
///
/// # Safety
/// `w..w + 9 cout` readable, `e..e + 9 cout / 2` writable.
#[inline(never)]
unsafe fn expand3(w: *const u8, e: *mut u32, cout: usize) {
    let half = cout / 2;
    // SAFETY: the caller guarantees both ranges.
    unsafe {
        if w as usize % 4 == 0 {
            match cout {
                4 => return expand3_words::<1>(w as *const u32, e),
                8 => return expand3_words::<2>(w as *const u32, e),
                _ => {}
            }
            // The 9 rows are contiguous: one source pointer runs through them, the
            // destination runs backwards over the three taps of each kernel row.
            let mut src = w as *const u32;
            for ky in 0..3 {
                let mut dst = e.add((ky * 3 + 2) * half);
                for _ in 0..3 {
                    src = expand_words(src, dst, cout / 4);
                    dst = dst.wrapping_sub(half);
                }
            }
            return;
        }
        for ky in 0..3 {
            for kx in 0..3 {
                let dst = e.add((ky * 3 + 2 - kx) * half);
                expand_row(w.add((ky * 3 + kx) * cout), dst, cout);
            }
        }
    }
}

/// [`expand3`] of an aligned channel of `cout = 4 * WORDS` weights per tap, fully
/// unrolled (constant offsets: about 9 instructions per word of 4 weights).
///
/// # Safety
/// `w..w + 9 * WORDS` readable, `e..e + 18 * WORDS` writable.
#[inline(always)]
unsafe fn expand3_words<const WORDS: usize>(w: *const u32, e: *mut u32) {
    const FLIP: u32 = 0x8080_8080;
    const MASK: u32 = 0x00ff_00ff;
    const UNBIAS: u32 = 0x0080_0080;
    // SAFETY: the caller guarantees both ranges; tap `t = 3 ky + kx` reads words
    // `t * WORDS..` and writes its `2 * WORDS` words at run position `3 ky + 2 - kx`.
    unsafe {
        for t in 0..9 {
            let pos = t / 3 * 3 + 2 - t % 3;
            for k in 0..WORDS {
                let u = u32::from_le(w.add(t * WORDS + k).read()) ^ FLIP;
                let d = e.add(pos * 2 * WORDS + 2 * k);
                *d = (u & MASK).wrapping_sub(UNBIAS);
                *d.add(1) = ((u >> 8) & MASK).wrapping_sub(UNBIAS);
            }
        }
    }
}

/// The expanded weights of one input channel of a 2x2-pooled 3x3 convolution: the 9
/// taps `T[ky][kx]` (`cout / 2` words each, natural order) at `e`, then for each parity
/// `(py, px)` the 2 x 2 kernel `K[r][c] = sum of T[ky][kx]` over `ky` in the row group
/// `r` and `kx` in the column group `c` of that parity (group A = `{2}` for an even
/// coordinate, `{1, 2}` for an odd one; group B = `{0, 1}` or `{0}`), `[r][c]` order.
///
/// # Safety
/// `w..w + 9 cout` readable, `e..e + 9 cout / 2 + 8 cout` writable.
#[inline(never)]
unsafe fn expand_pooled(w: *const u8, e: *mut u32, cout: usize) {
    let half = cout / 2;
    // SAFETY: the caller guarantees both ranges.
    unsafe {
        expand_row(w, e, 9 * cout);
        let out = e.add(9 * half);
        for j in 0..half {
            let t = |ky: usize, kx: usize| *e.add((ky * 3 + kx) * half + j);
            // Per kernel row, the column groups of each parity: [px][A, B].
            let mut r = [[[0u32; 2]; 2]; 3];
            for (ky, rk) in r.iter_mut().enumerate() {
                let (t0, t1, t2) = (t(ky, 0), t(ky, 1), t(ky, 2));
                *rk = [[t2, t0.wrapping_add(t1)], [t1.wrapping_add(t2), t0]];
            }
            let sum = |a: [u32; 2], b: [u32; 2]| [a[0].wrapping_add(b[0]), a[1].wrapping_add(b[1])];
            for py in 0..2 {
                for (px, ((r0, r1), r2)) in r[0].iter().zip(&r[1]).zip(&r[2]).enumerate() {
                    let (ra, rb) = if py == 0 {
                        (*r2, sum(*r0, *r1))
                    } else {
                        (sum(*r1, *r2), *r0)
                    };
                    let blk = out.add((py * 2 + px) * 4 * half);
                    *blk.add(j) = ra[0];
                    *blk.add(half + j) = ra[1];
                    *blk.add(2 * half + j) = rb[0];
                    *blk.add(3 * half + j) = rb[1];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv_spikes::tests::{pattern, weights};
    use crate::conv_spikes::{as_i16, scatter as scatter_i32};
    use crate::weights::{packed_index, Weights};

    /// The lanes equal the i32 scatter's accumulators (in packed order) and the synaptic
    /// operations match, on every border case, with and without the pool, for 1x1 and
    /// 3x3 kernels and the unrolled and generic widths.
    /// The word-wide expansion (aligned rows) and the byte-wise one (others) give the
    /// reference words, at the extreme weights too.
    #[test]
    fn expansion_is_the_same_at_every_alignment() {
        let n = 12;
        let mut buf = [0u32; 8];
        let bytes: Vec<u8> = [
            -128i8, 127, -1, 0, 1, -127, 64, -64, 127, -128, 5, -6, 7, -8,
        ]
        .iter()
        .map(|&v| v as u8)
        .collect();
        for off in 0..4 {
            // SAFETY: `buf` holds 32 bytes; the row takes n bytes at offset `off`.
            let row = unsafe {
                let p = (buf.as_mut_ptr() as *mut u8).add(off);
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, n);
                p as *const u8
            };
            let mut out = [0u32; 6];
            // SAFETY: n bytes readable, n / 2 words writable.
            unsafe { expand_row(row, out.as_mut_ptr(), n) };
            for (j, &o) in out.iter().enumerate() {
                let (g, r) = (j / 2 * 4, j % 2);
                let want =
                    (bytes[g + r] as i8 as i32).wrapping_add((bytes[g + r + 2] as i8 as i32) << 16);
                assert_eq!(o, want as u32, "offset {off} word {j}");
            }
        }
    }

    /// The 3x3 expansion reads aligned and unaligned channels the same way.
    #[test]
    fn expand3_is_the_same_at_every_alignment() {
        for cout in [4, 8, 12] {
            expand3_at_every_alignment(cout);
        }
    }

    fn expand3_at_every_alignment(cout: usize) {
        let bytes: Vec<u8> = (0..9 * cout).map(|i| (i * 37 + 128) as u8).collect();
        let mut buf = [0u32; 28];
        let mut want = None;
        for off in 0..4 {
            let mut out = [0u32; 54];
            // SAFETY: `buf` holds 112 bytes, the channel <= 108 at offset `off`; <= 54
            // words out.
            unsafe {
                let p = (buf.as_mut_ptr() as *mut u8).add(off);
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
                expand3(p, out.as_mut_ptr(), cout);
            }
            assert_eq!(*want.get_or_insert(out), out, "offset {off}");
        }
    }

    #[test]
    fn lanes_match_the_i32_scatter() {
        for (cin, cout, k, h, w) in [
            (2, 4, 3, 5, 7),
            (3, 8, 3, 6, 6),
            (2, 16, 3, 4, 5),
            (1, 32, 3, 3, 4),
            (2, 12, 3, 3, 3),
            (3, 8, 1, 4, 3),
            (4, 4, 3, 8, 8),
            (4, 8, 3, 8, 8),
            (8, 8, 3, 4, 4),
            (2, 4, 3, 7, 7),
            (2, 8, 3, 1, 5),
            (1, 4, 3, 2, 2),
            (3, 4, 1, 7, 7),
            // Rows of 31 and 32 columns: spike rows that straddle words.
            (2, 4, 3, 3, 32),
            (1, 8, 3, 4, 31),
            (2, 4, 1, 3, 40),
        ] {
            let s = ConvShape { cin, cout, k, h, w };
            let wq = weights(s.rows() * cout, 127);
            for pool2 in [false, true] {
                if expanded_words(k, cout, pool2).is_none() {
                    continue;
                }
                assert!(s.fits_i16(&Weights::I8(&wq), pool2), "{s:?}");
                let n = cin * h * w;
                for seed in 0..5 {
                    let x = match seed {
                        0 => vec![0u8; n],
                        1 => vec![1u8; n],
                        _ => pattern(n, seed),
                    };
                    let mut map = vec![0u32; bits::words(x.len())];
                    bits::pack(&x, &mut map);
                    let mut a32 = vec![7; s.acc_len(pool2)];
                    let o32 = scatter_i32(&map, &s, Weights::I8(&wq), pool2, &mut a32);
                    let len = s.acc_len(pool2) / 2 + expanded_words(k, cout, pool2).unwrap();
                    let mut lanes = vec![-5; len];
                    assert!(fits(&s, pool2, len) && !fits(&s, pool2, len - 1));
                    let o16 = scatter(&map, &s, &wq, pool2, &mut lanes);
                    assert_eq!(o16, o32, "{s:?} pool {pool2} seed {seed}");
                    let l16 = as_i16(&lanes[..s.acc_len(pool2) / 2]);
                    for (p, row) in a32.chunks(cout).enumerate() {
                        for (c, &v) in row.iter().enumerate() {
                            let got = l16[p * cout + packed_index(c)] as i32;
                            assert_eq!(got, v, "{s:?} pool {pool2} seed {seed} p {p} c {c}");
                        }
                    }
                }
            }
        }
    }

    /// 3 x 3 layers read spike rows of at most 32 columns: wider maps take other kernels.
    #[test]
    fn wide_maps_do_not_fit() {
        for (k, w, fit) in [(3, 32, true), (3, 33, false), (1, 33, true)] {
            let s = ConvShape {
                cin: 1,
                cout: 4,
                k,
                h: 3,
                w,
            };
            assert_eq!(fits(&s, false, 1 << 16), fit, "k {k} w {w}");
        }
    }

    /// Low lanes at the ends of the `i16` range (the bias at 1 and 65535) leave the high
    /// lanes exact.
    #[test]
    fn lanes_at_the_limits() {
        let s = ConvShape {
            cin: 258,
            cout: 4,
            k: 1,
            h: 1,
            w: 1,
        };
        // Channel 0 (low lane of word 0): 258 x -127 = -32766, channel 2 (its high lane)
        // +32766; channel 1 (low lane of word 1) +32766, channel 3 -32766.
        let wq: Vec<i8> = (0..258).flat_map(|_| [-127, 127, 127, -127]).collect();
        assert!(s.fits_i16(&Weights::I8(&wq), false));
        let map = vec![u32::MAX; bits::words(258)];
        let mut a32 = vec![0; 4];
        scatter_i32(&map, &s, Weights::I8(&wq), false, &mut a32);
        assert_eq!(a32, [-32766, 32766, 32766, -32766]);
        let mut lanes = vec![0; 2 + 2];
        scatter(&map, &s, &wq, false, &mut lanes);
        let l16 = as_i16(&lanes[..2]);
        for c in 0..4 {
            assert_eq!(l16[packed_index(c)] as i32, a32[c]);
        }
    }
}
