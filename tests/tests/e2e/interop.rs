//! Real clients read what spikenas writes. A small network is trained briefly on
//! Fashion-MNIST and written as `train` writes it; then
//! - `export --nir`'s graph is read by the Python `nir` package and simulated in numpy
//!   from NIR's definitions and the graph's metadata alone
//!   (`tests/python/nir_simulate.py`); its predictions must agree with the host's
//!   float predictions on 1,000 test images (>= 99.5%, the figure is printed);
//! - `quantize`'s `model.safetensors` is read by Python's `safetensors` + numpy.
//!
//! The Python is the project's virtual environment (`scripts/setup` makes `.venv`): a
//! missing client fails the test.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Device;
use safetensors::tensor::{Dtype, TensorView};
use spikenas_host::arch::Arch;
use spikenas_host::checkpoint;
use spikenas_host::data::{self, LoadOptions, Source};
use spikenas_host::jobs::quantize::{quantize_to_dir, QuantizeJob};
use spikenas_host::jobs::train::{train_to_dir, TrainJob};
use spikenas_host::kernels::ConvBackend;
use spikenas_host::quant::export;
use spikenas_host::train;

use crate::common::{fashion, fresh_temp_dir, quiet_training, repo_root, run_python};

/// 3,000 training images (2,700 after the validation share) and 1,000 test images.
fn load_options() -> LoadOptions {
    fashion(3000)
}

/// Writes the test images (raw u8: the simulator applies the documented pixel/255),
/// labels and the host's float predictions for the simulator.
fn write_reference(path: &Path, split: &data::Split, predictions: &[u32]) {
    let n = split.len();
    let labels: Vec<u8> = split
        .labels
        .iter()
        .flat_map(|&l| i64::from(l).to_le_bytes())
        .collect();
    let preds: Vec<u8> = predictions
        .iter()
        .flat_map(|&p| i64::from(p).to_le_bytes())
        .collect();
    let shape = vec![n, split.channels, split.height, split.width];
    let views = [
        ("images", TensorView::new(Dtype::U8, shape, &split.images)),
        ("labels", TensorView::new(Dtype::I64, vec![n], &labels)),
        ("predictions", TensorView::new(Dtype::I64, vec![n], &preds)),
    ]
    .map(|(name, v)| (name.to_string(), v.unwrap()));
    safetensors::tensor::serialize_to_file(views, None::<HashMap<String, String>>, path).unwrap();
}

/// The `N/M = P%` figure after `label: ` in the simulator's output.
fn figure(text: &str, label: &str) -> (usize, usize) {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` in {text}"));
    let (hits, rest) = line.trim().split_once('/').unwrap();
    let total = rest.split_whitespace().next().unwrap();
    (hits.parse().unwrap(), total.parse().unwrap())
}

#[test]
fn python_clients_read_the_nir_graph_and_the_model() {
    let dir = fresh_temp_dir("interop");
    std::fs::create_dir_all(&dir).unwrap();
    // Every op the NIR mapping has (conv3x3 and conv1x1 edges sharing a LIF, skip,
    // avgpool3x3), input pooling, a reduction, a hidden layer and a population vote.
    // 3 epochs on 2,700 images: about 68% test accuracy in about 20 s on 2 cores.
    let arch: Arch = "cell=0332.0001.0004.0000,ch=8,stages=2,fc=64,t=2,pool=2,cluster=2"
        .parse()
        .unwrap();
    let job = TrainJob {
        arch,
        source: Source::FashionMnist,
        load: load_options(),
        config: quiet_training(3),
        seed: 0,
    };
    let device = Device::Cpu;
    let trained = train_to_dir(&job, &device, &dir.join("train"), false)
        .expect("training on Fashion-MNIST (scripts/setup installs it)");

    // NIR: export, read and simulate in Python, compare with the host's float run.
    let nir_file = dir.join("model.nir");
    let exported = spikenas_host::nir::export(&trained.dir, &nir_file, false).unwrap();
    let data = data::load(&Source::FashionMnist, &load_options()).unwrap();
    assert_eq!(data.test.len(), 1000);
    let (net, _, _) = checkpoint::load(&trained.dir.join(checkpoint::FILE), &device).unwrap();
    let host = train::predict(&net, &data.test, &device, ConvBackend::default()).unwrap();
    let reference = dir.join("reference.safetensors");
    write_reference(&reference, &data.test, &host);
    let script = repo_root().join("tests/python/nir_simulate.py");
    let out = run_python(&[
        script.as_os_str(),
        nir_file.as_os_str(),
        reference.as_os_str(),
    ]);
    println!("{out}");
    let (agree, n) = figure(&out, "agreement: ");
    let (correct, _) = figure(&out, "accuracy: ");
    println!(
        "NIR round trip: {} nodes, {} edges; numpy simulation agrees with the host's float \
         predictions on {agree}/{n} test images ({:.2}%), accuracy {:.2}%",
        exported.nodes,
        exported.edges,
        100.0 * agree as f64 / n as f64,
        100.0 * correct as f64 / n as f64
    );
    assert_eq!(n, 1000);
    assert!(
        agree * 1000 >= n * 995,
        "agreement {agree}/{n} is below 99.5%"
    );
    assert!(
        correct * 10 > n * 3,
        "the network learned little: {correct}/{n}"
    );

    // model.safetensors: Python's safetensors + numpy read a tensor and the metadata.
    let q = quantize_to_dir(
        &QuantizeJob {
            checkpoint: trained.dir.clone(),
            dataset: None,
            load: load_options(),
            seed: None,
            bits: 8,
            calibration_images: 256,
            board: None,
        },
        &dir.join("q"),
        false,
    )
    .unwrap();
    let model = q.dir.join(export::MODEL_FILE);
    let (qn, _) = export::load(&model).unwrap();
    let script = r#"
import sys
from safetensors.numpy import load_file
from safetensors import safe_open
t = load_file(sys.argv[1])
w = t["stem.conv.weight"]
with safe_open(sys.argv[1], "np") as f:
    m = f.metadata()
print(str(w.dtype), list(w.shape), int(w.flatten()[0]), int(t["head.fc2.requant.shift"][0]), m["spikenas.bits"], m["spikenas.arch"])
"#;
    let text = run_python(&["-c".as_ref(), script.as_ref(), model.as_os_str()]);
    let spikenas_host::quant::QWeights::I8(w) = &qn.stem.weights else {
        panic!("int8 expected")
    };
    let want = format!(
        "int8 [{}, 3, 3, {}] {} {} 8 {}",
        qn.stem.cin, qn.stem.cout, w[0], qn.head.output.requant.shift, qn.arch
    );
    assert_eq!(text.trim(), want);
    std::fs::remove_dir_all(&dir).unwrap();
}
