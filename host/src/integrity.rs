//! Checksums of each tensor's bytes, kept in a safetensors file's metadata, so a
//! damaged checkpoint or model is refused instead of silently giving other numbers.
//!
//! The metadata field `spikenas.fnv1a64` lists `name=hex` pairs (FNV-1a 64 of the
//! tensor's little-endian bytes), sorted by name and separated by commas. Files written
//! before the field existed have none and load unchecked.

use std::collections::BTreeMap;

use safetensors::tensor::SafeTensors;

/// The metadata field (without the `spikenas.` prefix) that holds the checksums.
pub const FIELD: &str = "fnv1a64";

/// FNV-1a, 64 bits (the well-known offset basis and prime).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The value of the checksum field for these `(name, bytes)` tensors.
pub fn encode<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let sums: BTreeMap<&str, u64> = tensors
        .into_iter()
        .map(|(name, bytes)| (name, fnv1a64(bytes)))
        .collect();
    sums.iter()
        .map(|(name, h)| format!("{name}={h:016x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A float32 tensor as `(name, shape, values)`.
pub type NamedF32 = (String, Vec<usize>, Vec<f32>);

/// A safetensors file of float32 tensors `(name, shape, values)` with `meta` and the
/// checksum field (`spikenas.fnv1a64`) added.
pub fn serialize_f32(
    tensors: &[NamedF32],
    mut meta: std::collections::HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), data) in tensors.iter().zip(&bytes) {
        views.push((
            name.clone(),
            safetensors::tensor::TensorView::new(
                safetensors::tensor::Dtype::F32,
                shape.clone(),
                data,
            )?,
        ));
    }
    meta.insert(
        format!("spikenas.{FIELD}"),
        encode(
            tensors
                .iter()
                .zip(&bytes)
                .map(|((n, _, _), b)| (n.as_str(), b.as_slice())),
        ),
    );
    safetensors::tensor::serialize(views, Some(meta)).map(|b| canonical_header(&b))
}

/// The same safetensors bytes with the header's keys sorted, so that equal tensors and
/// metadata give equal files (safetensors writes its metadata map in hash order). Bytes
/// it cannot read come back unchanged.
pub fn canonical_header(bytes: &[u8]) -> Vec<u8> {
    let Some(n) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= bytes.len() - 8)
    else {
        return bytes.to_vec();
    };
    let Ok(header) =
        serde_json::from_slice::<BTreeMap<String, serde_json::Value>>(&bytes[8..8 + n])
    else {
        return bytes.to_vec();
    };
    let mut text = serde_json::to_string(&header).expect("JSON values serialise");
    // Keys of nested objects (the metadata) sorted too.
    if let Some(serde_json::Value::Object(meta)) = header.get("__metadata__") {
        let sorted: BTreeMap<&String, &serde_json::Value> = meta.iter().collect();
        let mut top = header.clone();
        top.remove("__metadata__");
        let mut parts = vec![format!(
            "\"__metadata__\":{}",
            serde_json::to_string(&sorted).expect("JSON values serialise")
        )];
        for (k, v) in &top {
            parts.push(format!(
                "{}:{}",
                serde_json::to_string(k).expect("a string serialises"),
                serde_json::to_string(v).expect("JSON values serialise")
            ));
        }
        text = format!("{{{}}}", parts.join(","));
    }
    // safetensors pads the header with spaces to a multiple of 8 bytes.
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// What disagrees with the recorded checksums.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    /// The field itself cannot be read.
    #[error("metadata `spikenas.{FIELD}` is unreadable near `{0}`")]
    Unreadable(String),
    /// A tensor with a checksum is not in the file.
    #[error("tensor `{0}` has a checksum but is missing")]
    Missing(String),
    /// A tensor in the file has no checksum.
    #[error("tensor `{0}` has no checksum")]
    Unlisted(String),
    /// A tensor's bytes differ from what was written.
    #[error("tensor `{tensor}` does not match its checksum (fnv1a64 {actual:016x}, recorded {recorded:016x})")]
    Differs {
        /// Tensor name.
        tensor: String,
        /// The checksum in the metadata.
        recorded: u64,
        /// The checksum of the bytes in the file.
        actual: u64,
    },
}

/// Checks every tensor of `st` against `recorded` (the checksum field's value).
pub fn verify(recorded: &str, st: &SafeTensors<'_>) -> Result<(), ChecksumError> {
    let mut sums = BTreeMap::new();
    for pair in recorded.split(',').filter(|p| !p.is_empty()) {
        let (name, hex) = pair
            .split_once('=')
            .ok_or_else(|| ChecksumError::Unreadable(pair.to_string()))?;
        let h = u64::from_str_radix(hex, 16)
            .map_err(|_| ChecksumError::Unreadable(pair.to_string()))?;
        sums.insert(name, h);
    }
    let mut names = st.names();
    names.sort();
    for name in &names {
        if !sums.contains_key(*name) {
            return Err(ChecksumError::Unlisted(name.to_string()));
        }
    }
    for (name, &recorded) in &sums {
        let view = st
            .tensor(name)
            .map_err(|_| ChecksumError::Missing(name.to_string()))?;
        let actual = fnv1a64(view.data());
        if actual != recorded {
            return Err(ChecksumError::Differs {
                tensor: name.to_string(),
                recorded,
                actual,
            });
        }
    }
    Ok(())
}

/// Test helpers shared by the checkpoint and model tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::HashMap;

    use safetensors::tensor::{SafeTensors, TensorView};

    /// Flips `n` bytes in the middle of the data section (after the header).
    pub(crate) fn flip_middle(bytes: &mut [u8], n: usize) {
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let data = 8 + header;
        let start = data + (bytes.len() - data) / 2 - n / 2;
        for b in &mut bytes[start..start + n] {
            *b ^= 0xa5;
        }
    }

    /// The same file with metadata `key` set to `value` (checksums untouched).
    pub(crate) fn set_meta(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
        let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
        let mut meta: HashMap<String, String> = header.metadata().clone().unwrap();
        meta.insert(key.to_string(), value.to_string());
        let st = SafeTensors::deserialize(bytes).unwrap();
        safetensors::tensor::serialize(st.tensors(), Some(meta)).unwrap()
    }

    /// The same file without the checksum field, as written before it existed.
    pub(crate) fn strip_checksums(bytes: &[u8]) -> Vec<u8> {
        let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
        let mut meta: HashMap<String, String> = header.metadata().clone().unwrap();
        assert!(meta.remove(&format!("spikenas.{}", super::FIELD)).is_some());
        let st = SafeTensors::deserialize(bytes).unwrap();
        let views: Vec<(String, TensorView<'_>)> = st.tensors();
        safetensors::tensor::serialize(views, Some(meta)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_contents_give_equal_files() {
        let tensors = vec![("b".to_string(), vec![2], vec![1.0f32, 2.0])];
        let meta = |keys: &[&str]| -> std::collections::HashMap<String, String> {
            keys.iter()
                .map(|k| (k.to_string(), format!("v{k}")))
                .collect()
        };
        let first = serialize_f32(&tensors, meta(&["z", "a", "m", "q", "c"])).unwrap();
        for _ in 0..8 {
            let again = serialize_f32(&tensors, meta(&["c", "q", "m", "a", "z"])).unwrap();
            assert_eq!(again, first);
        }
        let st = SafeTensors::deserialize(&first).unwrap();
        assert_eq!(st.tensor("b").unwrap().data().len(), 8);
        let (_, header) = SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(header.metadata().as_ref().unwrap()["a"], "va");
        assert_eq!(canonical_header(b"short"), b"short");
    }

    #[test]
    fn fnv1a64_known_values() {
        // Published test vectors of FNV-1a 64.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn encode_is_sorted_and_readable() {
        let s = encode([("b", &b"x"[..]), ("a", &b""[..])]);
        assert_eq!(s, "a=cbf29ce484222325,b=af63f54c86021707");
    }
}
