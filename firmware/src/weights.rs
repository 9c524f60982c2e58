//! Weight storage (int8 or packed int4) and the row kernels every layer's inner loop uses.
//!
//! A weight tensor is a sequence of *rows*, one per input tap, each holding one weight
//! per output channel, so that the inner loop of every kernel walks the accumulators and
//! the weights contiguously:
//! * convolution: row `(ci * k + ky) * k + kx`, i.e. layout `[ci][ky][kx][co]`;
//! * linear: row `i` (input index), i.e. layout `[in][out]`.
//!
//! `int4` rows take `ceil(n / 2)` bytes: weight `2j` is the low nibble of byte `j`,
//! weight `2j + 1` the high nibble, both two's complement (`-8..=7`); an odd row ends
//! with a zero high nibble, so every row starts on a byte boundary.

/// Largest magnitude of an int8 weight: weights are symmetric, `-127..=127`.
pub const I8_LIMIT: i8 = 127;
/// Largest magnitude of an int4 weight: weights are symmetric, `-7..=7` (the storage's
/// `-8` is never produced).
pub const I4_LIMIT: i8 = 7;

/// The symmetric limit of `bits`-wide weights: [`I4_LIMIT`] for 4, else [`I8_LIMIT`].
pub const fn limit(bits: u8) -> i8 {
    if bits == 4 {
        I4_LIMIT
    } else {
        I8_LIMIT
    }
}

/// Quantized weights of one layer (see the module docs for the layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Weights<'a> {
    /// One `i8` per weight, `rows * n` entries.
    I8(&'a [i8]),
    /// Two weights per byte, `rows * ceil(n / 2)` bytes.
    I4(&'a [u8]),
}

impl<'a> Weights<'a> {
    /// Number of storage elements (bytes) for `rows` rows of `n` weights.
    pub const fn storage_len(&self, rows: usize, n: usize) -> usize {
        match self {
            Weights::I8(_) => rows * n,
            Weights::I4(_) => rows * n.div_ceil(2),
        }
    }

    /// Number of storage elements the slice actually holds.
    pub const fn len(&self) -> usize {
        match self {
            Weights::I8(w) => w.len(),
            Weights::I4(w) => w.len(),
        }
    }

    /// True when no weights are stored.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Weight `col` of row `row` for rows of `n` weights (a reader for tests and tools).
    pub fn get(&self, row: usize, n: usize, col: usize) -> i8 {
        match self {
            Weights::I8(w) => w[row * n + col],
            Weights::I4(w) => {
                let b = w[row * n.div_ceil(2) + col / 2];
                if col % 2 == 0 {
                    low_nibble(b) as i8
                } else {
                    high_nibble(b) as i8
                }
            }
        }
    }
}

/// Sign-extended low nibble of a packed int4 byte.
#[inline(always)]
pub const fn low_nibble(b: u8) -> i32 {
    ((b as i32) << 28) >> 28
}

/// Sign-extended high nibble of a packed int4 byte.
#[inline(always)]
pub const fn high_nibble(b: u8) -> i32 {
    (b as i8 as i32) >> 4
}

/// Packs int8 weights in `-8..=7` into int4 rows of `n` weights (`values.len()` must be
/// a multiple of `n`; `out.len()` must be `rows * ceil(n / 2)`).
///
/// Returns the index of the first value outside `-8..=7`, or of the length mismatch
/// (`values.len()`), as `Err`.
pub fn pack_i4(values: &[i8], n: usize, out: &mut [u8]) -> Result<(), usize> {
    if n == 0 || values.len() % n != 0 || out.len() != values.len() / n * n.div_ceil(2) {
        return Err(values.len());
    }
    let stride = n.div_ceil(2);
    for (r, row) in values.chunks_exact(n).enumerate() {
        let dst = &mut out[r * stride..(r + 1) * stride];
        dst.fill(0);
        for (j, &v) in row.iter().enumerate() {
            if !(-8..=7).contains(&v) {
                return Err(r * n + j);
            }
            let nib = (v as u8) & 0x0f;
            dst[j / 2] |= if j % 2 == 0 { nib } else { nib << 4 };
        }
    }
    Ok(())
}

/// `acc[j] += w[j]` for one int8 row (a binary input: one spike).
#[inline(always)]
pub fn add_row_i8(acc: &mut [i32], w: &[i8]) {
    let n = acc.len().min(w.len());
    let (acc, w) = (&mut acc[..n], &w[..n]);
    let mut a4 = acc.chunks_exact_mut(4);
    let mut w4 = w.chunks_exact(4);
    for (a, w) in (&mut a4).zip(&mut w4) {
        a[0] = a[0].wrapping_add(w[0] as i32);
        a[1] = a[1].wrapping_add(w[1] as i32);
        a[2] = a[2].wrapping_add(w[2] as i32);
        a[3] = a[3].wrapping_add(w[3] as i32);
    }
    for (a, &w) in a4.into_remainder().iter_mut().zip(w4.remainder()) {
        *a = a.wrapping_add(w as i32);
    }
}

/// `acc[j] += w[j]` for one packed int4 row of `acc.len()` weights.
#[inline(always)]
pub fn add_row_i4(acc: &mut [i32], w: &[u8]) {
    let last = w.get(acc.len() / 2).copied();
    let mut a2 = acc.chunks_exact_mut(2);
    for (a, &b) in (&mut a2).zip(w) {
        a[0] = a[0].wrapping_add(low_nibble(b));
        a[1] = a[1].wrapping_add(high_nibble(b));
    }
    if let ([a], Some(b)) = (a2.into_remainder(), last) {
        *a = a.wrapping_add(low_nibble(b));
    }
}

/// `acc[j] += x * w[j]` for one int8 row (a multi-valued input: pixel or spike count).
#[inline(always)]
pub fn mla_row_i8(acc: &mut [i32], x: i32, w: &[i8]) {
    let n = acc.len().min(w.len());
    let (acc, w) = (&mut acc[..n], &w[..n]);
    let mut a4 = acc.chunks_exact_mut(4);
    let mut w4 = w.chunks_exact(4);
    for (a, w) in (&mut a4).zip(&mut w4) {
        a[0] = a[0].wrapping_add(x.wrapping_mul(w[0] as i32));
        a[1] = a[1].wrapping_add(x.wrapping_mul(w[1] as i32));
        a[2] = a[2].wrapping_add(x.wrapping_mul(w[2] as i32));
        a[3] = a[3].wrapping_add(x.wrapping_mul(w[3] as i32));
    }
    for (a, &w) in a4.into_remainder().iter_mut().zip(w4.remainder()) {
        *a = a.wrapping_add(x.wrapping_mul(w as i32));
    }
}

/// `acc[j] += x * w[j]` for one packed int4 row of `acc.len()` weights.
#[inline(always)]
pub fn mla_row_i4(acc: &mut [i32], x: i32, w: &[u8]) {
    let last = w.get(acc.len() / 2).copied();
    let mut a2 = acc.chunks_exact_mut(2);
    for (a, &b) in (&mut a2).zip(w) {
        a[0] = a[0].wrapping_add(x.wrapping_mul(low_nibble(b)));
        a[1] = a[1].wrapping_add(x.wrapping_mul(high_nibble(b)));
    }
    if let ([a], Some(b)) = (a2.into_remainder(), last) {
        *a = a.wrapping_add(x.wrapping_mul(low_nibble(b)));
    }
}

/// True on cores without unaligned word loads (ARMv6-M: Cortex-M0/M0+), where the row
/// kernels read weights byte by byte; elsewhere they read 4 int8 (or 8 int4) weights with
/// one (possibly unaligned) word load and sign-extend each byte in a register.
const BYTE_LOADS: bool = cfg!(all(target_arch = "arm", not(target_feature = "thumb2")));

/// A row kernel: the inner loop of every weight layer, for one storage format and one
/// row length. Offsets are in storage elements (bytes), accumulators are raw pointers:
/// the callers check the bounds once per layer, not once per row.
pub(crate) trait RowKernel: Copy {
    /// The accumulator element: `i32`, or `i16` for the packed kernels ([`I8x2Fixed`]).
    type Acc;
    /// Storage bytes per row.
    fn stride(self) -> usize;
    /// `acc[j] += w[j]` for `j < n`.
    ///
    /// # Safety
    /// `w..w + stride` must be readable and `acc..acc + n` writable (and not aliased).
    unsafe fn add(self, w: *const u8, acc: *mut Self::Acc);
    /// `acc[j] += x * w[j]` for `j < n`.
    ///
    /// # Safety
    /// As [`RowKernel::add`].
    unsafe fn mla(self, w: *const u8, x: i32, acc: *mut Self::Acc);
    /// The nine taps of an interior spike of a 3 x 3 convolution: for kernel row `ky`
    /// and `j < 3`, row `ky * 3 + 2 - j` of `w` into the accumulators at
    /// `a + j * n - ky * ay` (`a`: the output left of and below the spike, `ay`: the
    /// accumulators of one output row).
    ///
    /// # Safety
    /// `w..w + 9 stride` readable, every accumulator run above writable.
    #[inline(always)]
    unsafe fn add3x3(self, w: *const u8, a: *mut Self::Acc, n: usize, ay: usize) {
        // SAFETY: the caller upholds this function's contract.
        unsafe { add3x3_taps(self, w, a, n, ay) }
    }
}

/// [`RowKernel::add3x3`] tap by tap, with the kernel's row function.
///
/// # Safety
/// As [`RowKernel::add3x3`].
#[inline(always)]
unsafe fn add3x3_taps<K: RowKernel>(kern: K, w: *const u8, a: *mut K::Acc, n: usize, ay: usize) {
    let stride = kern.stride();
    // SAFETY: the caller guarantees every row and run.
    unsafe {
        let (mut wr, mut ar) = (w, a);
        for _ in 0..3 {
            kern.add(wr.add(2 * stride), ar);
            kern.add(wr.add(stride), ar.add(n));
            kern.add(wr, ar.add(2 * n));
            wr = wr.add(3 * stride);
            ar = ar.wrapping_sub(ay);
        }
    }
}

/// `*a = *a + v` (wrapping).
#[inline(always)]
unsafe fn acc_add(a: *mut i32, v: i32) {
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        *a = (*a).wrapping_add(v);
    }
}

/// int8 row of `n` weights: word loads of 4 weights, bytes for the tail.
#[inline(always)]
unsafe fn add_i8(w: *const u8, acc: *mut i32, n: usize) {
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        let mut j = 0;
        if DSP_ASM {
            // Groups of 8 with a down-counter (2 loop instructions per 8 accumulates).
            let (mut wp, mut ap) = (w, acc);
            let mut g = n / 8;
            while g > 0 {
                add4_i8_dsp(&mut wp, &mut ap);
                add4_i8_dsp(&mut wp, &mut ap);
                g -= 1;
            }
            if n & 4 != 0 {
                add4_i8_dsp(&mut wp, &mut ap);
            }
            j = n & !3;
        } else if V6M_ASM {
            if n >= 8 {
                add8_i8_v6m(w, acc, n / 8);
            }
            if n & 4 != 0 {
                add4_i8_v6m(w.add(n & !7), acc.add(n & !7));
            }
            j = n & !3;
        } else if !BYTE_LOADS {
            while j + 4 <= n {
                let word = u32::from_le((w.add(j) as *const u32).read_unaligned());
                let a = acc.add(j);
                acc_add(a, word as i8 as i32);
                acc_add(a.add(1), (word >> 8) as i8 as i32);
                acc_add(a.add(2), (word >> 16) as i8 as i32);
                acc_add(a.add(3), (word as i32) >> 24);
                j += 4;
            }
        }
        while j < n {
            acc_add(acc.add(j), *w.add(j) as i8 as i32);
            j += 1;
        }
    }
}

/// True where the ARMv6-M (Thumb-1) row kernels exist: [`add8_i8_v6m`],
/// [`add4_i8_v6m`] and [`mla4_i8_v6m`].
const V6M_ASM: bool = cfg!(all(target_arch = "arm", not(target_feature = "thumb2")));

/// `acc[0..8g] += w[0..8g]` (int8) for `g >= 1` groups of 8 on ARMv6-M: per 4 weights one
/// `LDM` and one `STM` of the accumulators and `LDRB`, `SXTB`, `ADDS` per weight (33
/// instructions per 8 accumulates with the loop, against about 7 per accumulate for the
/// compiler's byte loop). r6 and r7 (which `asm!` may not name as operands) are saved
/// on the stack and restored.
///
/// # Safety
/// `w..w + 8g` readable, `acc..acc + 8g` writable (i32-aligned), `g >= 1`.
#[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
#[inline(always)]
unsafe fn add8_i8_v6m(w: *const u8, acc: *mut i32, g: usize) {
    // SAFETY: the caller guarantees both ranges; r6/r7 are restored before the end.
    unsafe {
        core::arch::asm!(
            "push {{r6, r7}}",
            "mov r7, r0",
            "2:",
            "ldm r5!, {{r0, r1, r2, r3}}",
            "ldrb r6, [r4, #0]",
            "sxtb r6, r6",
            "adds r0, r0, r6",
            "ldrb r6, [r4, #1]",
            "sxtb r6, r6",
            "adds r1, r1, r6",
            "ldrb r6, [r4, #2]",
            "sxtb r6, r6",
            "adds r2, r2, r6",
            "ldrb r6, [r4, #3]",
            "sxtb r6, r6",
            "adds r3, r3, r6",
            "subs r5, #16",
            "stm r5!, {{r0, r1, r2, r3}}",
            "ldm r5!, {{r0, r1, r2, r3}}",
            "ldrb r6, [r4, #4]",
            "sxtb r6, r6",
            "adds r0, r0, r6",
            "ldrb r6, [r4, #5]",
            "sxtb r6, r6",
            "adds r1, r1, r6",
            "ldrb r6, [r4, #6]",
            "sxtb r6, r6",
            "adds r2, r2, r6",
            "ldrb r6, [r4, #7]",
            "sxtb r6, r6",
            "adds r3, r3, r6",
            "subs r5, #16",
            "stm r5!, {{r0, r1, r2, r3}}",
            "adds r4, #8",
            "subs r7, #1",
            "bne 2b",
            "pop {{r6, r7}}",
            inout("r0") g => _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            inout("r4") w => _,
            inout("r5") acc => _,
        );
    }
}

/// `acc[0..4] += w[0..4]` (int8) on ARMv6-M in 17 instructions, registers r0-r5 only.
///
/// # Safety
/// `w..w + 4` readable, `acc..acc + 4` writable (i32-aligned).
#[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
#[inline(always)]
unsafe fn add4_i8_v6m(w: *const u8, acc: *mut i32) {
    // SAFETY: the caller guarantees both ranges; registers r0-r5 only.
    unsafe {
        core::arch::asm!(
            "ldm {a}!, {{r0, r1, r2}}",
            "ldrb {t}, [{w}, #0]",
            "sxtb {t}, {t}",
            "adds r0, r0, {t}",
            "ldrb {t}, [{w}, #1]",
            "sxtb {t}, {t}",
            "adds r1, r1, {t}",
            "ldrb {t}, [{w}, #2]",
            "sxtb {t}, {t}",
            "adds r2, r2, {t}",
            "subs {a}, #12",
            "stm {a}!, {{r0, r1, r2}}",
            "ldr r0, [{a}]",
            "ldrb {t}, [{w}, #3]",
            "sxtb {t}, {t}",
            "adds r0, r0, {t}",
            "str r0, [{a}]",
            a = inout(reg) acc => _,
            w = in(reg) w,
            t = out(reg) _,
            out("r0") _,
            out("r1") _,
            out("r2") _,
            options(nostack),
        );
    }
}

/// `acc[0..4g] += x * w[0..4g]` (int8, wrapping) for `g >= 1` groups of 4 on ARMv6-M:
/// one `LDM`/`STM` pair per 4 and `LDRB`, `SXTB`, `MULS`, `ADDS` per weight.
///
/// # Safety
/// `w..w + 4g` readable, `acc..acc + 4g` writable (i32-aligned), `g >= 1`.
#[cfg(all(target_arch = "arm", not(target_feature = "thumb2")))]
#[inline(always)]
unsafe fn mla4_i8_v6m(w: *const u8, x: i32, acc: *mut i32, g: usize) {
    // SAFETY: the caller guarantees both ranges; r6/r7 are restored before the end.
    unsafe {
        core::arch::asm!(
            "push {{r6, r7}}",
            "mov r7, r0",
            "2:",
            "ldm r5!, {{r0, r1, r2}}",
            "ldrb r6, [r4, #0]",
            "sxtb r6, r6",
            "muls r6, r3, r6",
            "adds r0, r0, r6",
            "ldrb r6, [r4, #1]",
            "sxtb r6, r6",
            "muls r6, r3, r6",
            "adds r1, r1, r6",
            "ldrb r6, [r4, #2]",
            "sxtb r6, r6",
            "muls r6, r3, r6",
            "adds r2, r2, r6",
            "subs r5, #12",
            "stm r5!, {{r0, r1, r2}}",
            "ldr r0, [r5]",
            "ldrb r6, [r4, #3]",
            "sxtb r6, r6",
            "muls r6, r3, r6",
            "adds r0, r0, r6",
            "stm r5!, {{r0}}",
            "adds r4, #4",
            "subs r7, #1",
            "bne 2b",
            "pop {{r6, r7}}",
            inout("r0") g => _,
            out("r1") _,
            out("r2") _,
            in("r3") x,
            inout("r4") w => _,
            inout("r5") acc => _,
        );
    }
}

/// Never called: [`V6M_ASM`] is false on this target.
#[cfg(not(all(target_arch = "arm", not(target_feature = "thumb2"))))]
#[inline(always)]
unsafe fn add8_i8_v6m(_w: *const u8, _acc: *mut i32, _g: usize) {
    unreachable!("add8_i8_v6m is only called on ARMv6-M")
}

/// Never called: [`V6M_ASM`] is false on this target.
#[cfg(not(all(target_arch = "arm", not(target_feature = "thumb2"))))]
#[inline(always)]
unsafe fn add4_i8_v6m(_w: *const u8, _acc: *mut i32) {
    unreachable!("add4_i8_v6m is only called on ARMv6-M")
}

/// Never called: [`V6M_ASM`] is false on this target.
#[cfg(not(all(target_arch = "arm", not(target_feature = "thumb2"))))]
#[inline(always)]
unsafe fn mla4_i8_v6m(_w: *const u8, _x: i32, _acc: *mut i32, _g: usize) {
    unreachable!("mla4_i8_v6m is only called on ARMv6-M")
}

/// True where [`add4_i8_dsp`] is the ARMv7E-M assembly (the DSP extension's SXTAB).
const DSP_ASM: bool = cfg!(all(target_arch = "arm", target_feature = "dsp"));

/// `acc[0..4] += w[0..4]` (int8) and advances both pointers by 4 elements: one word load
/// of the weights, one LDM and one STM of the accumulators and one SXTAB per weight
/// (7 instructions for 4 accumulates; the compiler's own code needs 12 to 14). The
/// weight load may be unaligned (allowed for LDR on ARMv7-M); `acc` is i32-aligned.
///
/// # Safety
/// `*w..*w + 4` readable, `*acc..*acc + 4` writable.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn add4_i8_dsp(w: &mut *const u8, acc: &mut *mut i32) {
    // SAFETY: the caller guarantees both ranges; the asm touches only them and r0-r3.
    unsafe {
        core::arch::asm!(
            "ldr {t}, [{w}], #4",
            "ldm {a}!, {{r0, r1, r2, r3}}",
            "sxtab r0, r0, {t}",
            "sxtab r1, r1, {t}, ror #8",
            "sxtab r2, r2, {t}, ror #16",
            "add.w r3, r3, {t}, asr #24",
            "stmdb {a}, {{r0, r1, r2, r3}}",
            w = inout(reg) *w,
            a = inout(reg) *acc,
            t = out(reg) _,
            out("r0") _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            options(nostack, preserves_flags),
        );
    }
}

/// `acc[0..8] += w[0..8]` (int4, one word of 8 nibbles, weight `k` in bits `4k..4k+4`)
/// and advances `w` by 4 bytes and `acc` by 8 elements: one SBFX and one ADD per weight
/// (the last one a single ADD with ASR #28), two LDM/STM pairs.
///
/// # Safety
/// `*w..*w + 4` readable, `*acc..*acc + 8` writable.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn add8_i4_dsp(w: &mut *const u8, acc: &mut *mut i32) {
    // SAFETY: the caller guarantees both ranges; the asm touches only them and r0-r3.
    unsafe {
        core::arch::asm!(
            "ldr {t}, [{w}], #4",
            "ldm {a}!, {{r0, r1, r2, r3}}",
            "sbfx {u}, {t}, #0, #4",
            "add r0, r0, {u}",
            "sbfx {u}, {t}, #4, #4",
            "add r1, r1, {u}",
            "sbfx {u}, {t}, #8, #4",
            "add r2, r2, {u}",
            "sbfx {u}, {t}, #12, #4",
            "add r3, r3, {u}",
            "stmdb {a}, {{r0, r1, r2, r3}}",
            "ldm {a}!, {{r0, r1, r2, r3}}",
            "sbfx {u}, {t}, #16, #4",
            "add r0, r0, {u}",
            "sbfx {u}, {t}, #20, #4",
            "add r1, r1, {u}",
            "sbfx {u}, {t}, #24, #4",
            "add r2, r2, {u}",
            "add.w r3, r3, {t}, asr #28",
            "stmdb {a}, {{r0, r1, r2, r3}}",
            w = inout(reg) *w,
            a = inout(reg) *acc,
            t = out(reg) _,
            u = out(reg) _,
            out("r0") _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            options(nostack, preserves_flags),
        );
    }
}

/// `acc[0..4] += x * w[0..4]` (int8, `x` in the i16 range) and advances both pointers by
/// 4 elements: one word load of the weights, two SXTB16 (weights 0 and 2, then 1 and 3,
/// as i16 pairs) and four SMLAxB (9 instructions for 4 multiply-accumulates).
///
/// # Safety
/// `*w..*w + 4` readable, `*acc..*acc + 4` writable, `x` in `i16::MIN..=i16::MAX`.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn mla4_i8_dsp(w: &mut *const u8, x: i32, acc: &mut *mut i32) {
    // SAFETY: the caller guarantees both ranges; the asm touches only them and r0-r3.
    // SMLAxB may set the Q flag on a wrapping accumulate (nothing reads it); the sum
    // itself wraps, as `wrapping_add` does.
    unsafe {
        core::arch::asm!(
            "ldr {t}, [{w}], #4",
            "ldm {a}!, {{r0, r1, r2, r3}}",
            "sxtb16 {u}, {t}",
            "smlabb r0, {u}, {x}, r0",
            "smlatb r2, {u}, {x}, r2",
            "sxtb16 {u}, {t}, ror #8",
            "smlabb r1, {u}, {x}, r1",
            "smlatb r3, {u}, {x}, r3",
            "stmdb {a}, {{r0, r1, r2, r3}}",
            w = inout(reg) *w,
            a = inout(reg) *acc,
            x = in(reg) x,
            t = out(reg) _,
            u = out(reg) _,
            out("r0") _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            options(nostack),
        );
    }
}

/// Never called: [`DSP_ASM`] is false on this target.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
unsafe fn mla4_i8_dsp(_w: &mut *const u8, _x: i32, _acc: &mut *mut i32) {
    unreachable!("mla4_i8_dsp is only called on ARMv7E-M")
}

/// Never called: [`DSP_ASM`] is false on this target.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
unsafe fn add8_i4_dsp(_w: &mut *const u8, _acc: &mut *mut i32) {
    unreachable!("add8_i4_dsp is only called on ARMv7E-M")
}

/// Never called: [`DSP_ASM`] is false on this target.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
unsafe fn add4_i8_dsp(_w: &mut *const u8, _acc: &mut *mut i32) {
    unreachable!("add4_i8_dsp is only called on ARMv7E-M")
}

#[inline(always)]
unsafe fn mla_i8(w: *const u8, x: i32, acc: *mut i32, n: usize) {
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        let mut j = 0;
        if DSP_ASM && x as i16 as i32 == x {
            // SMLAxB multiplies the low half of `x`: exact for every `x` that fits i16
            // (pixels, spike counts); others take the portable loop below.
            let (mut wp, mut ap) = (w, acc);
            for _ in 0..n / 4 {
                mla4_i8_dsp(&mut wp, x, &mut ap);
            }
            j = n & !3;
        } else if V6M_ASM {
            if n >= 4 {
                mla4_i8_v6m(w, x, acc, n / 4);
            }
            j = n & !3;
        } else if !BYTE_LOADS {
            while j + 4 <= n {
                let word = u32::from_le((w.add(j) as *const u32).read_unaligned());
                let a = acc.add(j);
                acc_add(a, x.wrapping_mul(word as i8 as i32));
                acc_add(a.add(1), x.wrapping_mul((word >> 8) as i8 as i32));
                acc_add(a.add(2), x.wrapping_mul((word >> 16) as i8 as i32));
                acc_add(a.add(3), x.wrapping_mul((word as i32) >> 24));
                j += 4;
            }
        }
        while j < n {
            acc_add(acc.add(j), x.wrapping_mul(*w.add(j) as i8 as i32));
            j += 1;
        }
    }
}

/// Sign-extended nibble `k` (0..8) of a little-endian word of packed int4 weights.
#[inline(always)]
const fn nibble(word: u32, k: u32) -> i32 {
    ((word << (28 - 4 * k)) as i32) >> 28
}

/// int4 row of `n` weights (`ceil(n / 2)` bytes): words of 8 weights, bytes for the tail.
#[inline(always)]
unsafe fn add_i4(w: *const u8, acc: *mut i32, n: usize) {
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        let mut j = 0;
        if DSP_ASM {
            let (mut wp, mut ap) = (w, acc);
            for _ in 0..n / 8 {
                add8_i4_dsp(&mut wp, &mut ap);
            }
            j = n & !7;
        } else if !BYTE_LOADS {
            while j + 8 <= n {
                let word = u32::from_le((w.add(j / 2) as *const u32).read_unaligned());
                let a = acc.add(j);
                for k in 0..8 {
                    acc_add(a.add(k), nibble(word, k as u32));
                }
                j += 8;
            }
        }
        while j + 2 <= n {
            let b = *w.add(j / 2);
            acc_add(acc.add(j), low_nibble(b));
            acc_add(acc.add(j + 1), high_nibble(b));
            j += 2;
        }
        if j < n {
            acc_add(acc.add(j), low_nibble(*w.add(j / 2)));
        }
    }
}

#[inline(always)]
unsafe fn mla_i4(w: *const u8, x: i32, acc: *mut i32, n: usize) {
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        let mut j = 0;
        if !BYTE_LOADS {
            while j + 8 <= n {
                let word = u32::from_le((w.add(j / 2) as *const u32).read_unaligned());
                let a = acc.add(j);
                for k in 0..8 {
                    acc_add(a.add(k), x.wrapping_mul(nibble(word, k as u32)));
                }
                j += 8;
            }
        }
        while j + 2 <= n {
            let b = *w.add(j / 2);
            acc_add(acc.add(j), x.wrapping_mul(low_nibble(b)));
            acc_add(acc.add(j + 1), x.wrapping_mul(high_nibble(b)));
            j += 2;
        }
        if j < n {
            acc_add(acc.add(j), x.wrapping_mul(low_nibble(*w.add(j / 2))));
        }
    }
}

/// int8 rows of a length known at compile time (fully unrolled inner loop).
#[derive(Clone, Copy)]
pub(crate) struct I8Fixed<const N: usize>;

/// int8 rows of any length.
#[derive(Clone, Copy)]
pub(crate) struct I8Any(pub usize);

/// int4 rows of any length.
#[derive(Clone, Copy)]
pub(crate) struct I4Any(pub usize);

impl<const N: usize> RowKernel for I8Fixed<N> {
    type Acc = i32;
    #[inline(always)]
    fn stride(self) -> usize {
        N
    }
    #[inline(always)]
    unsafe fn add(self, w: *const u8, acc: *mut i32) {
        // SAFETY: the caller upholds this function's contract.
        unsafe { add_i8(w, acc, N) }
    }
    #[inline(always)]
    unsafe fn mla(self, w: *const u8, x: i32, acc: *mut i32) {
        // SAFETY: the caller upholds this function's contract.
        unsafe { mla_i8(w, x, acc, N) }
    }
}

impl RowKernel for I8Any {
    type Acc = i32;
    #[inline(always)]
    fn stride(self) -> usize {
        self.0
    }
    #[inline(always)]
    unsafe fn add(self, w: *const u8, acc: *mut i32) {
        // SAFETY: the caller upholds this function's contract.
        unsafe { add_i8(w, acc, self.0) }
    }
    #[inline(always)]
    unsafe fn mla(self, w: *const u8, x: i32, acc: *mut i32) {
        // SAFETY: the caller upholds this function's contract.
        unsafe { mla_i8(w, x, acc, self.0) }
    }
}

impl RowKernel for I4Any {
    type Acc = i32;
    #[inline(always)]
    fn stride(self) -> usize {
        self.0.div_ceil(2)
    }
    #[inline(always)]
    unsafe fn add(self, w: *const u8, acc: *mut i32) {
        // SAFETY: the caller upholds this function's contract.
        unsafe { add_i4(w, acc, self.0) }
    }
    #[inline(always)]
    unsafe fn mla(self, w: *const u8, x: i32, acc: *mut i32) {
        // SAFETY: the caller upholds this function's contract.
        unsafe { mla_i4(w, x, acc, self.0) }
    }
}

/// Where output channel `j` of a *packed* accumulator row lives (the packed row kernels):
/// `j` with its bits 0 and 1 swapped, so each group of 4 channels `4g..4g + 4` is stored
/// as the `i16` lanes `[4g, 4g + 2, 4g + 1, 4g + 3]` (two words: `(4g, 4g + 2)` and
/// `(4g + 1, 4g + 3)`, low lane first).
#[inline(always)]
pub const fn packed_index(j: usize) -> usize {
    (j & !3) | ((j & 1) << 1) | ((j >> 1) & 1)
}

/// int8 rows of `N` weights (`N % 4 == 0`) into *packed* accumulators: two `i16` lanes
/// per word, channels in the order of [`packed_index`]. On ARMv7E-M one `SXTAB16` adds
/// two sign-extended weights to the two lanes of one word, so 8 accumulates take one
/// `LDM`, two weight loads, four `SXTAB16` and one `STM` (1 instruction per accumulate,
/// against 1.75 for `i32` accumulators). The lanes wrap at 16 bits: the caller uses
/// these kernels only where every accumulator provably stays in the `i16` range
/// ([`crate::conv_spikes::ConvShape::fits_i16`]).
#[derive(Clone, Copy)]
pub(crate) struct I8x2Fixed<const N: usize>;

/// [`I8x2Fixed`] for any row length that is a multiple of 4.
#[derive(Clone, Copy)]
pub(crate) struct I8x2Any(pub usize);

/// `acc[packed_index(j)] += w[j]` (wrapping `i16`) for `j < n`, `n % 4 == 0`.
#[inline(always)]
unsafe fn add_i8_x2(w: *const u8, acc: *mut i16, n: usize) {
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        if DSP_ASM {
            let (mut wp, mut ap) = (w, acc);
            for _ in 0..n / 8 {
                add8_i8_x2_dsp(&mut wp, &mut ap);
            }
            if n & 4 != 0 {
                add4_i8_x2_dsp(wp, ap);
            }
        } else {
            for j in 0..n {
                let a = acc.add(packed_index(j));
                *a = (*a).wrapping_add(*w.add(j) as i8 as i16);
            }
        }
    }
}

/// `acc[packed_index(j)] += x * w[j]` (wrapping `i16`) for `j < n`, `n % 4 == 0`.
#[inline(always)]
unsafe fn mla_i8_x2(w: *const u8, x: i32, acc: *mut i16, n: usize) {
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        for j in 0..n {
            let a = acc.add(packed_index(j));
            *a = (*a).wrapping_add(x.wrapping_mul(*w.add(j) as i8 as i32) as i16);
        }
    }
}

/// `acc[0..8] += w[0..8]` in packed `i16` lanes and advances `w` by 8 bytes and `acc` by
/// 8 lanes (4 words): 8 instructions for 8 accumulates.
///
/// # Safety
/// `*w..*w + 8` readable, `*acc..*acc + 8` writable and word-aligned.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn add8_i8_x2_dsp(w: &mut *const u8, acc: &mut *mut i16) {
    // SAFETY: the caller guarantees both ranges; the asm touches only them and r0-r3.
    unsafe {
        core::arch::asm!(
            "ldr {t}, [{w}], #4",
            "ldm {a}, {{r0, r1, r2, r3}}",
            "sxtab16 r0, r0, {t}",
            "sxtab16 r1, r1, {t}, ror #8",
            "ldr {t}, [{w}], #4",
            "sxtab16 r2, r2, {t}",
            "sxtab16 r3, r3, {t}, ror #8",
            "stm {a}!, {{r0, r1, r2, r3}}",
            w = inout(reg) *w,
            a = inout(reg) *acc,
            t = out(reg) _,
            out("r0") _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            options(nostack, preserves_flags),
        );
    }
}

/// `acc[0..4] += w[0..4]` in packed `i16` lanes (5 instructions).
///
/// # Safety
/// `w..w + 4` readable, `acc..acc + 4` writable and word-aligned.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn add4_i8_x2_dsp(w: *const u8, acc: *mut i16) {
    // SAFETY: the caller guarantees both ranges; the asm touches only them and r0-r1.
    unsafe {
        core::arch::asm!(
            "ldr {t}, [{w}]",
            "ldm {a}, {{r0, r1}}",
            "sxtab16 r0, r0, {t}",
            "sxtab16 r1, r1, {t}, ror #8",
            "stm {a}, {{r0, r1}}",
            w = in(reg) w,
            a = in(reg) acc,
            t = out(reg) _,
            out("r0") _,
            out("r1") _,
            options(nostack, preserves_flags),
        );
    }
}

/// Never called: [`DSP_ASM`] is false on this target.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
unsafe fn add8_i8_x2_dsp(_w: &mut *const u8, _acc: &mut *mut i16) {
    unreachable!("add8_i8_x2_dsp is only called on ARMv7E-M")
}

/// Never called: [`DSP_ASM`] is false on this target.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
unsafe fn add4_i8_x2_dsp(_w: *const u8, _acc: *mut i16) {
    unreachable!("add4_i8_x2_dsp is only called on ARMv7E-M")
}

/// `impl RowKernel` for a packed kernel pair: `$fixed<N>` (rows of `N` weights, unrolled)
/// and `$any(n)`, rows of `$bytes(n)` bytes, `$add` and `$mla` the row functions.
macro_rules! packed_row_kernels {
    ($fixed:ident, $any:ident, $bytes:expr, $add:ident, $mla:ident, $add3x3:ident) => {
        impl<const N: usize> RowKernel for $fixed<N> {
            type Acc = i16;
            #[inline(always)]
            fn stride(self) -> usize {
                $bytes(N)
            }
            #[inline(always)]
            unsafe fn add(self, w: *const u8, acc: *mut i16) {
                // SAFETY: the caller upholds this function's contract.
                unsafe { $add(w, acc, N) }
            }
            #[inline(always)]
            unsafe fn mla(self, w: *const u8, x: i32, acc: *mut i16) {
                // SAFETY: the caller upholds this function's contract.
                unsafe { $mla(w, x, acc, N) }
            }
            #[inline(always)]
            unsafe fn add3x3(self, w: *const u8, a: *mut i16, n: usize, ay: usize) {
                // SAFETY: the caller upholds this function's contract.
                unsafe {
                    if !$add3x3(w, a, N, ay) {
                        add3x3_taps(self, w, a, n, ay);
                    }
                }
            }
        }

        impl RowKernel for $any {
            type Acc = i16;
            #[inline(always)]
            fn stride(self) -> usize {
                $bytes(self.0)
            }
            #[inline(always)]
            unsafe fn add(self, w: *const u8, acc: *mut i16) {
                // SAFETY: the caller upholds this function's contract.
                unsafe { $add(w, acc, self.0) }
            }
            #[inline(always)]
            unsafe fn mla(self, w: *const u8, x: i32, acc: *mut i16) {
                // SAFETY: the caller upholds this function's contract.
                unsafe { $mla(w, x, acc, self.0) }
            }
        }
    };
}

packed_row_kernels!(
    I8x2Fixed,
    I8x2Any,
    |n: usize| n,
    add_i8_x2,
    mla_i8_x2,
    add3x3_i8_x2_fast
);

/// [`add3x3_i8_x2`] where it exists (`n` = 8 or 16 on ARMv7E-M); false elsewhere, for the
/// caller's tap-by-tap loop.
///
/// # Safety
/// As [`RowKernel::add3x3`] with rows of `n` int8 weights and `a` word-aligned.
#[inline(always)]
unsafe fn add3x3_i8_x2_fast(w: *const u8, a: *mut i16, n: usize, ay: usize) -> bool {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        match n {
            8 => {
                add3x3_i8_x2::<8>(w, a, ay);
                return true;
            }
            16 => {
                add3x3_i8_x2::<16>(w, a, ay);
                return true;
            }
            _ => {}
        }
    }
    let _ = (w, a, n, ay);
    false
}

/// [`RowKernel::add3x3`] of the packed int8 kernels on ARMv7E-M for `N` = 8 or 16: the
/// three taps of a kernel row land on three adjacent pixels, so one pointer runs over
/// their lanes (`LDM`/`STM` with write-back) while the weights are read at constant
/// offsets (`LDRD`): 7 instructions per 8 lanes of a tap, two to step to the next row.
///
/// # Safety
/// As [`RowKernel::add3x3`]; `a` word-aligned.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn add3x3_i8_x2<const N: usize>(w: *const u8, a: *mut i16, ay: usize) {
    // After the three pixels of a row `a` has moved 3 N lanes on: the next row starts
    // `ay + 3 N` lanes (2 bytes each) below.
    let step = 2 * (ay + 3 * N);
    // 8 lanes of one tap: the pixel's lanes at `a` (which moves on) plus the two weight
    // words at byte `$off` of `w`.
    macro_rules! tap8 {
        ($off:literal) => {
            concat!(
                "ldm {a}, {{r0, r1, r2, r3}}\n",
                "ldrd {t0}, {t1}, [{w}, #",
                $off,
                "]\n",
                "sxtab16 r0, r0, {t0}\n",
                "sxtab16 r1, r1, {t0}, ror #8\n",
                "sxtab16 r2, r2, {t1}\n",
                "sxtab16 r3, r3, {t1}, ror #8\n",
                "stm {a}!, {{r0, r1, r2, r3}}\n",
            )
        };
    }
    // Per kernel row, weight rows 3 ky + 2, + 1, + 0 (N bytes each) on the three pixels.
    macro_rules! run {
        ($($taps:tt)*) => {
            core::arch::asm!(
                $($taps)*,
                w = in(reg) w,
                a = inout(reg) a => _,
                step = in(reg) step,
                t0 = out(reg) _,
                t1 = out(reg) _,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                options(nostack, preserves_flags),
            )
        };
    }
    // SAFETY: the caller guarantees the 9 weight rows and the 9 accumulator runs; the
    // asm touches only them and r0-r3.
    unsafe {
        match N {
            8 => run!(concat!(
                tap8!(16),
                tap8!(8),
                tap8!(0),
                "sub {a}, {a}, {step}\n",
                tap8!(40),
                tap8!(32),
                tap8!(24),
                "sub {a}, {a}, {step}\n",
                tap8!(64),
                tap8!(56),
                tap8!(48),
            )),
            16 => run!(concat!(
                tap8!(32),
                tap8!(40),
                tap8!(16),
                tap8!(24),
                tap8!(0),
                tap8!(8),
                "sub {a}, {a}, {step}\n",
                tap8!(80),
                tap8!(88),
                tap8!(64),
                tap8!(72),
                tap8!(48),
                tap8!(56),
                "sub {a}, {a}, {step}\n",
                tap8!(128),
                tap8!(136),
                tap8!(112),
                tap8!(120),
                tap8!(96),
                tap8!(104),
            )),
            _ => unreachable!(),
        }
    }
}

/// Where output channel `j` of a *packed int4* accumulator row lives (the packed int4 row
/// kernels, [`crate::conv_spikes::scatter_packed_i4`]): each
/// group of 8 channels `8g..8g + 8` is stored as the `i16` lanes
/// `[8g, 8g + 4, 8g + 1, 8g + 5, 8g + 2, 8g + 6, 8g + 3, 8g + 7]` (four words: channel
/// `8g + i` and `8g + i + 4` share word `i`, low lane first).
#[inline(always)]
pub const fn packed_index_i4(j: usize) -> usize {
    (j & !7) | ((j & 3) << 1) | ((j >> 2) & 1)
}

/// int4 rows of `N` weights (`N % 8 == 0`, `N / 2` bytes) into *packed* accumulators that
/// hold **16 times** the sums: two `i16` lanes per word, channels in the order of
/// [`packed_index_i4`]. On ARMv7E-M one word of 8 nibbles becomes the bytes `16 w` of the
/// even and of the odd weights with a shift and two masks (each nibble then sits in the
/// high half of a byte, so the byte *is* the signed weight times 16), and four `SXTAB16`
/// add them: 10 instructions for 8 accumulates (against 21 for `i32` accumulators). The
/// lanes wrap at 16 bits: the caller uses these kernels only where every accumulator times
/// 16 provably stays in the `i16` range ([`crate::conv_spikes::ConvShape::fits_i4_lanes`]);
/// the requantisation then takes the lanes with its shift raised by 4, which is exact
/// (`floor((16 a m + 2^(s+3)) / 2^(s+4)) = floor((a m + 2^(s-1)) / 2^s)`).
#[derive(Clone, Copy)]
pub(crate) struct I4x2Fixed<const N: usize>;

/// [`I4x2Fixed`] for any row length that is a multiple of 8.
#[derive(Clone, Copy)]
pub(crate) struct I4x2Any(pub usize);

/// `acc[packed_index_i4(j)] += 16 w[j]` (wrapping `i16`) for `j < n`, `n % 8 == 0`.
#[inline(always)]
unsafe fn add_i4_x2(w: *const u8, acc: *mut i16, n: usize) {
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        if DSP_ASM {
            let (mut wp, mut ap) = (w, acc);
            for _ in 0..n / 8 {
                add8_i4_x2_dsp(&mut wp, &mut ap);
            }
        } else {
            mla_i4_x2(w, 1, acc, n);
        }
    }
}

/// `acc[packed_index_i4(j)] += 16 x w[j]` (wrapping `i16`) for `j < n`, `n % 8 == 0`.
#[inline(always)]
unsafe fn mla_i4_x2(w: *const u8, x: i32, acc: *mut i16, n: usize) {
    // SAFETY: the caller upholds this function's contract.
    unsafe {
        for j in 0..n {
            let b = *w.add(j / 2);
            let v = if j % 2 == 0 {
                low_nibble(b)
            } else {
                high_nibble(b)
            };
            let a = acc.add(packed_index_i4(j));
            *a = (*a).wrapping_add(x.wrapping_mul(16 * v) as i16);
        }
    }
}

/// `acc[0..8] += 16 w[0..8]` (one word of 8 nibbles) in packed `i16` lanes and advances
/// `w` by 4 bytes and `acc` by 8 lanes (4 words): 10 instructions for 8 accumulates.
///
/// # Safety
/// `*w..*w + 4` readable, `*acc..*acc + 8` writable and word-aligned.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[inline(always)]
unsafe fn add8_i4_x2_dsp(w: &mut *const u8, acc: &mut *mut i16) {
    // SAFETY: the caller guarantees both ranges; the asm touches only them and r0-r3.
    // `u` gets the even nibbles (0, 2, 4, 6) in the high halves of its bytes, `t` the odd
    // ones: each byte is then 16 times the signed weight.
    unsafe {
        core::arch::asm!(
            "ldr {t}, [{w}], #4",
            "ldm {a}, {{r0, r1, r2, r3}}",
            "lsl {u}, {t}, #4",
            "and {u}, {u}, #0xf0f0f0f0",
            "and {t}, {t}, #0xf0f0f0f0",
            "sxtab16 r0, r0, {u}",
            "sxtab16 r1, r1, {t}",
            "sxtab16 r2, r2, {u}, ror #8",
            "sxtab16 r3, r3, {t}, ror #8",
            "stm {a}!, {{r0, r1, r2, r3}}",
            w = inout(reg) *w,
            a = inout(reg) *acc,
            t = out(reg) _,
            u = out(reg) _,
            out("r0") _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            options(nostack, preserves_flags),
        );
    }
}

/// Never called: [`DSP_ASM`] is false on this target.
#[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
#[inline(always)]
unsafe fn add8_i4_x2_dsp(_w: &mut *const u8, _acc: &mut *mut i16) {
    unreachable!("add8_i4_x2_dsp is only called on ARMv7E-M")
}

packed_row_kernels!(
    I4x2Fixed,
    I4x2Any,
    |n: usize| n / 2,
    add_i4_x2,
    mla_i4_x2,
    no_add3x3
);

/// No nine-tap kernel for packed int4 rows: the caller's tap-by-tap loop.
#[inline(always)]
unsafe fn no_add3x3(_: *const u8, _: *mut i16, _: usize, _: usize) -> bool {
    false
}

/// As [`with_kernel!`] with one kernel per storage format and no fixed-length ones: for
/// layers that run once per image or once per step (stem, linear layers), where the
/// unrolled kernels would cost more flash than they save time.
macro_rules! with_any_kernel {
    ($weights:expr, $rows:expr, $n:expr, |$k:ident, $w:ident| $body:expr) => {{
        let (n, rows) = ($n, $rows);
        let weights: $crate::weights::Weights = $weights;
        assert!(
            weights.len() >= weights.storage_len(rows, n),
            "weights hold {} bytes, {} rows of {} need {}",
            weights.len(),
            rows,
            n,
            weights.storage_len(rows, n)
        );
        match weights {
            $crate::weights::Weights::I8(w) => {
                let $w = w.as_ptr() as *const u8;
                let $k = $crate::weights::I8Any(n);
                $body
            }
            $crate::weights::Weights::I4(w) => {
                let $w = w.as_ptr();
                let $k = $crate::weights::I4Any(n);
                $body
            }
        }
    }};
}
pub(crate) use with_any_kernel;

/// Runs `$body` with `$k` bound to the row kernel for `$weights` (rows of `$n` weights)
/// and `$w: *const u8` to the start of the storage, after checking that the storage
/// holds `$rows` rows (a panic otherwise, as a slice index would). Common row lengths
/// get a fully unrolled kernel.
macro_rules! with_kernel {
    ($weights:expr, $rows:expr, $n:expr, |$k:ident, $w:ident| $body:expr) => {{
        let (n, rows) = ($n, $rows);
        let weights: $crate::weights::Weights = $weights;
        assert!(
            weights.len() >= weights.storage_len(rows, n),
            "weights hold {} bytes, {} rows of {} need {}",
            weights.len(),
            rows,
            n,
            weights.storage_len(rows, n)
        );
        match weights {
            // On ARMv7E-M the int8 spike convolutions that matter take the packed kernels
            // (`I8x2Fixed`); the i32 ones there are the fallback and stay generic (flash).
            $crate::weights::Weights::I8(w) if $crate::conv_spikes::PACKED_PAYS => {
                let $w = w.as_ptr() as *const u8;
                let $k = $crate::weights::I8Any(n);
                $body
            }
            $crate::weights::Weights::I8(w) => {
                let $w = w.as_ptr() as *const u8;
                match n {
                    4 => {
                        let $k = $crate::weights::I8Fixed::<4>;
                        $body
                    }
                    8 => {
                        let $k = $crate::weights::I8Fixed::<8>;
                        $body
                    }
                    16 => {
                        let $k = $crate::weights::I8Fixed::<16>;
                        $body
                    }
                    32 => {
                        let $k = $crate::weights::I8Fixed::<32>;
                        $body
                    }
                    _ => {
                        let $k = $crate::weights::I8Any(n);
                        $body
                    }
                }
            }
            $crate::weights::Weights::I4(w) => {
                let $w = w.as_ptr();
                let $k = $crate::weights::I4Any(n);
                $body
            }
        }
    }};
}
pub(crate) use with_kernel;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibbles_sign_extend() {
        assert_eq!(low_nibble(0x07), 7);
        assert_eq!(low_nibble(0x08), -8);
        assert_eq!(low_nibble(0xff), -1);
        assert_eq!(high_nibble(0x70), 7);
        assert_eq!(high_nibble(0x80), -8);
        assert_eq!(high_nibble(0xf0), -1);
    }

    #[test]
    fn pack_round_trips_and_pads_odd_rows() {
        let vals: [i8; 6] = [-8, 7, -1, 0, 3, -5];
        let mut packed = [0u8; 4];
        pack_i4(&vals, 3, &mut packed).unwrap();
        // row 0: -8 (0x8), 7 (0x7) ; -1 (0xf) + pad 0
        assert_eq!(packed, [0x78, 0x0f, 0x30, 0x0b]);
        let w = Weights::I4(&packed);
        for r in 0..2 {
            for c in 0..3 {
                assert_eq!(w.get(r, 3, c), vals[r * 3 + c]);
            }
        }
        assert_eq!(pack_i4(&[8], 1, &mut [0u8]), Err(0));
        assert_eq!(pack_i4(&[1, 2, 3], 2, &mut [0u8; 2]), Err(3));
    }

    /// Every row kernel against the portable row functions, for every length up to 40.
    #[test]
    fn kernels_match_the_row_functions() {
        fn check<K: RowKernel<Acc = i32>>(k: K, n: usize, w8: &[i8], w4: &[u8], int4: bool) {
            let mut want = vec![5i32; n];
            let mut got = vec![5i32; n + 1];
            // SAFETY: the row holds `stride` bytes and `got` n (+1 guard) accumulators.
            unsafe {
                let w: *const u8 = if int4 {
                    w4.as_ptr()
                } else {
                    w8.as_ptr().cast()
                };
                k.add(w, got.as_mut_ptr());
                k.mla(w, -3, got.as_mut_ptr());
            }
            if int4 {
                add_row_i4(&mut want, w4);
                mla_row_i4(&mut want, -3, w4);
            } else {
                add_row_i8(&mut want, w8);
                mla_row_i8(&mut want, -3, w8);
            }
            assert_eq!(&got[..n], want, "n = {n} int4 {int4}");
            assert_eq!(got[n], 5, "n = {n}: no write past the row");
        }
        for n in 1..=40usize {
            let w8: Vec<i8> = (0..n).map(|j| ((j * 73 + 11) % 256) as u8 as i8).collect();
            let small: Vec<i8> = (0..n).map(|j| ((j * 5 + 3) % 16) as i8 - 8).collect();
            let mut w4 = vec![0u8; n.div_ceil(2)];
            pack_i4(&small, n, &mut w4).unwrap();
            check(I8Any(n), n, &w8, &w4, false);
            check(I4Any(n), n, &small, &w4, true);
            if n == 8 {
                check(I8Fixed::<8>, n, &w8, &w4, false);
            }
            if n == 16 {
                check(I8Fixed::<16>, n, &w8, &w4, false);
            }
            if n == 32 {
                check(I8Fixed::<32>, n, &w8, &w4, false);
            }
        }
    }

    /// The packed i16 kernels against the i32 row function, lanes in packed order.
    #[test]
    fn packed_kernels_match_the_row_functions() {
        fn check<K: RowKernel<Acc = i16>>(k: K, n: usize, w8: &[i8]) {
            let mut want = vec![5i32; n];
            let mut got = vec![5i16; n + 2];
            // SAFETY: the row holds n bytes and `got` n (+2 guard) lanes (the portable
            // kernels run here, which need no word alignment).
            unsafe {
                k.add(w8.as_ptr().cast(), got.as_mut_ptr());
                k.mla(w8.as_ptr().cast(), -3, got.as_mut_ptr());
            }
            add_row_i8(&mut want, w8);
            mla_row_i8(&mut want, -3, w8);
            for (j, &v) in want.iter().enumerate() {
                assert_eq!(got[packed_index(j)] as i32, v, "n = {n} j = {j}");
            }
            assert_eq!(got[n..], [5, 5], "n = {n}: no write past the row");
        }
        assert_eq!(
            (0..8).map(packed_index).collect::<Vec<_>>(),
            [0, 2, 1, 3, 4, 6, 5, 7]
        );
        for n in (4..=40usize).step_by(4) {
            let w8: Vec<i8> = (0..n).map(|j| ((j * 73 + 11) % 256) as u8 as i8).collect();
            check(I8x2Any(n), n, &w8);
            match n {
                8 => check(I8x2Fixed::<8>, n, &w8),
                16 => check(I8x2Fixed::<16>, n, &w8),
                32 => check(I8x2Fixed::<32>, n, &w8),
                _ => {}
            }
        }
    }

    /// The packed int4 kernels hold 16 times the i32 row function's sums, lanes in
    /// [`packed_index_i4`] order.
    #[test]
    fn packed_int4_kernels_match_the_row_functions() {
        fn check<K: RowKernel<Acc = i16>>(k: K, n: usize, w4: &[u8]) {
            let mut want = vec![5i32; n];
            let mut got = vec![80i16; n + 2];
            // SAFETY: the row holds n / 2 bytes and `got` n (+2 guard) lanes (the portable
            // kernels run here, which need no word alignment).
            unsafe {
                k.add(w4.as_ptr(), got.as_mut_ptr());
                k.mla(w4.as_ptr(), -3, got.as_mut_ptr());
            }
            add_row_i4(&mut want, w4);
            mla_row_i4(&mut want, -3, w4);
            for (j, &v) in want.iter().enumerate() {
                assert_eq!(got[packed_index_i4(j)] as i32, 16 * v, "n = {n} j = {j}");
            }
            assert_eq!(got[n..], [80, 80], "n = {n}: no write past the row");
        }
        assert_eq!(
            (0..16).map(packed_index_i4).collect::<Vec<_>>(),
            [0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15]
        );
        for n in (8..=40usize).step_by(8) {
            let vals: Vec<i8> = (0..n).map(|j| ((j * 7 + 3) % 16) as i8 - 8).collect();
            let mut w4 = vec![0u8; n / 2];
            pack_i4(&vals, n, &mut w4).unwrap();
            check(I4x2Any(n), n, &w4);
            match n {
                8 => check(I4x2Fixed::<8>, n, &w4),
                16 => check(I4x2Fixed::<16>, n, &w4),
                32 => check(I4x2Fixed::<32>, n, &w4),
                _ => {}
            }
        }
    }

    #[test]
    fn int4_rows_match_int8_rows() {
        for n in 1..11usize {
            let vals: Vec<i8> = (0..n).map(|j| ((j as i32 * 5) % 16 - 8) as i8).collect();
            let mut packed = vec![0u8; n.div_ceil(2)];
            pack_i4(&vals, n, &mut packed).unwrap();
            let mut a8 = vec![3i32; n];
            let mut a4 = vec![3i32; n];
            add_row_i8(&mut a8, &vals);
            add_row_i4(&mut a4, &packed);
            assert_eq!(a8, a4, "add n={n}");
            mla_row_i8(&mut a8, -37, &vals);
            mla_row_i4(&mut a4, -37, &packed);
            assert_eq!(a8, a4, "mla n={n}");
            let expect: Vec<i32> = vals.iter().map(|&v| 3 + v as i32 - 37 * v as i32).collect();
            assert_eq!(a8, expect);
        }
    }
}
