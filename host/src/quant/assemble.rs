//! One walk over an architecture that assembles a [`QuantizedNetwork`] from its layers,
//! for every source of layers: folding a trained checkpoint ([`super::build`]) and
//! reading a model file ([`crate::export`]). The sources differ only in how they make
//! each layer; the network's structure is laid out here once.

use spikenas_firmware as fw;

use super::{QConv, QEdge, QHead, QOp, QReduction, QStage, QuantizedNetwork};
use crate::arch::{Arch, InputShape, Op};
use crate::snn::cell::edge_name;

/// Makes the layers of a quantized network, by their checkpoint names.
pub(crate) trait LayerSource {
    /// The source's error.
    type Error;

    /// The stem convolution, `(cin, cout, k)`.
    fn stem(&self, dims: (usize, usize, usize)) -> Result<QConv, Self::Error>;

    /// The reduction named `prefix` (`stageS.reduce`): batch-norm over `dims.0`
    /// channels, LIF, convolution `dims`.
    fn reduction(
        &self,
        prefix: &str,
        dims: (usize, usize, usize),
    ) -> Result<QReduction, Self::Error>;

    /// The LIF and convolution of the conv edge named `prefix` (`stageS.cell.eXY`).
    fn conv_edge(
        &self,
        prefix: &str,
        dims: (usize, usize, usize),
    ) -> Result<(fw::Lif, QConv), Self::Error>;

    /// The head: batch-norm and LIF over `channels`, then `features -> fc` (when
    /// `fc > 0`, with its LIF) and `-> outputs`.
    fn head(
        &self,
        channels: usize,
        features: usize,
        fc: usize,
        outputs: usize,
    ) -> Result<QHead, Self::Error>;
}

/// The network of `arch` on `input` at `bits`, its layers from `src`.
pub(crate) fn assemble<S: LayerSource>(
    arch: Arch,
    input: InputShape,
    bits: u8,
    src: &S,
) -> Result<QuantizedNetwork, S::Error> {
    let stem = src.stem((input.channels, arch.channels, 3))?;
    let mut stages = Vec::with_capacity(arch.stages);
    for s in 0..arch.stages {
        let cs = arch.stage_channels(s);
        let reduction = match s {
            0 => None,
            _ => {
                let prev = arch.stage_channels(s - 1);
                Some(src.reduction(&format!("stage{s}.reduce"), (prev, cs, 3))?)
            }
        };
        let mut edges = Vec::new();
        for e in arch.cell.edges() {
            let op = match e.op {
                Op::Zero => continue,
                Op::Skip => QOp::Skip,
                Op::AvgPool3x3 => QOp::AvgPool3,
                Op::Conv1x1 | Op::Conv3x3 => {
                    let k = e.op.kernel().expect("conv op");
                    let p = format!("stage{s}.cell.{}", edge_name(&e));
                    let (lif, conv) = src.conv_edge(&p, (cs, cs, k))?;
                    QOp::Conv { lif, conv }
                }
            };
            edges.push(QEdge {
                from: e.from as u8,
                to: e.to as u8,
                op,
            });
        }
        stages.push(QStage { reduction, edges });
    }
    let head = src.head(
        arch.stage_channels(arch.stages - 1),
        input.head_features(&arch),
        arch.fc,
        input.classes * arch.cluster,
    )?;
    Ok(QuantizedNetwork {
        arch,
        input,
        bits,
        stem,
        stages,
        head,
    })
}
