//! The test-set file a board application reads (`testset.bin`).
//!
//! Little endian: magic `SNTS`, u32 version (1), u32 image count, u32 image length
//! (`channels * height * width` u8 pixels, `[c][y][x]`), then per image its pixels and
//! one label byte. The device streams it record by record (semihosting `SYS_READ`, or
//! from flash with the `embedded-testset` feature), so it needs one image of RAM.

use std::path::Path;

use super::BoardAppError;

const MAGIC: &[u8; 4] = b"SNTS";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 16;

/// Images and labels for a device run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSet {
    /// Pixels per image.
    pub image_len: usize,
    /// `count * image_len` pixels, image after image.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
}

impl TestSet {
    /// A test set from concatenated images and their labels; `pixels.len()` must be
    /// `labels.len() * image_len`.
    pub fn new(image_len: usize, pixels: Vec<u8>, labels: Vec<u8>) -> Result<TestSet, String> {
        if image_len == 0 || pixels.len() != labels.len() * image_len {
            return Err(format!(
                "{} pixels do not make {} images of {image_len}",
                pixels.len(),
                labels.len()
            ));
        }
        Ok(TestSet {
            image_len,
            pixels,
            labels,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * self.image_len..(i + 1) * self.image_len]
    }

    /// The first `n` images (all if fewer).
    pub fn take(&self, n: usize) -> TestSet {
        let n = n.min(self.len());
        TestSet {
            image_len: self.image_len,
            pixels: self.pixels[..n * self.image_len].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.len() * (self.image_len + 1));
        out.extend_from_slice(MAGIC);
        for v in [VERSION, self.len() as u32, self.image_len as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (i, &label) in self.labels.iter().enumerate() {
            out.extend_from_slice(self.image(i));
            out.push(label);
        }
        out
    }

    /// Parses a file's bytes; `path` is for errors only.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<TestSet, BoardAppError> {
        let bad = |why: String| BoardAppError::TestSet {
            path: path.to_path_buf(),
            why,
        };
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(bad("no `SNTS` header (write it with TestSet::write)".into()));
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        if word(4) != VERSION {
            return Err(bad(format!("version {} (expected {VERSION})", word(4))));
        }
        let (count, image_len) = (word(8) as usize, word(12) as usize);
        let expected = HEADER_LEN + count * (image_len + 1);
        if image_len == 0 || bytes.len() != expected {
            return Err(bad(format!(
                "{} bytes, but {count} images of {image_len} pixels need {expected}",
                bytes.len()
            )));
        }
        let mut pixels = Vec::with_capacity(count * image_len);
        let mut labels = Vec::with_capacity(count);
        for record in bytes[HEADER_LEN..].chunks_exact(image_len + 1) {
            pixels.extend_from_slice(&record[..image_len]);
            labels.push(record[image_len]);
        }
        Ok(TestSet {
            image_len,
            pixels,
            labels,
        })
    }

    /// Writes the file.
    pub fn write(&self, path: &Path) -> Result<(), BoardAppError> {
        std::fs::write(path, self.to_bytes()).map_err(BoardAppError::io(path))
    }

    /// Reads a file.
    pub fn read(path: &Path) -> Result<TestSet, BoardAppError> {
        let bytes = std::fs::read(path).map_err(BoardAppError::io(path))?;
        TestSet::from_bytes(&bytes, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let set = TestSet::new(3, vec![1, 2, 3, 4, 5, 6], vec![7, 9]).unwrap();
        let bytes = set.to_bytes();
        assert_eq!(bytes.len(), 16 + 2 * 4);
        assert_eq!(&bytes[16..20], &[1, 2, 3, 7]);
        let p = Path::new("t.bin");
        assert_eq!(TestSet::from_bytes(&bytes, p).unwrap(), set);
        let err = TestSet::from_bytes(&bytes[..bytes.len() - 1], p).unwrap_err();
        assert!(
            err.to_string().contains("2 images of 3 pixels need 24"),
            "{err}"
        );
        assert!(TestSet::from_bytes(b"XXXX0000000000000000", p).is_err());
        assert!(TestSet::new(3, vec![0; 5], vec![0, 1]).is_err());
        assert_eq!(set.take(1).labels, vec![7]);
    }
}
