//! The NIR graph of a float network, built in memory (no HDF5 here): every node with
//! its parameters folded as described in [`super`], the edges, and the metadata that
//! says how to run it.

use std::collections::{BTreeMap, HashMap};

use candle_core::Var;
use candle_nn::VarMap;

use super::NirError;
use spikenas_firmware::shape::{EdgeShape, Geometry, LayerShape, OpShape};

use crate::arch::{Arch, Cell, NODES};
use crate::snn::cell::edge_key;
use crate::snn::lif::{LifParams, Reset};
use crate::snn::Network;

/// The `dt` of the graph's metadata, in seconds: one spikenas timestep. Chosen as the
/// value snnTorch's NIR import assumes, so `dt / tau` comes out as our `1 / tau`.
pub const DT_SECONDS: f64 = 1e-4;

/// A value stored in the file: a float32 or int64 array, a float, or a string.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// float32 array, row-major.
    F32 {
        /// Shape (empty: a scalar).
        shape: Vec<usize>,
        /// Elements.
        data: Vec<f32>,
    },
    /// int64 array (shape `[len]`).
    I64(Vec<i64>),
    /// int64 scalar.
    Int(i64),
    /// float64 scalar.
    Float(f64),
    /// UTF-8 string.
    Str(String),
}

/// One NIR node: its type name (`Conv2d`, `LIF`, ...) and fields, as NIR names them.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// NIR type name.
    pub kind: &'static str,
    /// Fields in NIR's names (`weight`, `tau`, ...), without `type`.
    pub fields: BTreeMap<&'static str, Value>,
}

/// A whole NIR graph.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    /// Nodes by name (`stem.conv`, `stage0.cell.n3`, ...).
    pub nodes: BTreeMap<String, Node>,
    /// Edges `(from, to)`; several edges into one node are summed (NIR's rule).
    pub edges: Vec<(String, String)>,
    /// Graph metadata: how to run it.
    pub metadata: BTreeMap<&'static str, Value>,
}

fn f32s(shape: &[usize], data: Vec<f32>) -> Value {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    Value::F32 {
        shape: shape.to_vec(),
        data,
    }
}

fn ints(values: &[usize]) -> Value {
    Value::I64(values.iter().map(|&v| v as i64).collect())
}

fn node(kind: &'static str, fields: impl IntoIterator<Item = (&'static str, Value)>) -> Node {
    Node {
        kind,
        fields: fields.into_iter().collect(),
    }
}

/// A per-channel `(scale, shift)` folded from a batch-norm: `y = scale * x + shift`.
struct Affine1 {
    scale: Vec<f64>,
    shift: Vec<f64>,
}

impl Affine1 {
    fn identity(c: usize) -> Self {
        Affine1 {
            scale: vec![1.0; c],
            shift: vec![0.0; c],
        }
    }
}

/// Builds the graph, one layer at a time, from a network's variables.
struct Builder<'a> {
    data: &'a HashMap<String, Var>,
    lif: LifParams,
    eps: f64,
    graph: Graph,
}

impl Builder<'_> {
    fn tensor(&self, name: &str, expected: usize) -> Result<Vec<f32>, NirError> {
        Ok(crate::snn::var_values(self.data, name, expected)?)
    }

    /// The batch-norm under `prefix` as `y = scale x + shift` (running statistics).
    fn bn(&self, prefix: &str, c: usize) -> Result<Affine1, NirError> {
        let t = |f: &str| self.tensor(&format!("{prefix}.{f}"), c);
        let (gamma, beta, mean, var) = (
            t("weight")?,
            t("bias")?,
            t("running_mean")?,
            t("running_var")?,
        );
        let scale: Vec<f64> = (0..c)
            .map(|i| gamma[i] as f64 / (var[i] as f64 + self.eps).sqrt())
            .collect();
        let shift = (0..c)
            .map(|i| beta[i] as f64 - scale[i] * mean[i] as f64)
            .collect();
        Ok(Affine1 { scale, shift })
    }

    fn add(&mut self, name: &str, n: Node, inputs: &[&str]) -> String {
        self.graph.nodes.insert(name.to_string(), n);
        for from in inputs {
            self.graph.edges.push((from.to_string(), name.to_string()));
        }
        name.to_string()
    }

    /// `Conv2d` with the batch-norm after it folded in (weights scaled per output
    /// channel, the shift as bias), on `(h, w)` inputs.
    fn conv_bn(
        &mut self,
        layer: &str,
        (cin, cout, k): (usize, usize, usize),
        (h, w): (usize, usize),
        from: &str,
    ) -> Result<String, NirError> {
        let weight = self.tensor(&format!("{layer}.conv.weight"), cout * cin * k * k)?;
        let bn = self.bn(&format!("{layer}.bn"), cout)?;
        let per_out = cin * k * k;
        let folded: Vec<f32> = weight
            .iter()
            .enumerate()
            .map(|(i, &v)| (v as f64 * bn.scale[i / per_out]) as f32)
            .collect();
        let bias: Vec<f32> = bn.shift.iter().map(|&b| b as f32).collect();
        let pad = k / 2;
        let n = node(
            "Conv2d",
            [
                ("input_shape", ints(&[h, w])),
                ("weight", f32s(&[cout, cin, k, k], folded)),
                ("bias", f32s(&[cout], bias)),
                ("stride", ints(&[1, 1])),
                ("padding", ints(&[pad, pad])),
                ("dilation", ints(&[1, 1])),
                ("groups", Value::Int(1)),
            ],
        );
        Ok(self.add(&format!("{layer}.conv"), n, &[from]))
    }

    /// A `LIF` over `shape` (channels first) whose input current is `bn(I)`: the
    /// batch-norm's scale becomes `r`, its shift `v_leak` (per channel), so
    /// `v + dt/tau (v_leak - v + r I)` is our `v + (bn(I) - v) / tau`.
    fn lif(&mut self, name: &str, shape: &[usize], bn: Affine1, from: &str) -> String {
        let n: usize = shape.iter().product();
        let per_channel = n / shape[0];
        let expand =
            |v: &[f64]| -> Vec<f32> { (0..n).map(|i| v[i / per_channel] as f32).collect() };
        let full = |x: f64| vec![x as f32; n];
        let tau = DT_SECONDS * self.lif.tau as f64;
        let node = node(
            "LIF",
            [
                ("tau", f32s(shape, full(tau))),
                ("r", f32s(shape, expand(&bn.scale))),
                ("v_leak", f32s(shape, expand(&bn.shift))),
                ("v_threshold", f32s(shape, full(self.lif.threshold as f64))),
                ("v_reset", f32s(shape, full(0.0))),
            ],
        );
        self.add(name, node, &[from])
    }

    fn avg_pool(&mut self, name: &str, k: usize, stride: usize, pad: usize, from: &str) -> String {
        let n = node(
            "AvgPool2d",
            [
                ("kernel_size", ints(&[k, k])),
                ("stride", ints(&[stride, stride])),
                ("padding", ints(&[pad, pad])),
            ],
        );
        self.add(name, n, &[from])
    }

    /// A cell node: NIR sums the edges into a node, so an identity `Scale` (all ones)
    /// is the junction.
    fn junction(&mut self, name: &str, shape: &[usize]) -> String {
        let n: usize = shape.iter().product();
        self.add(
            name,
            node("Scale", [("scale", f32s(shape, vec![1.0; n]))]),
            &[],
        )
    }

    fn affine(&mut self, name: &str, weight: Vec<f32>, bias: Vec<f32>, from: &str) -> String {
        let (outs, ins) = (bias.len(), weight.len() / bias.len());
        let n = node(
            "Affine",
            [
                ("weight", f32s(&[outs, ins], weight)),
                ("bias", f32s(&[outs], bias)),
            ],
        );
        self.add(name, n, &[from])
    }

    /// Stage `stage`'s cell, its `edges` (forward, in evaluation order) on maps of
    /// geometry `g`, fed by `x0`; returns its output node.
    fn cell(
        &mut self,
        cell: &Cell,
        stage: usize,
        g: Geometry,
        edges: &[EdgeShape],
        x0: &str,
    ) -> Result<String, NirError> {
        let p = format!("stage{stage}.cell");
        let shape = [g.c, g.h, g.w];
        let mut producer: Vec<Option<String>> = vec![None; NODES];
        producer[0] = Some(x0.to_string());
        let mut spikes: Vec<Option<String>> = vec![None; NODES];
        for j in 1..NODES {
            let into: Vec<_> = edges.iter().filter(|e| usize::from(e.to) == j).collect();
            if into.is_empty() {
                continue;
            }
            let junction = self.junction(&format!("{p}.n{j}"), &shape);
            for e in into {
                let (from, name) = (usize::from(e.from), edge_key(e.from.into(), e.to.into()));
                let src = producer[from]
                    .clone()
                    .ok_or_else(|| NirError::Unsupported {
                        what: format!("edge {name} of cell {cell}"),
                        why: format!("node {from} has no input"),
                    })?;
                let end = match e.op {
                    OpShape::Zero => continue,
                    OpShape::Skip => src,
                    OpShape::AvgPool3 => self.avg_pool(&format!("{p}.{name}.pool"), 3, 1, 1, &src),
                    OpShape::Conv { k } => {
                        // Conv edges leaving one node see the same current, so they
                        // share one LIF (as the float network computes it once).
                        let s = match &spikes[from] {
                            Some(s) => s.clone(),
                            None => {
                                let s = self.lif(
                                    &format!("{p}.n{from}.lif"),
                                    &shape,
                                    Affine1::identity(g.c),
                                    &src,
                                );
                                spikes[from] = Some(s.clone());
                                s
                            }
                        };
                        self.conv_bn(&format!("{p}.{name}"), (g.c, g.c, k), (g.h, g.w), &s)?
                    }
                };
                self.graph.edges.push((end, junction.clone()));
            }
            producer[j] = Some(junction);
        }
        producer[NODES - 1]
            .clone()
            .ok_or_else(|| NirError::Unsupported {
                what: format!("cell {cell}"),
                why: "its output node has no input".into(),
            })
    }

    /// The head's batch-norm, LIF and 2x2 pool on the last stage's map `g`, flattened.
    fn head(&mut self, g: Geometry, from: &str) -> Result<String, NirError> {
        let bn = self.bn("head.bn", g.c)?;
        let spikes = self.lif("head.lif", &[g.c, g.h, g.w], bn, from);
        let pool = self.avg_pool("head.pool", 2, 2, 0, &spikes);
        let pooled = g.reduced(g.c);
        let flat = node(
            "Flatten",
            [
                ("input_type", ints(&[pooled.c, pooled.h, pooled.w])),
                ("start_dim", Value::Int(0)),
                ("end_dim", Value::Int(-1)),
            ],
        );
        Ok(self.add("head.flatten", flat, &[&pool]))
    }

    /// The last linear layer, `inputs -> classes x cluster`, with the population vote
    /// (the mean over each class's cluster, a linear map) folded in, so the graph's
    /// output is one value per class.
    fn output(
        &mut self,
        inputs: usize,
        classes: usize,
        cluster: usize,
        from: &str,
    ) -> Result<String, NirError> {
        let wt = self.tensor("head.fc2.weight", classes * cluster * inputs)?;
        let bias = self.tensor("head.fc2.bias", classes * cluster)?;
        let mean = |cls: usize, f: &dyn Fn(usize) -> f32| -> f32 {
            ((0..cluster)
                .map(|k| f(cls * cluster + k) as f64)
                .sum::<f64>()
                / cluster as f64) as f32
        };
        let w_out: Vec<f32> = (0..classes * inputs)
            .map(|i| mean(i / inputs, &|row| wt[row * inputs + i % inputs]))
            .collect();
        let b_out: Vec<f32> = (0..classes)
            .map(|cls| mean(cls, &|row| bias[row]))
            .collect();
        Ok(self.affine("head.fc2", w_out, b_out, from))
    }
}

/// The NIR graph of `net` with the variables in `varmap` (float, BN folded), its layers
/// in the order of the architecture's shape ([`Arch::shape`], the walk every other
/// consumer of the network's structure uses).
///
/// Refuses what NIR cannot express: a subtractive reset, backward (recurrent) cell
/// edges.
pub fn build(net: &Network, varmap: &VarMap) -> Result<Graph, NirError> {
    if net.lif.reset == Reset::Subtract {
        return Err(NirError::Unsupported {
            what: "the subtractive reset (v -= threshold after a spike)".into(),
            why: "NIR's LIF resets to v_reset; no NIR neuron subtracts the threshold".into(),
        });
    }
    let cell = net
        .arch
        .cell
        .validated()
        .map_err(|e| NirError::Unsupported {
            what: format!("cell {}", net.arch.cell),
            why: e.to_string(),
        })?;
    let arch = Arch { cell, ..net.arch };
    let input = net.input;
    let data = varmap.data().lock().expect("varmap lock");
    let mut b = Builder {
        data: &data,
        lif: net.lif,
        eps: crate::snn::cell::bn_config().eps,
        graph: Graph::default(),
    };
    let shape = arch.shape(&input);
    // The node the next layer reads, and the current stage's edges.
    let mut x = String::new();
    let mut edges: Vec<EdgeShape> = Vec::new();
    shape.for_each_layer(|layer| -> Result<(), NirError> {
        match layer {
            LayerShape::Stem { cin, k, out } => {
                let dims = [shape.channels, shape.height, shape.width];
                x = b.add("input", node("Input", [("shape", ints(&dims))]), &[]);
                let pool = shape.input_pool;
                if pool > 1 {
                    x = b.avg_pool("input.pool", pool, pool, 0, &x);
                }
                x = b.conv_bn("stem", (cin, out.c, k), (out.h, out.w), &x)?;
            }
            LayerShape::Reduction {
                stage,
                k,
                input,
                out,
            } => {
                let p = format!("stage{stage}.reduce");
                let bn = b.bn(&format!("{p}.bn_in"), input.c)?;
                let spikes = b.lif(&format!("{p}.lif"), &[input.c, input.h, input.w], bn, &x);
                let conv = b.conv_bn(&p, (input.c, out.c, k), (input.h, input.w), &spikes)?;
                x = b.avg_pool(&format!("{p}.pool"), 2, 2, 0, &conv);
            }
            LayerShape::Edge { edge, .. } if edge.is_backward() && edge.op != OpShape::Zero => {
                let name = edge_key(edge.from.into(), edge.to.into());
                return Err(NirError::Unsupported {
                    what: format!("the backward edge {name} of cell {cell}"),
                    why: "it feeds the previous timestep's value of a node back, a one-step \
                          delay inside the step that NIR has no agreed primitive for"
                        .into(),
                });
            }
            LayerShape::Edge { edge, .. } => edges.push(edge),
            LayerShape::Nodes { stage, g, .. } => {
                x = b.cell(&cell, stage, g, &edges, &x)?;
                edges.clear();
            }
            LayerShape::Head { input } => x = b.head(input, &x)?,
            LayerShape::Hidden { inputs, outputs } => {
                let wt = b.tensor("head.fc1.weight", outputs * inputs)?;
                let bias = b.tensor("head.fc1.bias", outputs)?;
                let fc1 = b.affine("head.fc1", wt, bias, &x);
                x = b.lif("head.fc1.lif", &[outputs], Affine1::identity(outputs), &fc1);
            }
            LayerShape::Output { inputs, .. } => {
                let logits = b.output(inputs, shape.classes, arch.cluster, &x)?;
                let out = node("Output", [("shape", ints(&[shape.classes]))]);
                b.add("output", out, &[&logits]);
            }
        }
        Ok(())
    })?;
    let mut graph = b.graph;
    graph.metadata = metadata(net);
    Ok(graph)
}

/// What a simulator needs besides the nodes: the step, the readout, the input.
fn metadata(net: &Network) -> BTreeMap<&'static str, Value> {
    let s = |v: &str| Value::Str(v.to_string());
    BTreeMap::from([
        ("producer", s(concat!("spikenas-host ", env!("CARGO_PKG_VERSION")))),
        ("arch", Value::Str(net.arch.to_string())),
        ("dt", Value::Float(DT_SECONDS)),
        ("timesteps", Value::Int(net.arch.timesteps as i64)),
        (
            "integration",
            s("forward Euler, one step of dt per timestep: v <- v + dt/tau * (v_leak - v + r * I); \
               spike z = 1 where v >= v_threshold, then v <- v_reset there; v starts at 0. \
               dt/tau = 1/tau of spikenas's LIF (tau = tau_seconds / dt)"),
        ),
        (
            "threshold_compare",
            s("spikenas fires at v >= v_threshold; NIR's LIF at v > v_threshold: they differ only \
               when v equals the threshold exactly"),
        ),
        (
            "input",
            s("images as pixel/255 in [0, 1], shape CxHxW, the same input at every timestep \
               (direct encoding)"),
        ),
        (
            "readout",
            s("class scores = mean over the timesteps of `output`; prediction = argmax"),
        ),
        (
            "junctions",
            s("Scale nodes of ones named stageS.cell.nJ are the cell's nodes: every edge into a \
               node is summed"),
        ),
        (
            "avgpool",
            s("AvgPool2d divides by kernel area, zero padding included (count_include_pad)"),
        ),
        ("lif_tau_steps", Value::Float(net.lif.tau as f64)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Arch, InputShape};
    use candle_core::Device;

    fn net(arch: &str, lif: LifParams) -> (Network, VarMap) {
        let input = InputShape {
            channels: 1,
            height: 12,
            width: 12,
            classes: 3,
        };
        let arch: Arch = arch.parse().unwrap();
        Network::init(arch, input, lif, &Device::Cpu, 3).unwrap()
    }

    fn value<'a>(g: &'a Graph, node: &str, field: &str) -> &'a Value {
        &g.nodes[node].fields[field]
    }

    #[test]
    fn nodes_edges_and_folds() {
        let (n, vm) = net(
            "cell=0334.0001.0002.0000,ch=2,stages=2,fc=5,t=3,pool=1,cluster=2",
            LifParams::default(),
        );
        // Non-trivial batch-norm statistics, so the folds are visible.
        {
            let data = vm.data().lock().unwrap();
            let set = |name: &str, v: Vec<f32>| {
                let var = &data[name];
                let len = v.len();
                var.set(&candle_core::Tensor::from_vec(v, len, &Device::Cpu).unwrap())
                    .unwrap();
            };
            set("stem.bn.running_var", vec![4.0 - 1e-5, 1.0]);
            set("stem.bn.weight", vec![3.0, 1.0]);
            set("stem.bn.running_mean", vec![1.0, 0.0]);
            set("head.bn.bias", vec![0.5, 0.25, 0.0, 0.0]);
        }
        let g = build(&n, &vm).unwrap();
        // Stem: weight scaled by 3/2 in channel 0, bias = 0 - 1.5 * 1.
        let data = vm.data().lock().unwrap();
        let w = data["stem.conv.weight"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let Value::F32 {
            data: folded,
            shape,
        } = value(&g, "stem.conv", "weight")
        else {
            panic!()
        };
        assert_eq!(shape, &[2, 1, 3, 3]);
        assert!((folded[0] - 1.5 * w[0]).abs() < 1e-6 && (folded[9] - w[9]).abs() < 1e-6);
        let Value::F32 { data: bias, .. } = value(&g, "stem.conv", "bias") else {
            panic!()
        };
        assert!((bias[0] + 1.5).abs() < 1e-6, "{bias:?}");
        // Head LIF: BN shift as v_leak per channel (4 channels x 6 x 6 after stage 1).
        let Value::F32 { data: leak, shape } = value(&g, "head.lif", "v_leak") else {
            panic!()
        };
        assert_eq!(shape, &[4, 6, 6]);
        assert_eq!((leak[0], leak[36], leak[72]), (0.5, 0.25, 0.0));
        let Value::F32 { data: tau, .. } = value(&g, "head.lif", "tau") else {
            panic!()
        };
        assert!((tau[0] as f64 / DT_SECONDS - 4.0 / 3.0).abs() < 1e-6);
        // Cell 0334.0001.0002: conv3x3 0->1 and 0->2, avgpool 0->3, skip 1->3, conv1x1
        // 2->3. Every node of the cell is a junction; the conv edges leaving node 0
        // share one LIF.
        for j in 1..=3 {
            assert_eq!(g.nodes[&format!("stage0.cell.n{j}")].kind, "Scale");
        }
        let has = |a: &str, b: &str| g.edges.iter().any(|(x, y)| x == a && y == b);
        assert!(has("stem.conv", "stage0.cell.n0.lif"));
        assert!(has("stage0.cell.n0.lif", "stage0.cell.e01.conv"));
        assert!(has("stage0.cell.n0.lif", "stage0.cell.e02.conv"));
        assert!(has("stem.conv", "stage0.cell.e03.pool"));
        assert!(has("stage0.cell.e03.pool", "stage0.cell.n3"));
        assert!(has("stage0.cell.n1", "stage0.cell.n3"), "skip edge 1->3");
        assert!(has("stage0.cell.n2", "stage0.cell.n2.lif"));
        assert!(has("stage0.cell.e23.conv", "stage0.cell.n3"));
        let cell_lifs = g
            .nodes
            .keys()
            .filter(|k| k.starts_with("stage0.cell") && k.ends_with(".lif"))
            .count();
        assert_eq!(cell_lifs, 2, "one LIF per node that feeds convolutions");
        assert!(has("stage0.cell.n3", "stage1.reduce.lif"));
        assert!(has("head.fc2", "output"));
        // The cluster of 2 is folded: 3 outputs.
        let Value::F32 { shape, .. } = value(&g, "head.fc2", "weight") else {
            panic!()
        };
        assert_eq!(shape, &[3, 5]);
        // Every edge joins two nodes of the graph.
        for (a, b) in &g.edges {
            assert!(
                g.nodes.contains_key(a) && g.nodes.contains_key(b),
                "{a} -> {b}"
            );
        }
        assert_eq!(g.metadata["timesteps"], Value::Int(3));
    }

    #[test]
    fn refuses_what_nir_cannot_express() {
        let sub = LifParams {
            reset: Reset::Subtract,
            ..LifParams::default()
        };
        let (n, vm) = net("ch=2,stages=1,fc=4,t=2", sub);
        let e = build(&n, &vm).unwrap_err().to_string();
        assert!(
            e.contains("subtractive reset") && e.contains("v_reset"),
            "{e}"
        );
        let (n, vm) = net(
            "cell=0333.0003.0103.0000,ch=2,stages=1,fc=4,t=2",
            LifParams::default(),
        );
        let e = build(&n, &vm).unwrap_err().to_string();
        assert!(e.contains("backward edge b21"), "{e}");
    }
}
