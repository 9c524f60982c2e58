//! Input pooling of `u8` pixels: `p x p` average, `floor(sum / p^2)`, odd sizes floored.

/// The even bytes of a word, as two 16-bit lanes.
const LANES: u32 = 0x00ff_00ff;

/// Pools `[c][h][w]` pixels into `out[c][h/p][w/p]`; `p` must be a power of two
/// (`1, 2, 4, ...`; the divide is a shift).
///
/// Rows of a word-aligned image whose width is a multiple of 4 are summed a word (four
/// pixels) at a time, two 16-bit lanes per word (`pool_words`), for `p` = 2 and 4 (the
/// sizes the architectures use); other images and sizes byte by byte.
pub fn pool(image: &[u8], c: usize, h: usize, w: usize, p: usize, out: &mut [u8]) {
    let (ph, pw) = (h / p, w / p);
    // SAFETY: every bit pattern is a valid u32; only an empty prefix is used.
    let (prefix, words, _) = unsafe { image.align_to::<u32>() };
    if prefix.is_empty() && w % 4 == 0 && (p == 2 || p == 4) && words.len() * 4 >= c * h * w {
        return pool_words(words, c, h, w, p, out);
    }
    let sh = 2 * p.trailing_zeros();
    for ci in 0..c {
        for py in 0..ph {
            for px in 0..pw {
                let mut s = 0u32;
                for y in py * p..(py + 1) * p {
                    let row = (ci * h + y) * w;
                    for &v in &image[row + px * p..row + (px + 1) * p] {
                        s += v as u32;
                    }
                }
                out[(ci * ph + py) * pw + px] = (s >> sh) as u8;
            }
        }
    }
}

/// [`pool`] over little-endian words, `w % 4 == 0`, `p` = 2 or 4. A word adds its even
/// and odd bytes into two 16-bit lanes: at `p = 2` the lanes are two output pixels, at
/// `p = 4` one output pixel, its lanes added at the end.
fn pool_words(words: &[u32], c: usize, h: usize, w: usize, p: usize, out: &mut [u8]) {
    let lanes = |x: u32| {
        let x = u32::from_le(x);
        (x & LANES) + ((x >> 8) & LANES)
    };
    let wpr = w / 4;
    let ph = h / p;
    let mut o = out.iter_mut();
    for ci in 0..c {
        for py in 0..ph {
            let top = (ci * h + py * p) * wpr;
            let band = &words[top..top + p * wpr];
            if p == 2 {
                let (r0, r1) = band.split_at(wpr);
                for (&a, &b) in r0.iter().zip(r1) {
                    let s = lanes(a) + lanes(b);
                    for v in [s & 0xffff, s >> 16] {
                        if let Some(o) = o.next() {
                            *o = (v >> 2) as u8;
                        }
                    }
                }
            } else {
                // p = 4: one word of each of the four rows per output pixel.
                let (r0, rest) = band.split_at(wpr);
                let (r1, rest) = rest.split_at(wpr);
                let (r2, r3) = rest.split_at(wpr);
                for (((&a, &b), &c), &d) in r0.iter().zip(r1).zip(r2).zip(r3) {
                    let s = lanes(a) + lanes(b) + lanes(c) + lanes(d);
                    if let Some(o) = o.next() {
                        *o = (((s & 0xffff) + (s >> 16)) >> 4) as u8;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_means_and_sizes() {
        let img: Vec<u8> = (0..2 * 5 * 5).map(|i| (i * 37 % 256) as u8).collect();
        for p in [1usize, 2, 4] {
            let (ph, pw) = (5 / p, 5 / p);
            let mut out = vec![0u8; 2 * ph * pw];
            pool(&img, 2, 5, 5, p, &mut out);
            for c in 0..2 {
                for y in 0..ph {
                    for x in 0..pw {
                        let mut s = 0u32;
                        for dy in 0..p {
                            for dx in 0..p {
                                s += img[(c * 5 + y * p + dy) * 5 + x * p + dx] as u32;
                            }
                        }
                        assert_eq!(out[(c * ph + y) * pw + x] as u32, s / (p * p) as u32);
                    }
                }
            }
        }
        let mut o = [0u8; 1];
        pool(&[255; 16], 1, 4, 4, 4, &mut o);
        assert_eq!(o, [255]);
    }

    /// The word path (aligned images, widths a multiple of 4) gives the bytes path's
    /// means, for every pool size it takes, heights not a multiple of `p`, and all-255
    /// images (the largest lane sums).
    #[test]
    fn word_path_matches_the_byte_path() {
        let mut seed = 12345u32;
        for p in [2usize, 4] {
            for (c, h, w) in [(1, 9, 8), (2, p * 2 + 1, 4 * p), (3, p, 8 * p), (1, 34, 36)] {
                let n = c * h * w;
                for fill in [None, Some(255u8)] {
                    // A u32 buffer: its bytes are aligned, and from offset 1 they are not.
                    let mut buf = vec![0u32; n / 4 + 2];
                    let bytes: &mut [u8] = unsafe {
                        core::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), buf.len() * 4)
                    };
                    for b in bytes.iter_mut() {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        *b = fill.unwrap_or((seed >> 16) as u8);
                    }
                    let (ph, pw) = (h / p, w / p);
                    let (mut aligned, mut unaligned) =
                        (vec![0u8; c * ph * pw], vec![0; c * ph * pw]);
                    pool(&bytes[..n], c, h, w, p, &mut aligned);
                    // Copy the aligned image one byte on, so both read the same pixels.
                    bytes.copy_within(0..n, 1);
                    pool(&bytes[1..n + 1], c, h, w, p, &mut unaligned);
                    assert_eq!(aligned, unaligned, "p {p} c {c} h {h} w {w}");
                }
            }
        }
    }
}
