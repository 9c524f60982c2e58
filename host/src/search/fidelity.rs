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
use crate::train::{self, Control, TrainConfig, Trained};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyResult {
    /// Accuracy on the proxy's evaluation images (of a stopped training: at its last
    /// look, on the look's images).
    pub accuracy: f64,
    /// Images trained.
    pub images: usize,
    /// Measured training throughput.
    pub images_per_second: f64,
    /// Wall time, evaluation included.
    pub seconds: f64,
    /// Accuracy at each look taken ([`Looks`]), in order.
    #[serde(default)]
    pub looks: Vec<f64>,
    /// A look stopped the training before its images were done.
    #[serde(default)]
    pub stopped: bool,
}

/// Looks at a short training while it runs: after `at[k]` images (rounded up to whole
/// batches; looks at or past the end are not taken) the network is evaluated on the
/// first `eval_images` evaluation images, and `stop(k, accuracy)` says whether the
/// training ends there. A training that no look stops gives the same result, bit for
/// bit, as one never looked at (a look pauses the run and resumes it from its
/// snapshot).
pub struct Looks<'a> {
    /// Images after which to look, increasing.
    pub at: Vec<usize>,
    /// Evaluation images of a look (the first of the proxy's evaluation set).
    pub eval_images: usize,
    /// Given the look's index and accuracy: true ends the training.
    pub stop: &'a dyn Fn(usize, f64) -> bool,
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

impl std::fmt::Debug for Looks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Looks")
            .field("at", &self.at)
            .field("eval_images", &self.eval_images)
            .finish_non_exhaustive()
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
        proxy_train(self, arch, images, seed, None)
    }

    /// [`Proxy::train`], looking at the training as `looks` says and stopping it where a
    /// look asks to.
    pub fn train_with_looks(
        &self,
        arch: &Arch,
        images: usize,
        seed: u64,
        looks: &Looks<'_>,
    ) -> Result<ProxyResult, super::SearchError> {
        proxy_train(self, arch, images, seed, Some(looks))
    }
}

fn proxy_train(
    p: &Proxy<'_>,
    arch: &Arch,
    images: usize,
    seed: u64,
    looks: Option<&Looks<'_>>,
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
    // The steps after which to look, strictly inside the run (as `train` counts it).
    let run_steps = steps_per_epoch.min(steps_total.div_ceil(epochs)) * epochs;
    let look_steps: Vec<usize> = looks
        .map(|l| {
            l.at.iter()
                .map(|&i| i.div_ceil(batch).max(1))
                .filter(|&s| s < run_steps)
                .collect()
        })
        .unwrap_or_default();
    let look_eval = looks.map(|l| {
        let k = l.eval_images.min(proxy.eval_len());
        proxy.data.test.select(&(0..k).collect::<Vec<_>>())
    });
    let mut taken: Vec<f64> = Vec::new();
    let mut resume: Option<Box<train::Snapshot>> = None;
    let report = loop {
        let mut keep = |_: &train::Snapshot| Ok(());
        let stop = |steps: usize| look_steps.contains(&steps);
        let control = Control {
            resume: resume.as_deref(),
            on_epoch: &mut keep,
            stop: &stop,
        };
        match train::train_resumable(&net, &varmap, &proxy.data, device, &cfg, control) {
            Ok(Trained::Finished(r)) => break r,
            Ok(Trained::Stopped(snap)) => {
                let (Some(l), Some(eval)) = (looks, &look_eval) else {
                    unreachable!("a run stops only at a look")
                };
                let acc = train::evaluate(&net, eval, device, cfg.conv)? as f64;
                let k = taken.len();
                taken.push(acc);
                if (l.stop)(k, acc) {
                    let trained = snap.state.steps * batch;
                    return Ok(ProxyResult {
                        accuracy: acc,
                        images: trained,
                        images_per_second: trained as f64 / snap.state.elapsed_seconds.max(1e-9),
                        seconds: started.elapsed().as_secs_f64(),
                        looks: taken,
                        stopped: true,
                    });
                }
                resume = Some(snap);
            }
            // A candidate that diverges in its short training ranks last.
            Err(train::TrainError::Diverged { .. }) => {
                return Ok(ProxyResult {
                    accuracy: 0.0,
                    images: 0,
                    images_per_second: 0.0,
                    seconds: started.elapsed().as_secs_f64(),
                    looks: taken,
                    stopped: false,
                })
            }
            Err(e) => return Err(e.into()),
        }
    };
    let trained = report.steps * batch;
    Ok(ProxyResult {
        accuracy: report.test_accuracy as f64,
        images: trained,
        images_per_second: trained as f64 / report.train_seconds.max(1e-9),
        seconds: started.elapsed().as_secs_f64(),
        looks: taken,
        stopped: false,
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
        let (proxy, arch) = toy_proxy(&p, 16);
        let run = || proxy.train(&arch, 100, 5).unwrap();
        let (a, b) = (run(), run());
        assert_eq!(a.accuracy, b.accuracy);
        // Whole batches: at least the images asked for, less than two batches more.
        assert!(a.images >= 100 && a.images < 132, "{}", a.images);
        assert!(a.images_per_second > 0.0);
        assert!(a.looks.is_empty() && !a.stopped);
    }

    fn toy_proxy(p: &ProxyData, batch_size: usize) -> (Proxy<'_>, Arch) {
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
            data: p,
            recipe: TrainConfig {
                batch_size,
                ..Default::default()
            },
            device: Device::Cpu,
        };
        (proxy, arch)
    }

    #[test]
    fn looks_that_do_not_stop_change_nothing() {
        let data = toy();
        let p = ProxyData::new(&data, 1000, 20, 1000, 1);
        let (proxy, arch) = toy_proxy(&p, 8);
        let plain = proxy.train(&arch, 160, 5).unwrap();
        let asked = std::cell::RefCell::new(Vec::new());
        let stop = |k: usize, acc: f64| {
            asked.borrow_mut().push((k, acc));
            false
        };
        // The look at 200 images is past the end: not taken.
        let looks = Looks {
            at: vec![40, 100, 200],
            eval_images: 10,
            stop: &stop,
        };
        let looked = proxy.train_with_looks(&arch, 160, 5, &looks).unwrap();
        assert_eq!(looked.accuracy, plain.accuracy);
        assert_eq!(looked.images, plain.images);
        assert!(!looked.stopped);
        assert_eq!(looked.looks.len(), 2);
        let asked = asked.into_inner();
        assert_eq!(asked.iter().map(|a| a.0).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(asked.iter().map(|a| a.1).collect::<Vec<_>>(), looked.looks);
    }

    #[test]
    fn a_look_that_stops_ends_the_training_there() {
        let data = toy();
        let p = ProxyData::new(&data, 1000, 20, 1000, 1);
        let (proxy, arch) = toy_proxy(&p, 8);
        let stop = |k: usize, _: f64| k == 1;
        let looks = Looks {
            at: vec![40, 100],
            eval_images: 10,
            stop: &stop,
        };
        let r = proxy.train_with_looks(&arch, 160, 5, &looks).unwrap();
        assert!(r.stopped);
        // Stopped after the batch that reached 100 images (batches of 8: 104).
        assert_eq!(r.images, 104);
        assert_eq!(r.looks.len(), 2);
        assert_eq!(r.accuracy, r.looks[1]);
    }
}
