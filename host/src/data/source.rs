//! Where a dataset comes from, as written on the command line (`--data`):
//! `fashion-mnist`, `digits`, `idx:DIR` or `cifar10:DIR`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::DataError;

/// Where Fashion-MNIST is installed by the Debian package `dataset-fashion-mnist`.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// A dataset source. Parses from and displays as the same string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// Fashion-MNIST (60,000 + 10,000 images, 1x28x28, 10 classes) from
    /// [`FASHION_MNIST_DIR`]. String form: `fashion-mnist`.
    FashionMnist,
    /// The UCI optdigits set (1,797 images, 1x8x8, 10 classes), built into the
    /// binary. String form: `digits`.
    Digits,
    /// A directory of MNIST-layout IDX files (`train-images-idx3-ubyte`, ...,
    /// each raw or gzipped). String form: `idx:DIR`.
    Idx(PathBuf),
    /// A directory of CIFAR-10 binary batches (`data_batch_1.bin` ..
    /// `data_batch_5.bin`, `test_batch.bin`). String form: `cifar10:DIR`.
    Cifar10(PathBuf),
}

impl FromStr for Source {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || DataError::UnknownSource {
            value: s.to_string(),
        };
        match s {
            "fashion-mnist" => return Ok(Source::FashionMnist),
            "digits" => return Ok(Source::Digits),
            _ => {}
        }
        if let Some(dir) = s.strip_prefix("idx:") {
            if dir.is_empty() {
                return Err(unknown());
            }
            return Ok(Source::Idx(PathBuf::from(dir)));
        }
        if let Some(dir) = s.strip_prefix("cifar10:") {
            if dir.is_empty() {
                return Err(unknown());
            }
            return Ok(Source::Cifar10(PathBuf::from(dir)));
        }
        Err(unknown())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::FashionMnist => f.write_str("fashion-mnist"),
            Source::Digits => f.write_str("digits"),
            Source::Idx(dir) => write!(f, "idx:{}", dir.display()),
            Source::Cifar10(dir) => write!(f, "cifar10:{}", dir.display()),
        }
    }
}

/// As its string form, so reports and configs read `"data": "idx:/srv/mnist"`.
impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// From its string form; an unknown form is an error listing the accepted ones.
impl<'de> serde::Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_the_same_string() {
        for s in [
            "fashion-mnist",
            "digits",
            "idx:/tmp/mnist",
            "cifar10:data/c10",
        ] {
            let source: Source = s.parse().unwrap();
            assert_eq!(source.to_string(), s);
        }
        assert_eq!(
            "idx:some/dir".parse::<Source>().unwrap(),
            Source::Idx(PathBuf::from("some/dir"))
        );
        assert_eq!(
            "cifar10:/x".parse::<Source>().unwrap(),
            Source::Cifar10(PathBuf::from("/x"))
        );
    }

    #[test]
    fn serde_uses_the_string_form() {
        let source = Source::Cifar10(PathBuf::from("c10"));
        let json = serde_json::to_string(&source).unwrap();
        assert_eq!(json, "\"cifar10:c10\"");
        assert_eq!(serde_json::from_str::<Source>(&json).unwrap(), source);
        let err = serde_json::from_str::<Source>("\"svhn\"").unwrap_err();
        assert!(err.to_string().contains("idx:DIR"), "{err}");
    }

    #[test]
    fn unknown_source_lists_the_accepted_forms() {
        for bad in ["mnist", "idx:", "cifar10:", "Digits", ""] {
            let err = bad.parse::<Source>().unwrap_err();
            assert!(matches!(err, DataError::UnknownSource { .. }), "{bad}");
            let msg = err.to_string();
            for form in ["fashion-mnist", "digits", "idx:DIR", "cifar10:DIR"] {
                assert!(msg.contains(form), "{msg}");
            }
            assert!(msg.contains(&format!("`{bad}`")), "{msg}");
        }
    }
}
