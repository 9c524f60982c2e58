//! Property tests of every parser a user feeds: board YAML, `--arch` strings, IDX and
//! CIFAR-10 files, checkpoints and models (safetensors), and the generated firmware
//! crate's metadata. Whatever the input, a parser answers with a value or an error,
//! never a panic (a panic fails the property and proptest shrinks the input).
//!
//! The default run tries 64 inputs per parser. For the long run (10,000 each, under a
//! minute):
//!
//! ```sh
//! SPIKENAS_FUZZ_CASES=10000 cargo test --release -p spikenas-host --test parsers
//! ```

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use proptest::prelude::*;
use proptest::test_runner::Config;

use spikenas_host::arch::{Arch, InputShape};
use spikenas_host::board_app::{CrateInfo, TestSet, CRATE_INFO_FILE};
use spikenas_host::boards::{Profile, Targets};
use spikenas_host::checkpoint::{self, CheckpointInfo};
use spikenas_host::data::{cifar, idx, Split};
use spikenas_host::quant::export::{self, ModelInfo};
use spikenas_host::snn::lif::LifParams;
use spikenas_host::snn::Network;

/// Cases per property: `SPIKENAS_FUZZ_CASES`, or 64.
fn config() -> Config {
    let cases = std::env::var("SPIKENAS_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn targets() -> &'static Targets {
    static T: OnceLock<Targets> = OnceLock::new();
    T.get_or_init(|| Targets::from_file(&repo_root().join("targets.yaml")).unwrap())
}

fn shipped_profile() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    P.get_or_init(|| {
        std::fs::read_to_string(repo_root().join("boards/stm32f746g-disco.yaml")).unwrap()
    })
}

fn board() -> &'static Profile {
    static B: OnceLock<Profile> = OnceLock::new();
    B.get_or_init(|| {
        spikenas_host::boards::Catalog::load(&repo_root())
            .unwrap()
            .board("netduinoplus2")
            .unwrap()
            .clone()
    })
}

const INPUT: InputShape = InputShape {
    channels: 1,
    height: 8,
    width: 8,
    classes: 3,
};

/// A small trained-shape network's checkpoint and model files.
fn files() -> &'static (Vec<u8>, Vec<u8>) {
    static F: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    F.get_or_init(|| {
        let arch: Arch = "cell=0301.0003.0000.0000,ch=4,stages=1,fc=8,t=2"
            .parse()
            .unwrap();
        let (net, varmap) =
            Network::init(arch, INPUT, LifParams::default(), &Device::Cpu, 3).unwrap();
        let info = CheckpointInfo {
            arch,
            input: INPUT,
            dataset: "digits".into(),
            accuracy: 0.5,
            lif: LifParams::default(),
            extra: [("data_seed".to_string(), "0".to_string())].into(),
        };
        let ckpt = checkpoint::to_bytes(&varmap, &info).unwrap();
        let calibration = Split {
            images: (0..4 * 64).map(|i| (i * 37 % 256) as u8).collect(),
            labels: vec![0, 1, 2, 0],
            channels: 1,
            height: 8,
            width: 8,
            classes: 3,
        };
        let (q, _) = spikenas_host::quant::quantize(&net, &varmap, &calibration, 8).unwrap();
        let model = export::to_bytes(
            &q,
            &ModelInfo {
                dataset: "digits".into(),
                float_accuracy: Some(0.5),
                int_accuracy: Some(0.5),
                board: Some("netduinoplus2".into()),
                extra: Default::default(),
            },
        );
        (ckpt, model)
    })
}

/// `bytes` with up to 8 bytes overwritten at chosen places, and cut to a chosen length.
fn mutated(bytes: &[u8], edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for &(at, value) in edits {
        if !out.is_empty() {
            let i = at % out.len();
            out[i] = value;
        }
    }
    if let Some(c) = cut {
        out.truncate(c % (bytes.len() + 1));
    }
    out
}

/// The safetensors header with metadata `key` set to `value` (tensors untouched).
fn with_meta(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap_or_default();
    meta.insert(key.to_string(), value.to_string());
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    safetensors::tensor::serialize(st.tensors(), Some(meta)).unwrap()
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>()), 0..8)
}

/// Values a user (or a damaged file) might put in a field.
fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,25}",
        "-[0-9]{1,20}",
        "0x[0-9a-fA-F]{1,20}",
        "[a-z_]{0,12}=[0-9a-z.]{0,12}",
        "[0-9]{1,12}x[0-9]{1,12}x[0-9]{1,12}",
        ".{0,40}",
        Just(String::new()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("18446744073709551616".to_string()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arch_strings(s in ".{0,120}") {
        if let Ok(a) = s.parse::<Arch>() {
            prop_assert_eq!(a.to_string().parse::<Arch>().unwrap(), a);
        }
    }

    #[test]
    fn arch_keys_and_values(
        parts in prop::collection::vec(
            (prop::sample::select(vec![
                "cell", "ch", "stages", "fc", "t", "pool", "cluster", "bits", "x",
            ]), field_value()),
            0..9,
        )
    ) {
        let s: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Ok(a) = s.join(",").parse::<Arch>() {
            prop_assert_eq!(a.to_string().parse::<Arch>().unwrap(), a);
            // What parses can be laid out or is refused, without a panic.
            let _ = spikenas_host::memory::estimate(&a, &INPUT, board(), targets());
        }
    }

    #[test]
    fn input_shapes(dims in ".{0,40}", classes in any::<usize>()) {
        let _ = InputShape::parse(&dims, classes);
    }

    #[test]
    fn board_yaml_text(text in ".{0,300}") {
        let _ = Profile::from_yaml(&text, Path::new("fuzz.yaml"), targets());
    }

    #[test]
    fn board_yaml_fields(line in 0usize..64, value in field_value()) {
        // One field of a real profile given another value.
        let text: Vec<String> = shipped_profile()
            .lines()
            .enumerate()
            .map(|(i, l)| match l.split_once(": ") {
                Some((key, _)) if i == line % 40 => format!("{key}: {value}"),
                _ => l.to_string(),
            })
            .collect();
        let _ = Profile::from_yaml(&text.join("\n"), Path::new("fuzz.yaml"), targets());
    }

    #[test]
    fn board_yaml_bytes(edits in edits(), cut in proptest::option::of(any::<usize>())) {
        let bytes = mutated(shipped_profile().as_bytes(), &edits, cut);
        let text = String::from_utf8_lossy(&bytes);
        let _ = Profile::from_yaml(&text, Path::new("fuzz.yaml"), targets());
    }

    #[test]
    fn idx_files(
        kind in prop::sample::select(vec![0x08u8, 0x09, 0x0b, 0x0c, 0x0d, 0x0e]),
        dims in prop::collection::vec(any::<u32>().prop_map(|d| d % 70), 0..5),
        huge in any::<bool>(),
        payload in prop::collection::vec(any::<u8>(), 0..600),
        edits in edits(),
    ) {
        let mut bytes = vec![0, 0, kind, dims.len() as u8];
        for (i, d) in dims.iter().enumerate() {
            let d = if huge && i == 0 { u32::MAX - d } else { *d };
            bytes.extend(d.to_be_bytes());
        }
        bytes.extend(payload);
        let bytes = mutated(&bytes, &edits, None);
        let _ = idx::parse_images(&bytes, Path::new("fuzz-images"));
        let _ = idx::parse_labels(&bytes, Path::new("fuzz-labels"));
    }

    #[test]
    fn cifar_batches(records in 0usize..3, extra in 0usize..3, edits in edits()) {
        let len = records * 3073 + extra * 1000;
        let bytes: Vec<u8> = (0..len).map(|i| (i % 13) as u8).collect();
        let bytes = mutated(&bytes, &edits, None);
        let mut split = Split {
            images: Vec::new(),
            labels: Vec::new(),
            channels: 3,
            height: 32,
            width: 32,
            classes: 10,
        };
        let _ = cifar::parse_batch(&bytes, Path::new("fuzz.bin"), &mut split);
    }

    #[test]
    fn checkpoint_bytes(edits in edits(), cut in proptest::option::of(any::<usize>())) {
        let bytes = mutated(&files().0, &edits, cut);
        let _ = checkpoint::from_bytes(Path::new("fuzz.safetensors"), &bytes, &Device::Cpu);
    }

    #[test]
    fn checkpoint_metadata(
        key in prop::sample::select(vec![
            "format", "arch", "input", "classes", "timesteps", "dataset", "accuracy",
            "data_seed", "fnv1a64", "other",
        ]),
        value in field_value(),
    ) {
        let bytes = with_meta(&files().0, &format!("spikenas.{key}"), &value);
        let _ = checkpoint::from_bytes(Path::new("fuzz.safetensors"), &bytes, &Device::Cpu);
    }

    #[test]
    fn model_bytes(edits in edits(), cut in proptest::option::of(any::<usize>())) {
        let bytes = mutated(&files().1, &edits, cut);
        let _ = export::from_bytes(Path::new("fuzz.safetensors"), &bytes);
    }

    #[test]
    fn model_metadata(index in any::<prop::sample::Index>(), value in field_value()) {
        let (_, header) = safetensors::SafeTensors::read_metadata(&files().1).unwrap();
        let mut keys: Vec<String> = header.metadata().clone().unwrap().into_keys().collect();
        keys.sort();
        let key = index.get(&keys);
        let bytes = with_meta(&files().1, key, &value);
        let _ = export::from_bytes(Path::new("fuzz.safetensors"), &bytes);
    }

    #[test]
    fn firmware_crate_metadata(text in prop_oneof![
        ".{0,80}",
        (field_value(), field_value()).prop_map(|(b, t)| format!(
            "{{\"generator\":\"spikenas-host\",\"board\":{b:?},\"target\":{t:?},\"triple\":\"x\"}}"
        )),
    ]) {
        let dir = std::env::temp_dir().join(format!("spikenas-fuzz-crate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CRATE_INFO_FILE), &text).unwrap();
        let _ = CrateInfo::read(&dir);
    }

    #[test]
    fn firmware_test_sets(bytes in prop::collection::vec(any::<u8>(), 0..64), magic in any::<bool>()) {
        let mut bytes = bytes;
        if magic && bytes.len() >= 4 {
            bytes[..4].copy_from_slice(b"SNTS");
        }
        let _ = TestSet::from_bytes(&bytes, Path::new("testset.bin"));
    }
}

/// Found by `model_metadata`: a shape whose size arithmetic overflowed (a panic).
#[test]
fn a_model_with_a_huge_input_shape_is_refused() {
    let bytes = with_meta(&files().1, "spikenas.input", "0x20000000x922340000000");
    let e = export::from_bytes(Path::new("m.safetensors"), &bytes)
        .unwrap_err()
        .to_string();
    assert!(e.contains("height 20000000 is more than 65535"), "{e}");
    let bytes = with_meta(&files().0, "spikenas.input", "1x65536x1");
    let Err(e) = checkpoint::from_bytes(Path::new("c.safetensors"), &bytes, &Device::Cpu) else {
        panic!("a checkpoint with a 65536-pixel-high input was accepted");
    };
    let e = e.to_string();
    assert!(e.contains("height 65536 is more than 65535"), "{e}");
}
