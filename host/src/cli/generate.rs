//! `spikenas-host generate`: stamp out the board application for a network.

use std::path::PathBuf;

use anyhow::Context as _;
use spikenas_host::arch::{Arch, InputShape};
use spikenas_host::boards::Catalog;
use spikenas_host::firmware::{self, synthetic};

/// Write a firmware crate (model.rs, memory.x, build files) for a board, with a test set
/// and the host's results on it. Until the quantizer lands, the network is a synthetic
/// one: the given architecture with deterministic pseudo-random integer weights
/// (untrained: it checks the device path, not accuracy).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Board name (see `spikenas-host boards`).
    #[arg(long)]
    board: String,
    /// Architecture of the synthetic network, e.g. cell=0301.0003.0000.0000,ch=8,stages=2,fc=32.
    #[arg(long)]
    synthetic: String,
    /// Input shape as CxHxW.
    #[arg(long, default_value = "1x28x28")]
    input: String,
    /// Number of classes.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Seed of the weights and test images.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Test images written beside the crate (testset.bin).
    #[arg(long, default_value_t = 200)]
    images: usize,
    /// Output folder.
    out: PathBuf,
}

/// Generate the crate and its test data.
pub fn run(args: Args) -> anyhow::Result<()> {
    let arch: Arch = args.synthetic.parse()?;
    let input = InputShape::parse(&args.input, args.classes).map_err(anyhow::Error::msg)?;
    let catalog = Catalog::discover()?;
    let board = catalog.board(&args.board)?;
    let net =
        synthetic::SyntheticNetwork::new(&arch, &input, args.seed).map_err(anyhow::Error::msg)?;
    let set = synthetic::images(&input, args.images, args.seed);
    let krate = net.with_network(|n| -> anyhow::Result<_> {
        let krate = firmware::generate(n, board, catalog.targets(), &args.out)?;
        firmware::validate::write_test_data(&args.out, n, &set)?;
        Ok(krate)
    })?;
    let info = args.out.join(firmware::validate::MODEL_INFO_FILE);
    std::fs::write(
        &info,
        format!(
            "arch {}\ninput {}x{}x{}\nclasses {}\n",
            net.arch(),
            input.channels,
            input.height,
            input.width,
            input.classes
        ),
    )
    .with_context(|| info.display().to_string())?;
    println!(
        "generated {} for {} ({}): workspace {} bytes{}, constants {} bytes, {} test images",
        krate.dir.display(),
        krate.board,
        krate.triple,
        krate.layout.bytes(),
        krate
            .fast_region
            .as_ref()
            .map(|r| format!(" (membranes in {r})"))
            .unwrap_or_default(),
        krate.constant_bytes,
        set.len()
    );
    println!(
        "next: spikenas-host build --board {} {}",
        args.board,
        args.out.display()
    );
    Ok(())
}
