//! Folding a trained float network into the integer description.
//!
//! Every current in the integer network is `round(Q * x)` with `Q = 4096 / tau` (Q12,
//! with spikingjelly's `1/tau` input factor folded in; `Q = 3072` for SNASNet's
//! tau = 4/3). A float layer `y_c = a_c * (s_c * acc) + b_c` (BatchNorm `a, b` from
//! the running statistics, weight scale `s_c`, input scale `s_in`) becomes
//! `mult_c / 2^shift = Q * a_c * s_c * s_in`, `bias_c = round(Q * b_c)`, with
//! `s_in = 1/255` for pixels, `1/4` for the 2x2 pools, `1` for spikes, and `1/Q` for a
//! standalone BatchNorm reading a current. The output layer's logits are Q12 without
//! the `1/tau` (a class score is `4096 * T * cluster` times the float output).

use std::collections::HashMap;

use candle_core::Var;
use candle_nn::VarMap;
use spikenas_firmware as fw;

use super::assemble::{assemble, LayerSource};
use super::weights::{quantize_weights, WeightLayout};
use super::{
    calibrate, QConv, QHead, QLinear, QReduction, QRequant, QuantError, QuantReport,
    QuantizedNetwork,
};
use crate::arch::Arch;
use crate::data::Split;
use crate::kernels::{LifParams, Reset};
use crate::snn::Network;

/// Output logits are Q12 (no `1/tau`: they feed no neuron).
pub const LOGIT_SCALE: f64 = fw::LOGIT_ONE as f64;

/// Batch-norm epsilon of every BatchNorm in the float network (PyTorch's default).
const BN_EPS: f64 = 1e-5;

/// Quantizes `net` (variables in `varmap`) to `bits` (8 or 4) and calibrates it on the
/// first images of `calibration` (256 is plenty): returns the integer network and a
/// report of per-layer spike rates, float against integer, with warnings for layers
/// that fall silent or saturate.
pub fn quantize(
    net: &Network,
    varmap: &VarMap,
    calibration: &Split,
    bits: u8,
) -> Result<(QuantizedNetwork, QuantReport), QuantError> {
    let q = fold(net, varmap, bits)?;
    let device = varmap
        .all_vars()
        .first()
        .map(|v| v.device().clone())
        .unwrap_or(candle_core::Device::Cpu);
    let report = calibrate::calibrate(net, &q, calibration, &device)?;
    Ok((q, report))
}

/// The folding alone (no calibration).
pub(crate) fn fold(
    net: &Network,
    varmap: &VarMap,
    bits: u8,
) -> Result<QuantizedNetwork, QuantError> {
    if bits != 8 && bits != 4 {
        return Err(QuantError::Bits(bits));
    }
    let data = varmap.data().lock().expect("varmap lock");
    let f = Folder {
        data: &data,
        bits,
        q: fw::ONE_Q12 as f64 / net.lif.tau as f64,
        lif: lif("lif", &net.lif)?,
    };
    // Only live edges reach the firmware: nodes on no input->output path are zeroed
    // (a parsed Arch is already validated; one built field by field may not be).
    let arch = Arch {
        cell: net.arch.cell.validated()?,
        weight_bits: bits,
        ..net.arch
    };
    let qn = assemble(arch, net.input, bits, &f)?;
    qn.workspace_layout()?;
    Ok(qn)
}

struct Folder<'a> {
    data: &'a HashMap<String, Var>,
    bits: u8,
    /// Current scale: Q12 times 1/tau.
    q: f64,
    /// The network's one LIF (every layer shares its parameters).
    lif: fw::Lif,
}

impl LayerSource for Folder<'_> {
    type Error = QuantError;

    fn stem(&self, dims: (usize, usize, usize)) -> Result<QConv, QuantError> {
        self.conv_bn("stem", "stem.conv.weight", "stem.bn", dims, 1.0 / 255.0)
    }

    fn reduction(&self, p: &str, dims: (usize, usize, usize)) -> Result<QReduction, QuantError> {
        Ok(QReduction {
            bn: self.standalone_bn(&format!("{p}.bn_in"), dims.0)?,
            lif: self.lif,
            conv: self.conv_bn(
                p,
                &format!("{p}.conv.weight"),
                &format!("{p}.bn"),
                dims,
                0.25,
            )?,
        })
    }

    fn conv_edge(
        &self,
        p: &str,
        dims: (usize, usize, usize),
    ) -> Result<(fw::Lif, QConv), QuantError> {
        let conv = self.conv_bn(
            p,
            &format!("{p}.conv.weight"),
            &format!("{p}.bn"),
            dims,
            1.0,
        )?;
        Ok((self.lif, conv))
    }

    fn head(
        &self,
        channels: usize,
        features: usize,
        fc: usize,
        outputs: usize,
    ) -> Result<QHead, QuantError> {
        let bn = self.standalone_bn("head.bn", channels)?;
        let (hidden, output) = if fc > 0 {
            let fc1 = self.linear("head.fc1", (features, fc), self.q, 0.25)?;
            let fc2 = self.linear("head.fc2", (fc, outputs), LOGIT_SCALE, 1.0)?;
            (Some((fc1, self.lif)), fc2)
        } else {
            let fc2 = self.linear("head.fc2", (features, outputs), LOGIT_SCALE, 0.25)?;
            (None, fc2)
        };
        Ok(QHead {
            bn,
            lif: self.lif,
            hidden,
            output,
        })
    }
}

impl Folder<'_> {
    fn tensor(&self, name: &str, expected: usize) -> Result<Vec<f32>, QuantError> {
        Ok(crate::snn::var_values(self.data, name, expected)?)
    }

    /// BatchNorm `(a, b)` with `y = a x + b` from the running statistics.
    fn bn(&self, prefix: &str, c: usize) -> Result<(Vec<f64>, Vec<f64>), QuantError> {
        let gamma = self.tensor(&format!("{prefix}.weight"), c)?;
        let beta = self.tensor(&format!("{prefix}.bias"), c)?;
        let mean = self.tensor(&format!("{prefix}.running_mean"), c)?;
        let var = self.tensor(&format!("{prefix}.running_var"), c)?;
        let a: Vec<f64> = (0..c)
            .map(|i| gamma[i] as f64 / (var[i] as f64 + BN_EPS).sqrt())
            .collect();
        let b = (0..c)
            .map(|i| beta[i] as f64 - a[i] * mean[i] as f64)
            .collect();
        Ok((a, b))
    }

    /// A BatchNorm reading a current: `mult = a`, `bias = Q b`.
    fn standalone_bn(&self, prefix: &str, c: usize) -> Result<QRequant, QuantError> {
        let (a, b) = self.bn(prefix, c)?;
        let bias: Vec<f64> = b.iter().map(|b| b * self.q).collect();
        requant(prefix, &a, &bias)
    }

    /// Convolution (no bias) then BatchNorm, producing a current from inputs of scale
    /// `s_in`.
    fn conv_bn(
        &self,
        layer: &str,
        weight: &str,
        bn: &str,
        (cin, cout, k): (usize, usize, usize),
        s_in: f64,
    ) -> Result<QConv, QuantError> {
        let w = self.tensor(weight, cout * cin * k * k)?;
        let (weights, scales) =
            quantize_weights(&w, WeightLayout::Conv { cout, cin, k }, self.bits);
        let (a, b) = self.bn(bn, cout)?;
        let mult: Vec<f64> = (0..cout)
            .map(|c| self.q * a[c] * scales[c] * s_in)
            .collect();
        let bias: Vec<f64> = b.iter().map(|b| b * self.q).collect();
        Ok(QConv {
            cin,
            cout,
            k,
            weights,
            requant: requant(layer, &mult, &bias)?,
        })
    }

    /// A linear layer with bias whose output is `out_unit` times the float value, from
    /// inputs of scale `s_in`.
    fn linear(
        &self,
        prefix: &str,
        (inputs, outputs): (usize, usize),
        out_unit: f64,
        s_in: f64,
    ) -> Result<QLinear, QuantError> {
        let w = self.tensor(&format!("{prefix}.weight"), inputs * outputs)?;
        let b = self.tensor(&format!("{prefix}.bias"), outputs)?;
        let (weights, scales) =
            quantize_weights(&w, WeightLayout::Linear { outputs, inputs }, self.bits);
        let mult: Vec<f64> = scales.iter().map(|s| out_unit * s * s_in).collect();
        let bias: Vec<f64> = b.iter().map(|&b| b as f64 * out_unit).collect();
        Ok(QLinear {
            inputs,
            outputs,
            weights,
            requant: requant(prefix, &mult, &bias)?,
        })
    }
}

/// The firmware's LIF for `p` (Q12 threshold, decay as a shift when it is a power of
/// two); errors name `layer`.
fn lif(layer: &str, p: &LifParams) -> Result<fw::Lif, QuantError> {
    let err = |what: String| QuantError::Lif {
        layer: layer.to_string(),
        what,
    };
    let thr = (p.threshold as f64 * fw::ONE_Q12 as f64).round();
    if !(1.0..=i16::MAX as f64).contains(&thr) {
        return Err(err(format!(
            "threshold {} is outside the Q12 i16 membrane range (0, 8)",
            p.threshold
        )));
    }
    let keep = 1.0 - 1.0 / p.tau as f64;
    if !(0.0..1.0).contains(&keep) {
        return Err(err(format!(
            "tau {} gives a decay factor {keep} outside [0, 1); use tau >= 1",
            p.tau
        )));
    }
    let decay = fw::Decay::from_keep(keep);
    Ok(fw::Lif {
        decay,
        threshold: thr as i16,
        reset: match p.reset {
            Reset::Hard => fw::Reset::Hard,
            Reset::Subtract => fw::Reset::Subtract,
        },
    })
}

/// Per-channel reals and biases to one shared shift: the largest `|real|` gets a
/// multiplier in `[2^30, 2^31)` (see [`fw::requant::quantize_multiplier`]), the others
/// the same shift. Biases are rounded and saturated to i32.
pub(crate) fn requant(layer: &str, reals: &[f64], biases: &[f64]) -> Result<QRequant, QuantError> {
    let bad = |value: f64| QuantError::Scale {
        layer: layer.to_string(),
        value,
    };
    if let Some(&v) = reals.iter().chain(biases).find(|v| !v.is_finite()) {
        return Err(bad(v));
    }
    let max = reals.iter().fold(0f64, |m, r| m.max(r.abs()));
    let (_, shift) = fw::requant::quantize_multiplier(max).ok_or_else(|| bad(max))?;
    let scale = 2f64.powi(shift as i32);
    let mult = reals
        .iter()
        .map(|r| {
            (r * scale)
                .round()
                .clamp(-(i32::MAX as f64), i32::MAX as f64) as i32
        })
        .collect();
    let bias = biases
        .iter()
        .map(|b| b.round().clamp(i32::MIN as f64, i32::MAX as f64) as i32)
        .collect();
    Ok(QRequant { mult, bias, shift })
}
