//! Seeded, class-stratified partitioning of a split: any prefix of the order
//! [`stratified_order`] returns holds each class in about its overall
//! proportion, so "the first k" is a fair subsample or held-out set.

use crate::rng::Rng;

use super::Split;

/// A permutation of `0..labels.len()` in which each class is spread evenly.
///
/// Within each class the images are shuffled by `rng`; the `r`-th image (of `n_c`)
/// of class `c` gets the key `(r + 0.5) / n_c`, and the order is by key, ties by
/// class. A prefix of length `k` then holds `k * n_c / N` images of class `c`,
/// give or take one.
pub fn stratified_order(labels: &[u8], rng: &mut Rng) -> Vec<usize> {
    let classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut keyed: Vec<(f64, usize, usize)> = Vec::with_capacity(labels.len());
    for (class, members) in by_class.iter_mut().enumerate() {
        rng.shuffle(members);
        let n = members.len() as f64;
        for (rank, &i) in members.iter().enumerate() {
            keyed.push(((rank as f64 + 0.5) / n, class, i));
        }
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, _, i)| i).collect()
}

/// Splits `split` into `(first, rest)` where `first` holds `first_len` images
/// chosen stratified by `rng`. Both keep the source order of their images.
pub fn carve(split: &Split, first_len: usize, rng: &mut Rng) -> (Split, Split) {
    let order = stratified_order(&split.labels, rng);
    let first_len = first_len.min(order.len());
    let (mut first, mut rest) = (order[..first_len].to_vec(), order[first_len..].to_vec());
    first.sort_unstable();
    rest.sort_unstable();
    (split.select(&first), split.select(&rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_a_stratified_permutation() {
        // 3 classes of sizes 60, 30, 10.
        let labels: Vec<u8> = (0..100)
            .map(|i| {
                if i < 60 {
                    0
                } else if i < 90 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let order = stratified_order(&labels, &mut Rng::new(5));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        for k in [10, 20, 50, 73] {
            let mut counts = [0usize; 3];
            for &i in &order[..k] {
                counts[labels[i] as usize] += 1;
            }
            for (c, &n) in [60.0, 30.0, 10.0].iter().enumerate() {
                let want = k as f64 * n / 100.0;
                assert!(
                    (counts[c] as f64 - want).abs() <= 1.0,
                    "k {k} class {c}: {counts:?}"
                );
            }
        }
        // Same seed, same order; another seed, another order.
        assert_eq!(order, stratified_order(&labels, &mut Rng::new(5)));
        assert_ne!(order, stratified_order(&labels, &mut Rng::new(6)));
    }

    #[test]
    fn carve_partitions_and_keeps_source_order() {
        let split = Split {
            images: (0..40).collect(),
            labels: (0..40).map(|i| (i % 4) as u8).collect(),
            channels: 1,
            height: 1,
            width: 1,
            classes: 4,
        };
        let (a, b) = carve(&split, 8, &mut Rng::new(1));
        assert_eq!((a.len(), b.len()), (8, 32));
        assert_eq!(a.class_counts(), vec![2, 2, 2, 2]);
        assert!(a.images.windows(2).all(|w| w[0] < w[1]));
        assert!(b.images.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<u8> = a.images.iter().chain(&b.images).copied().collect();
        all.sort_unstable();
        assert_eq!(all, split.images);
        // Labels travel with their images.
        assert!(a.images.iter().zip(&a.labels).all(|(&p, &l)| p % 4 == l));
    }
}
