//! Calibration: per-layer spike rates of the float and the integer network on a few
//! training images, and warnings for layers that fall silent or saturate.
//!
//! The integer rates come from the firmware's own `infer`, never from a host copy of
//! the runner: the LIF layers are grouped in data-flow order (each stage's cell
//! conv-edge LIFs, each reduction LIF, the head LIF, the hidden LIF), and for each group
//! `k` the network is run with every group after `k` *silenced* (the requantisations
//! that feed it set to output 0, so its neurons never reach the threshold and nothing
//! downstream moves). Group `k`'s spikes are the difference of two such runs. Backward
//! edges stay inside one cell, so silencing a later group never changes an earlier one.
//!
//! Saturation is read from the membranes the full network leaves after the last
//! timestep (the workspace layout is documented by the firmware crate): neurons pinned
//! at the i16 limits, and class scores pinned at the i32 limits.

use candle_core::Device;
use rayon::prelude::*;
use serde::Serialize;
use spikenas_firmware::shape::LayerShape;

use super::eval::{check_input, WorkspaceBuf};
use super::{QOp, QRequant, QuantError, QuantizedNetwork};
use crate::data::Split;
use crate::kernels::ConvBackend;
use crate::snn::{Ctx, Network};

/// Spike rates of one group of LIF neurons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerStats {
    /// `stage{s}.cell` (all conv-edge LIFs of the cell), `stage{s}.reduce`, `head.lif`
    /// or `head.fc1`.
    pub name: String,
    /// LIF neurons in the group.
    pub neurons: usize,
    /// Spikes per neuron per timestep of the float network (`None` where the float
    /// network does not expose the layer: cell edges).
    pub float_rate: Option<f64>,
    /// Spikes per neuron per timestep of the integer network.
    pub int_rate: f64,
    /// Fraction of the group's membranes at the i16 limits after the last timestep.
    pub saturated_fraction: f64,
}

/// What calibration found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantReport {
    /// Weight bit width.
    pub bits: u8,
    /// Calibration images used.
    pub images: usize,
    /// One entry per LIF group, in data-flow order.
    pub layers: Vec<LayerStats>,
    /// Class scores pinned at the i32 limits (should be 0).
    pub saturated_scores: u64,
    /// Human-readable warnings (silent layers, large rate changes, saturation).
    pub warnings: Vec<String>,
}

/// A group of LIF neurons in data-flow order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Cell(usize),
    Reduce(usize),
    Head,
    Hidden,
}

impl Group {
    fn name(self) -> String {
        match self {
            Group::Cell(s) => format!("stage{s}.cell"),
            Group::Reduce(s) => format!("stage{s}.reduce"),
            Group::Head => "head.lif".into(),
            Group::Hidden => "head.fc1".into(),
        }
    }
}

/// The groups with their neuron counts and membrane offsets (the firmware's order:
/// per stage the reduction then the conv edges, then head, then hidden), from the
/// network's shape.
fn groups(q: &QuantizedNetwork) -> Vec<(Group, usize, usize)> {
    let mut out = Vec::new();
    let (mut off, mut cell) = (0, 0);
    let _ = q.arch.shape(&q.input).for_each_layer::<()>(|layer| {
        let (group, n) = match layer {
            LayerShape::Reduction { stage, input, .. } => (Group::Reduce(stage), input.n()),
            LayerShape::Edge { .. } => {
                cell += layer.lif_neurons() as usize;
                return Ok(());
            }
            LayerShape::Nodes { stage, .. } => (Group::Cell(stage), std::mem::take(&mut cell)),
            LayerShape::Head { input } => (Group::Head, input.n()),
            LayerShape::Hidden { outputs, .. } => (Group::Hidden, outputs),
            _ => return Ok(()),
        };
        if n > 0 {
            out.push((group, n, off));
            off += n;
        }
        Ok(())
    });
    out
}

fn zero(r: &mut QRequant) {
    *r = QRequant::zero(r.mult.len());
}

/// Makes every neuron of `g` unable to fire (its input current is 0).
fn silence(q: &mut QuantizedNetwork, g: Group) {
    match g {
        Group::Cell(s) => {
            let st = &mut q.stages[s];
            match &mut st.reduction {
                Some(r) => zero(&mut r.conv.requant),
                None => zero(&mut q.stem.requant),
            }
            for e in &mut st.edges {
                if let QOp::Conv { conv, .. } = &mut e.op {
                    zero(&mut conv.requant);
                }
            }
        }
        Group::Reduce(s) => {
            if let Some(r) = &mut q.stages[s].reduction {
                zero(&mut r.bn);
            }
        }
        Group::Head => zero(&mut q.head.bn),
        Group::Hidden => {
            if let Some((fc, _)) = &mut q.head.hidden {
                zero(&mut fc.requant);
            }
        }
    }
}

/// Total spikes over `split` of `q`; with `snapshot`, also the per-group count of
/// saturated membranes and of saturated scores.
fn run(
    q: &QuantizedNetwork,
    split: &Split,
    groups: &[(Group, usize, usize)],
) -> Result<(u64, Vec<u64>, u64), QuantError> {
    let zero = || (0u64, vec![0u64; groups.len()], 0u64);
    let r = q.with_firmware(|net| -> Result<_, spikenas_firmware::Error> {
        let layout = net.workspace_layout()?;
        (0..split.len())
            .into_par_iter()
            .map_init(
                || WorkspaceBuf::new(&layout),
                |ws, i| {
                    let (spikes, sat_scores) = {
                        let mut view = ws.view();
                        let r = net.infer(split.image(i), &mut view)?;
                        let sat = r
                            .scores
                            .iter()
                            .filter(|&&s| s == i32::MAX || s == i32::MIN)
                            .count();
                        (r.spikes, sat as u64)
                    };
                    let m = ws.membranes();
                    let sat: Vec<u64> = groups
                        .iter()
                        .map(|&(_, n, off)| {
                            m[off..off + n]
                                .iter()
                                .filter(|&&v| v == i16::MIN || v == i16::MAX)
                                .count() as u64
                        })
                        .collect();
                    Ok((spikes, sat, sat_scores))
                },
            )
            .try_fold(zero, |mut a, r: Result<_, spikenas_firmware::Error>| {
                let (s, sat, sc): (u64, Vec<u64>, u64) = r?;
                a.0 += s;
                a.2 += sc;
                for (x, y) in a.1.iter_mut().zip(sat) {
                    *x += y;
                }
                Ok(a)
            })
            .try_reduce(zero, |mut a, b| {
                a.0 += b.0;
                a.2 += b.2;
                for (x, y) in a.1.iter_mut().zip(b.1) {
                    *x += y;
                }
                Ok(a)
            })
    })?;
    Ok(r)
}

/// Float spike rates of the layers the float network shows (`stage{s}.reduce`,
/// `head.lif`, `head.fc1`).
fn float_rates(
    net: &Network,
    split: &Split,
    device: &Device,
) -> Result<Vec<(String, f64)>, QuantError> {
    let ctx = Ctx {
        timesteps: net.arch.timesteps,
        train: false,
        lif: net.lif,
        conv: ConvBackend::default(),
    };
    let mut sums: Vec<(String, f64, f64)> = Vec::new();
    let idx: Vec<usize> = (0..split.len()).collect();
    for batch in idx.chunks(128) {
        let (images, _) = split.batch(batch, device)?;
        net.forward_ctx(&images, &ctx, &mut |name, spikes| {
            let s = spikes.sum_all()?.to_dtype(candle_core::DType::F64)?;
            let s = s.to_scalar::<f64>()?;
            let n = spikes.elem_count() as f64;
            match sums.iter_mut().find(|e| e.0 == name) {
                Some(e) => {
                    e.1 += s;
                    e.2 += n;
                }
                None => sums.push((name.to_string(), s, n)),
            }
            Ok(())
        })?;
    }
    Ok(sums
        .into_iter()
        .map(|(name, s, n)| (name, if n > 0.0 { s / n } else { 0.0 }))
        .collect())
}

/// Compares float and integer spike rates on `calibration` (see the module docs).
pub(crate) fn calibrate(
    net: &Network,
    q: &QuantizedNetwork,
    calibration: &Split,
    device: &Device,
) -> Result<QuantReport, QuantError> {
    if calibration.is_empty() {
        return Err(QuantError::Calibration(
            "no calibration images: the training split is empty".into(),
        ));
    }
    check_input(q, calibration)?;
    let floats = float_rates(net, calibration, device)?;
    let gs = groups(q);
    let (total, saturated, saturated_scores) = run(q, calibration, &gs)?;
    // prefix[k] = spikes with groups 0..=k active.
    let mut prefix = vec![0u64; gs.len()];
    if let Some(last) = prefix.last_mut() {
        *last = total;
    }
    for k in 0..gs.len().saturating_sub(1) {
        let mut v = q.clone();
        for &(g, _, _) in &gs[k + 1..] {
            silence(&mut v, g);
        }
        prefix[k] = run(&v, calibration, &gs)?.0;
    }
    let steps = (q.arch.timesteps * calibration.len()) as f64;
    let mut layers = Vec::with_capacity(gs.len());
    let mut warnings = Vec::new();
    for (k, &(g, n, _)) in gs.iter().enumerate() {
        let spikes = prefix[k] - if k > 0 { prefix[k - 1] } else { 0 };
        let name = g.name();
        let int_rate = spikes as f64 / (n as f64 * steps);
        let float_rate = floats.iter().find(|f| f.0 == name).map(|f| f.1);
        let sat = saturated[k] as f64 / (n as f64 * calibration.len() as f64);
        match float_rate {
            Some(f) if int_rate == 0.0 && f > 0.0 => warnings.push(format!(
                "`{name}` falls silent after quantization (float rate {f:.4}, integer 0)"
            )),
            _ if int_rate == 0.0 => warnings.push(format!(
                "`{name}` emits no spikes on the {} calibration images",
                calibration.len()
            )),
            Some(f) if f > 0.0 && !(0.5..=2.0).contains(&(int_rate / f)) => warnings.push(format!(
                "`{name}` spike rate changes from {f:.4} (float) to {int_rate:.4} (integer)"
            )),
            _ => {}
        }
        if sat > 0.01 {
            warnings.push(format!(
                "`{name}`: {:.1}% of membranes end at the i16 limit (Q12 range [-8, 8)); \
                 its input currents are too large for the membrane format",
                100.0 * sat
            ));
        }
        layers.push(LayerStats {
            name,
            neurons: n,
            float_rate,
            int_rate,
            saturated_fraction: sat,
        });
    }
    if saturated_scores > 0 {
        warnings.push(format!(
            "{saturated_scores} class scores saturated at the i32 limits"
        ));
    }
    Ok(QuantReport {
        bits: q.bits,
        images: calibration.len(),
        layers,
        saturated_scores,
        warnings,
    })
}
