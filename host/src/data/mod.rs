//! Datasets: reading them ([`Source`]), splitting them reproducibly into train /
//! validation / test ([`load`]), and handing batches to candle ([`Split::batch`]).
//!
//! Images are kept as raw `u8` pixels, CHW per image. The tensor form is
//! `pixel / 255` with no mean subtraction, because the firmware feeds the raw
//! pixels into its first layer and the two must agree.

pub mod cifar;
pub mod csv;
mod error;
pub mod file;
pub mod idx;
pub mod partition;
mod source;
mod split;

pub use error::DataError;
pub use source::{Source, FASHION_MNIST_DIR};
pub use split::{Augment, Split};

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// What the images of a dataset look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// The source's string form: `fashion-mnist`, `digits`, `idx:DIR`, `cifar10:DIR`.
    pub name: String,
    /// Channels per image.
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes; labels are `0..classes`.
    pub classes: usize,
}

impl Spec {
    /// Bytes (pixels) per image, `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// A dataset split three ways. The three splits are disjoint.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Image shape and class count.
    pub spec: Spec,
    /// For training.
    pub train: Split,
    /// Held out from the training set, for model selection.
    pub val: Split,
    /// The official test set (for `digits`, a seeded 20% of the set).
    pub test: Split,
}

/// The network's input shape for a dataset (its image shape and class count).
pub fn input_shape(data: &Dataset) -> crate::arch::InputShape {
    crate::arch::InputShape {
        channels: data.spec.channels,
        height: data.spec.height,
        width: data.spec.width,
        classes: data.spec.classes,
    }
}

/// How [`load`] splits and subsamples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadOptions {
    /// Seed of every shuffle; the same seed gives identical splits.
    pub seed: u64,
    /// Fraction of the training pool held out as validation, in `[0, 1)`.
    pub val_fraction: f32,
    /// At most this many images in train + validation together (a stratified,
    /// seeded subsample of the training pool, taken before the validation carve).
    pub max_train: Option<usize>,
    /// At most this many test images (a stratified, seeded subsample).
    pub max_test: Option<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            seed: 0,
            val_fraction: DEFAULT_VAL_FRACTION,
            max_train: None,
            max_test: None,
        }
    }
}

/// Default [`LoadOptions::val_fraction`].
pub const DEFAULT_VAL_FRACTION: f32 = 0.1;
/// Fraction of `digits` used as its test set (it has no official one).
pub const DIGITS_TEST_FRACTION: f64 = 0.2;

/// What a reader returns: the training pool and, where the source has one, the
/// official test set.
#[derive(Debug)]
struct Loaded {
    spec: Spec,
    train: Split,
    test: Option<Split>,
}

/// Reads `source` and splits it into train / validation / test as `opts` says.
///
/// In order, each step with its own generator forked from `Rng::new(opts.seed)`:
/// (1) for `digits`, a stratified 20% becomes the test set; (2) `max_test`
/// subsamples the test set; (3) `max_train` subsamples the training pool;
/// (4) a stratified `val_fraction` of the pool (rounded) becomes validation.
/// Every split keeps its images in source order.
pub fn load(source: &Source, opts: &LoadOptions) -> Result<Dataset, DataError> {
    check_options(opts)?;
    let loaded = read(source)?;
    let mut rng = Rng::new(opts.seed);
    let mut test_rng = rng.fork(1);
    let mut max_test_rng = rng.fork(2);
    let mut max_train_rng = rng.fork(3);
    let mut val_rng = rng.fork(4);

    let (mut pool, mut test) = match loaded.test {
        Some(test) => (loaded.train, test),
        None => {
            let n_test = (loaded.train.len() as f64 * DIGITS_TEST_FRACTION).round() as usize;
            let (test, pool) = partition::carve(&loaded.train, n_test, &mut test_rng);
            (pool, test)
        }
    };
    if let Some(max) = opts.max_test {
        if max < test.len() {
            test = partition::carve(&test, max, &mut max_test_rng).0;
        }
    }
    if let Some(max) = opts.max_train {
        if max < pool.len() {
            pool = partition::carve(&pool, max, &mut max_train_rng).0;
        }
    }
    let n_val = (pool.len() as f64 * opts.val_fraction as f64).round() as usize;
    let (val, train) = partition::carve(&pool, n_val, &mut val_rng);
    if train.is_empty() {
        return Err(DataError::InvalidOption {
            field: "max_train",
            value: format!("{:?}", opts.max_train),
            reason: format!(
                "{source} leaves no training images ({} in the pool, {} held out for \
                 validation); allow more training images or lower val_fraction",
                pool.len(),
                val.len()
            ),
        });
    }
    Ok(Dataset {
        spec: loaded.spec,
        train,
        val,
        test,
    })
}

fn check_options(opts: &LoadOptions) -> Result<(), DataError> {
    if !(opts.val_fraction.is_finite() && (0.0..1.0).contains(&opts.val_fraction)) {
        return Err(DataError::InvalidOption {
            field: "val_fraction",
            value: opts.val_fraction.to_string(),
            reason: "must be at least 0 and below 1 (0.1 holds out 10% of the training set)"
                .to_string(),
        });
    }
    Ok(())
}

/// Reads a source whole, unsplit.
fn read(source: &Source) -> Result<Loaded, DataError> {
    let mut loaded = match source {
        Source::FashionMnist => idx::load_dir(
            std::path::Path::new(FASHION_MNIST_DIR),
            &idx::Layout {
                classes: Some(10),
                gz_first: true,
                fix: "run scripts/setup, which installs the Debian package dataset-fashion-mnist",
            },
        ),
        Source::Digits => csv::load_digits(),
        Source::Idx(dir) => idx::load_dir(
            dir,
            &idx::Layout {
                classes: None,
                gz_first: false,
                fix: "idx:DIR needs train-images-idx3-ubyte, train-labels-idx1-ubyte, \
                      t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte in DIR, each raw or \
                      gzipped (optionally named NAME.gz)",
            },
        ),
        Source::Cifar10(dir) => cifar::load_dir(dir),
    }?;
    loaded.spec.name = source.to_string();
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn opts(seed: u64) -> LoadOptions {
        LoadOptions {
            seed,
            ..LoadOptions::default()
        }
    }

    fn disjoint_cover(ds: &Dataset, total: usize) {
        assert_eq!(ds.train.len() + ds.val.len() + ds.test.len(), total);
        let mut all: Vec<&[u8]> = Vec::new();
        for s in [&ds.train, &ds.val, &ds.test] {
            all.extend((0..s.len()).map(|i| s.image(i)));
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "an image appears in two splits");
    }

    #[test]
    fn digits_split_is_deterministic_stratified_and_disjoint() {
        let a = load(&Source::Digits, &opts(42)).unwrap();
        assert_eq!(a.spec.name, "digits");
        assert_eq!(
            (a.spec.channels, a.spec.height, a.spec.width, a.spec.classes),
            (1, 8, 8, 10)
        );
        // 1797 -> test round(359.4) = 359; pool 1438 -> val round(143.8) = 144.
        assert_eq!((a.train.len(), a.val.len(), a.test.len()), (1294, 144, 359));
        for (s, frac) in [(&a.test, 0.2), (&a.val, 0.08), (&a.train, 0.72)] {
            for (c, &n) in s.class_counts().iter().enumerate() {
                let whole = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180][c] as f64;
                assert!(
                    (n as f64 - whole * frac).abs() <= 2.0,
                    "class {c}: {n} vs {whole}*{frac}"
                );
            }
        }
        // No two digits images are identical, so content tells the splits apart.
        disjoint_cover(&a, 1797);
        let b = load(&Source::Digits, &opts(42)).unwrap();
        assert_eq!(
            (a.train.clone(), a.val.clone(), a.test.clone()),
            (b.train, b.val, b.test)
        );
        let c = load(&Source::Digits, &opts(43)).unwrap();
        assert_ne!(a.test.images, c.test.images);
        assert_ne!(a.val.images, c.val.images);
    }

    #[test]
    fn idx_source_splits_and_subsamples() {
        // Images differ in their first bytes (i * 7 mod 256 for i < 37 is unique).
        let dir = idx::tests::write_idx_dir("load-idx", 36, 20, 4, 4, 3);
        let source: Source = format!("idx:{}", dir.display()).parse().unwrap();
        let ds = load(&source, &opts(1)).unwrap();
        assert_eq!(ds.spec.name, source.to_string());
        assert_eq!((ds.train.len(), ds.val.len(), ds.test.len()), (32, 4, 20));
        assert_eq!(ds.val.class_counts().iter().sum::<usize>(), 4);
        disjoint_cover_train_val(&ds);

        let small = LoadOptions {
            seed: 1,
            val_fraction: 0.25,
            max_train: Some(12),
            max_test: Some(6),
        };
        let ds = load(&source, &small).unwrap();
        assert_eq!((ds.train.len(), ds.val.len(), ds.test.len()), (9, 3, 6));
        assert_eq!(ds.test.class_counts(), vec![2, 2, 2]);
        assert_eq!(ds.val.class_counts(), vec![1, 1, 1]);
        assert_eq!(ds.train.class_counts(), vec![3, 3, 3]);
        assert_eq!(load(&source, &small).unwrap().train, ds.train);

        let none_left = LoadOptions {
            max_train: Some(1),
            val_fraction: 0.6,
            ..small.clone()
        };
        let msg = load(&source, &none_left).unwrap_err().to_string();
        assert!(msg.contains("no training images"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn disjoint_cover_train_val(ds: &Dataset) {
        let mut firsts: Vec<u8> = ds
            .train
            .images
            .chunks(16)
            .chain(ds.val.images.chunks(16))
            .map(|c| c[0])
            .collect();
        let n = firsts.len();
        firsts.sort_unstable();
        firsts.dedup();
        assert_eq!(firsts.len(), n, "train and val overlap");
    }

    #[test]
    fn cifar_source_loads() {
        let dir = cifar::tests::write_cifar_dir("load-cifar", 6, 5);
        let ds = load(&Source::Cifar10(dir.clone()), &opts(3)).unwrap();
        assert_eq!(ds.spec.name, format!("cifar10:{}", dir.display()));
        assert_eq!((ds.train.len(), ds.val.len(), ds.test.len()), (27, 3, 5));
        let (x, y) = ds.test.batch(&[0, 4], &candle_core::Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[2, 3, 32, 32]);
        assert_eq!(y.to_vec1::<u32>().unwrap(), vec![7, 1]);
        disjoint_cover(&ds, 35);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_val_fraction_is_rejected() {
        for bad in [1.0f32, -0.1, f32::NAN] {
            let o = LoadOptions {
                val_fraction: bad,
                ..LoadOptions::default()
            };
            let err = load(&Source::Digits, &o).unwrap_err();
            assert!(err.to_string().contains("val_fraction"), "{err}");
        }
        let zero = LoadOptions {
            val_fraction: 0.0,
            ..LoadOptions::default()
        };
        assert_eq!(load(&Source::Digits, &zero).unwrap().val.len(), 0);
    }

    #[test]
    fn missing_idx_dir_names_path_and_fix() {
        let msg = load(&Source::Idx("/nonexistent/spikenas".into()), &opts(0))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/nonexistent/spikenas/train-images-idx3-ubyte"),
            "{msg}"
        );
        assert!(msg.contains("raw or"), "{msg}");
    }

    #[test]
    fn fashion_mnist_from_the_debian_package() {
        let dir = Path::new(FASHION_MNIST_DIR);
        if !dir.join("train-images-idx3-ubyte.gz").exists() {
            println!(
                "skipped: {FASHION_MNIST_DIR} absent (scripts/setup installs dataset-fashion-mnist)"
            );
            let msg = load(&Source::FashionMnist, &opts(0))
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("dataset-fashion-mnist") && msg.contains(FASHION_MNIST_DIR),
                "{msg}"
            );
            return;
        }
        let ds = load(&Source::FashionMnist, &opts(0)).unwrap();
        assert_eq!(ds.spec.name, "fashion-mnist");
        assert_eq!(
            (
                ds.spec.channels,
                ds.spec.height,
                ds.spec.width,
                ds.spec.classes
            ),
            (1, 28, 28, 10)
        );
        assert_eq!(
            (ds.train.len() + ds.val.len(), ds.test.len()),
            (60000, 10000)
        );
        assert_eq!((ds.train.len(), ds.val.len()), (54000, 6000));
        assert_eq!(ds.val.class_counts(), vec![600; 10]);
        assert_eq!(ds.test.class_counts(), vec![1000; 10]);
        assert_eq!(ds.train.images.len(), 54000 * 784);
    }
}
