//! SNASNet's training-free score (Kim et al., ECCV 2022), exactly as its public code
//! defines it: at every LIF layer and every timestep, the binary spike patterns of a
//! batch `x` (B samples x N neurons) add a kernel
//!
//! ```text
//! K_ij += N - 0.5 * Hamming(x_i, x_j) / (N * (s_i (1 - s_j) + (1 - s_i) s_j) + 1e-3)
//! ```
//!
//! with `s_i` the firing rate of sample i (fraction of its N neurons that spiked).
//! The score is `log |det(K / hooks)|` of a randomly initialised network, averaged
//! over batches. Architectures whose samples produce distinct spike patterns score
//! higher.
//!
//! [`score_batches`] draws the batches a search scores every candidate on.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use super::SearchError;
use crate::arch::{Arch, InputShape};
use crate::data::Dataset;
use crate::kernels::ConvBackend;
use crate::rng::Rng;
use crate::snn::lif::LifParams;
use crate::snn::{Ctx, Network};

/// The batches the score is computed on: `repeats` batches of `batch` training images,
/// drawn with `seed`.
pub fn score_batches(
    data: &Dataset,
    batch: usize,
    repeats: usize,
    seed: u64,
    device: &Device,
) -> candle_core::Result<Vec<Tensor>> {
    let mut rng = Rng::new(seed ^ 0x5c0e);
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    rng.shuffle(&mut order);
    let batch = batch.min(data.train.len());
    (0..repeats)
        .map(|r| {
            let idx: Vec<usize> = (0..batch)
                .map(|i| order[(r * batch + i) % order.len()])
                .collect();
            Ok(data.train.batch(&idx, device)?.0)
        })
        .collect()
}

/// Scores architectures on fixed batches, each at most once.
#[derive(Debug)]
pub struct Scorer<'a> {
    batches: &'a [Tensor],
    input: InputShape,
    device: Device,
    seed: u64,
    conv: ConvBackend,
    cache: HashMap<Arch, f64>,
    /// Score evaluations answered from the cache.
    pub hits: usize,
}

impl<'a> Scorer<'a> {
    /// A scorer over `batches` of images `(B, C, H, W)`.
    pub fn new(
        batches: &'a [Tensor],
        input: InputShape,
        device: Device,
        seed: u64,
        conv: ConvBackend,
    ) -> Self {
        Scorer {
            batches,
            input,
            device,
            seed,
            conv,
            cache: HashMap::new(),
            hits: 0,
        }
    }

    /// The score of `arch` at random initialisation (seeded by the architecture, so a
    /// candidate's score does not depend on the order of the search).
    pub fn score(&mut self, arch: &Arch) -> Result<f64, SearchError> {
        if let Some(s) = self.cache.get(arch) {
            self.hits += 1;
            return Ok(*s);
        }
        let s = self.evaluate(arch)?;
        self.cache.insert(*arch, s);
        Ok(s)
    }

    /// Score `arch` without the cache.
    pub fn evaluate(&self, arch: &Arch) -> Result<f64, SearchError> {
        let salt = arch
            .to_string()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
        let (net, _vars) = Network::init(
            *arch,
            self.input,
            LifParams::default(),
            &self.device,
            self.seed ^ salt,
        )?;
        Ok(score_network(
            &net,
            self.batches,
            LifParams::default(),
            self.conv,
        )?)
    }

    /// Number of distinct architectures scored through the cache.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// Accumulates the spike Hamming kernel over hooks.
#[derive(Debug, Clone)]
pub struct HammingKernel {
    batch: usize,
    k: Vec<f64>,
    hooks: usize,
}

impl HammingKernel {
    /// An empty kernel for `batch` samples.
    pub fn new(batch: usize) -> Self {
        HammingKernel {
            batch,
            k: vec![0.0; batch * batch],
            hooks: 0,
        }
    }

    /// Number of hooks added so far.
    pub fn hooks(&self) -> usize {
        self.hooks
    }

    /// Add one hook's binary spikes, `(B, ...)` with values 0 or 1.
    pub fn add(&mut self, spikes: &Tensor) -> candle_core::Result<()> {
        let b = spikes.dim(0)?;
        if b != self.batch {
            candle_core::bail!("hook has batch {b}, kernel expects {}", self.batch);
        }
        let x = spikes.detach().flatten_from(1)?.to_dtype(DType::F32)?;
        let n = x.dim(1)? as f64;
        let gram = x
            .matmul(&x.t()?)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let counts = x.sum(1)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        self.add_from_gram(&gram, &counts, n);
        Ok(())
    }

    /// Add a hook given the Gram matrix `x x^T` (row-major B x B), each sample's
    /// spike count and the number of neurons N.
    pub fn add_from_gram(&mut self, gram: &[f64], counts: &[f64], n: f64) {
        let b = self.batch;
        for i in 0..b {
            let si = counts[i] / n;
            for j in 0..b {
                let sj = counts[j] / n;
                // Hamming distance = |x_i| + |x_j| - 2 <x_i, x_j>.
                let hamming = counts[i] + counts[j] - 2.0 * gram[i * b + j];
                let norm = n * (si * (1.0 - sj) + (1.0 - si) * sj) + 1e-3;
                self.k[i * b + j] += n - 0.5 * hamming / norm;
            }
        }
        self.hooks += 1;
    }

    /// `log |det(K / hooks)|`; `-inf` for a singular kernel.
    pub fn score(&self) -> f64 {
        if self.hooks == 0 {
            return f64::NEG_INFINITY;
        }
        let scaled: Vec<f64> = self.k.iter().map(|v| v / self.hooks as f64).collect();
        log_abs_det(scaled, self.batch)
    }
}

/// `log |det(A)|` of a row-major n x n matrix by LU with partial pivoting.
pub fn log_abs_det(mut a: Vec<f64>, n: usize) -> f64 {
    let mut acc = 0.0;
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&r, &s| a[r * n + col].abs().total_cmp(&a[s * n + col].abs()))
            .unwrap_or(col);
        let p = a[pivot * n + col];
        if p == 0.0 || !p.is_finite() {
            return f64::NEG_INFINITY;
        }
        if pivot != col {
            for k in 0..n {
                a.swap(pivot * n + k, col * n + k);
            }
        }
        acc += p.abs().ln();
        for r in col + 1..n {
            let f = a[r * n + col] / p;
            if f != 0.0 {
                for k in col..n {
                    a[r * n + k] -= f * a[col * n + k];
                }
            }
        }
    }
    acc
}

/// Score `net` (randomly initialised) on each batch of images `(B, C, H, W)` and
/// return the mean over batches.
pub fn score_network(
    net: &Network,
    batches: &[Tensor],
    lif: LifParams,
    conv: ConvBackend,
) -> candle_core::Result<f64> {
    let mut total = 0.0;
    for images in batches {
        let b = images.dim(0)?;
        let t = net.arch.timesteps;
        let mut kernel = HammingKernel::new(b);
        // SNASNet scores in training mode: batch-norm uses the batch's statistics.
        let ctx = Ctx {
            timesteps: t,
            train: true,
            lif,
            conv,
        };
        net.forward_ctx(&images.detach(), &ctx, &mut |_, spikes| {
            for step in 0..t {
                kernel.add(&spikes.narrow(0, step * b, b)?)?;
            }
            Ok(())
        })?;
        total += kernel.score();
    }
    Ok(total / batches.len().max(1) as f64)
}

/// A CPU tensor of binary spikes from rows of 0/1, for tests and examples.
pub fn spikes_from_rows(rows: &[&[u8]]) -> candle_core::Result<Tensor> {
    let n = rows.first().map_or(0, |r| r.len());
    let flat: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.iter().map(|&v| v as f32))
        .collect();
    Tensor::from_vec(flat, (rows.len(), n), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two samples, four neurons: x0 = 1100, x1 = 1010.
    /// s0 = s1 = 0.5; Hamming(x0, x1) = 2; norm = 4 * (0.25 + 0.25) + 1e-3 = 2.001.
    /// K01 = 4 - 0.5 * 2 / 2.001 = 3.50024987...; K00 = K11 = 4 (Hamming 0).
    /// det = 16 - K01^2; score = ln(16 - 12.2517...) computed by hand below.
    #[test]
    fn hand_computed_case() {
        let mut k = HammingKernel::new(2);
        k.add(&spikes_from_rows(&[&[1, 1, 0, 0], &[1, 0, 1, 0]]).unwrap())
            .unwrap();
        let k01 = 4.0 - 0.5 * 2.0 / 2.001;
        assert!((k.k[1] - k01).abs() < 1e-12 && (k.k[2] - k01).abs() < 1e-12);
        assert_eq!(k.k[0], 4.0);
        let expect = (16.0f64 - k01 * k01).ln();
        assert!(
            (k.score() - expect).abs() < 1e-12,
            "{} vs {expect}",
            k.score()
        );
        // A second identical hook leaves K / hooks unchanged.
        k.add(&spikes_from_rows(&[&[1, 1, 0, 0], &[1, 0, 1, 0]]).unwrap())
            .unwrap();
        assert!((k.score() - expect).abs() < 1e-12);
    }

    #[test]
    fn identical_patterns_are_singular_and_distinct_ones_score_higher() {
        let mut same = HammingKernel::new(2);
        same.add(&spikes_from_rows(&[&[1, 0, 1, 0], &[1, 0, 1, 0]]).unwrap())
            .unwrap();
        assert_eq!(same.score(), f64::NEG_INFINITY);
        let mut diff = HammingKernel::new(2);
        diff.add(&spikes_from_rows(&[&[1, 0, 1, 0], &[0, 1, 0, 1]]).unwrap())
            .unwrap();
        assert!(diff.score().is_finite());
    }

    #[test]
    fn log_abs_det_matches_known_values() {
        assert!((log_abs_det(vec![2.0, 0.0, 0.0, 3.0], 2) - 6f64.ln()).abs() < 1e-12);
        // Needs pivoting: [[0, 1], [2, 0]] has |det| = 2.
        assert!((log_abs_det(vec![0.0, 1.0, 2.0, 0.0], 2) - 2f64.ln()).abs() < 1e-12);
    }
}
