//! IDX files (the MNIST format) and directories laid out like MNIST: Fashion-MNIST
//! from its Debian package, or any `idx:DIR`.
//!
//! An IDX file is a big-endian header (magic `0x0000_08dd`, where `08` means u8
//! data and `dd` the number of dimensions, then one u32 per dimension) followed by
//! the data. Images are `0x0000_0803` (N, H, W); labels are `0x0000_0801` (N).

use std::path::{Path, PathBuf};

use super::{file, DataError, Loaded, Spec, Split};

/// Magic number of an IDX file of u8 images (3 dimensions: N, H, W).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of u8 labels (1 dimension: N).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The four files of an MNIST-layout directory, without the optional `.gz`.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// Training labels file name.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// Test images file name.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// Test labels file name.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The contents of an IDX images file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub height: usize,
    /// Columns per image.
    pub width: usize,
    /// `count * height * width` pixels, row-major per image.
    pub pixels: Vec<u8>,
}

/// Reads an IDX images file (raw or gzipped).
pub fn read_images(path: &Path) -> Result<Images, DataError> {
    parse_images(&file::read(path)?, path)
}

/// Reads an IDX labels file (raw or gzipped).
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    parse_labels(&file::read(path)?, path)
}

/// Parses the (decompressed) bytes of an IDX images file; `path` names it in errors.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<Images, DataError> {
    let dims = header(
        bytes,
        path,
        IMAGES_MAGIC,
        "IDX u8 images, 3 dimensions N x H x W",
    )?;
    let (count, height, width) = (dims[0], dims[1], dims[2]);
    let len = count.checked_mul(height).and_then(|n| n.checked_mul(width));
    let Some(len) = len.filter(|_| height > 0 && width > 0) else {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            message: format!(
                "header declares {count} images of {height}x{width}, not a usable size"
            ),
        });
    };
    let data = body(
        bytes,
        16,
        len,
        path,
        &format!("header declares {count} images of {height}x{width}"),
    )?;
    Ok(Images {
        count,
        height,
        width,
        pixels: data.to_vec(),
    })
}

/// Parses the (decompressed) bytes of an IDX labels file; `path` names it in errors.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let dims = header(bytes, path, LABELS_MAGIC, "IDX u8 labels, 1 dimension N")?;
    let count = dims[0];
    let data = body(
        bytes,
        8,
        count,
        path,
        &format!("header declares {count} labels"),
    )?;
    Ok(data.to_vec())
}

/// Checks the magic number and returns the dimensions it announces.
fn header(
    bytes: &[u8],
    path: &Path,
    magic: u32,
    what: &'static str,
) -> Result<Vec<usize>, DataError> {
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: header_len as u64,
            actual: bytes.len() as u64,
            detail: format!("an IDX header is at least {header_len} bytes"),
        });
    }
    let found = word(0);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found,
            expected: magic,
            what,
        });
    }
    if bytes.len() < header_len {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: header_len as u64,
            actual: bytes.len() as u64,
            detail: format!("the IDX header of {what} is {header_len} bytes"),
        });
    }
    Ok((1..=ndims).map(|i| word(i) as usize).collect())
}

/// The `len` data bytes after a header of `offset` bytes; exactly that many.
fn body<'a>(
    bytes: &'a [u8],
    offset: usize,
    len: usize,
    path: &Path,
    detail: &str,
) -> Result<&'a [u8], DataError> {
    let expected = offset + len;
    if bytes.len() < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: expected as u64,
            actual: bytes.len() as u64,
            detail: format!("{detail}; sizes after gunzip if gzipped"),
        });
    }
    if bytes.len() > expected {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            message: format!(
                "{} bytes after the end of the data ({detail}, {expected} bytes in all); \
                 the header does not match the file",
                bytes.len() - expected
            ),
        });
    }
    Ok(&bytes[offset..])
}

/// The path of `name` in `dir`, raw or with `.gz`, whichever exists (the first of
/// `names` in order); if neither does, a `Missing` error for the first with `fix`.
fn find(dir: &Path, names: [String; 2], fix: &str) -> Result<PathBuf, DataError> {
    for name in &names {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(DataError::Missing {
        path: dir.join(&names[0]),
        fix: fix.to_string(),
    })
}

/// One images file and its labels file, checked against each other.
fn read_pair(images: &Path, labels: &Path) -> Result<(Images, Vec<u8>), DataError> {
    let imgs = read_images(images)?;
    let labs = read_labels(labels)?;
    if imgs.count != labs.len() {
        return Err(DataError::CountMismatch {
            images_path: images.to_path_buf(),
            images: imgs.count,
            labels_path: labels.to_path_buf(),
            labels: labs.len(),
        });
    }
    Ok((imgs, labs))
}

/// The first label `>= classes`, as an error naming `path`.
pub(super) fn check_labels(labels: &[u8], classes: usize, path: &Path) -> Result<(), DataError> {
    match labels.iter().position(|&l| l as usize >= classes) {
        None => Ok(()),
        Some(index) => Err(DataError::LabelOutOfRange {
            path: path.to_path_buf(),
            value: labels[index],
            index,
            classes,
        }),
    }
}

/// The class count of labels that declare none: the largest label + 1, provided every
/// class below it has a training image (else a stray label, say 255 in a 10-class set,
/// would silently make 256 classes).
fn inferred_classes(labels: &[u8], path: &Path) -> Result<usize, DataError> {
    let Some(&max) = labels.iter().max() else {
        return Ok(0);
    };
    let mut seen = [false; 256];
    for &l in labels {
        seen[l as usize] = true;
    }
    if let Some(class) = (0..=max as usize).find(|&c| !seen[c]) {
        return Err(DataError::MissingClass {
            path: path.to_path_buf(),
            max,
            index: labels.iter().position(|&l| l == max).unwrap_or(0),
            class,
        });
    }
    Ok(max as usize + 1)
}

/// How to look for the four files of a directory.
pub(super) struct Layout<'a> {
    /// Number of classes, or `None` to take it from the training labels.
    pub classes: Option<usize>,
    /// Look for `NAME.gz` before `NAME` (and name it in a `Missing` error).
    pub gz_first: bool,
    /// The fix a `Missing` error gives.
    pub fix: &'a str,
}

/// Loads the four MNIST-layout files of `dir`: training and test images and labels.
pub(super) fn load_dir(dir: &Path, layout: &Layout<'_>) -> Result<Loaded, DataError> {
    let find = |base: &str| {
        let (raw, gz) = (base.to_string(), format!("{base}.gz"));
        let names = if layout.gz_first {
            [gz, raw]
        } else {
            [raw, gz]
        };
        find(dir, names, layout.fix)
    };
    let paths = [
        find(TRAIN_IMAGES)?,
        find(TRAIN_LABELS)?,
        find(TEST_IMAGES)?,
        find(TEST_LABELS)?,
    ];
    let [train_images_path, train_labels_path, test_images_path, test_labels_path] = &paths;
    let (train_images, train_labels) = read_pair(train_images_path, train_labels_path)?;
    let (test_images, test_labels) = read_pair(test_images_path, test_labels_path)?;
    if (train_images.height, train_images.width) != (test_images.height, test_images.width) {
        return Err(DataError::SizeMismatch {
            train_path: train_images_path.clone(),
            train_shape: format!("1x{}x{}", train_images.height, train_images.width),
            test_path: test_images_path.clone(),
            test_shape: format!("1x{}x{}", test_images.height, test_images.width),
        });
    }
    let classes = match layout.classes {
        Some(c) => c,
        None => inferred_classes(&train_labels, train_labels_path)?,
    };
    check_labels(&train_labels, classes, train_labels_path)?;
    check_labels(&test_labels, classes, test_labels_path)?;
    let spec = Spec {
        name: "idx".to_string(),
        channels: 1,
        height: train_images.height,
        width: train_images.width,
        classes,
    };
    let split = |images: Images, labels: Vec<u8>| Split {
        images: images.pixels,
        labels,
        channels: 1,
        height: spec.height,
        width: spec.width,
        classes,
    };
    Ok(Loaded {
        train: split(train_images, train_labels),
        test: Some(split(test_images, test_labels)),
        spec,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::file::tests::{gzip, temp_dir};

    /// An IDX images file of `count` images of `h`x`w`; pixel = (image*7 + offset) mod 256.
    pub(crate) fn idx_images(count: usize, h: usize, w: usize) -> Vec<u8> {
        let mut b = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [count, h, w] {
            b.extend_from_slice(&(d as u32).to_be_bytes());
        }
        for i in 0..count {
            b.extend((0..h * w).map(|j| ((i * 7 + j) % 256) as u8));
        }
        b
    }

    /// An IDX labels file.
    pub(crate) fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut b = LABELS_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        b.extend_from_slice(labels);
        b
    }

    /// Writes an MNIST-layout directory: `n_train` and `n_test` images of `h`x`w`,
    /// label `i % classes`; the training files gzipped, the test files raw.
    pub(crate) fn write_idx_dir(
        tag: &str,
        n_train: usize,
        n_test: usize,
        h: usize,
        w: usize,
        classes: u8,
    ) -> PathBuf {
        let dir = temp_dir(tag);
        let labels = |n: usize| {
            (0..n)
                .map(|i| (i % classes as usize) as u8)
                .collect::<Vec<_>>()
        };
        let put = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
        put(
            "train-images-idx3-ubyte.gz",
            gzip(&idx_images(n_train, h, w)),
        );
        put(
            "train-labels-idx1-ubyte.gz",
            gzip(&idx_labels(&labels(n_train))),
        );
        put(TEST_IMAGES, idx_images(n_test, h, w));
        put(TEST_LABELS, idx_labels(&labels(n_test)));
        dir
    }

    fn layout() -> Layout<'static> {
        Layout {
            classes: None,
            gz_first: false,
            fix: "put the files there",
        }
    }

    #[test]
    fn reads_back_raw_and_gzipped_files() {
        let dir = write_idx_dir("idx-ok", 30, 12, 5, 4, 3);
        let loaded = load_dir(&dir, &layout()).unwrap();
        assert_eq!(
            loaded.spec,
            Spec {
                name: "idx".into(),
                channels: 1,
                height: 5,
                width: 4,
                classes: 3
            }
        );
        let test = loaded.test.unwrap();
        assert_eq!((loaded.train.len(), test.len()), (30, 12));
        assert_eq!(loaded.train.images.len(), 30 * 20);
        // Image 2 of the (gzipped) training file: pixels (14 + j) mod 256.
        assert_eq!(
            loaded.train.image(2),
            (14..34).map(|p| p as u8).collect::<Vec<_>>()
        );
        assert_eq!(test.image(11)[0], 77);
        assert_eq!(loaded.train.labels[..4], [0, 1, 2, 0]);
        assert_eq!(test.class_counts(), vec![4, 4, 4]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parse_errors_name_the_file_and_the_numbers() {
        let p = Path::new("/d/train-images-idx3-ubyte");
        let good = idx_images(3, 2, 2);

        let err = parse_images(&good[..good.len() - 1], p).unwrap_err();
        let DataError::Truncated {
            expected, actual, ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!((expected, actual), (28, 27));
        let msg = parse_images(&good[..good.len() - 1], p)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("train-images-idx3-ubyte") && msg.contains("28") && msg.contains("27"),
            "{msg}"
        );

        let err = parse_images(&good[..10], p).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 16,
                    actual: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(matches!(
            parse_images(&[0, 0], p),
            Err(DataError::Truncated { .. })
        ));

        let mut extra = good.clone();
        extra.push(0);
        let err = parse_images(&extra, p).unwrap_err();
        assert!(matches!(err, DataError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("1 bytes after"), "{err}");

        // A labels file where images are expected.
        let err = parse_images(&idx_labels(&[1, 2]), p).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                DataError::BadMagic {
                    found: 0x801,
                    expected: 0x803,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            msg.contains("0x00000801") && msg.contains("0x00000803") && msg.contains("idx3"),
            "{msg}"
        );
        let err = parse_labels(&good, Path::new("l")).unwrap_err();
        assert!(matches!(
            err,
            DataError::BadMagic {
                found: 0x803,
                expected: 0x801,
                ..
            }
        ));

        let mut empty = idx_images(0, 0, 5);
        let err = parse_images(&empty, p).unwrap_err();
        assert!(err.to_string().contains("0 images of 0x5"), "{err}");
        // 2^32-1 images of (2^32-1)^2 pixels overflow: malformed, no huge allocation.
        empty[4..16].fill(0xff);
        let err = parse_images(&empty, p).unwrap_err();
        assert!(matches!(err, DataError::Malformed { .. }), "{err:?}");
        empty[8..16].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        let err = parse_images(&empty, p).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 4294967311,
                    actual: 16,
                    ..
                }
            ),
            "{err:?}"
        );

        assert_eq!(
            parse_labels(&idx_labels(&[4, 5, 6]), p).unwrap(),
            vec![4, 5, 6]
        );
    }

    #[test]
    fn directory_errors() {
        // Missing file: named, with the fix.
        let dir = write_idx_dir("idx-missing", 10, 5, 3, 3, 2);
        std::fs::remove_file(dir.join(TEST_LABELS)).unwrap();
        let msg = load_dir(&dir, &layout()).unwrap_err().to_string();
        assert!(
            msg.contains(&dir.join(TEST_LABELS).display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("put the files there"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();

        // Count mismatch.
        let dir = write_idx_dir("idx-count", 10, 5, 3, 3, 2);
        std::fs::write(dir.join(TEST_LABELS), idx_labels(&[0, 1, 0])).unwrap();
        let err = load_dir(&dir, &layout()).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    images: 5,
                    labels: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(TEST_IMAGES) && err.to_string().contains(TEST_LABELS));
        std::fs::remove_dir_all(&dir).unwrap();

        // Train 3x3, test 3x4.
        let dir = write_idx_dir("idx-size", 10, 5, 3, 3, 2);
        std::fs::write(dir.join(TEST_IMAGES), idx_images(5, 3, 4)).unwrap();
        let msg = load_dir(&dir, &layout()).unwrap_err().to_string();
        assert!(
            msg.contains("1x3x3") && msg.contains("1x3x4") && msg.contains(TEST_IMAGES),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        // A stray training label (255 in a 2-class set) does not make 256 classes.
        let dir = write_idx_dir("idx-stray", 10, 5, 3, 3, 2);
        std::fs::write(
            dir.join("train-labels-idx1-ubyte.gz"),
            gzip(&idx_labels(&[0, 1, 0, 1, 0, 1, 255, 1, 0, 1])),
        )
        .unwrap();
        let err = load_dir(&dir, &layout()).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::MissingClass {
                    max: 255,
                    index: 6,
                    class: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("train-labels-idx1-ubyte.gz") && msg.contains("256 classes"),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        // A test label the training set does not have (classes inferred as 2).
        let dir = write_idx_dir("idx-label", 10, 5, 3, 3, 2);
        std::fs::write(dir.join(TEST_LABELS), idx_labels(&[0, 1, 0, 2, 1])).unwrap();
        let err = load_dir(&dir, &layout()).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::LabelOutOfRange {
                    value: 2,
                    index: 3,
                    classes: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(TEST_LABELS), "{err}");
        // With a fixed class count the training labels are checked too.
        let fixed = Layout {
            classes: Some(1),
            ..layout()
        };
        let err = load_dir(&dir, &fixed).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::LabelOutOfRange {
                    value: 1,
                    index: 1,
                    classes: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("train-labels-idx1-ubyte.gz"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
