//! Population vote and prediction.
//!
//! Output neuron `k * cluster + j` (`j < cluster`) votes for class `k`; a class score is
//! the saturating sum of its neurons' outputs, accumulated over the timesteps.

/// `scores[k] = sat(scores[k] + sum_j outputs[k * cluster + j])`.
pub fn accumulate(outputs: &[i32], cluster: usize, scores: &mut [i32]) {
    for (s, group) in scores.iter_mut().zip(outputs.chunks_exact(cluster)) {
        for &o in group {
            *s = s.saturating_add(o);
        }
    }
}

/// Index of the largest score; the lowest index wins ties; `0` for no scores.
pub fn argmax(scores: &[i32]) -> usize {
    let mut best = 0;
    for (k, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = k;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_class_major_and_ties_go_low() {
        let mut s = [0; 3];
        accumulate(&[1, 2, 3, 4, 5, -6], 2, &mut s);
        assert_eq!(s, [3, 7, -1]);
        accumulate(&[4, 0, 0, 0, 0, 0], 2, &mut s);
        assert_eq!(argmax(&s), 0, "tie 7 vs 7 goes to the lower index");
        assert_eq!(argmax(&[-5, -3, -3]), 1);
        assert_eq!(argmax(&[]), 0);
        let mut s = [i32::MAX - 1];
        accumulate(&[10], 1, &mut s);
        assert_eq!(s, [i32::MAX]);
    }
}
