//! A set of labelled images held as raw `u8` pixels (CHW per image), and its
//! conversion to candle tensors.
//!
//! The tensor form is `x = pixel / 255` with no mean subtraction: the firmware
//! feeds the raw `u8` pixels into the first layer, so the host must see the same
//! values up to that fixed scale.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Label-preserving distortions of training images, drawn afresh for every image of
/// every batch (from the training's own seeded generator, so training stays
/// bit-deterministic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Augment {
    /// The images as they are.
    #[default]
    None,
    /// Shift by up to 2 pixels in each direction, the uncovered border black.
    Shift,
    /// Shift as above, and mirror left-right with probability 1/2 (for datasets whose
    /// classes are mirror-symmetric, such as clothing; not digits).
    ShiftFlip,
    /// Mirror left-right with probability 1/2, no shift (mirror-symmetric classes).
    Flip,
}

impl Augment {
    /// Largest shift in pixels, per direction.
    pub const MAX_SHIFT: usize = 2;

    /// Write a distorted copy of the CHW image `src` (`h` x `w`) into `dst`.
    fn apply(self, src: &[u8], (c, h, w): (usize, usize, usize), rng: &mut Rng, dst: &mut [u8]) {
        let (dy, dx, flip) = match self {
            Augment::None => (0, 0, false),
            Augment::Shift | Augment::ShiftFlip => {
                let s = Self::MAX_SHIFT as isize;
                let dy = rng.below(2 * Self::MAX_SHIFT + 1) as isize - s;
                let dx = rng.below(2 * Self::MAX_SHIFT + 1) as isize - s;
                (dy, dx, self == Augment::ShiftFlip && rng.below(2) == 1)
            }
            Augment::Flip => (0, 0, rng.below(2) == 1),
        };
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let sy = y as isize - dy;
                    let sx = if flip {
                        (w - 1 - x) as isize
                    } else {
                        x as isize
                    } - dx;
                    let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                    dst[(ch * h + y) * w + x] = if inside {
                        src[(ch * h + sy as usize) * w + sx as usize]
                    } else {
                        0
                    };
                }
            }
        }
    }
}

/// Labelled images: `images` holds `len() * channels * height * width` bytes,
/// image after image, each in CHW order, pixels 0..=255.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Pixels, `N*C*H*W`, CHW per image.
    pub images: Vec<u8>,
    /// One label per image, each `< classes`.
    pub labels: Vec<u8>,
    /// Channels per image.
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes of the dataset (labels are `0..classes`).
    pub classes: usize,
}

impl Split {
    /// Bytes per image, `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i` (CHW). Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The images at `indices`, in that order, as a new split.
    /// Panics if an index is out of range.
    pub fn select(&self, indices: &[usize]) -> Split {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Split {
            images,
            labels,
            ..*self
        }
    }

    /// Images per class, indexed by label; length `classes`.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }

    /// The images at `indices` as an f32 tensor `(N, C, H, W)` with values
    /// `pixel / 255` (no mean subtraction), and their labels as a u32 tensor `(N)`.
    pub fn batch(
        &self,
        indices: &[usize],
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        self.check_indices(indices)?;
        let mut pixels = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            pixels.extend(self.image(i).iter().map(|&p| p as f32 / 255.0));
        }
        self.tensors(indices, pixels, device)
    }

    /// The batch tensors: `pixels` (already scaled, CHW per image) and the labels of
    /// `indices`.
    fn tensors(
        &self,
        indices: &[usize],
        pixels: Vec<f32>,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let labels: Vec<u32> = indices.iter().map(|&i| self.labels[i] as u32).collect();
        let shape = (indices.len(), self.channels, self.height, self.width);
        Ok((
            Tensor::from_vec(pixels, shape, device)?,
            Tensor::from_vec(labels, indices.len(), device)?,
        ))
    }

    fn check_indices(&self, indices: &[usize]) -> candle_core::Result<()> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            candle_core::bail!(
                "batch index {bad} out of range: the split holds {} images",
                self.len()
            );
        }
        Ok(())
    }

    /// [`Split::batch`] with every image distorted by `augment` (draws from `rng`).
    pub fn batch_augmented(
        &self,
        indices: &[usize],
        augment: Augment,
        rng: &mut Rng,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        if augment == Augment::None {
            return self.batch(indices, device);
        }
        self.check_indices(indices)?;
        let len = self.image_len();
        let dims = (self.channels, self.height, self.width);
        let mut image = vec![0u8; len];
        let mut pixels = Vec::with_capacity(indices.len() * len);
        for &i in indices {
            augment.apply(self.image(i), dims, rng, &mut image);
            pixels.extend(image.iter().map(|&p| p as f32 / 255.0));
        }
        self.tensors(indices, pixels, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Split {
        // Three 2x1x2 images (C=2, H=1, W=2), pixel values chosen so each image
        // is recognisable: image k holds 10k, 10k+1, 10k+2, 255.
        let mut images = Vec::new();
        for k in 0..3u8 {
            images.extend_from_slice(&[10 * k, 10 * k + 1, 10 * k + 2, 255]);
        }
        Split {
            images,
            labels: vec![2, 0, 2],
            channels: 2,
            height: 1,
            width: 2,
            classes: 3,
        }
    }

    #[test]
    fn image_select_and_counts() {
        let s = tiny();
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        assert_eq!(s.image_len(), 4);
        assert_eq!(s.image(1), &[10, 11, 12, 255]);
        let t = s.select(&[2, 0]);
        assert_eq!(t.labels, vec![2, 2]);
        assert_eq!(t.image(0), &[20, 21, 22, 255]);
        assert_eq!(t.image(1), &[0, 1, 2, 255]);
        assert_eq!(s.class_counts(), vec![1, 0, 2]);
        assert_eq!(t.class_counts(), vec![0, 0, 2]);
    }

    #[test]
    fn batch_is_pixel_over_255_in_nchw() {
        let s = tiny();
        let (x, y) = s.batch(&[1, 2], &Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[2, 2, 1, 2]);
        assert_eq!(x.dtype(), candle_core::DType::F32);
        assert_eq!(y.dtype(), candle_core::DType::U32);
        assert_eq!(y.to_vec1::<u32>().unwrap(), vec![0, 2]);
        let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want: Vec<f32> = [10u8, 11, 12, 255, 20, 21, 22, 255]
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect();
        assert_eq!(v, want);
        assert_eq!(v[3], 1.0);
        // Channel 1 of image 0 is the second pair of bytes.
        let c1 = x.get(0).unwrap().get(1).unwrap().flatten_all().unwrap();
        assert_eq!(c1.to_vec1::<f32>().unwrap(), vec![12.0 / 255.0, 1.0]);
    }

    #[test]
    fn batch_rejects_out_of_range_index() {
        let err = tiny().batch(&[0, 3], &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("batch index 3"), "{err}");
    }

    #[test]
    fn augmentation_shifts_and_mirrors_and_keeps_labels() {
        // One 1x5x5 image with a single bright pixel at (2, 1).
        let mut images = vec![0u8; 25];
        images[2 * 5 + 1] = 200;
        let s = Split {
            images,
            labels: vec![7],
            channels: 1,
            height: 5,
            width: 5,
            classes: 10,
        };
        let mut rng = Rng::new(3);
        let mut seen_flip = false;
        for _ in 0..200 {
            let (x, y) = s
                .batch_augmented(&[0], Augment::ShiftFlip, &mut rng, &Device::Cpu)
                .unwrap();
            assert_eq!(y.to_vec1::<u32>().unwrap(), vec![7]);
            let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            // The pixel moves by at most 2 in each direction (mirrored: column 3), or
            // leaves the image; nothing else lights up.
            let lit: Vec<usize> = (0..25).filter(|&k| v[k] > 0.0).collect();
            assert!(lit.len() <= 1, "{lit:?}");
            if let Some(&k) = lit.first() {
                assert!((v[k] - 200.0 / 255.0).abs() < 1e-6);
                let (row, col) = (k / 5, k % 5);
                assert!(row.abs_diff(2) <= 2);
                assert!(col.abs_diff(1) <= 2 || col.abs_diff(3) <= 2);
                seen_flip |= col.abs_diff(1) > 2;
            }
        }
        assert!(seen_flip, "a mirrored image in 200 draws");
        // None is the plain batch.
        let plain = s.batch(&[0], &Device::Cpu).unwrap().0;
        let none = s
            .batch_augmented(&[0], Augment::None, &mut rng, &Device::Cpu)
            .unwrap()
            .0;
        assert_eq!(
            plain.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            none.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        // Flip mirrors without shifting: the pixel stays at (2, 1) or moves to (2, 3),
        // both seen in 200 draws.
        let mut seen = [false; 2];
        for _ in 0..200 {
            let (x, _) = s
                .batch_augmented(&[0], Augment::Flip, &mut rng, &Device::Cpu)
                .unwrap();
            let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let lit: Vec<usize> = (0..25).filter(|&k| v[k] > 0.0).collect();
            match lit[..] {
                [k] if k == 2 * 5 + 1 => seen[0] = true,
                [k] if k == 2 * 5 + 3 => seen[1] = true,
                _ => panic!("flip moved the pixel: {lit:?}"),
            }
        }
        assert_eq!(seen, [true, true]);
    }
}
