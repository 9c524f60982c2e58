//! `model.safetensors`: a quantized network as named integer tensors plus metadata,
//! readable by Python's `safetensors` package and read back by [`load`].
//!
//! Tensors (names follow the float checkpoint's):
//!
//! | name | dtype | shape |
//! |---|---|---|
//! | `stem.conv.weight`, `stage{s}.reduce.conv.weight`, `stage{s}.cell.{e|b}{i}{j}.conv.weight` | I8 (int8) or U8 (int4 packed) | `[cin, k, k, cout]` (int4: last dim `ceil(cout/2)`) |
//! | `head.fc1.weight`, `head.fc2.weight` | I8 or U8 | `[in, out]` (int4: `[in, ceil(out/2)]`) |
//! | `<layer>.requant.mult`, `<layer>.requant.bias` | I32 | `[channels]` |
//! | `<layer>.requant.shift` | U8 | `[1]` |
//! | `<layer>.lif` | I32 | `[4]`: threshold Q12, decay kind (0 shift, 1 Q15), decay value, reset (0 hard, 1 subtract) |
//!
//! where `<layer>` is `stem.conv`, `stage{s}.reduce.bn_in`, `stage{s}.reduce.conv`,
//! `stage{s}.cell.e01.conv` (conv edges only; skip and pool edges have no tensors),
//! `head.bn`, `head.fc1`, `head.fc2`; LIFs are `stage{s}.reduce.lif`,
//! `stage{s}.cell.e01.lif`, `head.lif`, `head.fc1.lif`. The cell's structure and every
//! macro parameter come from the `spikenas.arch` metadata. Every metadata key starts
//! with `spikenas.`: `format`, `arch`, `input` (`CxHxW`), `classes`, `timesteps`,
//! `bits`, `numeric`, `requant`, `weights_layout`, `lif_layout`, `dataset`,
//! `float_accuracy`, `int_accuracy`, `board` (optional), `data_seed` (the seed of
//! the training run's data split, optional), `fnv1a64` (checksums of
//! every tensor's bytes, see [`crate::integrity`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use spikenas_firmware as fw;

use crate::arch::{Arch, InputShape};
use crate::integrity::{self, ChecksumError};
use crate::snn::cell::edge_key;

use super::assemble::{assemble, LayerSource};
use super::{QConv, QHead, QLinear, QOp, QReduction, QRequant, QWeights, QuantizedNetwork};

/// Metadata key prefix.
const PREFIX: &str = "spikenas.";
/// The `spikenas.format` value of this layout.
pub const FORMAT: &str = "spikenas-int-snn-v1";
/// The file name the CLI writes and reads.
pub const MODEL_FILE: &str = "model.safetensors";

/// What a model file says about itself besides the tensors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelInfo {
    /// The dataset (`--dataset` form).
    pub dataset: String,
    /// Test accuracy of the float network, if measured.
    pub float_accuracy: Option<f32>,
    /// Test accuracy of the integer network, if measured.
    pub int_accuracy: Option<f32>,
    /// The board the model is for, if any.
    pub board: Option<String>,
    /// Other `spikenas.*` metadata (without the prefix).
    pub extra: BTreeMap<String, String>,
}

impl ModelInfo {
    /// The seed the training run split its data with, if the file records it (metadata
    /// `spikenas.data_seed`, checked to be a number by [`load`]).
    pub fn data_seed(&self) -> Option<u64> {
        self.extra
            .get(crate::checkpoint::DATA_SEED)
            .and_then(|s| s.parse().ok())
    }
}

/// Errors writing or reading a model file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Cannot read the file.
    #[error("cannot read model {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a safetensors file.
    #[error("{path} is not a valid safetensors file ({source}); it may be truncated or corrupt: re-run `spikenas-host quantize`")]
    Format {
        /// File.
        path: PathBuf,
        /// Cause.
        source: safetensors::SafeTensorError,
    },
    /// A metadata field is missing or wrong.
    #[error("{path}: metadata `{field}` is {problem}; this file was not written by `spikenas-host quantize` (a float checkpoint is checkpoint.safetensors)")]
    Metadata {
        /// File.
        path: PathBuf,
        /// Field.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A tensor is missing or has the wrong dtype or shape.
    #[error("{path}: tensor `{name}` {problem}; the file does not match its metadata: re-run `spikenas-host quantize`")]
    Tensor {
        /// File.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The tensors do not form a network the firmware runtime accepts.
    #[error("{path}: {source}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// The firmware's validation error.
        source: fw::Error,
    },
    /// A tensor's bytes differ from the checksum written with them.
    #[error("{path}: {source}; the file is damaged: re-run `spikenas-host quantize` (or copy the model again)")]
    Damaged {
        /// File.
        path: PathBuf,
        /// Which tensor and how.
        source: ChecksumError,
    },
    /// Two metadata fields, or the metadata and the tensors, disagree.
    #[error("{path}: {problem}; the file was edited or damaged: re-run `spikenas-host quantize`")]
    Conflict {
        /// File.
        path: PathBuf,
        /// What disagrees.
        problem: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
}

struct Owned {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Writer {
    tensors: Vec<Owned>,
}

impl Writer {
    fn push(&mut self, name: String, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) {
        self.tensors.push(Owned {
            name,
            dtype,
            shape,
            bytes,
        });
    }

    fn requant(&mut self, layer: &str, r: &QRequant) {
        let le = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let n = r.mult.len();
        self.push(
            format!("{layer}.requant.mult"),
            Dtype::I32,
            vec![n],
            le(&r.mult),
        );
        self.push(
            format!("{layer}.requant.bias"),
            Dtype::I32,
            vec![n],
            le(&r.bias),
        );
        self.push(
            format!("{layer}.requant.shift"),
            Dtype::U8,
            vec![1],
            vec![r.shift],
        );
    }

    fn lif(&mut self, name: &str, lif: &fw::Lif) {
        let v = lif_to_i32(lif);
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.push(format!("{name}.lif"), Dtype::I32, vec![4], bytes);
    }

    /// `rows_shape` is the shape without the last (output) dimension.
    fn weights(&mut self, layer: &str, w: &QWeights, rows_shape: &[usize], outs: usize) {
        let (dtype, last, bytes) = match w {
            QWeights::I8(v) => (Dtype::I8, outs, v.iter().map(|&x| x as u8).collect()),
            QWeights::I4(v) => (Dtype::U8, outs.div_ceil(2), v.clone()),
        };
        let mut shape = rows_shape.to_vec();
        shape.push(last);
        self.push(format!("{layer}.weight"), dtype, shape, bytes);
    }

    fn conv(&mut self, layer: &str, c: &QConv) {
        self.weights(
            &format!("{layer}.conv"),
            &c.weights,
            &[c.cin, c.k, c.k],
            c.cout,
        );
        self.requant(&format!("{layer}.conv"), &c.requant);
    }

    fn linear(&mut self, layer: &str, l: &QLinear) {
        self.weights(layer, &l.weights, &[l.inputs], l.outputs);
        self.requant(layer, &l.requant);
    }
}

fn lif_to_i32(lif: &fw::Lif) -> [i32; 4] {
    let (kind, value) = match lif.decay {
        fw::Decay::Shift(n) => (0, n as i32),
        fw::Decay::Q15(m) => (1, m as i32),
    };
    let reset = match lif.reset {
        fw::Reset::Hard => 0,
        fw::Reset::Subtract => 1,
    };
    [lif.threshold as i32, kind, value, reset]
}

/// `1/tau` as the LIF's decay implies it (`keep = 1 - 1/tau`).
fn input_factor(lif: &fw::Lif) -> f64 {
    1.0 - lif.decay.keep()
}

/// The bytes of `model.safetensors` for `q` with `info` as metadata. The same network
/// and metadata give the same bytes: the header's keys (tensors and metadata) are
/// written sorted ([`integrity::canonical_header`]), not in a hash map's order.
pub fn to_bytes(q: &QuantizedNetwork, info: &ModelInfo) -> Vec<u8> {
    let mut w = Writer::default();
    w.conv("stem", &q.stem);
    for (s, st) in q.stages.iter().enumerate() {
        if let Some(r) = &st.reduction {
            let p = format!("stage{s}.reduce");
            w.requant(&format!("{p}.bn_in"), &r.bn);
            w.lif(&p, &r.lif);
            w.conv(&p, &r.conv);
        }
        for e in &st.edges {
            if let QOp::Conv { lif, conv } = &e.op {
                let p = format!("stage{s}.cell.{}", edge_key(e.from.into(), e.to.into()));
                w.lif(&p, lif);
                w.conv(&p, conv);
            }
        }
    }
    w.requant("head.bn", &q.head.bn);
    w.lif("head", &q.head.lif);
    if let Some((fc, lif)) = &q.head.hidden {
        w.linear("head.fc1", fc);
        w.lif("head.fc1", lif);
    }
    w.linear("head.fc2", &q.head.output);

    let mut meta: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        meta.insert(format!("{PREFIX}{k}"), v);
    };
    put("format", FORMAT.into());
    put("arch", q.arch.to_string());
    put(
        "input",
        format!("{}x{}x{}", q.input.channels, q.input.height, q.input.width),
    );
    put("classes", q.input.classes.to_string());
    put("timesteps", q.arch.timesteps.to_string());
    put("bits", q.bits.to_string());
    put(
        "numeric",
        format!(
            "currents Q12 i32 x{:.4} (1/tau folded in), membrane Q12 i16, logits Q12 i32",
            input_factor(&q.head.lif)
        ),
    );
    put(
        "requant",
        "I = sat_i32(((acc * mult + 2^(shift-1)) >> shift) + bias), per output channel".into(),
    );
    put(
        "weights_layout",
        "conv [ci][ky][kx][co], linear [in][out], symmetric per output channel; \
         int4: U8, two per byte, low nibble first, two's complement, rows padded to a byte"
            .into(),
    );
    put(
        "lif_layout",
        "[threshold_q12, decay_kind (0 = v >> n, 1 = (v * m) >> 15), decay_value, \
         reset (0 = hard to 0, 1 = subtract threshold)]"
            .into(),
    );
    put("dataset", info.dataset.clone());
    if let Some(a) = info.float_accuracy {
        put("float_accuracy", format!("{a:.6}"));
    }
    if let Some(a) = info.int_accuracy {
        put("int_accuracy", format!("{a:.6}"));
    }
    if let Some(b) = &info.board {
        put("board", b.clone());
    }
    for (k, v) in &info.extra {
        put(k, v.clone());
    }
    put(
        integrity::FIELD,
        integrity::encode(
            w.tensors
                .iter()
                .map(|t| (t.name.as_str(), t.bytes.as_slice())),
        ),
    );
    let views: Vec<(String, TensorView<'_>)> = w
        .tensors
        .iter()
        .map(|t| {
            let view = TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                .expect("shape and byte length agree by construction");
            (t.name.clone(), view)
        })
        .collect();
    let bytes = safetensors::tensor::serialize(views, Some(meta.into_iter().collect()))
        .expect("serialising in-memory views cannot fail");
    integrity::canonical_header(&bytes)
}

/// Writes `path` atomically.
pub fn save(path: &Path, q: &QuantizedNetwork, info: &ModelInfo) -> Result<(), ExportError> {
    crate::output::write_atomic(path, &to_bytes(q, info))?;
    Ok(())
}

struct Reader<'a> {
    path: &'a Path,
    st: SafeTensors<'a>,
    bits: u8,
    /// The tensors read so far; any other tensor in the file is not part of the
    /// architecture.
    used: RefCell<BTreeSet<String>>,
}

impl LayerSource for Reader<'_> {
    type Error = ExportError;

    fn stem(&self, dims: (usize, usize, usize)) -> Result<QConv, ExportError> {
        self.conv("stem", dims)
    }

    fn reduction(&self, p: &str, dims: (usize, usize, usize)) -> Result<QReduction, ExportError> {
        Ok(QReduction {
            bn: self.requant(&format!("{p}.bn_in"), dims.0)?,
            lif: self.lif(p)?,
            conv: self.conv(p, dims)?,
        })
    }

    fn conv_edge(
        &self,
        p: &str,
        dims: (usize, usize, usize),
    ) -> Result<(fw::Lif, QConv), ExportError> {
        Ok((self.lif(p)?, self.conv(p, dims)?))
    }

    fn head(
        &self,
        channels: usize,
        features: usize,
        fc: usize,
        outputs: usize,
    ) -> Result<QHead, ExportError> {
        let (hidden, output) = if fc > 0 {
            let fc1 = self.linear("head.fc1", features, fc)?;
            let lif = self.lif("head.fc1")?;
            (Some((fc1, lif)), self.linear("head.fc2", fc, outputs)?)
        } else {
            (None, self.linear("head.fc2", features, outputs)?)
        };
        Ok(QHead {
            bn: self.requant("head.bn", channels)?,
            lif: self.lif("head")?,
            hidden,
            output,
        })
    }
}

impl Reader<'_> {
    fn err(&self, name: &str, problem: String) -> ExportError {
        ExportError::Tensor {
            path: self.path.to_path_buf(),
            name: name.to_string(),
            problem,
        }
    }

    fn raw(&self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<&[u8], ExportError> {
        let v = self
            .st
            .tensor(name)
            .map_err(|_| self.err(name, "is missing".into()))?;
        self.used.borrow_mut().insert(name.to_string());
        if v.dtype() != dtype || v.shape() != shape {
            return Err(self.err(
                name,
                format!(
                    "is {:?} {:?}, expected {dtype:?} {shape:?}",
                    v.dtype(),
                    v.shape()
                ),
            ));
        }
        Ok(v.data())
    }

    fn i32s(&self, name: &str, n: usize) -> Result<Vec<i32>, ExportError> {
        Ok(self
            .raw(name, Dtype::I32, &[n])?
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn requant(&self, layer: &str, n: usize) -> Result<QRequant, ExportError> {
        Ok(QRequant {
            mult: self.i32s(&format!("{layer}.requant.mult"), n)?,
            bias: self.i32s(&format!("{layer}.requant.bias"), n)?,
            shift: self.raw(&format!("{layer}.requant.shift"), Dtype::U8, &[1])?[0],
        })
    }

    fn lif(&self, layer: &str) -> Result<fw::Lif, ExportError> {
        let name = format!("{layer}.lif");
        let v = self.i32s(&name, 4)?;
        let bad = |what: &str| self.err(&name, format!("has an invalid {what}: {v:?}"));
        let threshold = i16::try_from(v[0]).map_err(|_| bad("threshold"))?;
        let decay = match (v[1], v[2]) {
            (0, n @ 0..=15) => fw::Decay::Shift(n as u8),
            (1, m @ 0..=32767) => fw::Decay::Q15(m as i16),
            _ => return Err(bad("decay")),
        };
        let reset = match v[3] {
            0 => fw::Reset::Hard,
            1 => fw::Reset::Subtract,
            _ => return Err(bad("reset")),
        };
        Ok(fw::Lif {
            decay,
            threshold,
            reset,
        })
    }

    fn weights(
        &self,
        layer: &str,
        bits: u8,
        rows_shape: &[usize],
        outs: usize,
    ) -> Result<QWeights, ExportError> {
        let name = format!("{layer}.weight");
        let mut shape = rows_shape.to_vec();
        Ok(if bits == 4 {
            shape.push(outs.div_ceil(2));
            QWeights::I4(self.raw(&name, Dtype::U8, &shape)?.to_vec())
        } else {
            shape.push(outs);
            QWeights::I8(
                self.raw(&name, Dtype::I8, &shape)?
                    .iter()
                    .map(|&b| b as i8)
                    .collect(),
            )
        })
    }

    fn conv(
        &self,
        layer: &str,
        (cin, cout, k): (usize, usize, usize),
    ) -> Result<QConv, ExportError> {
        let bits = self.bits;
        Ok(QConv {
            cin,
            cout,
            k,
            weights: self.weights(&format!("{layer}.conv"), bits, &[cin, k, k], cout)?,
            requant: self.requant(&format!("{layer}.conv"), cout)?,
        })
    }

    fn linear(&self, layer: &str, inputs: usize, outputs: usize) -> Result<QLinear, ExportError> {
        let bits = self.bits;
        Ok(QLinear {
            inputs,
            outputs,
            weights: self.weights(layer, bits, &[inputs], outputs)?,
            requant: self.requant(layer, outputs)?,
        })
    }
}

/// Reads a model file written by [`save`]: the network (checked by the firmware's
/// validator) and its metadata.
pub fn load(path: &Path) -> Result<(QuantizedNetwork, ModelInfo), ExportError> {
    let bytes = std::fs::read(path).map_err(|source| ExportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(path, &bytes)
}

/// Parses the bytes of a model file; `path` is only used in errors.
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<(QuantizedNetwork, ModelInfo), ExportError> {
    let format = |source| ExportError::Format {
        path: path.to_path_buf(),
        source,
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(format)?;
    let st = SafeTensors::deserialize(bytes).map_err(format)?;
    let meta = header.metadata().clone().unwrap_or_default();
    // Files written before checksums existed have none and load unchecked.
    if let Some(sums) = meta.get(&format!("{PREFIX}{}", integrity::FIELD)) {
        integrity::verify(sums, &st).map_err(|source| ExportError::Damaged {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let bad = |field: &str, problem: String| ExportError::Metadata {
        path: path.to_path_buf(),
        field: format!("{PREFIX}{field}"),
        problem,
    };
    let field = |f: &str| -> Result<&str, ExportError> {
        meta.get(&format!("{PREFIX}{f}"))
            .map(String::as_str)
            .ok_or_else(|| bad(f, "missing".into()))
    };
    let fmt = field("format")?;
    if fmt != FORMAT {
        return Err(bad("format", format!("`{fmt}`, expected `{FORMAT}`")));
    }
    let arch: Arch = field("arch")?
        .parse()
        .map_err(|e| bad("arch", format!("invalid ({e})")))?;
    let shape = field("input")?;
    let (channels, height, width) = crate::checkpoint::parse_shape(shape)
        .ok_or_else(|| bad("input", format!("`{shape}`, not CxHxW")))?;
    let classes: usize = field("classes")?
        .parse()
        .map_err(|_| bad("classes", "not a number".into()))?;
    let bits: u8 = match field("bits")? {
        "8" => 8,
        "4" => 4,
        b => return Err(bad("bits", format!("`{b}`, not 8 or 4"))),
    };
    let input = InputShape {
        channels,
        height,
        width,
        classes,
    };
    // Before any size arithmetic: a damaged shape could overflow it.
    input.check().map_err(|why| bad("input", why))?;
    if input.head_features(&arch) == 0 {
        return Err(bad(
            "input",
            format!("{shape} too small for architecture {arch}"),
        ));
    }
    if arch.weight_bits != bits {
        return Err(bad(
            "bits",
            format!(
                "{bits}, but the architecture says bits={}",
                arch.weight_bits
            ),
        ));
    }
    let conflict = |problem: String| ExportError::Conflict {
        path: path.to_path_buf(),
        problem,
    };
    if let Some(t) = meta.get(&format!("{PREFIX}timesteps")) {
        if t.parse::<usize>().ok() != Some(arch.timesteps) {
            return Err(conflict(format!(
                "metadata `{PREFIX}timesteps` is `{t}`, but the architecture `{arch}` says t={}",
                arch.timesteps
            )));
        }
    }
    if let Some(s) = meta.get(&format!("{PREFIX}{}", crate::checkpoint::DATA_SEED)) {
        s.parse::<u64>().map_err(|_| {
            bad(
                crate::checkpoint::DATA_SEED,
                format!("`{s}`, not a whole number"),
            )
        })?;
    }
    let reader = Reader {
        path,
        st,
        bits,
        used: RefCell::new(BTreeSet::new()),
    };
    let q = assemble(arch, input, bits, &reader)?;
    let mut names = reader.st.names();
    names.sort();
    if let Some(name) = names.iter().find(|n| !reader.used.borrow().contains(**n)) {
        return Err(conflict(format!(
            "tensor `{name}` is not part of architecture {arch} in the metadata"
        )));
    }
    q.with_firmware(|n| n.validate())
        .map_err(|source| ExportError::Invalid {
            path: path.to_path_buf(),
            source,
        })?;
    let acc = |f: &str| -> Result<Option<f32>, ExportError> {
        meta.get(&format!("{PREFIX}{f}"))
            .map(|v| {
                v.parse()
                    .map_err(|_| bad(f, format!("`{v}`, not a number")))
            })
            .transpose()
    };
    let known = [
        "format",
        "arch",
        "input",
        "classes",
        "timesteps",
        "bits",
        "numeric",
        "requant",
        "weights_layout",
        "lif_layout",
        "dataset",
        "float_accuracy",
        "int_accuracy",
        "board",
        integrity::FIELD,
    ];
    let info = ModelInfo {
        dataset: field("dataset")?.to_string(),
        float_accuracy: acc("float_accuracy")?,
        int_accuracy: acc("int_accuracy")?,
        board: meta.get(&format!("{PREFIX}board")).cloned(),
        extra: meta
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|k| (k.to_string(), v.clone())))
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .collect(),
    };
    Ok((q, info))
}
