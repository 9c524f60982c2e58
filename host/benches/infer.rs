//! Inference throughput on the host: the integer runtime (the firmware crate's
//! `Network::infer`, which the host's integer evaluation calls) against candle's float
//! forward of the same network, in one run.
//!
//! Network: the float checkpoint in `SPIKENAS_BENCH_CHECKPOINT` if set (e.g. a
//! Fashion-MNIST training run's `checkpoint.safetensors`), otherwise a seeded random
//! initialisation of `cell=0301.0003.0000.0000,ch=16,stages=2,fc=128,t=4,pool=2` on
//! 1x28x28 (a random network fires differently from a trained one, so quote figures
//! from a checkpoint). Images: the Fashion-MNIST test set when the Debian package is
//! installed, else seeded random pixels; 1,000 images (`SPIKENAS_BENCH_IMAGES`).
//!
//! Run: `cargo bench -p spikenas-host --bench infer`. Prints images/s for the integer
//! runtime on all rayon threads and on one thread, candle's float forward (batch 256,
//! all threads), and the ratios.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use spikenas_host::arch::Arch;
use spikenas_host::data::{self, LoadOptions, Source, Split};
use spikenas_host::kernels::{ConvBackend, LifParams};
use spikenas_host::quant::{self, WorkspaceBuf};
use spikenas_host::rng::Rng;
use spikenas_host::snn::{InputShape, Network};

fn images(n: usize, input: &InputShape) -> (Split, &'static str) {
    let fashion = input.channels == 1 && input.height == 28 && input.width == 28;
    if fashion {
        if let Ok(d) = data::load(&Source::FashionMnist, &LoadOptions::default()) {
            let n = n.min(d.test.len());
            return (
                d.test.select(&(0..n).collect::<Vec<_>>()),
                "Fashion-MNIST test",
            );
        }
    }
    let mut rng = Rng::new(7);
    let len = input.channels * input.height * input.width;
    let split = Split {
        images: (0..n * len).map(|_| (rng.f32() * 255.0) as u8).collect(),
        labels: (0..n).map(|i| (i % input.classes) as u8).collect(),
        channels: input.channels,
        height: input.height,
        width: input.width,
        classes: input.classes,
    };
    (split, "random pixels")
}

fn main() {
    let dev = Device::Cpu;
    let n: usize = std::env::var("SPIKENAS_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (net, varmap, what) = match std::env::var("SPIKENAS_BENCH_CHECKPOINT") {
        Ok(p) => {
            let (net, vm, _) =
                spikenas_host::checkpoint::load(&PathBuf::from(&p), &dev).expect("checkpoint");
            (net, vm, p)
        }
        Err(_) => {
            let arch: Arch = "cell=0301.0003.0000.0000,ch=16,stages=2,fc=128,t=4,pool=2"
                .parse()
                .unwrap();
            let input = InputShape {
                channels: 1,
                height: 28,
                width: 28,
                classes: 10,
            };
            let (net, vm) = Network::init(arch, input, LifParams::default(), &dev, 1).unwrap();
            (
                net,
                vm,
                "random init (set SPIKENAS_BENCH_CHECKPOINT)".into(),
            )
        }
    };
    let (split, source) = images(n, &net.input);
    let cal = split.select(&(0..split.len().min(64)).collect::<Vec<_>>());
    let (q, _) = quant::quantize(&net, &varmap, &cal, 8).expect("quantize");
    println!("network {} from {what}", net.arch);
    println!(
        "{} images ({source}), {} rayon threads",
        split.len(),
        rayon::current_num_threads()
    );

    // Warm up both, then time.
    let _ = quant::evaluate_int(&q, &cal).unwrap();
    let _ = spikenas_host::train::predict(&net, &cal, &dev, ConvBackend::default()).unwrap();

    let t = Instant::now();
    let eval = quant::evaluate_int(&q, &split).unwrap();
    let int_par = split.len() as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let single = q.with_firmware(|fw| {
        let mut ws = WorkspaceBuf::new(&fw.workspace_layout().unwrap());
        let mut classes = Vec::with_capacity(split.len());
        for i in 0..split.len() {
            let mut view = ws.view();
            classes.push(fw.infer(split.image(i), &mut view).unwrap().class as u32);
        }
        classes
    });
    let int_one = split.len() as f64 / t.elapsed().as_secs_f64();
    assert_eq!(single, eval.predictions);

    let t = Instant::now();
    let float = spikenas_host::train::predict(&net, &split, &dev, ConvBackend::default()).unwrap();
    let float_ips = split.len() as f64 / t.elapsed().as_secs_f64();

    println!(
        "integer runtime, all threads: {int_par:9.1} images/s  ({:.0} spikes, {:.0} synops per image)",
        eval.mean_spikes(),
        eval.mean_synops()
    );
    println!("integer runtime, one thread:  {int_one:9.1} images/s");
    println!("candle float, batch 256:      {float_ips:9.1} images/s");
    println!(
        "ratio integer/float: {:.2}x (all threads), {:.2}x (one integer thread); prediction agreement {:.1}%",
        int_par / float_ips,
        int_one / float_ips,
        100.0 * quant::agreement(&eval.predictions, &float)
    );
}
