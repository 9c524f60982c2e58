//! Reading a data file whole, gunzipping it when it starts with the gzip magic
//! bytes `1f 8b` (by content, not by name: `foo.gz` may be raw and `foo` gzipped).

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::DataError;

/// The first two bytes of every gzip stream.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The most bytes a data file may hold, raw or decompressed (Fashion-MNIST's largest
/// file is 47 MB, a CIFAR-10 batch 30 MB): more is refused before it fills the memory
/// (an endless `/dev/zero`, a gzip bomb).
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// The contents of `path`, decompressed if it is gzip.
pub fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing {
                path: path.to_path_buf(),
                fix: "check the path".to_string(),
            }
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    too_large(bytes.len(), path, "")?;
    decode(bytes, path)
}

fn too_large(len: usize, path: &Path, after: &'static str) -> Result<(), DataError> {
    if len as u64 > MAX_FILE_BYTES {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
            after,
        });
    }
    Ok(())
}

/// `bytes` as they are, or gunzipped if they start with [`GZIP_MAGIC`]; `path`
/// only names the origin in errors.
pub fn decode(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    // Typical image data compresses 2-5x; start there to avoid regrowing.
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(1 << 30));
    MultiGzDecoder::new(bytes.as_slice())
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|source| DataError::BadGzip {
            path: path.to_path_buf(),
            source,
        })?;
    too_large(out.len(), path, " once decompressed")?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;

    /// A fresh, empty directory under the system temp dir, unique per call.
    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("spikenas-data-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn reads_raw_and_gzip_by_content_not_name() {
        let dir = temp_dir("file");
        let payload: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        // A gzipped file without .gz, and a raw file with .gz.
        std::fs::write(dir.join("packed"), gzip(&payload)).unwrap();
        std::fs::write(dir.join("plain.gz"), &payload).unwrap();
        assert_eq!(read(&dir.join("packed")).unwrap(), payload);
        assert_eq!(read(&dir.join("plain.gz")).unwrap(), payload);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_gzip_and_missing_name_the_file() {
        let dir = temp_dir("file-bad");
        let payload = vec![7u8; 10_000];
        let packed = gzip(&payload);
        let cut = dir.join("cut.gz");
        std::fs::write(&cut, &packed[..packed.len() / 2]).unwrap();
        let err = read(&cut).unwrap_err();
        assert!(matches!(err, DataError::BadGzip { .. }), "{err:?}");
        assert!(err.to_string().contains("cut.gz"), "{err}");

        let garbage = dir.join("garbage");
        std::fs::write(&garbage, [0x1f, 0x8b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        assert!(matches!(read(&garbage), Err(DataError::BadGzip { .. })));

        let err = read(&dir.join("nope")).unwrap_err();
        assert!(matches!(err, DataError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("nope"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
