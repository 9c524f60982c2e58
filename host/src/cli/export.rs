//! `spikenas-host export`: a float checkpoint as a NIR graph, for snnTorch, Norse,
//! Sinabs, Rockpool, Lava or SpiNNaker2 (see the library's `nir` module for the
//! mapping and what NIR cannot express).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Export a float checkpoint as a NIR graph.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The float checkpoint: checkpoint.safetensors, or a folder that `train`,
    /// `search` or `quantize` wrote.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Write the network as a NIR graph (an HDF5 file, e.g. model.nir).
    #[arg(long)]
    nir: PathBuf,
    /// Replace an existing file at --nir.
    #[arg(long)]
    force: bool,
}

/// Run `export`.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let out = spikenas_host::nir::export(&args.checkpoint, &args.nir, args.force)
        .context("NIR export failed")?;
    println!(
        "wrote {} ({} nodes, {} edges) from {}: {}",
        out.out.display(),
        out.nodes,
        out.edges,
        out.checkpoint.display(),
        out.arch
    );
    Ok(())
}
