//! CIFAR-10 binary batches (`cifar-10-binary.tar.gz` extracted): `data_batch_1.bin`
//! .. `data_batch_5.bin` for training and `test_batch.bin` for test. Each record is
//! one label byte followed by 3,072 pixel bytes, 32x32 red, then green, then blue
//! (CHW, as the tensors want it).

use std::path::{Path, PathBuf};

use super::idx::check_labels;
use super::{file, DataError, Loaded, Spec, Split};

/// Channels, height and width of a CIFAR-10 image.
pub const SHAPE: (usize, usize, usize) = (3, 32, 32);
/// Number of classes.
pub const CLASSES: usize = 10;
/// Bytes per record: the label, then the pixels.
pub const RECORD_LEN: usize = 1 + SHAPE.0 * SHAPE.1 * SHAPE.2;
/// Training batch files, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// Test batch file.
pub const TEST_FILE: &str = "test_batch.bin";
/// The directory the official archive extracts to, looked in when `DIR` itself
/// holds no batches.
pub const ARCHIVE_DIR: &str = "cifar-10-batches-bin";

const FIX: &str = "cifar10:DIR needs the CIFAR-10 binary version (cifar-10-binary.tar.gz) \
                   extracted: DIR (or DIR/cifar-10-batches-bin) must hold data_batch_1.bin .. \
                   data_batch_5.bin and test_batch.bin";

/// Reads one batch file (raw or gzipped) and appends its records to `split`.
pub fn read_batch(path: &Path, split: &mut Split) -> Result<(), DataError> {
    let bytes = file::read(path).map_err(|e| match e {
        DataError::Missing { path, .. } => DataError::Missing {
            path,
            fix: FIX.to_string(),
        },
        other => other,
    })?;
    parse_batch(&bytes, path, split)
}

/// [`read_batch`] from the bytes of a batch file (`path` names it in errors).
pub fn parse_batch(bytes: &[u8], path: &Path, split: &mut Split) -> Result<(), DataError> {
    if bytes.len() % RECORD_LEN != 0 || bytes.is_empty() {
        let records = bytes.len().div_ceil(RECORD_LEN).max(1);
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: (records * RECORD_LEN) as u64,
            actual: bytes.len() as u64,
            detail: format!("{records} records of {RECORD_LEN} bytes (1 label + 3x32x32 pixels)"),
        });
    }
    let first = split.len();
    for record in bytes.chunks_exact(RECORD_LEN) {
        split.labels.push(record[0]);
        split.images.extend_from_slice(&record[1..]);
    }
    // Index within this file, so the message points at the record.
    check_labels(&split.labels[first..], CLASSES, path)
}

/// Loads the six batches from `dir`, or from `dir/cifar-10-batches-bin` when
/// `dir` has no `data_batch_1.bin` but that subdirectory does.
pub(super) fn load_dir(dir: &Path) -> Result<Loaded, DataError> {
    let dir: PathBuf = {
        let nested = dir.join(ARCHIVE_DIR);
        if !dir.join(TRAIN_FILES[0]).exists() && nested.join(TRAIN_FILES[0]).exists() {
            nested
        } else {
            dir.to_path_buf()
        }
    };
    let empty = || Split {
        images: Vec::new(),
        labels: Vec::new(),
        channels: SHAPE.0,
        height: SHAPE.1,
        width: SHAPE.2,
        classes: CLASSES,
    };
    let mut train = empty();
    for name in TRAIN_FILES {
        read_batch(&dir.join(name), &mut train)?;
    }
    let mut test = empty();
    read_batch(&dir.join(TEST_FILE), &mut test)?;
    Ok(Loaded {
        spec: Spec {
            name: "cifar10".to_string(),
            channels: SHAPE.0,
            height: SHAPE.1,
            width: SHAPE.2,
            classes: CLASSES,
        },
        train,
        test: Some(test),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::file::tests::temp_dir;

    /// `n` records; record `i` of batch `b` has label `(i + b) % 10` and pixel
    /// `j` equal to `(i * 3 + b * 11 + j) % 256`.
    pub(crate) fn batch_bytes(b: usize, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n * RECORD_LEN);
        for i in 0..n {
            out.push(((i + b) % 10) as u8);
            out.extend((0..RECORD_LEN - 1).map(|j| ((i * 3 + b * 11 + j) % 256) as u8));
        }
        out
    }

    /// A CIFAR-10 directory with `n` records per training batch and `n_test` test records.
    pub(crate) fn write_cifar_dir(tag: &str, n: usize, n_test: usize) -> PathBuf {
        let dir = temp_dir(tag);
        for (b, name) in TRAIN_FILES.iter().enumerate() {
            std::fs::write(dir.join(name), batch_bytes(b, n)).unwrap();
        }
        std::fs::write(dir.join(TEST_FILE), batch_bytes(7, n_test)).unwrap();
        dir
    }

    #[test]
    fn reads_back_all_batches_in_order() {
        let dir = write_cifar_dir("cifar-ok", 4, 3);
        let loaded = load_dir(&dir).unwrap();
        assert_eq!(
            (loaded.spec.channels, loaded.spec.height, loaded.spec.width),
            (3, 32, 32)
        );
        assert_eq!(loaded.train.len(), 20);
        assert_eq!(loaded.train.image_len(), 3072);
        // Record 1 of batch 2 is image 4 * 2 + 1.
        let img = loaded.train.image(9);
        assert_eq!(loaded.train.labels[9], 3);
        assert_eq!(img[0], (3 + 22) as u8);
        assert_eq!(
            img[1024],
            ((3 + 22 + 1024) % 256) as u8,
            "green plane starts at 1024"
        );
        let test = loaded.test.unwrap();
        assert_eq!(test.len(), 3);
        assert_eq!(test.labels, vec![7, 8, 9]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_the_archive_subdirectory() {
        let top = temp_dir("cifar-nested");
        let inner = write_cifar_dir("cifar-inner", 1, 1);
        std::fs::rename(&inner, top.join(ARCHIVE_DIR)).unwrap();
        assert_eq!(load_dir(&top).unwrap().train.len(), 5);
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn errors_name_the_batch() {
        let dir = write_cifar_dir("cifar-bad", 2, 2);
        let third = dir.join(TRAIN_FILES[2]);

        let mut cut = batch_bytes(2, 2);
        cut.truncate(RECORD_LEN + 100);
        std::fs::write(&third, &cut).unwrap();
        let err = load_dir(&dir).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 6146,
                    actual: 3173,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("data_batch_3.bin"), "{err}");

        let mut bad = batch_bytes(2, 2);
        bad[RECORD_LEN] = 10;
        std::fs::write(&third, &bad).unwrap();
        let err = load_dir(&dir).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::LabelOutOfRange {
                    value: 10,
                    index: 1,
                    classes: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("data_batch_3.bin"), "{err}");

        std::fs::remove_file(dir.join(TEST_FILE)).unwrap();
        std::fs::write(&third, batch_bytes(2, 2)).unwrap();
        let msg = load_dir(&dir).unwrap_err().to_string();
        assert!(
            msg.contains("test_batch.bin") && msg.contains("cifar-10-binary.tar.gz"),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
