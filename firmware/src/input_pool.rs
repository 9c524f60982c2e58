//! Input pooling of `u8` pixels: `p x p` average, `floor(sum / p^2)`, odd sizes floored.

/// Pools `[c][h][w]` pixels into `out[c][h/p][w/p]`; `p` must be a power of two
/// (`1, 2, 4, ...`; the divide is a shift).
pub fn pool(image: &[u8], c: usize, h: usize, w: usize, p: usize, out: &mut [u8]) {
    let (ph, pw) = (h / p, w / p);
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
}
