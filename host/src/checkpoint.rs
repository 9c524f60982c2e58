//! Float checkpoints as safetensors: every variable by name (`stem.conv.weight`, ...)
//! and, in the metadata, everything a reader outside spikenas needs to run the network,
//! so a checkpoint alone says what network it holds.
//!
//! Metadata (every key starts with `spikenas.`):
//!
//! | key | value |
//! |---|---|
//! | `format` | `float32-checkpoint` |
//! | `format_version` | `2` (files without it are version 1: they have no `lif.*`, `bn_eps`, `input_scaling` and load with SNASNet's LIF, tau 4/3, threshold 1, hard reset, ATan alpha 2) |
//! | `arch` | the architecture string (`cell=...,ch=...`) |
//! | `input`, `classes`, `timesteps` | `CxHxW`, the class count, T |
//! | `dataset`, `accuracy` | `--dataset` form; float test accuracy in [0, 1] |
//! | `lif.tau`, `lif.threshold` | the LIF's tau and threshold (f32) |
//! | `lif.reset` | `hard` (v = 0 after a spike) or `subtract` (v -= threshold) |
//! | `lif.surrogate` | `atan alpha=A` or `fast-sigmoid k=K` (training only) |
//! | `lif.update` | the discrete update in words (see [`LIF_UPDATE`]) |
//! | `bn_eps` | the batch-norm epsilon (inference uses the running statistics) |
//! | `input_scaling` | `pixel/255`: images enter as `u8 / 255` in `[0, 1]` |
//! | `input_encoding` | direct: the stem's output is the same current at every step |
//! | `layout` | tensor layouts (see [`LAYOUT`]) |
//! | `fnv1a64` | checksums of every tensor's bytes ([`crate::integrity`]) |
//! | `data_seed`, `board`, ... | optional extras ([`CheckpointInfo::extra`]) |

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use safetensors::tensor::{Dtype, SafeTensors};

use crate::arch::Arch;
use crate::integrity::{self, ChecksumError};
use crate::snn::lif::{LifParams, Reset, Surrogate};
use crate::snn::{InputShape, Network};

/// Metadata key prefix.
const PREFIX: &str = "spikenas.";
/// The `spikenas.format` value of a float checkpoint.
pub const FORMAT: &str = "float32-checkpoint";
/// The `spikenas.format_version` this build writes; files without the field are 1.
pub const FORMAT_VERSION: u32 = 2;
/// The metadata fields (without the prefix) every checkpoint has had since version 1.
const VERSION_1_FIELDS: [&str; 7] = [
    "format",
    "arch",
    "input",
    "classes",
    "timesteps",
    "dataset",
    "accuracy",
];
/// `spikenas.lif.update`: the LIF's discrete update, for readers outside spikenas.
pub const LIF_UPDATE: &str = "per step t: h = v + (I - v) / tau; s = 1 if h >= threshold \
     else 0; v = h * (1 - s) (reset hard) or v = h - s * threshold (reset subtract); \
     v = 0 before the first step; I is the layer's input current";
/// `spikenas.input_scaling`.
pub const INPUT_SCALING: &str = "pixel/255";
/// `spikenas.input_encoding`.
pub const INPUT_ENCODING: &str = "direct: input -> avgpool(pool) -> stem conv -> BN is \
     computed once and fed as the same current at every one of the T steps; the output \
     is the mean over T of the last linear layer, then over each class's cluster";
/// `spikenas.layout`.
pub const LAYOUT: &str = "conv weight (cout, cin, k, k), stride 1, zero padding k/2, no \
     bias; linear weight (out, in) and bias (out); batch-norm weight, bias, running_mean, \
     running_var per channel, y = (x - mean) / sqrt(var + bn_eps) * weight + bias";
/// The float checkpoint's file name inside a training, search or model folder.
pub const FILE: &str = "checkpoint.safetensors";

/// The `extra` key (metadata `spikenas.data_seed`) of the seed the training run split
/// its data with; `quantize` and `infer` reuse it so they test on the same test images.
pub const DATA_SEED: &str = "data_seed";

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
    /// The neuron model the network was trained with (SNASNet's for version-1 files).
    pub lif: LifParams,
    /// Free-form extra metadata (e.g. `board`, [`DATA_SEED`]).
    pub extra: HashMap<String, String>,
}

impl CheckpointInfo {
    /// The seed the training run split its data with, if the file records it (checked
    /// to be a number by [`load`]).
    pub fn data_seed(&self) -> Option<u64> {
        self.extra.get(DATA_SEED).and_then(|s| s.parse().ok())
    }
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
    /// Two metadata fields disagree.
    #[error("{path}: metadata `{field}` {problem}; the file was edited or damaged: re-run `spikenas-host train`")]
    Conflict {
        /// File.
        path: PathBuf,
        /// Field name.
        field: String,
        /// What disagrees.
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
    /// A tensor's bytes differ from the checksum written with them.
    #[error("{path}: {source}; the file is damaged: re-run `spikenas-host train` (or copy the checkpoint again)")]
    Damaged {
        /// File.
        path: PathBuf,
        /// Which tensor and how.
        source: ChecksumError,
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
    let tensors = named_f32(varmap)?;
    let mut meta: HashMap<String, String> = HashMap::new();
    meta.insert(format!("{PREFIX}format"), FORMAT.into());
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
    meta.insert(
        format!("{PREFIX}format_version"),
        FORMAT_VERSION.to_string(),
    );
    for (k, v) in lif_fields(&info.lif) {
        meta.insert(format!("{PREFIX}{k}"), v);
    }
    let documented = [
        ("bn_eps", crate::snn::cell::bn_config().eps.to_string()),
        ("input_scaling", INPUT_SCALING.to_string()),
        ("input_encoding", INPUT_ENCODING.to_string()),
        ("layout", LAYOUT.to_string()),
    ];
    for (k, v) in documented {
        meta.insert(format!("{PREFIX}{k}"), v);
    }
    for (k, v) in &info.extra {
        meta.insert(format!("{PREFIX}{k}"), v.clone());
    }
    integrity::serialize_f32(&tensors, meta).map_err(|source| CheckpointError::Format {
        path: PathBuf::from("<memory>"),
        source,
    })
}

/// Every variable of `varmap` as `(name, shape, values)`, sorted by name, on the CPU.
pub fn named_f32(varmap: &VarMap) -> candle_core::Result<Vec<integrity::NamedF32>> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let t = data[name]
                .as_tensor()
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?;
            Ok((name.clone(), t.dims().to_vec(), t.flatten_all()?.to_vec1()?))
        })
        .collect()
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

/// The `lif.*` metadata fields (without the prefix) of `p`.
fn lif_fields(p: &LifParams) -> [(&'static str, String); 5] {
    let reset = match p.reset {
        Reset::Hard => "hard",
        Reset::Subtract => "subtract",
    };
    let surrogate = match p.surrogate {
        Surrogate::ATan { alpha } => format!("atan alpha={alpha}"),
        Surrogate::FastSigmoid { k } => format!("fast-sigmoid k={k}"),
    };
    [
        ("lif.tau", p.tau.to_string()),
        ("lif.threshold", p.threshold.to_string()),
        ("lif.reset", reset.into()),
        ("lif.surrogate", surrogate),
        ("lif.update", LIF_UPDATE.into()),
    ]
}

/// The neuron model in `meta`: SNASNet's for a version-1 file (no `lif.*` fields), or
/// the fields of a version-2 file, each checked.
fn parse_lif(
    meta: &HashMap<String, String>,
    version: u32,
    bad: &dyn Fn(&str, String) -> CheckpointError,
) -> Result<LifParams, CheckpointError> {
    if version < 2 {
        return Ok(LifParams::default());
    }
    let field = |name: &str| {
        meta.get(&format!("{PREFIX}{name}"))
            .map(String::as_str)
            .ok_or_else(|| bad(name, "missing".into()))
    };
    let number = |name: &str| -> Result<f32, CheckpointError> {
        let text = field(name)?;
        text.parse()
            .map_err(|_| bad(name, format!("`{text}`, not a number")))
    };
    let reset = match field("lif.reset")? {
        "hard" => Reset::Hard,
        "subtract" => Reset::Subtract,
        other => {
            return Err(bad(
                "lif.reset",
                format!("`{other}`, expected `hard` or `subtract`"),
            ))
        }
    };
    let text = field("lif.surrogate")?;
    let surrogate = match text.split_once(' ') {
        Some(("atan", a)) => a
            .strip_prefix("alpha=")
            .and_then(|a| a.parse().ok())
            .map(|alpha| Surrogate::ATan { alpha }),
        Some(("fast-sigmoid", k)) => k
            .strip_prefix("k=")
            .and_then(|k| k.parse().ok())
            .map(|k| Surrogate::FastSigmoid { k }),
        _ => None,
    }
    .ok_or_else(|| {
        bad(
            "lif.surrogate",
            format!("`{text}`, expected `atan alpha=A` or `fast-sigmoid k=K`"),
        )
    })?;
    let lif = LifParams {
        tau: number("lif.tau")?,
        threshold: number("lif.threshold")?,
        reset,
        surrogate,
    };
    lif.validate().map_err(|e| match e {
        crate::kernels::KernelError::LifParam { field, value, fix } => {
            let name = format!("lif.{}", field.split('.').next().unwrap_or(field));
            bad(&name, format!("{value}, which {fix}"))
        }
        other => bad("lif", format!("unusable ({other})")),
    })?;
    Ok(lif)
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
    from_bytes(path, &bytes, device)
}

/// [`load`] from the bytes of a checkpoint file (`path` names it in errors).
pub fn from_bytes(
    path: &Path,
    bytes: &[u8],
    device: &Device,
) -> Result<(Network, VarMap, CheckpointInfo), CheckpointError> {
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|source| CheckpointError::Format {
            path: path.to_path_buf(),
            source,
        })?;
    let st = SafeTensors::deserialize(bytes).map_err(|source| CheckpointError::Format {
        path: path.to_path_buf(),
        source,
    })?;
    let meta = header.metadata().clone().unwrap_or_default();
    // Files written before checksums existed have none and load unchecked.
    if let Some(sums) = meta.get(&format!("{PREFIX}{}", integrity::FIELD)) {
        integrity::verify(sums, &st).map_err(|source| CheckpointError::Damaged {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let bad = |field: &str, problem: String| CheckpointError::Metadata {
        path: path.to_path_buf(),
        field: format!("{PREFIX}{field}"),
        problem,
    };
    if let Some(f) = meta.get(&format!("{PREFIX}format")) {
        if f != FORMAT {
            return Err(bad(
                "format",
                format!("`{f}`, expected `{FORMAT}` (a quantized model.safetensors is not a float checkpoint)"),
            ));
        }
    }
    let version = match meta.get(&format!("{PREFIX}format_version")) {
        None => 1,
        Some(v) => match v.parse::<u32>() {
            Ok(n @ 1..=FORMAT_VERSION) => n,
            Ok(n) if n > FORMAT_VERSION => {
                return Err(bad(
                    "format_version",
                    format!(
                        "{n}, newer than this build reads ({FORMAT_VERSION}): update spikenas-host"
                    ),
                ))
            }
            _ => {
                return Err(bad(
                    "format_version",
                    format!("`{v}`, not a version number"),
                ))
            }
        },
    };
    let lif = parse_lif(&meta, version, &bad)?;
    if let Some(e) = meta.get(&format!("{PREFIX}bn_eps")) {
        let ours = crate::snn::cell::bn_config().eps;
        if e.parse::<f64>().ok() != Some(ours) {
            return Err(bad(
                "bn_eps",
                format!("`{e}`, but this build's batch-norm uses {ours}"),
            ));
        }
    }
    let arch: Arch = meta_field(path, &meta, "arch")?
        .parse()
        .map_err(|e| bad("arch", format!("invalid ({e})")))?;
    if let Some(t) = meta.get(&format!("{PREFIX}timesteps")) {
        if t.parse::<usize>().ok() != Some(arch.timesteps) {
            return Err(CheckpointError::Conflict {
                path: path.to_path_buf(),
                field: format!("{PREFIX}timesteps"),
                problem: format!(
                    "is `{t}`, but the architecture `{arch}` says t={}",
                    arch.timesteps
                ),
            });
        }
    }
    if let Some(s) = meta.get(&format!("{PREFIX}{DATA_SEED}")) {
        s.parse::<u64>()
            .map_err(|_| bad(DATA_SEED, format!("`{s}`, not a whole number")))?;
    }
    let shape = meta_field(path, &meta, "input")?;
    let (channels, height, width) =
        parse_shape(shape).ok_or_else(|| bad("input", format!("`{shape}`, not CxHxW")))?;
    let classes: usize = meta_field(path, &meta, "classes")?
        .parse()
        .map_err(|_| bad("classes", "not a number".into()))?;
    let accuracy = meta_field(path, &meta, "accuracy")?;
    let accuracy: f32 = accuracy
        .parse()
        .map_err(|_| bad("accuracy", format!("`{accuracy}`, not a number")))?;
    let dataset = meta_field(path, &meta, "dataset")?.to_string();
    let input = InputShape {
        channels,
        height,
        width,
        classes,
    };
    input.check().map_err(|why| bad("input", why))?;
    let known = VERSION_1_FIELDS.iter().chain(&[
        "format_version",
        "lif.tau",
        "lif.threshold",
        "lif.reset",
        "lif.surrogate",
        "lif.update",
        "bn_eps",
        "input_scaling",
        "input_encoding",
        "layout",
        integrity::FIELD,
    ]);
    let known: Vec<&str> = known.copied().collect();
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
        lif,
        extra,
    };

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let net = Network::new(arch, input, lif, vb).map_err(|e| CheckpointError::Mismatch {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    {
        let data = varmap.data().lock().expect("varmap lock");
        let mut names = st.names();
        names.sort();
        if let Some(name) = names.iter().find(|n| !data.contains_key(**n)) {
            return Err(CheckpointError::Mismatch {
                path: path.to_path_buf(),
                problem: format!(
                    "tensor `{name}` is not part of architecture {arch} in the metadata; the metadata and the tensors disagree: re-run `spikenas-host train`"
                ),
            });
        }
        for (name, var) in data.iter() {
            let view = st.tensor(name).map_err(|_| CheckpointError::Mismatch {
                path: path.to_path_buf(),
                problem: format!("tensor `{name}` that architecture {arch} needs is missing"),
            })?;
            if view.shape() != var.as_tensor().dims() || view.dtype() != Dtype::F32 {
                return Err(CheckpointError::Mismatch {
                    path: path.to_path_buf(),
                    problem: format!(
                        "tensor `{name}` is {:?} {:?}, architecture {arch} in the metadata needs F32 {:?}; the metadata and the tensors disagree: re-run `spikenas-host train`",
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
        let (net, varmap, info) = small_network();
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

    /// A small network, its variables and checkpoint metadata.
    fn small_network() -> (Network, VarMap, CheckpointInfo) {
        let arch: Arch = "ch=4,stages=1,fc=8,t=2".parse().unwrap();
        let input = InputShape {
            channels: 1,
            height: 8,
            width: 8,
            classes: 3,
        };
        let (net, varmap) =
            Network::init(arch, input, LifParams::default(), &Device::Cpu, 9).unwrap();
        let info = CheckpointInfo {
            arch,
            input,
            dataset: "digits".into(),
            accuracy: 0.5,
            lif: LifParams::default(),
            extra: HashMap::new(),
        };
        (net, varmap, info)
    }

    fn small() -> (VarMap, CheckpointInfo) {
        let (_, varmap, info) = small_network();
        (varmap, info)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spikenas-ckpt-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn flipped_bytes_are_refused_naming_file_and_tensor() {
        let (varmap, info) = small();
        let dir = temp_dir("flip");
        let path = dir.join("checkpoint.safetensors");
        save(&path, &varmap, &info).unwrap();
        assert!(
            load(&path, &Device::Cpu).is_ok(),
            "the unflipped file loads"
        );
        let good = std::fs::read(&path).unwrap();
        let mut bytes = good.clone();
        crate::integrity::testing::flip_middle(&mut bytes, 64);
        std::fs::write(&path, &bytes).unwrap();
        let e = load(&path, &Device::Cpu)
            .err()
            .expect("flipped bytes must fail");
        assert!(matches!(e, CheckpointError::Damaged { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("checkpoint.safetensors")
                && msg.contains("tensor `")
                && msg.contains("damaged")
                && msg.contains("re-run `spikenas-host train`"),
            "{msg}"
        );
        // A file written before checksums existed still loads.
        std::fs::write(&path, crate::integrity::testing::strip_checksums(&good)).unwrap();
        let (_, _, info2) = load(&path, &Device::Cpu).unwrap();
        assert_eq!(info2, info);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn metadata_that_disagrees_is_refused() {
        let (varmap, info) = small();
        let dir = temp_dir("meta");
        let path = dir.join("checkpoint.safetensors");
        let good = to_bytes(&varmap, &info).unwrap();
        let set = crate::integrity::testing::set_meta;
        let load_err = |bytes: Vec<u8>| {
            std::fs::write(&path, bytes).unwrap();
            load(&path, &Device::Cpu)
                .err()
                .expect("must fail")
                .to_string()
        };
        // t=2 in the arch, timesteps=4 beside it.
        let e = load_err(set(&good, "spikenas.timesteps", "4"));
        assert!(
            e.contains("checkpoint.safetensors")
                && e.contains("spikenas.timesteps")
                && e.contains("`4`")
                && e.contains("t=2"),
            "{e}"
        );
        let e = load_err(set(&good, "spikenas.accuracy", "high"));
        assert!(
            e.contains("spikenas.accuracy") && e.contains("`high`"),
            "{e}"
        );
        let e = load_err(set(&good, "spikenas.data_seed", "-1"));
        assert!(
            e.contains("spikenas.data_seed") && e.contains("`-1`"),
            "{e}"
        );
        let e = load_err(set(&good, "spikenas.format", "spikenas-int-snn-v1"));
        assert!(e.contains("spikenas.format"), "{e}");
        // Tensors of another architecture than the metadata's: one too many, or a
        // different shape.
        let mut other = info.clone();
        other.arch = "ch=4,stages=1,fc=0,t=2".parse().unwrap();
        let e = load_err(to_bytes(&varmap, &other).unwrap());
        assert!(
            e.contains("tensor `head.fc1.") && e.contains("is not part of architecture"),
            "{e}"
        );
        other.arch = "ch=8,stages=1,fc=8,t=2".parse().unwrap();
        let e = load_err(to_bytes(&varmap, &other).unwrap());
        assert!(e.contains("needs F32") && e.contains("disagree"), "{e}");
        // The data seed round-trips.
        let mut seeded = info.clone();
        seeded.extra.insert(DATA_SEED.into(), "7".into());
        std::fs::write(&path, to_bytes(&varmap, &seeded).unwrap()).unwrap();
        assert_eq!(load(&path, &Device::Cpu).unwrap().2.data_seed(), Some(7));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The same file with only the metadata a version-1 writer wrote.
    fn as_version_1(bytes: &[u8]) -> Vec<u8> {
        let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
        let v1: Vec<&str> = VERSION_1_FIELDS
            .iter()
            .copied()
            .chain([integrity::FIELD, DATA_SEED])
            .collect();
        let meta: HashMap<String, String> = header
            .metadata()
            .clone()
            .unwrap()
            .into_iter()
            .filter(|(k, _)| v1.iter().any(|f| k == &format!("{PREFIX}{f}")))
            .collect();
        let st = SafeTensors::deserialize(bytes).unwrap();
        safetensors::tensor::serialize(st.tensors(), Some(meta)).unwrap()
    }

    #[test]
    fn metadata_describes_the_neuron_and_version_1_files_still_load() {
        let (varmap, mut info) = small();
        info.lif = LifParams {
            tau: 2.0,
            threshold: 0.5,
            reset: Reset::Subtract,
            surrogate: Surrogate::FastSigmoid { k: 5.0 },
        };
        let dir = temp_dir("v2");
        let path = dir.join("checkpoint.safetensors");
        let bytes = to_bytes(&varmap, &info).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap();
        for (k, v) in [
            ("format_version", "2"),
            ("lif.tau", "2"),
            ("lif.threshold", "0.5"),
            ("lif.reset", "subtract"),
            ("lif.surrogate", "fast-sigmoid k=5"),
            ("bn_eps", "0.00001"),
            ("input_scaling", "pixel/255"),
        ] {
            assert_eq!(meta[&format!("{PREFIX}{k}")], v, "{k}");
        }
        std::fs::write(&path, &bytes).unwrap();
        let (net, _, back) = load(&path, &Device::Cpu).unwrap();
        assert_eq!(back, info);
        assert_eq!(net.lif, info.lif, "the network runs the recorded neuron");

        // A file as version 1 wrote it: no neuron fields; it loads with SNASNet's LIF
        // and computes what the version-2 file of the same weights computes.
        let (_, default_info) = small();
        let v2 = to_bytes(&varmap, &default_info).unwrap();
        std::fs::write(&path, as_version_1(&v2)).unwrap();
        let (old, _, old_info) = load(&path, &Device::Cpu).unwrap();
        assert_eq!(old_info, default_info);
        std::fs::write(&path, &v2).unwrap();
        let (new, _, _) = load(&path, &Device::Cpu).unwrap();
        let x = Tensor::rand(0f32, 1f32, (2, 1, 8, 8), &Device::Cpu).unwrap();
        let run = |n: &Network| {
            n.forward(&x, false, ConvBackend::default())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        assert_eq!(run(&old), run(&new));

        let set = crate::integrity::testing::set_meta;
        for (key, value, expect) in [
            (
                "spikenas.lif.reset",
                "soft",
                "`soft`, expected `hard` or `subtract`",
            ),
            ("spikenas.lif.tau", "-1", "tau"),
            ("spikenas.lif.surrogate", "atan", "expected `atan alpha=A`"),
            (
                "spikenas.format_version",
                "3",
                "newer than this build reads",
            ),
            ("spikenas.bn_eps", "0.001", "batch-norm uses 0.00001"),
        ] {
            std::fs::write(&path, set(&bytes, key, value)).unwrap();
            let e = load(&path, &Device::Cpu)
                .err()
                .expect("must fail")
                .to_string();
            assert!(
                e.contains("checkpoint.safetensors") && e.contains(key) && e.contains(expect),
                "{key}={value}: {e}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
