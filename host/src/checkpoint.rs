//! Float checkpoints as safetensors: every variable by name (`stem.conv.weight`, ...)
//! and the architecture, input shape, dataset, T and accuracy in the metadata, so a
//! checkpoint alone says what network it holds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::arch::Arch;
use crate::snn::lif::LifParams;
use crate::snn::{InputShape, Network};

/// Metadata key prefix.
const PREFIX: &str = "spikenas.";

/// What a checkpoint says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    /// The architecture.
    pub arch: Arch,
    /// The input it was trained on.
    pub input: InputShape,
    /// The dataset name (`--dataset` form).
    pub dataset: String,
    /// Test accuracy of the float network.
    pub accuracy: f32,
    /// Free-form extra metadata (e.g. `board`).
    pub extra: HashMap<String, String>,
}

/// Errors reading or writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Cannot read the file.
    #[error("cannot read checkpoint {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a valid safetensors file (truncated or corrupt).
    #[error("{path} is not a valid safetensors file ({source}); it may be truncated or corrupt: re-export it")]
    Format {
        /// File.
        path: PathBuf,
        /// Cause.
        source: safetensors::SafeTensorError,
    },
    /// A metadata field is missing or unreadable.
    #[error("{path}: metadata field `{field}` is {problem}; this file was not written by spikenas-host train")]
    Metadata {
        /// File.
        path: PathBuf,
        /// Field name.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The tensors do not match the architecture in the metadata.
    #[error("{path}: {problem}")]
    Mismatch {
        /// File.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The bytes of a checkpoint of `varmap` with `info` as metadata.
pub fn to_bytes(varmap: &VarMap, info: &CheckpointInfo) -> Result<Vec<u8>, CheckpointError> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in names {
        let t = data[name]
            .as_tensor()
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?;
        let bytes: Vec<u8> = t
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        owned.push((name.clone(), t.dims().to_vec(), bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, shape, bytes)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes).expect("consistent"),
            )
        })
        .collect();
    let mut meta: HashMap<String, String> = HashMap::new();
    meta.insert(format!("{PREFIX}format"), "float32-checkpoint".into());
    meta.insert(format!("{PREFIX}arch"), info.arch.to_string());
    meta.insert(
        format!("{PREFIX}input"),
        format!(
            "{}x{}x{}",
            info.input.channels, info.input.height, info.input.width
        ),
    );
    meta.insert(format!("{PREFIX}classes"), info.input.classes.to_string());
    meta.insert(
        format!("{PREFIX}timesteps"),
        info.arch.timesteps.to_string(),
    );
    meta.insert(format!("{PREFIX}dataset"), info.dataset.clone());
    meta.insert(format!("{PREFIX}accuracy"), format!("{:.6}", info.accuracy));
    for (k, v) in &info.extra {
        meta.insert(format!("{PREFIX}{k}"), v.clone());
    }
    safetensors::tensor::serialize(views, Some(meta)).map_err(|source| CheckpointError::Format {
        path: PathBuf::from("<memory>"),
        source,
    })
}

/// Save atomically.
pub fn save(path: &Path, varmap: &VarMap, info: &CheckpointInfo) -> Result<(), CheckpointError> {
    crate::output::write_atomic(path, &to_bytes(varmap, info)?)?;
    Ok(())
}

fn meta_field<'a>(
    path: &Path,
    meta: &'a HashMap<String, String>,
    field: &str,
) -> Result<&'a str, CheckpointError> {
    meta.get(&format!("{PREFIX}{field}"))
        .map(String::as_str)
        .ok_or_else(|| CheckpointError::Metadata {
            path: path.to_path_buf(),
            field: format!("{PREFIX}{field}"),
            problem: "missing".into(),
        })
}

/// Parse `CxHxW`.
pub fn parse_shape(s: &str) -> Option<(usize, usize, usize)> {
    let v: Vec<usize> = s
        .split('x')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match v[..] {
        [c, h, w] => Some((c, h, w)),
        _ => None,
    }
}

/// Read a checkpoint's metadata and rebuild the network with its weights.
pub fn load(
    path: &Path,
    device: &Device,
) -> Result<(Network, VarMap, CheckpointInfo), CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|source| CheckpointError::Format {
            path: path.to_path_buf(),
            source,
        })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|source| CheckpointError::Format {
        path: path.to_path_buf(),
        source,
    })?;
    let meta = header.metadata().clone().unwrap_or_default();
    let bad = |field: &str, problem: String| CheckpointError::Metadata {
        path: path.to_path_buf(),
        field: format!("{PREFIX}{field}"),
        problem,
    };
    let arch: Arch = meta_field(path, &meta, "arch")?
        .parse()
        .map_err(|e| bad("arch", format!("invalid ({e})")))?;
    let shape = meta_field(path, &meta, "input")?;
    let (channels, height, width) =
        parse_shape(shape).ok_or_else(|| bad("input", format!("`{shape}`, not CxHxW")))?;
    let classes: usize = meta_field(path, &meta, "classes")?
        .parse()
        .map_err(|_| bad("classes", "not a number".into()))?;
    let accuracy: f32 = meta_field(path, &meta, "accuracy")?
        .parse()
        .unwrap_or(f32::NAN);
    let dataset = meta_field(path, &meta, "dataset")?.to_string();
    let input = InputShape {
        channels,
        height,
        width,
        classes,
    };
    let known = [
        "format",
        "arch",
        "input",
        "classes",
        "timesteps",
        "dataset",
        "accuracy",
    ];
    let extra = meta
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|k| (k.to_string(), v.clone())))
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .collect();
    let info = CheckpointInfo {
        arch,
        input,
        dataset,
        accuracy,
        extra,
    };

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let net = Network::new(arch, input, LifParams::default(), vb).map_err(|e| {
        CheckpointError::Mismatch {
            path: path.to_path_buf(),
            problem: e.to_string(),
        }
    })?;
    {
        let data = varmap.data().lock().expect("varmap lock");
        for (name, var) in data.iter() {
            let view = st.tensor(name).map_err(|_| CheckpointError::Mismatch {
                path: path.to_path_buf(),
                problem: format!("tensor `{name}` that architecture {arch} needs is missing"),
            })?;
            if view.shape() != var.as_tensor().dims() || view.dtype() != Dtype::F32 {
                return Err(CheckpointError::Mismatch {
                    path: path.to_path_buf(),
                    problem: format!(
                        "tensor `{name}` is {:?} {:?}, the architecture needs F32 {:?}",
                        view.dtype(),
                        view.shape(),
                        var.as_tensor().dims()
                    ),
                });
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            var.set(&Tensor::from_vec(values, view.shape(), device)?)?;
        }
    }
    Ok((net, varmap, info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::ConvBackend;

    #[test]
    fn round_trip_and_corruption() {
        let dev = Device::Cpu;
        let arch: Arch = "ch=4,stages=1,fc=8,t=2".parse().unwrap();
        let input = InputShape {
            channels: 1,
            height: 8,
            width: 8,
            classes: 3,
        };
        let (net, varmap) = Network::init(arch, input, LifParams::default(), &dev, 9).unwrap();
        let info = CheckpointInfo {
            arch,
            input,
            dataset: "digits".into(),
            accuracy: 0.5,
            extra: HashMap::new(),
        };
        let dir = std::env::temp_dir().join(format!("spikenas-ckpt-{}", std::process::id()));
        let path = dir.join("model.safetensors");
        save(&path, &varmap, &info).unwrap();
        let (net2, _, info2) = load(&path, &dev).unwrap();
        assert_eq!(info2, info);
        let x = Tensor::rand(0f32, 1f32, (2, 1, 8, 8), &dev).unwrap();
        let a = net
            .forward(&x, false, ConvBackend::default())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let b = net2
            .forward(&x, false, ConvBackend::default())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(a, b);

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = load(&path, &dev)
            .err()
            .expect("truncated file must fail")
            .to_string();
        assert!(
            e.contains("not a valid safetensors") && e.contains("model.safetensors"),
            "{e}"
        );
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            load(&path, &dev),
            Err(CheckpointError::Format { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
