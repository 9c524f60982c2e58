//! Tests of the fused batch-norm, pooling and time-broadcast ops against candle-op
//! references: forward values and gradients (x, gamma, beta), 4-D and 5-D inputs.

use candle_core::{Device, Tensor, Var};

use super::*;
use crate::rng::Rng;

fn randn(rng: &mut Rng, dims: &[usize], scale: f32, shift: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| shift + scale * rng.normal()).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}");
    let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= tol * scale,
            "{what}[{i}]: {a} vs {b} (scale {scale}), dims {:?}",
            want.dims()
        );
    }
}

/// (dims, channel dim) of the batch-norm cases: 4-D, 5-D, tiny spatial, odd sizes.
const BN_CASES: &[(&[usize], usize)] = &[
    (&[4, 3, 5, 6], 1),
    (&[3, 2, 4, 3, 3], 2),
    (&[2, 5, 6, 2, 2], 2),
    (&[64, 16, 8, 8], 1),
    (&[7, 3], 1),
];

#[test]
fn fused_batch_norm_train_matches_reference() {
    let mut rng = Rng::new(11);
    for &(dims, cdim) in BN_CASES {
        let c = dims[cdim];
        // A shifted mean makes a naive E[x^2] - E[x]^2 lose digits.
        let x = Var::from_tensor(&randn(&mut rng, dims, 2.0, 3.0)).unwrap();
        let gamma = Var::from_tensor(&randn(&mut rng, &[c], 0.5, 1.0)).unwrap();
        let beta = Var::from_tensor(&randn(&mut rng, &[c], 0.5, 0.0)).unwrap();
        let r = randn(&mut rng, dims, 1.0, 0.0);
        let mut outs = Vec::new();
        for fused in [true, false] {
            let f = if fused {
                batch_norm_train
            } else {
                batch_norm_train_reference
            };
            let (y, stats) = f(
                x.as_tensor(),
                gamma.as_tensor(),
                beta.as_tensor(),
                cdim,
                1e-5,
            )
            .unwrap();
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let grads: Vec<Tensor> = [x.as_tensor(), gamma.as_tensor(), beta.as_tensor()]
                .iter()
                .map(|v| g.get(v).expect("gradient").clone())
                .collect();
            outs.push((y, stats, grads));
        }
        let (fy, fs, fg) = &outs[0];
        let (ry, rs, rg) = &outs[1];
        assert_close("y", fy, ry, 1e-4);
        assert_eq!(fs.count, rs.count);
        assert_eq!(fs.count * c, dims.iter().product::<usize>());
        for (a, b) in fs
            .mean
            .iter()
            .zip(&rs.mean)
            .chain(fs.var.iter().zip(&rs.var))
        {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
        }
        for (name, (a, b)) in ["dx", "dgamma", "dbeta"].iter().zip(fg.iter().zip(rg)) {
            assert_close(name, a, b, 2e-4);
        }
    }
}

#[test]
fn fused_batch_norm_eval_matches_reference() {
    let mut rng = Rng::new(12);
    for &(dims, cdim) in BN_CASES {
        let c = dims[cdim];
        let x = Var::from_tensor(&randn(&mut rng, dims, 1.0, 0.5)).unwrap();
        let gamma = Var::from_tensor(&randn(&mut rng, &[c], 0.5, 1.0)).unwrap();
        let beta = randn(&mut rng, &[c], 0.5, 0.0);
        let rm = randn(&mut rng, &[c], 0.3, 0.0);
        let rv = randn(&mut rng, &[c], 0.1, 1.0).abs().unwrap();
        let r = randn(&mut rng, dims, 1.0, 0.0);
        let run = |fused: bool| {
            let f = if fused {
                batch_norm_eval
            } else {
                batch_norm_eval_reference
            };
            let y = f(
                x.as_tensor(),
                gamma.as_tensor(),
                &beta,
                &rm,
                &rv,
                cdim,
                1e-5,
            )
            .unwrap();
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let dx = g.get(x.as_tensor()).unwrap().clone();
            let dg = g.get(gamma.as_tensor()).unwrap().clone();
            (y, dx, dg)
        };
        let (a, b) = (run(true), run(false));
        assert_close("eval y", &a.0, &b.0, 1e-5);
        assert_close("eval dx", &a.1, &b.1, 1e-5);
        assert_close("eval dgamma", &a.2, &b.2, 1e-4);
    }
}

#[test]
fn batch_norm_untracked_input_gets_no_gradient() {
    let mut rng = Rng::new(13);
    let x = randn(&mut rng, &[4, 3, 2, 2], 1.0, 0.0);
    let gamma = Var::from_tensor(&randn(&mut rng, &[3], 0.1, 1.0)).unwrap();
    let beta = Var::from_tensor(&randn(&mut rng, &[3], 0.1, 0.0)).unwrap();
    let (y, _) = batch_norm_train(&x, gamma.as_tensor(), beta.as_tensor(), 1, 1e-5).unwrap();
    let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none());
    assert!(g.get(gamma.as_tensor()).is_some());
}

#[test]
fn batch_norm_rejects_bad_shapes() {
    let x = Tensor::zeros((2, 3, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let g3 = Tensor::ones(3, candle_core::DType::F32, &Device::Cpu).unwrap();
    let g2 = Tensor::ones(2, candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = batch_norm_train(&x, &g3, &g3, 4, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("channel dim 4"), "{e}");
    let e = batch_norm_train(&x, &g2, &g3, 1, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 channels") && e.contains("gamma has 2"), "{e}");
}

/// Both pools against candle's forms, gradients included, on odd sizes and 5-D input.
#[test]
fn pools_match_candle_forward_and_gradient() {
    let mut rng = Rng::new(14);
    for dims in [
        &[2usize, 3, 6, 8][..],
        &[2, 2, 3, 5, 7],
        &[3, 1, 1, 4, 4],
        &[1, 2, 1, 1],
    ] {
        let x = Var::from_tensor(&randn(&mut rng, dims, 1.0, 0.0)).unwrap();
        // avg_pool2 against candle's avg_pool2d on a 4-D view.
        let r = dims.len();
        let (h, w) = (dims[r - 2], dims[r - 1]);
        let n: usize = dims[..r - 2].iter().product();
        if h >= 2 && w >= 2 {
            let y = avg_pool2(x.as_tensor()).unwrap();
            // Cropped to even sizes first: candle's own backward spreads the gradient
            // over odd rows/columns wrongly (nearest upsampling to the odd size).
            let want = x
                .as_tensor()
                .reshape((n, 1, h, w))
                .unwrap()
                .narrow(2, 0, h / 2 * 2)
                .unwrap()
                .narrow(3, 0, w / 2 * 2)
                .unwrap()
                .avg_pool2d(2)
                .unwrap()
                .reshape(y.dims())
                .unwrap();
            assert_close("avgpool2", &y, &want, 1e-6);
            let rr = randn(&mut rng, y.dims(), 1.0, 0.0);
            let g1 = (&y * &rr).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&want * &rr)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let (a, b) = (
                g1.get(x.as_tensor()).unwrap(),
                g2.get(x.as_tensor()).unwrap(),
            );
            assert_close("avgpool2 grad", a, b, 1e-6);
        }
        let y = avg_pool3x3_same(x.as_tensor()).unwrap();
        let want = avg_pool3x3_same_reference(x.as_tensor()).unwrap();
        assert_close("avgpool3x3", &y, &want, 1e-6);
        let rr = randn(&mut rng, dims, 1.0, 0.0);
        let g1 = (&y * &rr).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&want * &rr)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (a, b) = (
            g1.get(x.as_tensor()).unwrap(),
            g2.get(x.as_tensor()).unwrap(),
        );
        assert_close("avgpool3x3 grad", a, b, 1e-5);
    }
}

#[test]
fn avgpool3x3_by_hand() {
    // Ones: corners see 4 of 9, edges 6, the inside 9.
    let x = Tensor::ones((1, 1, 3, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let y = avg_pool3x3_same(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let expect = [4., 6., 6., 4., 6., 9., 9., 6., 4., 6., 6., 4.].map(|v: f32| v / 9.0);
    assert_eq!(y, expect.to_vec());
}

#[test]
fn repeat_time_copies_and_sums_gradients() {
    let mut rng = Rng::new(15);
    let x = Var::from_tensor(&randn(&mut rng, &[2, 3, 2, 2], 1.0, 0.0)).unwrap();
    let y = repeat_time(x.as_tensor(), 3).unwrap();
    assert_eq!(y.dims(), &[3, 2, 3, 2, 2]);
    for t in 0..3 {
        assert_close("copy", &y.get(t).unwrap(), x.as_tensor(), 0.0);
    }
    let r = randn(&mut rng, &[3, 2, 3, 2, 2], 1.0, 0.0);
    let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let want = r.sum(0).unwrap();
    assert_close("sum over T", g.get(x.as_tensor()).unwrap(), &want, 1e-6);
    assert!(repeat_time(x.as_tensor(), 0).is_err());
    assert!(avg_pool2(&Tensor::new(&[1f32, 2.], &Device::Cpu).unwrap()).is_err());
}
