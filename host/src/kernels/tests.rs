//! Tests of the fast kernels against the candle paths: forward values and gradients.

use candle_core::{Device, Tensor, Var};

use super::*;
use crate::rng::Rng;

fn randn(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// Binary spikes with the given firing probability.
fn spikes(rng: &mut Rng, dims: &[usize], rate: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| if rng.f32() < rate { 1.0 } else { 0.0 })
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

pub(crate) fn max_abs(a: &Tensor) -> f32 {
    a.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    let scale = max_abs(want).max(1.0);
    let d = max_abs_diff(got, want);
    assert!(
        d <= 1e-4 * scale,
        "{what}: max |diff| {d} (scale {scale}), dims {:?}",
        want.dims()
    );
}

/// (n, cin, h, w, cout, k, stride, pad)
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

const CASES: &[Case] = &[
    (2, 3, 7, 5, 4, 3, 1, 1),
    (3, 2, 9, 11, 5, 3, 2, 1),
    (2, 4, 8, 8, 3, 3, 2, 0),
    (1, 5, 6, 7, 6, 3, 1, 0),
    (2, 3, 5, 9, 4, 1, 1, 0),
    (3, 4, 7, 7, 2, 1, 2, 0),
    (2, 2, 5, 6, 3, 1, 1, 1),
    (2, 3, 4, 4, 5, 1, 2, 1),
    (5, 16, 13, 13, 32, 3, 1, 1),
    (2, 1, 3, 3, 2, 3, 1, 0),
];

/// Runs one case through both backends with x and w as variables; returns
/// (y, dx, dw) for each.
fn run_case(
    x: &Tensor,
    w: &Tensor,
    r: &Tensor,
    pad: usize,
    stride: usize,
    backend: ConvBackend,
    input_grad: bool,
) -> (Tensor, Option<Tensor>, Tensor) {
    let xv = Var::from_tensor(x).unwrap();
    let wv = Var::from_tensor(w).unwrap();
    let y = conv2d(
        xv.as_tensor(),
        wv.as_tensor(),
        pad,
        stride,
        backend,
        input_grad,
    )
    .unwrap();
    let loss = (&y * r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let dx = grads.get(xv.as_tensor()).cloned();
    let dw = grads.get(wv.as_tensor()).unwrap().clone();
    (y, dx, dw)
}

fn check_case(seed: u64, case: Case, binary: bool) {
    let (n, cin, h, w, cout, k, stride, pad) = case;
    let mut rng = Rng::new(seed);
    let x = if binary {
        spikes(&mut rng, &[n, cin, h, w], 0.2)
    } else {
        randn(&mut rng, &[n, cin, h, w])
    };
    let wt = randn(&mut rng, &[cout, cin, k, k]);
    let ho = (h + 2 * pad - k) / stride + 1;
    let wo = (w + 2 * pad - k) / stride + 1;
    let r = randn(&mut rng, &[n, cout, ho, wo]);
    let (y0, dx0, dw0) = run_case(&x, &wt, &r, pad, stride, ConvBackend::Candle, true);
    let (y1, dx1, dw1) = run_case(&x, &wt, &r, pad, stride, ConvBackend::Fast, true);
    let tag = format!("case {case:?} binary {binary}");
    assert_close(&format!("{tag} y"), &y1, &y0);
    assert_close(&format!("{tag} dw"), &dw1, &dw0);
    assert_close(&format!("{tag} dx"), &dx1.unwrap(), &dx0.unwrap());
    assert!(max_abs(&dw0) > 0.0, "{tag}: zero weight gradient");
}

#[test]
fn fast_conv_matches_candle_forward_and_gradients() {
    for (i, &case) in CASES.iter().enumerate() {
        check_case(100 + i as u64, case, false);
    }
}

#[test]
fn fast_conv_matches_candle_on_binary_spikes() {
    for (i, &case) in CASES.iter().enumerate() {
        check_case(200 + i as u64, case, true);
    }
}

#[test]
fn no_input_grad_gives_weight_grad_only() {
    let mut rng = Rng::new(7);
    let x = randn(&mut rng, &[3, 2, 9, 7]);
    let wt = randn(&mut rng, &[4, 2, 3, 3]);
    let r = randn(&mut rng, &[3, 4, 9, 7]);
    let (_, _, dw0) = run_case(&x, &wt, &r, 1, 1, ConvBackend::Candle, true);
    let (_, dx1, dw1) = run_case(&x, &wt, &r, 1, 1, ConvBackend::Fast, false);
    assert!(dx1.is_none(), "input_grad = false still produced dx");
    assert_close("dw without input grad", &dw1, &dw0);
}

#[test]
fn untracked_input_gets_no_gradient_and_right_weight_grad() {
    let mut rng = Rng::new(8);
    let x = randn(&mut rng, &[2, 3, 6, 6]);
    let wt = randn(&mut rng, &[5, 3, 3, 3]);
    let r = randn(&mut rng, &[2, 5, 3, 3]);
    let wv = Var::from_tensor(&wt).unwrap();
    let y = conv2d(&x, wv.as_tensor(), 1, 2, ConvBackend::Fast, true).unwrap();
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    let (_, _, dw0) = run_case(&x, &wt, &r, 1, 2, ConvBackend::Candle, true);
    assert_close("dw", grads.get(wv.as_tensor()).unwrap(), &dw0);
}

#[test]
fn non_contiguous_input_is_handled() {
    let mut rng = Rng::new(9);
    // (N, H, Cin, W) transposed to (N, Cin, H, W): a strided view.
    let x = randn(&mut rng, &[2, 5, 3, 6]).transpose(1, 2).unwrap();
    let wt = randn(&mut rng, &[4, 3, 3, 3]);
    let a = conv2d(&x, &wt, 1, 1, ConvBackend::Candle, true).unwrap();
    let b = conv2d(&x, &wt, 1, 1, ConvBackend::Fast, true).unwrap();
    assert_close("strided x", &b, &a);
}

#[test]
fn bad_shapes_are_typed_errors() {
    let x = Tensor::zeros((1, 3, 5, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((2, 4, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = conv2d(&x, &w, 1, 1, ConvBackend::Fast, true).unwrap_err();
    assert!(e.to_string().contains("3 input channels"), "{e}");
    let w = Tensor::zeros((2, 3, 7, 7), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = conv2d(&x, &w, 0, 1, ConvBackend::Fast, true).unwrap_err();
    assert!(e.to_string().contains("smaller than"), "{e}");
}

#[test]
fn backend_parses_and_prints() {
    for b in [ConvBackend::Candle, ConvBackend::Fast] {
        assert_eq!(b.to_string().parse::<ConvBackend>().unwrap(), b);
    }
    assert_eq!(ConvBackend::default(), ConvBackend::Fast);
    let e = "cuda".parse::<ConvBackend>().unwrap_err();
    assert!(e.to_string().contains("\"cuda\""), "{e}");
}

#[test]
fn flop_count_of_a_conv() {
    // 2 * N * Cout * Cin*k*k * Ho*Wo
    let f = conv2d_flop(&[2, 3, 8, 8], &[4, 3, 3, 3], 1, 1).unwrap();
    assert_eq!(f, 2.0 * 2.0 * 4.0 * 27.0 * 64.0);
}

// ---------------------------------------------------------------- LIF

fn lif_params(reset: Reset, surrogate: Surrogate) -> LifParams {
    LifParams {
        tau: 4.0 / 3.0,
        threshold: 1.0,
        reset,
        surrogate,
    }
}

fn lif_both(currents: &Tensor, p: &LifParams, r: &Tensor) -> [(Tensor, Tensor); 2] {
    [lif_multistep_reference, lif_multistep].map(|f| {
        let v = Var::from_tensor(currents).unwrap();
        let s = f(v.as_tensor(), p).unwrap();
        let grads = (&s * r).unwrap().sum_all().unwrap().backward().unwrap();
        (s, grads.get(v.as_tensor()).unwrap().clone())
    })
}

#[test]
fn fused_lif_matches_reference_forward_and_gradient() {
    let surrogates = [
        Surrogate::ATan { alpha: 2.0 },
        Surrogate::FastSigmoid { k: 5.0 },
    ];
    let mut seed = 300;
    for reset in [Reset::Hard, Reset::Subtract] {
        for surrogate in surrogates {
            // More neurons than one parallel chunk, and an odd count.
            for dims in [[6usize, 3, 5, 7], [4, 2, 33, 37]] {
                seed += 1;
                let mut rng = Rng::new(seed);
                let n: usize = dims.iter().product();
                let cur: Vec<f32> = (0..n).map(|_| 0.8 * rng.normal() + 0.7).collect();
                let cur = Tensor::from_vec(cur, &dims, &Device::Cpu).unwrap();
                let r = randn(&mut rng, &dims);
                let p = lif_params(reset, surrogate);
                let [(s_ref, g_ref), (s_fast, g_fast)] = lif_both(&cur, &p, &r);
                let tag = format!("{reset:?} {surrogate:?} {dims:?}");
                assert_eq!(max_abs_diff(&s_fast, &s_ref), 0.0, "{tag}: spikes differ");
                let rate = s_ref.mean_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(rate > 0.05 && rate < 0.95, "{tag}: firing rate {rate}");
                assert_close(&format!("{tag} grad"), &g_fast, &g_ref);
                assert!(max_abs(&g_fast) > 1e-3, "{tag}: zero gradient");
            }
        }
    }
}

#[test]
fn lif_spikes_by_hand() {
    // Constant current 1.2, tau 4/3 (h = 0.25 v + 0.75 I), threshold 1:
    // hard reset: h = 0.9, 1.125 (spike, v=0), 0.9, 1.125 -> 0 1 0 1.
    // subtract: h = 0.9, 1.125 (v=0.125), 0.93125, 1.1328 (v=0.1328), -> 0 1 0 1 as well,
    // then with I = 2: 1.5 (spike) for both.
    let cur = Tensor::from_vec(vec![1.2f32, 1.2, 1.2, 1.2, 2.0], (5, 1), &Device::Cpu).unwrap();
    for reset in [Reset::Hard, Reset::Subtract] {
        let p = lif_params(reset, Surrogate::default());
        for f in [lif_multistep, lif_multistep_reference] {
            let s = f(&cur, &p)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(s, vec![0.0, 1.0, 0.0, 1.0, 1.0], "{reset:?}");
        }
    }
    // Hard vs subtract differ once the residue matters: I = 1.33 after a spike at 1.5.
    let cur = Tensor::from_vec(vec![2.0f32, 1.33, 1.33], (3, 1), &Device::Cpu).unwrap();
    let hard = lif_multistep(&cur, &lif_params(Reset::Hard, Surrogate::default())).unwrap();
    let sub = lif_multistep(&cur, &lif_params(Reset::Subtract, Surrogate::default())).unwrap();
    // hard: 1.5 s, 0.9975, 1.2469 s; subtract: 1.5 s (v .5), 1.1225 s, ...
    assert_eq!(
        hard.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        vec![1.0, 0.0, 1.0]
    );
    assert_eq!(
        sub.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        vec![1.0, 1.0, 1.0]
    );
}

#[test]
fn surrogate_values() {
    let at = Surrogate::ATan { alpha: 2.0 };
    assert!((at.grad(0.0) - 1.0).abs() < 1e-6);
    // alpha/2 / (1 + (pi x)^2) at x = 1/pi: 1/2
    assert!((at.grad(1.0 / std::f32::consts::PI) - 0.5).abs() < 1e-6);
    let fs = Surrogate::FastSigmoid { k: 4.0 };
    assert!((fs.grad(0.25) - 0.25).abs() < 1e-6);
    assert!((fs.grad(-0.25) - 0.25).abs() < 1e-6);
}

#[test]
fn lif_rejects_bad_params_and_shapes() {
    let cur = Tensor::zeros((3, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let p = LifParams {
        tau: 0.0,
        ..LifParams::default()
    };
    let e = lif_multistep(&cur, &p).unwrap_err();
    assert!(e.to_string().contains("tau"), "{e}");
    let flat = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = lif_multistep(&flat, &LifParams::default()).unwrap_err();
    assert!(e.to_string().contains("(T, B, ...)"), "{e}");
}

#[test]
fn five_dim_input_matches_four_dim() {
    // (T, B, Cin, H, W): the fast op takes it directly; gradients as for (T*B, ...).
    let mut rng = Rng::new(11);
    let x = randn(&mut rng, &[3, 2, 4, 7, 5]);
    let wt = randn(&mut rng, &[5, 4, 3, 3]);
    let r = randn(&mut rng, &[3, 2, 5, 4, 3]);
    let x4 = x.reshape((6, 4, 7, 5)).unwrap();
    let r4 = r.reshape((6, 5, 4, 3)).unwrap();
    let (y0, dx0, dw0) = run_case(&x4, &wt, &r4, 1, 2, ConvBackend::Candle, true);
    for backend in [ConvBackend::Candle, ConvBackend::Fast] {
        let (y1, dx1, dw1) = run_case(&x, &wt, &r, 1, 2, backend, true);
        assert_eq!(y1.dims(), &[3, 2, 5, 4, 3]);
        assert_close("5-d y", &y1.reshape((6, 5, 4, 3)).unwrap(), &y0);
        let dx1 = dx1.unwrap();
        assert_eq!(dx1.dims(), x.dims());
        assert_close(
            "5-d dx",
            &dx1.reshape((6, 4, 7, 5)).unwrap(),
            dx0.as_ref().unwrap(),
        );
        assert_close("5-d dw", &dw1, &dw0);
    }
}

#[test]
fn adjoint_identity_where_candle_backward_fails() {
    // candle 0.11.1's conv2d backward breaks for stride 2 on even sizes (its
    // conv_transpose2d result is one pixel short). The conv is linear in x and in w, so
    // for loss = <r, y>: <dx, x> = <dw, w> = <r, y>; check the fast op that way.
    for (seed, dims, k, pad) in [(21, [3, 4, 8, 6], 3, 1), (22, [2, 3, 10, 4], 1, 0)] {
        let mut rng = Rng::new(seed);
        let x = randn(&mut rng, &dims);
        let wt = randn(&mut rng, &[5, dims[1], k, k]);
        let ho = (dims[2] + 2 * pad - k) / 2 + 1;
        let wo = (dims[3] + 2 * pad - k) / 2 + 1;
        let r = randn(&mut rng, &[dims[0], 5, ho, wo]);
        let (y, dx, dw) = run_case(&x, &wt, &r, pad, 2, ConvBackend::Fast, true);
        let dot = |a: &Tensor, b: &Tensor| {
            (a * b)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let ry = dot(&r, &y);
        let dxx = dot(&dx.unwrap(), &x);
        let dww = dot(&dw, &wt);
        let tol = 1e-4 * ry.abs().max(10.0);
        assert!((dxx - ry).abs() < tol, "<dx,x> {dxx} vs <r,y> {ry}");
        assert!((dww - ry).abs() < tol, "<dw,w> {dww} vs <r,y> {ry}");
    }
}

/// The standalone backward (used by the benchmark) gives the same gradients on both
/// backends, and they equal autograd's.
#[test]
fn conv2d_backward_agrees_across_backends_and_with_autograd() {
    let mut rng = Rng::new(21);
    for (dims, cout, k, pad, stride) in [
        ([3, 4, 9, 9], 5, 3, 1, 1),
        ([2, 3, 10, 10], 4, 3, 1, 2),
        ([2, 6, 5, 5], 3, 1, 0, 1),
    ] {
        let x = Var::from_tensor(&spikes(&mut rng, &dims, 0.15)).unwrap();
        let w = Var::from_tensor(&randn(&mut rng, &[cout, dims[1], k, k])).unwrap();
        let y = conv2d(
            x.as_tensor(),
            w.as_tensor(),
            pad,
            stride,
            ConvBackend::Candle,
            true,
        )
        .unwrap();
        let dy = randn(&mut rng, y.dims());
        let auto = (&y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
        for backend in [ConvBackend::Candle, ConvBackend::Fast] {
            let (dx, dw) =
                conv2d_backward(x.as_tensor(), w.as_tensor(), &dy, pad, stride, backend).unwrap();
            let ex = auto.get(x.as_tensor()).unwrap();
            let ew = auto.get(w.as_tensor()).unwrap();
            assert!(
                max_abs_diff(&dx, ex) < 1e-4 * (1.0 + max_abs(ex)),
                "{backend} dx"
            );
            assert!(
                max_abs_diff(&dw, ew) < 1e-4 * (1.0 + max_abs(ew)),
                "{backend} dw"
            );
        }
    }
}

/// "Same" 3x3 convolutions on planes thinner than the kernel (the shifted-copy im2col
/// and col2im meet empty spans there), forward and both gradients against candle.
#[test]
fn same_conv_on_tiny_planes_matches_candle() {
    let mut rng = Rng::new(31);
    for (h, w) in [(1, 5), (2, 1), (1, 1), (3, 2)] {
        let x = Var::from_tensor(&randn(&mut rng, &[2, 3, h, w])).unwrap();
        let wt = Var::from_tensor(&randn(&mut rng, &[4, 3, 3, 3])).unwrap();
        let run = |backend| {
            let y = conv2d(x.as_tensor(), wt.as_tensor(), 1, 1, backend, true).unwrap();
            let r = Tensor::ones(y.dims(), y.dtype(), y.device()).unwrap();
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let dx = g.get(x.as_tensor()).unwrap().clone();
            let dw = g.get(wt.as_tensor()).unwrap().clone();
            (y, dx, dw)
        };
        let (fy, fdx, fdw) = run(ConvBackend::Fast);
        let (cy, cdx, cdw) = run(ConvBackend::Candle);
        assert_close(&format!("y {h}x{w}"), &fy, &cy);
        assert_close(&format!("dx {h}x{w}"), &fdx, &cdx);
        assert_close(&format!("dw {h}x{w}"), &fdw, &cdw);
    }
}
