//! Short trainings that rank candidates (the search's multi-fidelity stage).
//!
//! A candidate is trained from scratch on a fixed subset of the training split for a
//! given number of images, with the job's optimiser and a cosine schedule compressed
//! into those images, then evaluated on held-out images (the validation split, topped
//! up with training images the proxy never trains on when the validation split is
//! small, as on `digits`). Every candidate sees the same images in the same order, so
//! differences come from the architectures. The measured training throughput of each
//! short training is kept too: it is this machine's real cost of the candidate.

use std::time::Instant;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::arch::{Arch, InputShape};
use crate::data::Dataset;
use crate::rng::Rng;
use crate::snn::lif::LifParams;
use crate::snn::Network;
use crate::train::{self, TrainConfig};

/// The data of the short trainings.
#[derive(Debug, Clone)]
pub struct ProxyData {
    /// Training images and held-out evaluation images, as a dataset (its `test` is
    /// the evaluation set, its `val` is empty).
    pub data: Dataset,
}

impl ProxyData {
    /// At most `train_images` training images, and at least `min_eval` (at most
    /// `max_eval`) evaluation images: the validation split first, then training
    /// images held back from the proxy's training subset. Seeded.
    pub fn new(
        data: &Dataset,
        train_images: usize,
        min_eval: usize,
        max_eval: usize,
        seed: u64,
    ) -> ProxyData {
        let mut rng = Rng::new(seed ^ 0x7072_6f78);
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        rng.shuffle(&mut order);
        let mut val_idx: Vec<usize> = (0..data.val.len()).collect();
        rng.shuffle(&mut val_idx);
        val_idx.truncate(max_eval);
        let mut eval = data.val.select(&val_idx);
        // Top up from the training split when the validation split is small, but leave
        // the proxy at least half of the training split.
        let top_up = min_eval
            .saturating_sub(eval.len())
            .min(data.train.len() / 2);
        let (held, rest) = order.split_at(top_up);
        if top_up > 0 {
            let extra = data.train.select(held);
            eval.images.extend_from_slice(&extra.images);
            eval.labels.extend_from_slice(&extra.labels);
        }
        let train_idx: Vec<usize> = rest.iter().copied().take(train_images.max(1)).collect();
        ProxyData {
            data: Dataset {
                spec: data.spec.clone(),
                train: data.train.select(&train_idx),
                val: data.val.select(&[]),
                test: eval,
            },
        }
    }

    /// Training images available to a proxy.
    pub fn train_len(&self) -> usize {
        self.data.train.len()
    }

    /// Evaluation images.
    pub fn eval_len(&self) -> usize {
        self.data.test.len()
    }
}

/// What one short training gave.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProxyResult {
    /// Accuracy on the proxy's evaluation images.
    pub accuracy: f64,
    /// Images trained.
    pub images: usize,
    /// Measured training throughput.
    pub images_per_second: f64,
    /// Wall time, evaluation included.
    pub seconds: f64,
}

/// The short trainings' peak learning rate, as a multiple of the recipe's (before the
/// batch-size scaling of [`proxy_recipe`]). A short training ranks candidates by how
/// they learn early, and at the full recipe's rate many have barely left chance.
/// Measured over 23-25 networks whose full trainings are known (Kendall tau of
/// one-epoch proxies at the recipe's batch against trained accuracy): digits 0.21 at
/// 1x (3e-3), 0.47 at 3.3x, 0.52 at 6.7x; Fashion-MNIST (4,127 images) 0.67 at 1x,
/// 0.73 at 3.3x, 0.58 at 6.7x. 3.3x helps both.
pub const PROXY_LR_SCALE: f64 = 10.0 / 3.0;

/// The short trainings take a quarter of the recipe's batch ...
pub const PROXY_BATCH_DIVISOR: usize = 4;
/// ... but at least this many images per step (or the recipe's batch, if smaller).
pub const MIN_PROXY_BATCH: usize = 8;

/// The batch of the short trainings for a recipe batch of `batch`: a quarter of it, at
/// least [`MIN_PROXY_BATCH`], never more than `batch`.
///
/// Early learning is counted in optimiser steps: at the same number of images, smaller
/// batches take more steps, and on a CPU an image costs little more in a batch of 16
/// than in one of 64. Measured on Fashion-MNIST over 24 networks (Kendall tau against
/// trained accuracy; `train --epochs 1 --max-train N --batch-size B --lr L`): 1,920
/// images in batches of 16 at 5e-3 reach 0.72 and 960 images 0.68, as 4,619 images in
/// batches of 64 did (0.67); 1,920 images in batches of 64 stay near chance (10-34%
/// accuracy). On digits (recipe batch 16), 960 images in batches of 8 reach 0.50 against
/// 0.44 in batches of 16 (the two seeds of the digits benchmark agree with each other
/// only at 0.57, so differences there are within noise).
pub fn proxy_batch(batch: usize) -> usize {
    (batch / PROXY_BATCH_DIVISOR)
        .max(MIN_PROXY_BATCH)
        .min(batch.max(1))
}

/// The recipe of the short trainings for a final training `recipe`: its optimiser and
/// backend, with the batch of [`proxy_batch`] and a peak learning rate of
/// [`PROXY_LR_SCALE`] times the recipe's, scaled by the square root of the batch ratio
/// (the usual rule for Adam: the step noise stays the same). On Fashion-MNIST that is
/// 5e-3 at batch 16 (1e-2 ranked worse: 0.63); on digits 7e-3 at batch 8.
pub fn proxy_recipe(recipe: &TrainConfig) -> TrainConfig {
    let batch = proxy_batch(recipe.batch_size);
    let ratio = batch as f64 / recipe.batch_size.max(1) as f64;
    TrainConfig {
        lr: recipe.lr * PROXY_LR_SCALE * ratio.sqrt(),
        batch_size: batch,
        ..recipe.clone()
    }
}

/// Short trainings of candidates on one [`ProxyData`] with one recipe.
#[derive(Debug, Clone)]
pub struct Proxy<'a> {
    /// The network input.
    pub input: InputShape,
    /// The images.
    pub data: &'a ProxyData,
    /// Optimiser, learning rate, batch size and convolution backend (epochs and
    /// time budget are replaced by the image count of each call).
    pub recipe: TrainConfig,
    /// Where to train.
    pub device: Device,
}

impl Proxy<'_> {
    /// Train `arch` from scratch for about `images` images (whole batches) and
    /// evaluate it; the same `seed` gives the same result.
    pub fn train(
        &self,
        arch: &Arch,
        images: usize,
        seed: u64,
    ) -> Result<ProxyResult, super::SearchError> {
        proxy_train(self, arch, images, seed)
    }
}

fn proxy_train(
    p: &Proxy<'_>,
    arch: &Arch,
    images: usize,
    seed: u64,
) -> Result<ProxyResult, super::SearchError> {
    let (proxy, recipe, input, device) = (p.data, &p.recipe, &p.input, &p.device);
    let started = Instant::now();
    let n = proxy.train_len().max(1);
    let batch = recipe.batch_size.clamp(1, n);
    let steps_total = images.div_ceil(batch).max(1);
    let steps_per_epoch = n.div_ceil(batch);
    let epochs = steps_total.div_ceil(steps_per_epoch);
    let cfg = TrainConfig {
        epochs,
        batch_size: batch,
        max_steps_per_epoch: Some(steps_total.div_ceil(epochs)),
        time_budget: None,
        // Short trainings are far from overfitting: undistorted images learn faster.
        augment: crate::data::Augment::None,
        progress: false,
        seed,
        ..recipe.clone()
    };
    let (net, varmap) = Network::init(*arch, *input, LifParams::default(), device, seed)?;
    let report = match train::train(&net, &varmap, &proxy.data, device, &cfg) {
        Ok(r) => r,
        // A candidate that diverges in its short training ranks last.
        Err(train::TrainError::Diverged { .. }) => {
            return Ok(ProxyResult {
                accuracy: 0.0,
                images: 0,
                images_per_second: 0.0,
                seconds: started.elapsed().as_secs_f64(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let trained = report.steps * batch;
    Ok(ProxyResult {
        accuracy: report.test_accuracy as f64,
        images: trained,
        images_per_second: trained as f64 / report.train_seconds.max(1e-9),
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;

    fn toy() -> Dataset {
        let split = |n: usize, off: u8| Split {
            images: (0..n * 16)
                .map(|i| (i as u8).wrapping_mul(7) ^ off)
                .collect(),
            labels: (0..n).map(|i| (i % 3) as u8).collect(),
            channels: 1,
            height: 4,
            width: 4,
            classes: 3,
        };
        Dataset {
            spec: crate::data::Spec {
                name: "toy".into(),
                channels: 1,
                height: 4,
                width: 4,
                classes: 3,
            },
            train: split(100, 0),
            val: split(10, 1),
            test: split(10, 2),
        }
    }

    #[test]
    fn proxy_batch_is_a_quarter_within_bounds() {
        assert_eq!(proxy_batch(64), 16);
        assert_eq!(proxy_batch(16), 8);
        assert_eq!(proxy_batch(6), 6);
        assert_eq!(proxy_batch(128), 32);
        let r = proxy_recipe(&TrainConfig {
            batch_size: 64,
            lr: 3e-3,
            ..Default::default()
        });
        assert_eq!(r.batch_size, 16);
        // 3.3x the rate, halved by the square root of the batch ratio (1/4).
        assert!((r.lr - 5e-3).abs() < 1e-12, "{}", r.lr);
    }

    #[test]
    fn eval_is_topped_up_and_disjoint_from_proxy_training() {
        let data = toy();
        let p = ProxyData::new(&data, 1000, 40, 1000, 3);
        assert_eq!(p.eval_len(), 40);
        assert_eq!(p.train_len(), 70);
        // Capped at half of the training split.
        let q = ProxyData::new(&data, 1000, 500, 1000, 3);
        assert_eq!(q.eval_len(), 60);
        assert_eq!(q.train_len(), 50);
        // A large validation split is capped, and nothing is taken from training.
        let r = ProxyData::new(&data, 30, 5, 8, 3);
        assert_eq!((r.eval_len(), r.train_len()), (8, 30));
    }

    #[test]
    fn short_training_is_deterministic() {
        let data = toy();
        let p = ProxyData::new(&data, 1000, 20, 1000, 1);
        let input = InputShape {
            channels: 1,
            height: 4,
            width: 4,
            classes: 3,
        };
        let arch: Arch = "cell=0003.0000.0000.0000,ch=2,stages=1,fc=0,t=2"
            .parse()
            .unwrap();
        let proxy = Proxy {
            input,
            data: &p,
            recipe: TrainConfig {
                batch_size: 16,
                ..Default::default()
            },
            device: Device::Cpu,
        };
        let run = || proxy.train(&arch, 100, 5).unwrap();
        let (a, b) = (run(), run());
        assert_eq!(a.accuracy, b.accuracy);
        // Whole batches: at least the images asked for, less than two batches more.
        assert!(a.images >= 100 && a.images < 132, "{}", a.images);
        assert!(a.images_per_second > 0.0);
    }
}
