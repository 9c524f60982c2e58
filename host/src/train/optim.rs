//! The optimisers, with a state that can be saved and put back (resumable training).
//!
//! AdamW does exactly what candle-nn's `AdamW` does, operation for operation (so the
//! numbers are the same), but keeps its moments where [`Optimiser::state`] can read
//! them: candle's are private.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use super::OptimizerKind;

/// AdamW's decay of the first moment.
const BETA1: f64 = 0.9;
/// AdamW's decay of the second moment.
const BETA2: f64 = 0.999;
/// AdamW's denominator guard.
const EPS: f64 = 1e-8;
/// SGD's momentum.
const MOMENTUM: f64 = 0.9;

/// One trainable variable and the optimiser's tensors for it.
#[derive(Debug)]
struct Param {
    name: String,
    var: Var,
    /// AdamW: first and second moment; SGD: momentum.
    slots: Vec<Tensor>,
}

/// AdamW or SGD with momentum 0.9, both with decoupled weight decay.
#[derive(Debug)]
pub(crate) struct Optimiser {
    kind: OptimizerKind,
    params: Vec<Param>,
    lr: f64,
    weight_decay: f64,
    /// Steps taken (AdamW's bias correction depends on it).
    steps: usize,
}

impl Optimiser {
    /// An optimiser for the named variables, with zero moments.
    pub(crate) fn new(
        kind: OptimizerKind,
        vars: Vec<(String, Var)>,
        lr: f64,
        weight_decay: f64,
    ) -> candle_core::Result<Self> {
        let slots = match kind {
            OptimizerKind::Adamw => 2,
            OptimizerKind::Sgd => 1,
        };
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let zeros = var.as_tensor().zeros_like()?;
                Ok(Param {
                    name,
                    slots: vec![zeros; slots],
                    var,
                })
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Optimiser {
            kind,
            params,
            lr,
            weight_decay,
            steps: 0,
        })
    }

    pub(crate) fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Steps taken so far.
    #[cfg(test)]
    pub(crate) fn steps(&self) -> usize {
        self.steps
    }

    /// Names of the optimiser's tensors, e.g. `adamw.m/stem.conv.weight`.
    fn slot_names(&self) -> &'static [&'static str] {
        match self.kind {
            OptimizerKind::Adamw => &["adamw.m", "adamw.v"],
            OptimizerKind::Sgd => &["sgd.momentum"],
        }
    }

    /// Every optimiser tensor by name.
    pub(crate) fn state(&self) -> Vec<(String, Tensor)> {
        let names = self.slot_names();
        self.params
            .iter()
            .flat_map(|p| {
                names
                    .iter()
                    .zip(&p.slots)
                    .map(|(slot, t)| (format!("{slot}/{}", p.name), t.clone()))
            })
            .collect()
    }

    /// Puts back a [`Optimiser::state`] taken after `steps` steps; `get` returns the
    /// tensor of a name, or None when it is missing.
    pub(crate) fn restore(
        &mut self,
        steps: usize,
        mut get: impl FnMut(&str) -> Option<Tensor>,
    ) -> Result<(), String> {
        let names = self.slot_names();
        for p in &mut self.params {
            for (slot, t) in names.iter().zip(p.slots.iter_mut()) {
                let key = format!("{slot}/{}", p.name);
                let saved = get(&key).ok_or_else(|| format!("tensor `{key}` is missing"))?;
                if saved.dims() != t.dims() {
                    return Err(format!(
                        "tensor `{key}` has shape {:?}, the network needs {:?}",
                        saved.dims(),
                        t.dims()
                    ));
                }
                *t = saved;
            }
        }
        self.steps = steps;
        Ok(())
    }

    /// One update from `grads`.
    pub(crate) fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.steps += 1;
        match self.kind {
            OptimizerKind::Adamw => self.adamw_step(grads),
            OptimizerKind::Sgd => self.sgd_step(grads),
        }
    }

    fn adamw_step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let lr = self.lr;
        let lr_lambda = lr * self.weight_decay;
        let scale_m = 1f64 / (1f64 - BETA1.powi(self.steps as i32));
        let scale_v = 1f64 / (1f64 - BETA2.powi(self.steps as i32));
        for p in &mut self.params {
            let theta = &p.var;
            let Some(g) = grads.get(theta.as_tensor()) else {
                continue;
            };
            let next_m = ((&p.slots[0] * BETA1)? + (g * (1.0 - BETA1))?)?;
            let next_v = ((&p.slots[1] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            let next_theta = (theta.as_tensor() * (1f64 - lr_lambda))?;
            let adjusted_grad = (m_hat / (v_hat.sqrt()? + EPS)?)?;
            let next_theta = (next_theta - (adjusted_grad * lr)?)?;
            p.slots[0] = next_m;
            p.slots[1] = next_v;
            theta.set(&next_theta)?;
        }
        Ok(())
    }

    fn sgd_step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        for p in &mut self.params {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            p.slots[0] = ((&p.slots[0] * MOMENTUM)? + g)?;
            let decayed = (p.var.as_tensor() * (1.0 - self.lr * self.weight_decay))?;
            p.var.set(&(decayed - (&p.slots[0] * self.lr)?)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::Optimizer as _;

    fn quadratic_steps(
        steps: usize,
        mut step: impl FnMut(&GradStore) -> candle_core::Result<()>,
        x: &Var,
    ) {
        for _ in 0..steps {
            let loss = (x.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            step(&loss.backward().unwrap()).unwrap();
        }
    }

    #[test]
    fn adamw_gives_candles_numbers_bit_for_bit() {
        let start = Tensor::new(&[1.5f32, -0.25, 3.0], &Device::Cpu).unwrap();
        let ours = Var::from_tensor(&start).unwrap();
        let theirs = Var::from_tensor(&start).unwrap();
        let mut a = Optimiser::new(
            OptimizerKind::Adamw,
            vec![("x".into(), ours.clone())],
            0.1,
            0.01,
        )
        .unwrap();
        let mut b = candle_nn::AdamW::new(
            vec![theirs.clone()],
            candle_nn::ParamsAdamW {
                lr: 0.1,
                weight_decay: 0.01,
                ..Default::default()
            },
        )
        .unwrap();
        quadratic_steps(5, |g| a.step(g), &ours);
        quadratic_steps(5, |g| b.step(g), &theirs);
        let (x, y): (Vec<f32>, Vec<f32>) = (
            ours.as_tensor().to_vec1().unwrap(),
            theirs.as_tensor().to_vec1().unwrap(),
        );
        assert_eq!(
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_ne!(x, start.to_vec1::<f32>().unwrap(), "it moved");
    }

    #[test]
    fn a_restored_state_continues_exactly() {
        for kind in [OptimizerKind::Adamw, OptimizerKind::Sgd] {
            let start = Tensor::new(&[2.0f32, -1.0], &Device::Cpu).unwrap();
            let x = Var::from_tensor(&start).unwrap();
            let mut whole = Optimiser::new(kind, vec![("x".into(), x.clone())], 0.05, 0.1).unwrap();
            quadratic_steps(6, |g| whole.step(g), &x);
            let expected: Vec<f32> = x.as_tensor().to_vec1().unwrap();

            let y = Var::from_tensor(&start).unwrap();
            let mut first = Optimiser::new(kind, vec![("x".into(), y.clone())], 0.05, 0.1).unwrap();
            quadratic_steps(2, |g| first.step(g), &y);
            let saved: Vec<(String, Vec<f32>)> = first
                .state()
                .into_iter()
                .map(|(n, t)| (n, t.to_vec1().unwrap()))
                .collect();
            let weights: Vec<f32> = y.as_tensor().to_vec1().unwrap();
            let z = Var::from_tensor(&Tensor::new(weights, &Device::Cpu).unwrap()).unwrap();
            let mut second =
                Optimiser::new(kind, vec![("x".into(), z.clone())], 0.05, 0.1).unwrap();
            second
                .restore(first.steps(), |name| {
                    saved
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| Tensor::new(v.as_slice(), &Device::Cpu).unwrap())
                })
                .unwrap();
            quadratic_steps(4, |g| second.step(g), &z);
            assert_eq!(
                z.as_tensor().to_vec1::<f32>().unwrap(),
                expected,
                "{kind:?}"
            );
            let missing = second.restore(0, |_| None).unwrap_err();
            assert!(missing.contains("is missing"), "{missing}");
        }
    }
}
