//! Zeroing of accumulator and current buffers.
//!
//! `slice::fill(0)` becomes a call to the generic `memclr`, which stores one word per
//! 4 instructions on Cortex-M. Accumulators are zeroed before every layer, so on ARM this
//! stores 8 words per 4 instructions (two `STM`s of four zero registers and the loop).

/// Sets every element of `buf` to 0.
pub fn zero(buf: &mut [i32]) {
    fill(buf, 0);
}

/// Sets every element of an `i16` buffer (membranes) to 0: its word-aligned middle
/// through [`zero`], the ends element by element.
pub fn zero_i16(buf: &mut [i16]) {
    // SAFETY: every bit pattern is a valid i32 and i16; the middle is aligned.
    let (head, mid, tail) = unsafe { buf.align_to_mut::<i32>() };
    head.fill(0);
    zero(mid);
    tail.fill(0);
}

/// Sets every element of `buf` to `v`.
pub fn fill(buf: &mut [i32], v: i32) {
    let blocks = buf.len() / 8;
    #[cfg(target_arch = "arm")]
    if blocks > 0 {
        // SAFETY: the loop stores exactly `blocks * 8` words from the start of `buf`,
        // which holds at least that many; r0-r3 hold `v` and are only read.
        unsafe {
            core::arch::asm!(
                "2:",
                "stm {p}!, {{r0, r1, r2, r3}}",
                "stm {p}!, {{r0, r1, r2, r3}}",
                "subs {n}, #1",
                "bne 2b",
                p = inout(reg) buf.as_mut_ptr() => _,
                n = inout(reg) blocks => _,
                in("r0") v,
                in("r1") v,
                in("r2") v,
                in("r3") v,
                options(nostack),
            );
        }
    }
    #[cfg(not(target_arch = "arm"))]
    buf[..blocks * 8].fill(v);
    for x in &mut buf[blocks * 8..] {
        *x = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroes_every_i16_length_and_offset() {
        for off in 0..2 {
            for n in 0..40 {
                let mut v = vec![7i16; n + 5];
                zero_i16(&mut v[off..off + n]);
                assert!(v[off..off + n].iter().all(|&x| x == 0), "n = {n}");
                assert!(
                    v[..off].iter().chain(&v[off + n..]).all(|&x| x == 7),
                    "n = {n}"
                );
            }
        }
    }

    #[test]
    fn zeroes_every_length() {
        for n in 0..40 {
            let mut v = vec![7i32; n + 3];
            zero(&mut v[..n]);
            assert!(v[..n].iter().all(|&x| x == 0), "n = {n}");
            assert_eq!(v[n..], [7, 7, 7], "n = {n}: past the end untouched");
            fill(&mut v[..n], -3);
            assert!(v[..n].iter().all(|&x| x == -3), "n = {n}");
            assert_eq!(v[n..], [7, 7, 7], "n = {n}: past the end untouched");
        }
    }
}
