//! Leaky integrate-and-fire neurons with surrogate gradients (spikingjelly's
//! `LIFNode` semantics, `decay_input = True`, `v_reset = 0`).
//!
//! Per step: `h = v + (I - v) / tau`; `s = H(h - threshold)`; then a hard reset
//! `v = h (1 - s)` or a subtractive reset `v = h - s * threshold`. The reset is
//! detached (no gradient through it), as spikingjelly's `detach_reset=True`.
//! The Heaviside step has the derivative of the chosen surrogate in the
//! backward pass, written with standard tensor ops so it runs on every device:
//! `s = H(x) + x*c - (x*c).detach()` with `c = surrogate'(x)` detached, whose
//! value is exactly `H(x)` and whose gradient is exactly `c`.

use candle_core::{Result, Tensor};

use crate::kernels::ConvBackend;
pub use crate::kernels::{LifParams, Reset, Surrogate};

/// Heaviside step of `x` with the surrogate's derivative as its gradient.
pub fn spike(x: &Tensor, surrogate: Surrogate) -> Result<Tensor> {
    let heaviside = x.ge(0f32)?.to_dtype(x.dtype())?;
    let slope = surrogate_grad(&x.detach(), surrogate)?;
    let xc = (x * &slope)?;
    heaviside + (&xc - xc.detach())?
}

/// The surrogate derivative evaluated at `x` (no gradient).
pub fn surrogate_grad(x: &Tensor, surrogate: Surrogate) -> Result<Tensor> {
    match surrogate {
        Surrogate::ATan { alpha } => {
            let a = std::f64::consts::FRAC_PI_2 * alpha as f64;
            ((x * a)?.sqr()? + 1.0)?.recip()? * (alpha as f64 / 2.0)
        }
        Surrogate::FastSigmoid { k } => ((x.abs()? * k as f64)? + 1.0)?.sqr()?.recip(),
    }
}

/// One LIF step: returns `(spikes, new_membrane)`. `v` is `None` at t = 0 (zeros).
pub fn step(current: &Tensor, v: Option<&Tensor>, cfg: &LifParams) -> Result<(Tensor, Tensor)> {
    let inv_tau = 1.0 / cfg.tau as f64;
    let h = match v {
        Some(v) => (v + ((current - v)? * inv_tau)?)?,
        None => (current * inv_tau)?,
    };
    let s = spike(&(&h - cfg.threshold as f64)?, cfg.surrogate)?;
    let sd = s.detach();
    let v_next = match cfg.reset {
        Reset::Hard => (&h * (sd.ones_like()? - &sd)?)?,
        Reset::Subtract => (&h - (sd * cfg.threshold as f64)?)?,
    };
    Ok((s, v_next))
}

/// LIF over all timesteps: `currents` is `(T * B, ...)` in time-major order
/// (all of step 0's batch first); returns spikes of the same shape. The fast backend
/// runs the fused kernel, the candle backend the reference built from tensor ops.
pub fn multistep(
    currents: &Tensor,
    timesteps: usize,
    cfg: &LifParams,
    backend: ConvBackend,
) -> Result<Tensor> {
    let n = currents.dim(0)?;
    if timesteps == 0 || n % timesteps != 0 {
        candle_core::bail!("LIF input has {n} rows, not a multiple of T = {timesteps}");
    }
    let dims = currents.dims().to_vec();
    let mut split = vec![timesteps, n / timesteps];
    split.extend_from_slice(&dims[1..]);
    multistep_tb(&currents.reshape(split)?, cfg, backend)?.reshape(dims)
}

/// LIF over all timesteps of `currents` `(T, B, ...)` (no reshape): the fused kernel
/// with the fast backend, the reference built from tensor ops with the candle backend.
pub fn multistep_tb(currents: &Tensor, cfg: &LifParams, backend: ConvBackend) -> Result<Tensor> {
    match backend {
        ConvBackend::Fast => crate::kernels::lif_multistep(currents, cfg),
        ConvBackend::Candle => crate::kernels::lif_multistep_reference(currents, cfg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn fires_at_threshold_and_resets() -> Result<()> {
        let dev = Device::Cpu;
        // Constant current 1.0 with tau 4/3: h = 0.75, then 0.25*0.75+0.75 = 0.9375,
        // then 0.984..., never reaching 1.0 exactly; current 2.0 fires at step 1.
        let cfg = LifParams::default();
        let i = Tensor::new(&[[1.0f32], [1.0], [1.0], [2.0], [2.0]], &dev)?;
        let s = multistep(&i, 5, &cfg, ConvBackend::Candle)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(s, vec![0.0, 0.0, 0.0, 1.0, 1.0]);
        let mut sub = cfg;
        sub.reset = Reset::Subtract;
        let (s, v) = step(&Tensor::new(&[2.0f32], &dev)?, None, &sub)?;
        assert_eq!(s.to_vec1::<f32>()?, vec![1.0]);
        assert!((v.to_vec1::<f32>()?[0] - 0.5).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn surrogate_gradient_values() -> Result<()> {
        let dev = Device::Cpu;
        for (sur, expect) in [
            (
                Surrogate::ATan { alpha: 2.0 },
                1.0f32 / (1.0 + (std::f32::consts::PI * 0.1).powi(2)),
            ),
            (Surrogate::FastSigmoid { k: 10.0 }, 1.0 / 4.0),
        ] {
            let x = Var::new(&[0.1f32], &dev)?;
            let s = spike(x.as_tensor(), sur)?;
            assert_eq!(s.to_vec1::<f32>()?, vec![1.0]);
            let g = s.sum_all()?.backward()?;
            let gx = g.get(x.as_tensor()).unwrap().to_vec1::<f32>()?[0];
            assert!((gx - expect).abs() < 1e-5, "{sur:?}: {gx} vs {expect}");
        }
        Ok(())
    }
}
