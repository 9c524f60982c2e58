//! Bit-for-bit determinism of the fast kernels and of whole training steps.
//!
//! Each computation runs in rayon pools of different sizes (and twice in the same pool):
//! work stealing splits parallel iterators differently in each, so any reduction whose
//! grouping followed rayon's splitting would change its rounding and fail these tests.

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use super::*;
use crate::arch::{Arch, InputShape};
use crate::rng::Rng;
use crate::snn::Network;

const POOLS: [usize; 4] = [1, 2, 3, 8];

fn tensor(rng: &mut Rng, dims: &[usize], spike_rate: Option<f32>) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| match spike_rate {
            Some(r) => f32::from(u8::from(rng.f32() < r)),
            None => rng.normal(),
        })
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

/// Runs `f` in pools of [`POOLS`] threads, twice each, and asserts every result has the
/// same bits as the first.
fn assert_same_in_every_pool<R: PartialEq + std::fmt::Debug + Send>(
    what: &str,
    f: impl Fn() -> R + Sync,
) {
    let mut want = None;
    for threads in POOLS {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for rep in 0..2 {
            let got = pool.install(&f);
            match &want {
                None => want = Some(got),
                Some(w) => assert!(
                    *w == got,
                    "{what}: result differs with {threads} threads (repeat {rep})"
                ),
            }
        }
    }
}

/// Output, input gradient and weight gradient of the fast convolution.
fn conv_bits(x: &Tensor, w: &Tensor, r: &Tensor) -> [Vec<u32>; 3] {
    let (xv, wv) = (Var::from_tensor(x).unwrap(), Var::from_tensor(w).unwrap());
    let y = conv2d(
        xv.as_tensor(),
        wv.as_tensor(),
        1,
        1,
        ConvBackend::Fast,
        true,
    )
    .unwrap();
    let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    [
        bits(&y),
        bits(grads.get(xv.as_tensor()).unwrap()),
        bits(grads.get(wv.as_tensor()).unwrap()),
    ]
}

#[test]
fn dense_conv_weight_grad_is_deterministic() {
    let mut rng = Rng::new(11);
    let x = tensor(&mut rng, &[96, 8, 10, 10], None);
    let w = tensor(&mut rng, &[12, 8, 3, 3], None);
    let r = tensor(&mut rng, &[96, 12, 10, 10], None);
    assert_same_in_every_pool("dense conv", || conv_bits(&x, &w, &r));
}

#[test]
fn sparse_conv_weight_grad_is_deterministic() {
    let mut rng = Rng::new(12);
    // Binary input at 10% density: the backward takes the sparse weight-gradient path.
    let x = tensor(&mut rng, &[96, 8, 10, 10], Some(0.1));
    assert!(sparse::is_sparse_binary(
        &x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    ));
    let w = tensor(&mut rng, &[12, 8, 3, 3], None);
    let r = tensor(&mut rng, &[96, 12, 10, 10], None);
    assert_same_in_every_pool("sparse conv", || conv_bits(&x, &w, &r));
}

/// `(T, B, C, H, W)` values where samples `b = 0, 2 mod 4` hold `+L` and `-L` and the
/// others small noise: every channel sum adds small values to an accumulator near `L`
/// or near 0 depending on where the rows fall, so its f64 rounding (visible after the
/// cancellation) depends on how the rows are grouped.
fn cancelling(rng: &mut Rng, dims: [usize; 5], big: f32) -> Tensor {
    let per_b: usize = dims[2..].iter().product();
    let n = dims.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| match (i / per_b) % dims[1] % 4 {
            0 => big,
            2 => -big,
            _ => rng.normal(),
        })
        .collect();
    Tensor::from_vec(v, &dims, &Device::Cpu).unwrap()
}

#[test]
fn batch_norm_stats_and_grads_are_deterministic() {
    let mut rng = Rng::new(13);
    // (T, B, C, H, W) with many rows per channel: several chunks in every reduction.
    let dims = [4, 32, 16, 8, 8];
    let plain = (tensor(&mut rng, &dims, None) + 0.3).unwrap();
    let stress = cancelling(&mut rng, dims, 1e12);
    let gamma = tensor(&mut rng, &[16], None);
    let beta = tensor(&mut rng, &[16], None);
    let r = tensor(&mut rng, &dims, None);
    for (name, x) in [("plain", plain), ("cancelling", stress)] {
        assert_same_in_every_pool(&format!("batch-norm, {name} input"), || {
            let (xv, gv, bv) = (
                Var::from_tensor(&x).unwrap(),
                Var::from_tensor(&gamma).unwrap(),
                Var::from_tensor(&beta).unwrap(),
            );
            let (y, stats) =
                batch_norm_train(xv.as_tensor(), gv.as_tensor(), bv.as_tensor(), 2, 1e-5).unwrap();
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let stat_bits: Vec<u32> = stats
                .mean
                .iter()
                .chain(&stats.var)
                .map(|v| v.to_bits())
                .collect();
            [
                bits(&y),
                stat_bits,
                bits(grads.get(xv.as_tensor()).unwrap()),
                bits(grads.get(gv.as_tensor()).unwrap()),
                bits(grads.get(bv.as_tensor()).unwrap()),
            ]
        });
    }
}

/// Every variable of a fresh network after a few AdamW steps, by name, as bits.
fn train_a_few_steps(seed: u64) -> Vec<(String, Vec<u32>)> {
    let dev = Device::Cpu;
    let input = InputShape {
        channels: 1,
        height: 8,
        width: 8,
        classes: 10,
    };
    let (net, varmap) =
        Network::init(Arch::default(), input, LifParams::default(), &dev, seed).unwrap();
    let mut rng = Rng::new(seed + 100);
    let batch = 32;
    let images: Vec<f32> = (0..batch * 64).map(|_| rng.f32()).collect();
    let images = Tensor::from_vec(images, (batch, 1, 8, 8), &dev).unwrap();
    let labels: Vec<u32> = (0..batch).map(|_| rng.below(10) as u32).collect();
    let labels = Tensor::from_vec(labels, batch, &dev).unwrap();
    let mut opt = AdamW::new(varmap.all_vars(), ParamsAdamW::default()).unwrap();
    for _ in 0..3 {
        let logits = net.forward(&images, true, ConvBackend::Fast).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
        opt.backward_step(&loss).unwrap();
    }
    let data = varmap.data().lock().unwrap();
    let mut vars: Vec<(String, Vec<u32>)> = data
        .iter()
        .map(|(k, v)| (k.clone(), bits(v.as_tensor())))
        .collect();
    vars.sort();
    vars
}

#[test]
fn training_steps_are_bit_identical() {
    let mut want: Option<Vec<(String, Vec<u32>)>> = None;
    for threads in [1, 2, 4, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let got = pool.install(|| train_a_few_steps(7));
        match &want {
            None => want = Some(got),
            Some(w) => {
                assert_eq!(w.len(), got.len());
                let differ: Vec<&str> = w
                    .iter()
                    .zip(&got)
                    .filter(|(a, b)| a != b)
                    .map(|(a, _)| a.0.as_str())
                    .collect();
                assert!(
                    differ.is_empty(),
                    "{threads} threads: variables differ from the 1-thread run: {differ:?}"
                );
            }
        }
    }
    // The steps did train: a different seed gives different weights.
    assert_ne!(want.unwrap(), train_a_few_steps(8));
}

#[test]
fn fused_conv_lif_is_deterministic() {
    let mut rng = Rng::new(14);
    // (T, B, C, H, W) binary input: the sparse weight gradient, one task per item.
    let x = tensor(&mut rng, &[4, 6, 8, 12, 12], Some(0.12));
    let w = tensor(&mut rng, &[16, 8, 3, 3], None)
        .affine(0.4, 0.0)
        .unwrap();
    for pool in [false, true] {
        let out_dims: &[usize] = if pool {
            &[4, 6, 16, 6, 6]
        } else {
            &[4, 6, 16, 12, 12]
        };
        let r = tensor(&mut rng, out_dims, None);
        assert_same_in_every_pool("conv_lif", || {
            let (xv, wv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap());
            let lif = LifParams::default();
            let s = conv_lif(xv.as_tensor(), wv.as_tensor(), 1, 1, &lif, pool, true).unwrap();
            let rate = s.mean_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(
                rate > 0.02,
                "too few spikes ({rate}) for a meaningful check"
            );
            let g = (&s * &r).unwrap().sum_all().unwrap().backward().unwrap();
            [
                bits(&s),
                bits(g.get(xv.as_tensor()).unwrap()),
                bits(g.get(wv.as_tensor()).unwrap()),
            ]
        });
    }
}
