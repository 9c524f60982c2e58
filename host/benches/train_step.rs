//! One SNN training step, candle's path against the fast kernels, in one run.
//!
//! Net (direct encoding, the image fed at every step): conv3x3(Cin->16, pad 1) -> LIF ->
//! conv3x3(16->32, pad 1) -> LIF -> avgpool2 -> linear(->10); the logits are averaged
//! over T, loss = cross-entropy; AdamW (candle_nn) updates the weights. Batch 32, T = 4,
//! f32, on 1x28x28 and 3x32x32 inputs. The candle path builds it from candle's conv2d,
//! the tensor-op LIF and avg_pool2d; the fast path from two fused nodes,
//! `conv_lif(x)` and `conv_lif(s1, pool)` (the same arithmetic, checked by the tests).
//!
//! Then the whole training step of the project's own network (`snn::Network`, the
//! default architecture, AdamW) on digits-sized (1x8x8) and Fashion-MNIST-sized
//! (1x28x28 with pool=2) batches of 64: ms/step and images/s.
//!
//! The two paths run in alternating rounds (3 rounds, each a switch step and 5 timed
//! steps per path) so that the slow spells of a shared machine fall on both; the
//! speedup is the median of the per-step ratios.
//!
//! Run: `cargo bench -p spikenas-host --bench train_step` (RAYON_NUM_THREADS and
//! CANDLE_NUM_THREADS default to 2 here, 2 threads for both thread pools: candle's own
//! path is 10-15% faster with its pool at 2 than inline at 1, the fast path the same;
//! set them to override). Prints ms/step (median after warm-up), the speedup, the
//! GFLOP/s of the second convolution alone (forward, and backward = weight + input
//! gradient) for each backend, and a big candle matmul's GFLOP/s for scale.

use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use spikenas_host::arch::{Arch, InputShape};
use spikenas_host::kernels::{
    conv2d, conv2d_backward, conv2d_flop, conv_lif, lif_multistep, lif_multistep_reference,
    ConvBackend, LifParams,
};
use spikenas_host::rng::Rng;
use spikenas_host::snn::Network;

const BATCH: usize = 32;
const T: usize = 4;
const WARMUP: usize = 2;
/// Rounds of the reference-network timing (each backend `steps()` timed steps a round).
const ROUNDS: usize = 3;

/// Timed steps per measurement; `SPIKENAS_BENCH_STEPS` overrides it (e.g. to profile).
fn steps() -> usize {
    std::env::var("SPIKENAS_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn randn(rng: &mut Rng, dims: &[usize], scale: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| scale * rng.normal()).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

struct Net {
    w1: Var,
    w2: Var,
    fc_w: Var,
    fc_b: Var,
    backend: ConvBackend,
    lif: LifParams,
}

impl Net {
    fn new(cin: usize, hw: usize, backend: ConvBackend, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        // Scaled so that both LIF layers fire at a plausible rate at initialisation.
        let w1 = randn(&mut rng, &[16, cin, 3, 3], 2.0 / (cin as f32 * 9.0).sqrt());
        let w2 = randn(&mut rng, &[32, 16, 3, 3], 2.5 / (16.0f32 * 9.0).sqrt());
        let feat = 32 * (hw / 2) * (hw / 2);
        let fc_w = randn(&mut rng, &[10, feat], 1.0 / (feat as f32).sqrt());
        let fc_b = Tensor::zeros(10, DType::F32, &Device::Cpu).unwrap();
        Self {
            w1: Var::from_tensor(&w1).unwrap(),
            w2: Var::from_tensor(&w2).unwrap(),
            fc_w: Var::from_tensor(&fc_w).unwrap(),
            fc_b: Var::from_tensor(&fc_b).unwrap(),
            backend,
            lif: LifParams::default(),
        }
    }

    fn vars(&self) -> Vec<Var> {
        vec![
            self.w1.clone(),
            self.w2.clone(),
            self.fc_w.clone(),
            self.fc_b.clone(),
        ]
    }

    /// (T, B, C, H, W) currents -> spikes.
    fn lif(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.backend {
            ConvBackend::Candle => lif_multistep_reference(x, &self.lif),
            ConvBackend::Fast => lif_multistep(x, &self.lif),
        }
    }

    /// Returns the loss and the two LIF layers' outputs (layer 2 pooled: over even
    /// sizes its mean is still the firing rate).
    fn loss(&self, images: &Tensor, labels: &Tensor) -> candle_core::Result<(Tensor, [Tensor; 2])> {
        let (b, c, h, w) = images.dims4()?;
        // Direct encoding: the image at every step; (T, B, C, H, W) throughout, so the
        // fast path has no reshape between convolution and LIF.
        let x = images.unsqueeze(0)?.expand((T, b, c, h, w))?;
        let (s1, p) = match self.backend {
            ConvBackend::Candle => {
                let s1 = self.lif(&conv2d(&x, self.w1.as_tensor(), 1, 1, self.backend, false)?)?;
                let s2 = self.lif(&conv2d(&s1, self.w2.as_tensor(), 1, 1, self.backend, true)?)?;
                let p = s2.reshape((T * b, 32, h, w))?.avg_pool2d(2)?;
                (s1, p)
            }
            // Each layer one node: conv -> LIF, and conv -> LIF -> avgpool2.
            ConvBackend::Fast => {
                let s1 = conv_lif(&x, self.w1.as_tensor(), 1, 1, &self.lif, false, false)?;
                let p = conv_lif(&s1, self.w2.as_tensor(), 1, 1, &self.lif, true, true)?;
                (s1, p)
            }
        };
        let p_flat = p.reshape((T * b, ()))?;
        let fc = candle_nn::Linear::new(
            self.fc_w.as_tensor().clone(),
            Some(self.fc_b.as_tensor().clone()),
        );
        let logits = fc.forward(&p_flat)?.reshape((T, b, 10))?.mean(0)?;
        let loss = candle_nn::loss::cross_entropy(&logits, labels)?;
        Ok((loss, [s1, p]))
    }
}

/// Median ms of the training step and of its parts (forward, backward, optimizer).
struct StepTimes {
    total: f64,
    forward: f64,
    backward: f64,
    optimizer: f64,
}

/// One backend's training run on the reference network: its net, optimiser and the
/// times of its steps.
struct Run {
    backend: ConvBackend,
    net: Net,
    opt: AdamW,
    times: Vec<[f64; 4]>,
    first_loss: f32,
    rates: [f32; 2],
}

impl Run {
    fn new(cin: usize, hw: usize, backend: ConvBackend) -> Self {
        let net = Net::new(cin, hw, backend, 7);
        let opt = AdamW::new(net.vars(), ParamsAdamW::default()).unwrap();
        Self {
            backend,
            net,
            opt,
            times: Vec::new(),
            first_loss: f32::NAN,
            rates: [0.0; 2],
        }
    }

    /// One training step; `timed` keeps its times (total, forward, backward, AdamW).
    fn step(&mut self, images: &Tensor, labels: &Tensor, timed: bool) {
        let t0 = Instant::now();
        let (loss, r) = self.net.loss(images, labels).unwrap();
        let t1 = Instant::now();
        let grads = loss.backward().unwrap();
        let t2 = Instant::now();
        self.opt.step(&grads).unwrap();
        drop(grads);
        let t3 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        if self.first_loss.is_nan() {
            self.first_loss = loss.to_scalar::<f32>().unwrap();
            let rate = |s: &Tensor| s.mean_all().unwrap().to_scalar::<f32>().unwrap();
            self.rates = [rate(&r[0]), rate(&r[1])];
        }
        if timed {
            self.times
                .push([ms(t0, t3), ms(t0, t1), ms(t1, t2), ms(t2, t3)]);
        }
    }

    fn medians(&self) -> StepTimes {
        let part = |i: usize| median(self.times.iter().map(|s| s[i]).collect());
        StepTimes {
            total: part(0),
            forward: part(1),
            backward: part(2),
            optimizer: part(3),
        }
    }
}

/// Times the training steps of the given backends on the same batch in alternating
/// rounds (each round: every backend runs one untimed step, which absorbs the switch,
/// then `steps()` timed ones), so that a slow spell of this shared machine falls on
/// both alike.
fn time_steps(cin: usize, hw: usize, backends: &[ConvBackend]) -> Vec<Run> {
    let mut rng = Rng::new(42);
    let images: Vec<f32> = (0..BATCH * cin * hw * hw).map(|_| rng.f32()).collect();
    let images = Tensor::from_vec(images, (BATCH, cin, hw, hw), &Device::Cpu).unwrap();
    let labels: Vec<u32> = (0..BATCH).map(|_| rng.below(10) as u32).collect();
    let labels = Tensor::from_vec(labels, BATCH, &Device::Cpu).unwrap();
    let mut runs: Vec<Run> = backends.iter().map(|&b| Run::new(cin, hw, b)).collect();
    for round in 0..ROUNDS {
        for run in runs.iter_mut() {
            let warmup = if round == 0 { WARMUP } else { 1 };
            for i in 0..warmup + steps() {
                run.step(&images, &labels, i >= warmup);
            }
        }
    }
    runs
}

/// GFLOP/s of conv2 (16->32, 3x3, pad 1) alone on spikes at a 20% rate: forward, and
/// backward (weight + input gradient, 2x the forward FLOP), the kernels alone (no
/// autograd): for candle, the ops its autograd runs for conv2d.
fn conv_gflops(hw: usize, backend: ConvBackend) -> (f64, f64) {
    let mut rng = Rng::new(5);
    let n = T * BATCH;
    let x: Vec<f32> = (0..n * 16 * hw * hw)
        .map(|_| if rng.f32() < 0.2 { 1.0 } else { 0.0 })
        .collect();
    let x = Tensor::from_vec(x, (n, 16, hw, hw), &Device::Cpu).unwrap();
    let w = randn(&mut rng, &[32, 16, 3, 3], 0.1);
    let dy = randn(&mut rng, &[n, 32, hw, hw], 1.0);
    let flop = conv2d_flop(x.dims(), w.dims(), 1, 1).unwrap();
    let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + steps() {
        let t0 = Instant::now();
        let y = conv2d(&x, &w, 1, 1, backend, true).unwrap();
        let t1 = Instant::now();
        let (dx, dw) = conv2d_backward(&x, &w, &dy, 1, 1, backend).unwrap();
        let t2 = Instant::now();
        assert_eq!(
            (y.dims(), dx.dims(), dw.dims()),
            (dy.dims(), x.dims(), w.dims())
        );
        if i >= WARMUP {
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
        }
    }
    (flop / median(fwd) / 1e9, 2.0 * flop / median(bwd) / 1e9)
}

fn matmul_gflops() -> f64 {
    let n = 2048;
    let mut rng = Rng::new(3);
    let a = randn(&mut rng, &[n, n], 1.0);
    let b = randn(&mut rng, &[n, n], 1.0);
    let mut times = Vec::new();
    for i in 0..WARMUP + 5 {
        let t0 = Instant::now();
        let c = a.matmul(&b).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        assert_eq!(c.dims(), &[n, n]);
        if i >= WARMUP {
            times.push(dt);
        }
    }
    2.0 * (n * n * n) as f64 / median(times) / 1e9
}

/// One training step of the project's network: (median ms/step, first loss).
fn network_step(arch: Arch, input: InputShape, batch: usize) -> (f64, f32) {
    let dev = Device::Cpu;
    let (net, varmap) =
        Network::init(arch, input, LifParams::default(), &dev, 1).expect("network builds");
    let mut rng = Rng::new(9);
    let n = batch * input.channels * input.height * input.width;
    let images: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
    let dims = (batch, input.channels, input.height, input.width);
    let images = Tensor::from_vec(images, dims, &dev).unwrap();
    let labels: Vec<u32> = (0..batch).map(|_| rng.below(10) as u32).collect();
    let labels = Tensor::from_vec(labels, batch, &dev).unwrap();
    let mut opt = AdamW::new(varmap.all_vars(), ParamsAdamW::default()).unwrap();
    let (mut times, mut first) = (Vec::new(), f32::NAN);
    for i in 0..WARMUP + steps() {
        let t0 = Instant::now();
        let logits = net.forward(&images, true, ConvBackend::Fast).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
        opt.backward_step(&loss).unwrap();
        let dt = t0.elapsed().as_secs_f64() * 1e3;
        if i == 0 {
            first = loss.to_scalar::<f32>().unwrap();
        }
        if i >= WARMUP {
            times.push(dt);
        }
    }
    (median(times), first)
}

fn main() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "2");
    }
    // Candle's own pool at 2 threads: its best setting for its own path (training sets
    // 1, see kernels::tune_cpu_runtime; the fast path times the same either way). Then,
    // as training does, malloc keeps freed buffers.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "2");
    }
    spikenas_host::kernels::tune_cpu_runtime();
    // `cargo bench` passes --bench; an argument such as `28x28/fast` or `candle` selects
    // the runs whose "size/backend/part" name contains it (part: `step` for the training
    // step, `conv` for conv2 alone; `28x28/fast/step` times the step only).
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!(
        "train_step: batch {BATCH}, T {T}, f32, {} rayon threads, CANDLE_NUM_THREADS={}; \
         reference net: medians of {ROUNDS} rounds x {} steps per path; conv alone and \
         network: median of {} steps after {WARMUP} warm-up",
        rayon::current_num_threads(),
        std::env::var("CANDLE_NUM_THREADS").unwrap_or_default(),
        steps(),
        steps()
    );
    if filter.as_deref().is_none_or(|f| "matmul".contains(f)) {
        println!("candle matmul 2048x2048: {:.1} GFLOP/s", matmul_gflops());
    }
    for (name, cin, hw) in [("1x28x28", 1, 28), ("3x32x32", 3, 32)] {
        let x1 = [T * BATCH, cin, hw, hw];
        let x2 = [T * BATCH, 16, hw, hw];
        let conv1 = conv2d_flop(&x1, &[16, cin, 3, 3], 1, 1).unwrap();
        let conv2 = conv2d_flop(&x2, &[32, 16, 3, 3], 1, 1).unwrap();
        // conv1: forward + weight grad; conv2: forward + weight grad + input grad.
        let step_gflop = (2.0 * conv1 + 3.0 * conv2) / 1e9;
        println!("\n{name}: conv arithmetic per step {step_gflop:.2} GFLOP");
        let wanted = |backend: ConvBackend, part: &str| {
            filter
                .as_deref()
                .is_none_or(|f| format!("{name}/{backend}/{part}").contains(f))
        };
        let backends: Vec<ConvBackend> = [ConvBackend::Candle, ConvBackend::Fast]
            .into_iter()
            .filter(|&b| wanted(b, "step"))
            .collect();
        let runs = time_steps(cin, hw, &backends);
        for run in &runs {
            let backend = run.backend;
            let (gf_fwd, gf_bwd) = if wanted(backend, "conv") {
                conv_gflops(hw, backend)
            } else {
                (f64::NAN, f64::NAN)
            };
            let t = run.medians();
            println!(
                "  {backend:>6}: {:8.1} ms/step = forward {:.1} + backward {:.1} + AdamW {:.1} \
                 (first loss {:.5}, firing rates {:.3} {:.3}); \
                 conv2 alone: forward {gf_fwd:.1} GFLOP/s, backward {gf_bwd:.1} GFLOP/s",
                t.total,
                t.forward,
                t.backward,
                t.optimizer,
                run.first_loss,
                run.rates[0],
                run.rates[1]
            );
        }
        if let [candle, fast] = &runs[..] {
            // Per pair of steps at the same place in their rounds, then the median.
            let ratios: Vec<f64> = candle
                .times
                .iter()
                .zip(&fast.times)
                .map(|(c, f)| c[0] / f[0])
                .collect();
            println!(
                "  speedup fast vs candle: {:.1}x (median of per-step ratios; {:.1}x of medians)",
                median(ratios),
                candle.medians().total / fast.medians().total
            );
        }
    }
    let shape = |hw: usize| InputShape {
        channels: 1,
        height: hw,
        width: hw,
        classes: 10,
    };
    for (name, pool, hw) in [("digits 1x8x8", 1, 8), ("fashion 1x28x28 pool=2", 2, 28)] {
        if filter
            .as_deref()
            .is_some_and(|f| !format!("network/{name}").contains(f))
        {
            continue;
        }
        let arch = Arch {
            input_pool: pool,
            ..Arch::default()
        };
        let batch = 64;
        let (ms, loss) = network_step(arch, shape(hw), batch);
        println!(
            "\nnetwork step, {name}, batch {batch}, {arch}: {ms:.1} ms/step, {:.0} img/s \
             (first loss {loss:.4})",
            batch as f64 / ms * 1e3
        );
    }
}
