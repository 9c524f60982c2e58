//! Symmetric per-output-channel weight quantization and the reordering from candle's
//! layouts into the firmware's row layouts (`[ci][ky][kx][co]`, `[in][out]`).

use spikenas_firmware::weights::pack_i4;

use super::QWeights;

/// The float layout of a weight tensor, as candle stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// `(cout, cin, k, k)`.
    Conv {
        /// Output channels.
        cout: usize,
        /// Input channels.
        cin: usize,
        /// Kernel size.
        k: usize,
    },
    /// `(outputs, inputs)` (candle_nn's `Linear`).
    Linear {
        /// Output features.
        outputs: usize,
        /// Input features.
        inputs: usize,
    },
}

impl WeightLayout {
    /// `(output channels, rows)`: a row per input tap.
    pub fn dims(&self) -> (usize, usize) {
        match *self {
            WeightLayout::Conv { cout, cin, k } => (cout, cin * k * k),
            WeightLayout::Linear { outputs, inputs } => (outputs, inputs),
        }
    }
}

/// Quantizes `w` (candle layout) to `bits` (8 or 4) with one symmetric scale per output
/// channel, `scale_c = max|w_c| / qmax` (`qmax` = 127 or 7), `q = round(w / scale_c)`.
/// Returns the weights in the firmware's row layout and the scales (0 for an all-zero
/// channel, whose weights are all 0).
///
/// Both candle layouts put the output channel first and the row index
/// (`(ci * k + ky) * k + kx`, or the input index) second, so the firmware's
/// `[row][out]` is the transpose of `[out][row]`.
pub fn quantize_weights(w: &[f32], layout: WeightLayout, bits: u8) -> (QWeights, Vec<f64>) {
    let (outs, rows) = layout.dims();
    debug_assert_eq!(w.len(), outs * rows);
    let qmax = spikenas_firmware::weights::limit(bits) as f64;
    let scales: Vec<f64> = (0..outs)
        .map(|o| {
            let m = w[o * rows..(o + 1) * rows]
                .iter()
                .fold(0f64, |m, &v| m.max((v as f64).abs()));
            m / qmax
        })
        .collect();
    let mut q = vec![0i8; outs * rows];
    for (o, &s) in scales.iter().enumerate() {
        if s == 0.0 {
            continue;
        }
        for r in 0..rows {
            let v = (w[o * rows + r] as f64 / s).round().clamp(-qmax, qmax);
            q[r * outs + o] = v as i8;
        }
    }
    if bits == 4 {
        let mut packed = vec![0u8; rows * outs.div_ceil(2)];
        pack_i4(&q, outs, &mut packed).expect("values are in -7..=7 and the length matches");
        (QWeights::I4(packed), scales)
    } else {
        (QWeights::I8(q), scales)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spikenas_firmware::Weights;

    #[test]
    fn conv_reorders_to_ci_ky_kx_co_and_scales_per_channel() {
        // cout 2, cin 1, k 1: rows = 1... use k = 3 to test the tap order.
        let (cout, cin, k) = (3, 2, 3);
        let w: Vec<f32> = (0..cout * cin * k * k)
            .map(|i| ((i as f32) * 0.37).sin())
            .collect();
        let (q, scales) = quantize_weights(&w, WeightLayout::Conv { cout, cin, k }, 8);
        let QWeights::I8(q8) = &q else { panic!() };
        let rows = cin * k * k;
        for co in 0..cout {
            let maxabs = (0..rows)
                .map(|r| w[co * rows + r].abs())
                .fold(0f32, f32::max);
            assert!((scales[co] - maxabs as f64 / 127.0).abs() < 1e-9);
            for ci in 0..cin {
                for ky in 0..k {
                    for kx in 0..k {
                        let r = (ci * k + ky) * k + kx;
                        let float = w[((co * cin + ci) * k + ky) * k + kx] as f64;
                        let got = q8[r * cout + co] as f64 * scales[co];
                        assert!((got - float).abs() <= scales[co] / 2.0 + 1e-9);
                    }
                }
            }
            // The largest weight of each channel maps to +-127.
            assert!((0..rows).any(|r| q8[r * cout + co].abs() == 127));
        }
    }

    #[test]
    fn int4_packs_and_reads_back_like_int8() {
        for outs in [1usize, 2, 5, 8] {
            let rows = 7;
            let w: Vec<f32> = (0..outs * rows)
                .map(|i| ((i as f32) * 1.3).cos() * (1 + i % 3) as f32)
                .collect();
            let layout = WeightLayout::Linear {
                outputs: outs,
                inputs: rows,
            };
            let (q4, s4) = quantize_weights(&w, layout, 4);
            let QWeights::I4(packed) = &q4 else { panic!() };
            assert_eq!(packed.len(), rows * outs.div_ceil(2));
            let view = Weights::I4(packed);
            for o in 0..outs {
                for r in 0..rows {
                    let v = view.get(r, outs, o);
                    assert!((-7..=7).contains(&v));
                    let want = (w[o * rows + r] as f64 / s4[o]).round() as i8;
                    assert_eq!(v, want, "out {o} row {r}");
                }
            }
        }
    }

    #[test]
    fn zero_channel_has_zero_scale() {
        let w = [0.0f32, 0.0, 1.0, -0.5];
        let (q, s) = quantize_weights(
            &w,
            WeightLayout::Linear {
                outputs: 2,
                inputs: 2,
            },
            8,
        );
        assert_eq!(s, vec![0.0, 1.0 / 127.0]);
        assert_eq!(q, QWeights::I8(vec![0, 127, 0, -64]));
    }
}
