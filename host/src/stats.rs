//! Rank statistics for judging a ranking signal against trained accuracy: Kendall's
//! tau-b, Spearman's rho, and a seeded bootstrap interval for either.

use crate::rng::Rng;

/// Kendall's tau-b rank correlation of two equally long series (ties handled).
pub fn kendall_tau(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "kendall_tau needs equal lengths");
    let (mut concordant, mut discordant, mut ties_a, mut ties_b) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            let da = (a[i] - a[j]).signum() * ((a[i] - a[j]).abs() > 0.0) as i32 as f64;
            let db = (b[i] - b[j]).signum() * ((b[i] - b[j]).abs() > 0.0) as i32 as f64;
            match (da == 0.0, db == 0.0) {
                (true, true) => {}
                (true, false) => ties_a += 1.0,
                (false, true) => ties_b += 1.0,
                (false, false) if da == db => concordant += 1.0,
                (false, false) => discordant += 1.0,
            }
        }
    }
    let n0 = concordant + discordant;
    let denom = ((n0 + ties_a) * (n0 + ties_b)).sqrt();
    if denom == 0.0 {
        0.0
    } else {
        (concordant - discordant) / denom
    }
}

/// Ranks of `v` (1-based; ties share their mean rank).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            out[k] = mean;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rho: the Pearson correlation of the ranks (ties share their mean rank).
pub fn spearman_rho(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "spearman_rho needs equal lengths");
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// The 2.5% and 97.5% quantiles of `stat` over `resamples` bootstrap resamples of the
/// pairs `(a[i], b[i])` (drawn with replacement, seeded).
pub fn bootstrap_interval(
    a: &[f64],
    b: &[f64],
    stat: fn(&[f64], &[f64]) -> f64,
    resamples: usize,
    seed: u64,
) -> (f64, f64) {
    let n = a.len();
    if n < 2 || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = Rng::new(seed);
    let mut values: Vec<f64> = (0..resamples)
        .map(|_| {
            let (mut x, mut y) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                let i = rng.below(n);
                x.push(a[i]);
                y.push(b[i]);
            }
            stat(&x, &y)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let q = |p: f64| values[((resamples - 1) as f64 * p).round() as usize];
    (q(0.025), q(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kendall_tau_known_values() {
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        // One discordant pair of three: (2 - 1) / 3.
        assert!((kendall_tau(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn spearman_known_values_and_ties() {
        assert_eq!(spearman_rho(&[1.0, 2.0, 3.0], &[10.0, 40.0, 90.0]), 1.0);
        assert_eq!(spearman_rho(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        // d = (0, 1, -1): rho = 1 - 6 * 2 / (3 * 8) = 0.5.
        assert!((spearman_rho(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]) - 0.5).abs() < 1e-12);
        assert_eq!(ranks(&[5.0, 1.0, 5.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn bootstrap_brackets_the_statistic() {
        let a: Vec<f64> = (0..30).map(|i| i as f64).collect();
        let b: Vec<f64> = a
            .iter()
            .map(|x| x + if (*x as i64) % 3 == 0 { 5.0 } else { 0.0 })
            .collect();
        let tau = kendall_tau(&a, &b);
        let (lo, hi) = bootstrap_interval(&a, &b, kendall_tau, 500, 7);
        assert!(lo <= tau && tau <= hi && hi - lo > 0.0, "{lo} {tau} {hi}");
        assert_eq!((lo, hi), bootstrap_interval(&a, &b, kendall_tau, 500, 7));
    }
}
