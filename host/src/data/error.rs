//! The one error type of the datasets module. Every variant names the file it is
//! about (or the option / source string) and, where there is one, the fix.

use std::path::PathBuf;

/// Why a dataset could not be read or split.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A `--data` string that is none of the accepted forms.
    #[error(
        "unknown dataset source `{value}`: expected one of `fashion-mnist`, `digits`, \
         `idx:DIR` (MNIST-layout IDX files, raw or gzipped) or `cifar10:DIR` \
         (CIFAR-10 binary batches)"
    )]
    UnknownSource {
        /// The string as given.
        value: String,
    },

    /// A file the source needs does not exist.
    #[error("{path}: not found; {fix}")]
    Missing {
        /// The file looked for (for `idx:DIR`, the raw name; `.gz` was tried too).
        path: PathBuf,
        /// What to do about it.
        fix: String,
    },

    /// The file exists but could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },

    /// The file starts with the gzip magic bytes but does not decompress.
    #[error(
        "{path}: bad gzip stream ({source}); the file is corrupt or cut short, fetch it again"
    )]
    BadGzip {
        /// The file.
        path: PathBuf,
        /// The decoder's reason.
        source: std::io::Error,
    },

    /// A file (or what it decompresses to) is larger than any dataset file.
    #[error(
        "{} is larger than {limit} bytes{after}, more than any dataset file spikenas reads. \
         Fix: check that --dataset names the dataset's folder and its files are the \
         dataset's",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The most bytes read.
        limit: u64,
        /// ` once decompressed`, or empty.
        after: &'static str,
    },
    /// Fewer bytes than the header (or record layout) requires.
    #[error("{path}: truncated: expected {expected} bytes, found {actual} ({detail})")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the layout requires (after decompression for gzip files).
        expected: u64,
        /// Bytes present (after decompression for gzip files).
        actual: u64,
        /// Where `expected` comes from.
        detail: String,
    },

    /// An IDX file whose magic number is not the one for its kind.
    #[error("{path}: bad magic number 0x{found:08x}, expected 0x{expected:08x} ({what})")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first four bytes, big-endian (after decompression).
        found: u32,
        /// The magic number of the expected kind.
        expected: u32,
        /// What the file should hold, e.g. "IDX u8 images, 3 dimensions".
        what: &'static str,
    },

    /// A label that is not a class of the dataset.
    #[error(
        "{path}: label {value} at index {index} is out of range: the dataset has \
         {classes} classes (0..={max})",
        max = .classes.saturating_sub(1)
    )]
    LabelOutOfRange {
        /// The file holding the label.
        path: PathBuf,
        /// The label found.
        value: u8,
        /// The index of the image (record, row) within the file.
        index: usize,
        /// The number of classes of the dataset.
        classes: usize,
    },

    /// Classes are taken from the largest training label, but a class below it has no
    /// training image: the labels are not `0..N-1` (a stray or corrupt label).
    #[error(
        "{path}: the largest label is {max} (image {index}), which makes {classes} \
         classes, but no training image has label {class}. Fix: labels must be 0..N-1 \
         with every class present; correct or remove the image labelled {max}",
        classes = *.max as usize + 1
    )]
    MissingClass {
        /// The training labels file.
        path: PathBuf,
        /// The largest label found.
        max: u8,
        /// The index of its first image.
        index: usize,
        /// The first class without a training image.
        class: usize,
    },

    /// An images file and its labels file disagree on the number of items.
    #[error("{images_path} holds {images} images but {labels_path} holds {labels} labels")]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// Images it holds.
        images: usize,
        /// The labels file.
        labels_path: PathBuf,
        /// Labels it holds.
        labels: usize,
    },

    /// The training and test images have different shapes.
    #[error(
        "inconsistent image sizes: {train_path} holds {train_shape} images but \
         {test_path} holds {test_shape} images"
    )]
    SizeMismatch {
        /// The training images file.
        train_path: PathBuf,
        /// Its image shape, `CxHxW`.
        train_shape: String,
        /// The test images file.
        test_path: PathBuf,
        /// Its image shape, `CxHxW`.
        test_shape: String,
    },

    /// A file whose structure is wrong in a way none of the above describes.
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the offending value and position.
        message: String,
    },

    /// A `LoadOptions` field with a value that cannot be used.
    #[error("invalid load option {field} = {value}: {reason}")]
    InvalidOption {
        /// The field name.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it cannot be used and what is accepted.
        reason: String,
    },
}
