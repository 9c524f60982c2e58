//! Writing a [`Graph`] as a NIR file: HDF5 in the layout of the Python `nir`
//! package's `nir.write` (a `version` string, the graph under `node` with `type`,
//! `nodes/<name>/<field>`, `edges` as an `(n, 2)` string array and `metadata`).

use std::path::Path;

use hdf5::types::VarLenUnicode;
use hdf5::Group;

use super::{Graph, NirError, Value};

/// The `nir` release whose file layout this writer follows (and the tests read with).
pub const NIR_VERSION: &str = "1.0.8";

fn text(s: &str) -> VarLenUnicode {
    s.parse()
        .expect("a Rust string has no NUL byte in these names")
}

fn put(g: &Group, name: &str, value: &Value) -> hdf5::Result<()> {
    match value {
        Value::F32 { shape, data } => g
            .new_dataset::<f32>()
            .shape(shape.clone())
            .create(name)?
            .write_raw(data.as_slice()),
        Value::I64(v) => g
            .new_dataset::<i64>()
            .shape(v.len())
            .create(name)?
            .write_raw(v.as_slice()),
        Value::Int(v) => g.new_dataset::<i64>().create(name)?.write_scalar(v),
        Value::Float(v) => g.new_dataset::<f64>().create(name)?.write_scalar(v),
        Value::Str(s) => g
            .new_dataset::<VarLenUnicode>()
            .create(name)?
            .write_scalar(&text(s)),
    }
}

fn write_graph(path: &Path, graph: &Graph) -> hdf5::Result<()> {
    let file = hdf5::File::create(path)?;
    put(&file, "version", &Value::Str(NIR_VERSION.into()))?;
    let root = file.create_group("node")?;
    put(&root, "type", &Value::Str("NIRGraph".into()))?;
    let nodes = root.create_group("nodes")?;
    for (name, node) in &graph.nodes {
        let g = nodes.create_group(name)?;
        put(&g, "type", &Value::Str(node.kind.into()))?;
        for (field, value) in &node.fields {
            put(&g, field, value)?;
        }
    }
    let edges: Vec<VarLenUnicode> = graph
        .edges
        .iter()
        .flat_map(|(a, b)| [text(a), text(b)])
        .collect();
    root.new_dataset::<VarLenUnicode>()
        .shape((graph.edges.len(), 2))
        .create("edges")?
        .write_raw(edges.as_slice())?;
    let meta = root.create_group("metadata")?;
    for (key, value) in &graph.metadata {
        put(&meta, key, value)?;
    }
    file.close()
}

/// Writes `graph` to `path` (a new file; [`super::export`] makes the write atomic).
pub fn write(path: &Path, graph: &Graph) -> Result<(), NirError> {
    write_graph(path, graph).map_err(|e| NirError::Hdf5 {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
