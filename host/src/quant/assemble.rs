//! One walk over an architecture that assembles a [`QuantizedNetwork`] from its layers,
//! for every source of layers: folding a trained checkpoint ([`super::build`]), reading
//! a model file ([`super::export`]) and drawing a synthetic network
//! ([`crate::board_app::synthetic`]). The sources differ only in how they make each
//! layer; the layers, their sizes and their order are the architecture's
//! [`spikenas_firmware::NetworkShape`].

use spikenas_firmware as fw;
use spikenas_firmware::shape::{LayerShape, OpShape};

use super::{QConv, QEdge, QHead, QOp, QReduction, QStage, QuantizedNetwork};
use crate::arch::{Arch, InputShape};
use crate::snn::cell::edge_key;

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

/// The network of `arch` on `input` at `bits`, its layers from `src`, made in the order
/// of the architecture's shape ([`Arch::shape`]).
pub(crate) fn assemble<S: LayerSource>(
    arch: Arch,
    input: InputShape,
    bits: u8,
    src: &S,
) -> Result<QuantizedNetwork, S::Error> {
    let (mut stem, mut head, mut head_in, mut hidden) = (None, None, None, 0);
    let mut stages = Vec::with_capacity(arch.stages);
    let mut stage = QStage {
        reduction: None,
        edges: Vec::new(),
    };
    arch.shape(&input).for_each_layer(|layer| {
        match layer {
            LayerShape::Stem { cin, k, out } => stem = Some(src.stem((cin, out.c, k))?),
            LayerShape::Reduction {
                stage: s,
                k,
                input,
                out,
            } => {
                let prefix = format!("stage{s}.reduce");
                stage.reduction = Some(src.reduction(&prefix, (input.c, out.c, k))?);
            }
            LayerShape::Edge {
                stage: s, edge, g, ..
            } => {
                let op = match edge.op {
                    OpShape::Zero => return Ok(()),
                    OpShape::Skip => QOp::Skip,
                    OpShape::AvgPool3 => QOp::AvgPool3,
                    OpShape::Conv { k } => {
                        let p = format!(
                            "stage{s}.cell.{}",
                            edge_key(edge.from.into(), edge.to.into())
                        );
                        let (lif, conv) = src.conv_edge(&p, (g.c, g.c, k))?;
                        QOp::Conv { lif, conv }
                    }
                };
                stage.edges.push(QEdge {
                    from: edge.from,
                    to: edge.to,
                    op,
                });
            }
            LayerShape::Nodes { .. } => {
                let next = QStage {
                    reduction: None,
                    edges: Vec::new(),
                };
                stages.push(std::mem::replace(&mut stage, next));
            }
            LayerShape::Head { input } => head_in = Some(input),
            LayerShape::Hidden { outputs, .. } => hidden = outputs,
            LayerShape::Output { outputs, .. } => {
                let g = head_in.unwrap_or_default();
                head = Some(src.head(g.c, g.pooled2(), hidden, outputs)?);
            }
        }
        Ok(())
    })?;
    let (Some(stem), Some(head)) = (stem, head) else {
        unreachable!("the walk visits the stem and the output layer of every shape")
    };
    Ok(QuantizedNetwork {
        arch,
        input,
        bits,
        stem,
        stages,
        head,
    })
}
