//! Saturating element-wise accumulation of currents (skip edges, cell node sums).

/// `dst[i] = sat_i32(dst[i] + src[i])` (a skip edge into a cell node).
pub fn accumulate(src: &[i32], dst: &mut [i32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = d.saturating_add(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_saturates() {
        let mut d = [1, i32::MAX - 1, i32::MIN + 1, 0];
        accumulate(&[2, 5, -5, -7], &mut d);
        assert_eq!(d, [3, i32::MAX, i32::MIN, -7]);
    }
}
