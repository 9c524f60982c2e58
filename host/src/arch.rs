//! The architecture encoding: a SNASNet cell (connection matrix) plus the macro
//! parameters that decide memory at microcontroller scale.
//!
//! One string a user can copy from a report and pass to `--arch`:
//!
//! ```text
//! cell=0301.0003.0000.0000,ch=16,stages=2,fc=128,t=4,pool=2,cluster=1,bits=8
//! ```
//!
//! The cell is a 4x4 matrix written row by row (rows separated by `.`). Entry
//! `[i][j]` with `i < j` is the op on the forward edge `i -> j`; entry `[j][i]`
//! with `j > i` is the op on the backward edge that feeds node `j`'s value from
//! the previous timestep into node `i` (SNASNet's backward cell). Node 0 is the
//! input, node 3 the output. For each node pair only one of the two directions
//! may carry an op, and the input node takes no backward edge.
//!
//! Ops (SNASNet's numbering): 0 zero, 1 skip, 2 LIF->conv1x1->BN,
//! 3 LIF->conv3x3->BN, 4 avgpool3x3 (stride 1).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use spikenas_firmware::shape::{CellShape, EdgeShape, NetworkShape, OpShape, Stages};

/// Number of nodes in a cell (input, two intermediate, output).
pub const NODES: usize = 4;

/// Kernel side of the stem convolution.
pub const STEM_K: usize = 3;

/// An operation on one edge of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Op {
    /// No connection.
    Zero = 0,
    /// Identity: the current passes unchanged.
    Skip = 1,
    /// LIF neuron, then 1x1 convolution, then batch-norm.
    Conv1x1 = 2,
    /// LIF neuron, then 3x3 convolution (padding 1), then batch-norm.
    Conv3x3 = 3,
    /// 3x3 average pooling, stride 1, padding 1.
    AvgPool3x3 = 4,
}

impl Op {
    /// Every op, in SNASNet's numbering.
    pub const ALL: [Op; 5] = [Op::Zero, Op::Skip, Op::Conv1x1, Op::Conv3x3, Op::AvgPool3x3];

    /// The op with SNASNet's number `code`.
    pub fn from_code(code: u8) -> Option<Op> {
        Op::ALL.get(code as usize).copied()
    }

    /// SNASNet's number of this op.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Kernel side of the convolution, if this op has one.
    pub fn kernel(self) -> Option<usize> {
        match self {
            Op::Conv1x1 => Some(1),
            Op::Conv3x3 => Some(3),
            _ => None,
        }
    }
}

/// A SNASNet cell: `ops[i][j]` as described in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cell {
    /// The connection matrix.
    pub ops: [[Op; NODES]; NODES],
}

/// One edge of a cell with its op and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// Node the value comes from.
    pub from: usize,
    /// Node the value goes to.
    pub to: usize,
    /// The op on the edge.
    pub op: Op,
    /// True for a backward edge (reads `from` at the previous timestep).
    pub backward: bool,
}

impl Cell {
    /// A cell with only zero ops.
    pub const EMPTY: Cell = Cell {
        ops: [[Op::Zero; NODES]; NODES],
    };

    /// A forward-only cell from SNASNet's six forward edges in the order
    /// `01, 02, 12, 03, 13, 23`.
    pub fn forward(edges: [Op; 6]) -> Cell {
        let mut cell = Cell::EMPTY;
        for (&(i, j), op) in FORWARD_PAIRS.iter().zip(edges) {
            cell.ops[i][j] = op;
        }
        cell
    }

    /// Every non-zero edge, forward edges first in SNASNet's order, then backward ones.
    pub fn edges(&self) -> Vec<Edge> {
        let mut out = Vec::new();
        for &(i, j) in FORWARD_PAIRS.iter() {
            if self.ops[i][j] != Op::Zero {
                out.push(Edge {
                    from: i,
                    to: j,
                    op: self.ops[i][j],
                    backward: false,
                });
            }
        }
        for &(i, j) in FORWARD_PAIRS.iter() {
            if self.ops[j][i] != Op::Zero {
                out.push(Edge {
                    from: j,
                    to: i,
                    op: self.ops[j][i],
                    backward: true,
                });
            }
        }
        out
    }

    /// The cell's non-zero edges ([`Cell::edges`], in that order) as the firmware's
    /// shape of a cell.
    pub fn shape(&self) -> CellShape {
        let mut cell = CellShape::EMPTY;
        for e in self.edges() {
            let op = match e.op {
                Op::Zero => OpShape::Zero,
                Op::Skip => OpShape::Skip,
                Op::Conv1x1 | Op::Conv3x3 => OpShape::Conv {
                    k: e.op.kernel().unwrap_or(1),
                },
                Op::AvgPool3x3 => OpShape::AvgPool3,
            };
            let edge = EdgeShape {
                from: e.from as u8,
                to: e.to as u8,
                op,
            };
            // At most one edge per ordered node pair: never more than the shape holds.
            cell.push(edge)
                .expect("a cell has at most NODES * (NODES - 1) edges");
        }
        cell
    }

    /// True if the cell has any backward edge.
    pub fn has_backward(&self) -> bool {
        self.edges().iter().any(|e| e.backward)
    }

    /// Check the validity rules; returns the cell with nodes that lie on no
    /// input->output path zeroed (SNASNet's rule), or why it is invalid.
    pub fn validated(&self) -> Result<Cell, ArchError> {
        for i in 0..NODES {
            if self.ops[i][i] != Op::Zero {
                return Err(ArchError::Invalid(format!(
                    "diagonal entry [{i}][{i}] must be 0"
                )));
            }
        }
        for j in 1..NODES {
            if self.ops[j][0] != Op::Zero {
                return Err(ArchError::Invalid(format!(
                    "entry [{j}][0] is a backward edge into the input node; only nodes 1 and 2 take backward edges"
                )));
            }
        }
        for &(i, j) in FORWARD_PAIRS.iter() {
            if self.ops[i][j] != Op::Zero && self.ops[j][i] != Op::Zero {
                return Err(ArchError::Invalid(format!(
                    "node pair ({i},{j}) has both a forward and a backward edge; pick one"
                )));
            }
        }
        if self.ops[0][3] == Op::Zero {
            return Err(ArchError::Invalid(
                "op03 (input -> output) must not be zero".into(),
            ));
        }
        // Forward reachability from the input and co-reachability to the output,
        // over forward edges (backward edges carry last step's values and cannot
        // start a path by themselves).
        let mut from_input = [false; NODES];
        from_input[0] = true;
        for j in 1..NODES {
            from_input[j] = (0..j).any(|i| from_input[i] && self.ops[i][j] != Op::Zero);
        }
        let mut to_output = [false; NODES];
        to_output[NODES - 1] = true;
        for i in (0..NODES - 1).rev() {
            to_output[i] = (i + 1..NODES).any(|j| to_output[j] && self.ops[i][j] != Op::Zero);
        }
        let mut cell = *self;
        for n in 1..NODES - 1 {
            if !(from_input[n] && to_output[n]) {
                for k in 0..NODES {
                    cell.ops[n][k] = Op::Zero;
                    cell.ops[k][n] = Op::Zero;
                }
            }
        }
        Ok(cell)
    }
}

/// The forward node pairs in SNASNet's edge order.
pub const FORWARD_PAIRS: [(usize, usize); 6] = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)];

/// A full architecture: the cell and the macro parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Arch {
    /// The cell, used in every stage (channels double from stage to stage).
    pub cell: Cell,
    /// Channels of the first stage (C).
    pub channels: usize,
    /// Number of cell stages; between stages a BN-LIF-conv3x3(C->2C)-BN-avgpool2 reduction.
    pub stages: usize,
    /// Width of the hidden classifier layer (Linear -> LIF); 0 means a single Linear.
    pub fc: usize,
    /// Timesteps T.
    pub timesteps: usize,
    /// Average-pooling factor applied to the input image before the stem (1 = none).
    pub input_pool: usize,
    /// Output neurons per class (population vote); SNASNet uses 10.
    pub cluster: usize,
    /// Weight bit width on the device (8 or 4).
    pub weight_bits: u8,
}

/// Errors from parsing or validating an architecture.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchError {
    /// The encoding string could not be parsed.
    #[error("cannot parse architecture `{encoding}`: {why}. Expected e.g. `{example}`")]
    Parse {
        /// The string given.
        encoding: String,
        /// What is wrong.
        why: String,
        /// A valid example.
        example: &'static str,
    },
    /// The architecture breaks a validity rule.
    #[error("invalid architecture: {0}")]
    Invalid(String),
}

/// A valid example encoding, shown in errors and docs.
pub const EXAMPLE: &str =
    "cell=0301.0003.0000.0000,ch=16,stages=2,fc=128,t=4,pool=1,cluster=1,bits=8";

impl Default for Arch {
    /// A small network that trains well on 28x28 and 8x8 images.
    fn default() -> Self {
        Arch {
            cell: Cell::forward([
                Op::Conv3x3,
                Op::Zero,
                Op::Zero,
                Op::Skip,
                Op::Conv3x3,
                Op::Zero,
            ]),
            channels: 16,
            stages: 2,
            fc: 128,
            timesteps: 4,
            input_pool: 1,
            cluster: 1,
            weight_bits: 8,
        }
    }
}

impl Arch {
    /// Check every rule and normalise the cell (dead nodes zeroed).
    pub fn validated(mut self) -> Result<Arch, ArchError> {
        self.cell = self.cell.validated()?;
        let check = |ok: bool, why: String| {
            if ok {
                Ok(())
            } else {
                Err(ArchError::Invalid(why))
            }
        };
        check(
            self.channels >= 1 && self.channels <= 1024,
            format!("ch={} must be in 1..=1024", self.channels),
        )?;
        check(
            self.stages >= 1 && self.stages <= 4,
            format!("stages={} must be in 1..=4", self.stages),
        )?;
        check(
            self.fc <= 8192,
            format!("fc={} must be at most 8192", self.fc),
        )?;
        check(
            self.timesteps >= 1 && self.timesteps <= 32,
            format!("t={} must be in 1..=32", self.timesteps),
        )?;
        check(
            matches!(self.input_pool, 1 | 2 | 4),
            format!("pool={} must be 1, 2 or 4", self.input_pool),
        )?;
        check(
            self.cluster >= 1 && self.cluster <= 32,
            format!("cluster={} must be in 1..=32", self.cluster),
        )?;
        check(
            matches!(self.weight_bits, 4 | 8),
            format!("bits={} must be 8 or 4", self.weight_bits),
        )?;
        Ok(self)
    }

    /// The network of this architecture on `input`, without weights: the one
    /// description of its structure that the memory model, the MAC and latency counts,
    /// quantization and the synthetic networks derive from. The cell is taken as it is
    /// (a parsed architecture is validated; validate one built field by field first).
    pub fn shape(&self, input: &InputShape) -> NetworkShape<'static> {
        NetworkShape {
            channels: input.channels,
            height: input.height,
            width: input.width,
            input_pool: self.input_pool,
            timesteps: self.timesteps,
            stem_channels: self.channels,
            stem_k: STEM_K,
            stages: Stages::Repeated {
                count: self.stages,
                cell: self.cell.shape(),
            },
            hidden: self.fc,
            outputs: input.classes * self.cluster,
            classes: input.classes,
        }
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, row) in self.ops.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            for op in row {
                write!(f, "{}", op.code())?;
            }
        }
        Ok(())
    }
}

impl FromStr for Cell {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rows: Vec<&str> = s.split('.').collect();
        if rows.len() != NODES {
            return Err(format!(
                "cell `{s}` needs {NODES} rows separated by `.`, found {}",
                rows.len()
            ));
        }
        let mut cell = Cell::EMPTY;
        for (i, row) in rows.iter().enumerate() {
            let bytes = row.as_bytes();
            if bytes.len() != NODES {
                return Err(format!("cell row {i} `{row}` needs {NODES} digits"));
            }
            for (j, b) in bytes.iter().enumerate() {
                let op = b.checked_sub(b'0').and_then(Op::from_code).ok_or_else(|| {
                    format!("cell entry [{i}][{j}] `{}` is not an op 0-4", *b as char)
                })?;
                cell.ops[i][j] = op;
            }
        }
        Ok(cell)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cell={},ch={},stages={},fc={},t={},pool={},cluster={},bits={}",
            self.cell,
            self.channels,
            self.stages,
            self.fc,
            self.timesteps,
            self.input_pool,
            self.cluster,
            self.weight_bits
        )
    }
}

impl FromStr for Arch {
    type Err = ArchError;

    /// Parse an encoding; keys not given keep the default's value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: String| ArchError::Parse {
            encoding: s.to_string(),
            why,
            example: EXAMPLE,
        };
        let mut arch = Arch::default();
        let parts: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() {
            return Err(err(
                "the encoding is empty; give at least one key=value (omitted keys take the \
                 default's value)"
                    .into(),
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| err(format!("`{part}` is not key=value")))?;
            let key = key.trim();
            let value = value.trim();
            if seen.contains(&key) {
                return Err(err(format!("`{key}` is given twice; give each key once")));
            }
            seen.push(key);
            let num = || {
                value
                    .parse::<usize>()
                    .map_err(|_| err(format!("`{key}={value}` is not a number")))
            };
            match key {
                "cell" => arch.cell = value.parse().map_err(err)?,
                "ch" => arch.channels = num()?,
                "stages" => arch.stages = num()?,
                "fc" => arch.fc = num()?,
                "t" => arch.timesteps = num()?,
                "pool" => arch.input_pool = num()?,
                "cluster" => arch.cluster = num()?,
                "bits" => {
                    arch.weight_bits = match num()? {
                        4 => 4,
                        8 => 8,
                        n => return Err(err(format!("`bits` is {n}; it must be 8 or 4"))),
                    }
                }
                other => {
                    return Err(err(format!(
                    "unknown key `{other}` (known: cell, ch, stages, fc, t, pool, cluster, bits)"
                )))
                }
            }
        }
        arch.validated()
    }
}

/// The shape of the data a network reads and the number of classes it tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputShape {
    /// Image channels (1 for grey, 3 for colour).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes.
    pub classes: usize,
}

impl InputShape {
    /// Flattened size entering the classifier (after the head's avgpool2).
    pub fn head_features(&self, arch: &Arch) -> usize {
        arch.shape(self).head_features()
    }

    /// Parse `CxHxW` (e.g. `1x28x28`) and attach the class count.
    pub fn parse(dims: &str, classes: usize) -> Result<InputShape, String> {
        let parts: Vec<&str> = dims.split(['x', 'X']).collect();
        let numbers: Vec<usize> = parts.iter().filter_map(|p| p.trim().parse().ok()).collect();
        if parts.len() != 3 || numbers.len() != 3 || numbers.contains(&0) || classes == 0 {
            return Err(format!(
                "input `{dims}` with {classes} classes: expected CxHxW with positive numbers, \
                 e.g. 1x28x28, and at least one class"
            ));
        }
        let shape = InputShape {
            channels: numbers[0],
            height: numbers[1],
            width: numbers[2],
            classes,
        };
        shape
            .check()
            .map_err(|why| format!("input `{dims}`: {why}"))?;
        Ok(shape)
    }

    /// Refuses sizes no board could hold and that would wrap in the firmware's 32-bit
    /// arithmetic: at most [`InputShape::MAX_SIDE`] per side and channel count,
    /// [`InputShape::MAX_PIXELS`] values an image and [`InputShape::MAX_SIDE`] classes.
    pub fn check(&self) -> Result<(), String> {
        for (what, n) in [
            ("channels", self.channels),
            ("height", self.height),
            ("width", self.width),
            ("classes", self.classes),
        ] {
            if n > Self::MAX_SIDE {
                return Err(format!(
                    "{what} {n} is more than {}; give the images' real size, e.g. 1x28x28",
                    Self::MAX_SIDE
                ));
            }
        }
        let values = self.channels * self.height * self.width;
        if values > Self::MAX_PIXELS {
            return Err(format!(
                "{values} values an image ({}x{}x{}) is more than {}; give the images' real \
                 size, e.g. 1x28x28",
                self.channels,
                self.height,
                self.width,
                Self::MAX_PIXELS
            ));
        }
        Ok(())
    }

    /// The largest side, channel count or class count.
    pub const MAX_SIDE: usize = 65_535;
    /// The most values (channels x height x width) an image may have.
    pub const MAX_PIXELS: usize = 1 << 24;
}

impl fmt::Display for InputShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}x{}x{} ({} classes)",
            self.channels, self.height, self.width, self.classes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_the_architecture_on_its_input() {
        use spikenas_firmware::shape::{LayerShape, OpShape};
        let arch: Arch = "cell=0301.0003.0000.0000,ch=4,stages=2,fc=32,t=3,pool=2"
            .parse()
            .unwrap();
        let input = InputShape::parse("1x16x16", 10).unwrap();
        let shape = arch.shape(&input);
        // Edges 0->1 conv3x3, 0->3 skip, 1->3 conv3x3, as `Cell::edges` lists them, in
        // both stages.
        let edges: Vec<_> = arch.cell.edges().iter().map(|e| (e.from, e.to)).collect();
        let mut seen = Vec::new();
        let mut reductions = Vec::new();
        shape
            .for_each_layer::<()>(|l| {
                match l {
                    LayerShape::Edge { stage, edge, g, .. } => {
                        // 16x16 pooled by 2, then halved by stage 1's reduction, which
                        // doubles the channels.
                        let expected = [(4, 8, 8), (8, 4, 4)][stage];
                        assert_eq!((g.c, g.h, g.w), expected);
                        if edge.op == OpShape::Skip {
                            assert_eq!((edge.from, edge.to), (0, 3));
                        }
                        seen.push((edge.from as usize, edge.to as usize));
                    }
                    LayerShape::Reduction { input, out, .. } => reductions.push((input, out)),
                    _ => {}
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, [edges.clone(), edges].concat());
        assert_eq!(reductions.len(), 1);
        assert_eq!((reductions[0].0.n(), reductions[0].1.n()), (4 * 64, 8 * 16));
        assert_eq!(input.head_features(&arch), 8 * 2 * 2);
        assert_eq!(shape.timesteps, 3);
    }

    #[test]
    fn input_sizes_that_would_wrap_are_refused() {
        assert!(InputShape::parse("1x28x28", 10).is_ok());
        let e = InputShape::parse("1x4294967296x1", 10).unwrap_err();
        assert!(e.contains("height 4294967296 is more than 65535"), "{e}");
        let e = InputShape::parse("3x4096x4096", 10).unwrap_err();
        assert!(e.contains("50331648 values an image"), "{e}");
        assert!(InputShape::parse("1x28x28", 70_000).is_err());
    }

    #[test]
    fn round_trip_default() {
        let a = Arch::default();
        let s = a.to_string();
        assert_eq!(s.parse::<Arch>().unwrap(), a);
        assert_eq!(EXAMPLE.parse::<Arch>().unwrap().to_string(), EXAMPLE);
    }

    #[test]
    fn rejects_missing_op03() {
        let e = "cell=0300.0003.0000.0000".parse::<Arch>().unwrap_err();
        assert!(e.to_string().contains("op03"), "{e}");
    }

    #[test]
    fn rejects_both_directions_and_backward_into_input() {
        assert!("cell=0303.3000.0000.0000".parse::<Arch>().is_err());
        assert!("cell=0303.0000.0000.0200".parse::<Arch>().is_ok());
        assert!("cell=0303.0000.0000.2000".parse::<Arch>().is_err());
        assert!("cell=0333.0013.0100.0000".parse::<Arch>().is_err());
        assert!("cell=0333.0003.0103.0000"
            .parse::<Arch>()
            .unwrap()
            .cell
            .has_backward());
    }

    #[test]
    fn dead_nodes_are_zeroed() {
        // Node 2 has no input and node 1 no way out: both are removed.
        let a: Arch = "cell=0303.0000.0003.0000".parse().unwrap();
        assert_eq!(a.cell.to_string(), "0003.0000.0000.0000");
        // Node 1 reaches nowhere: 0->1 removed.
        let a: Arch = "cell=0301.0000.0000.0000".parse().unwrap();
        assert_eq!(a.cell.to_string(), "0001.0000.0000.0000");
    }

    #[test]
    fn empty_duplicated_and_out_of_range_encodings_are_refused() {
        for empty in ["", " ", ",", " , ,"] {
            let e = empty.parse::<Arch>().unwrap_err().to_string();
            assert!(e.contains("the encoding is empty"), "{empty:?}: {e}");
        }
        let e = "ch=4,ch=8".parse::<Arch>().unwrap_err().to_string();
        assert!(e.contains("`ch` is given twice"), "{e}");
        let e = "cell=0003.0000.0000.0000,t=2, t=2"
            .parse::<Arch>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("`t` is given twice"), "{e}");
        // 264 would wrap to 8 in a u8: refused, as is every width but 4 and 8.
        for bits in ["264", "260", "0", "16", "18446744073709551620"] {
            let e = format!("bits={bits}")
                .parse::<Arch>()
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("must be 8 or 4") || e.contains("is not a number"),
                "{bits}: {e}"
            );
        }
        assert_eq!("bits=4".parse::<Arch>().unwrap().weight_bits, 4);
        assert_eq!("bits=8".parse::<Arch>().unwrap().weight_bits, 8);
    }

    #[test]
    fn parse_errors_name_the_key() {
        let e = "ch=abc".parse::<Arch>().unwrap_err().to_string();
        assert!(e.contains("ch=abc"), "{e}");
        let e = "foo=1".parse::<Arch>().unwrap_err().to_string();
        assert!(e.contains("unknown key `foo`"), "{e}");
        let e = "cell=0319.0000.0000.0000"
            .parse::<Arch>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("[0][3]"), "{e}");
    }
}
