//! `spikenas-host generate`: stamp out the board application for a network.

use std::path::PathBuf;

use anyhow::Context as _;
use spikenas_host::arch::{Arch, InputShape};
use spikenas_host::data::{self, LoadOptions, Source};
use spikenas_host::firmware::{self, synthetic};
use spikenas_host::{export, pipeline};

use super::common::BoardArgs;

/// Write a firmware crate (model.rs, memory.x, build files) for a board, with a test set
/// and the host's integer results on it (what `validate` compares the device against).
/// The network is an exported model (`--model DIR` with model.safetensors, as `search`
/// and `quantize` write it) or, to check the device path alone, a synthetic one
/// (`--synthetic ARCH`: deterministic pseudo-random integer weights, untrained).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    board: BoardArgs,
    /// A folder with model.safetensors (from `search` or `quantize`).
    #[arg(
        long,
        required_unless_present = "synthetic",
        conflicts_with = "synthetic"
    )]
    model: Option<PathBuf>,
    /// Dataset of the test images (default: the one the model was trained on).
    #[arg(long)]
    dataset: Option<Source>,
    /// Architecture of a synthetic network, e.g. cell=0301.0003.0000.0000,ch=8,stages=2,fc=32.
    #[arg(long)]
    synthetic: Option<String>,
    /// Input shape of a synthetic network, CxHxW.
    #[arg(long, default_value = "1x28x28")]
    input: String,
    /// Number of classes of a synthetic network.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Seed of the synthetic weights and images.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Test images written beside the crate (testset.bin).
    #[arg(long, default_value_t = 200)]
    images: usize,
    /// Output folder (must not exist yet, unless --force).
    out: PathBuf,
    /// Replace an existing output folder.
    #[arg(long)]
    force: bool,
}

/// Generate the crate and its test data.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (catalog, board) = args.board.load()?;
    if args.out.exists() {
        if !args.force {
            anyhow::bail!(
                "{} already exists; choose another folder or pass --force",
                args.out.display()
            );
        }
        std::fs::remove_dir_all(&args.out).with_context(|| args.out.display().to_string())?;
    }
    let (krate, images) = if let Some(model) = &args.model {
        let file = if model.is_dir() {
            model.join(export::MODEL_FILE)
        } else {
            model.clone()
        };
        let (q, info) = export::load(&file)?;
        let source: Source = match &args.dataset {
            Some(s) => s.clone(),
            None => info.dataset.parse()?,
        };
        let data = data::load(&source, &LoadOptions::default())?;
        let krate = pipeline::write_firmware(
            &q,
            &board,
            catalog.targets(),
            &args.out,
            &data.test,
            args.images,
        )?;
        (krate, args.images.min(data.test.len()))
    } else {
        let arch: Arch = args.synthetic.as_deref().unwrap_or_default().parse()?;
        let input = InputShape::parse(&args.input, args.classes).map_err(anyhow::Error::msg)?;
        let net = synthetic::SyntheticNetwork::new(&arch, &input, args.seed)
            .map_err(anyhow::Error::msg)?;
        let set = synthetic::images(&input, args.images, args.seed);
        let krate = net.with_network(|n| -> anyhow::Result<_> {
            let krate = firmware::generate(n, &board, catalog.targets(), &args.out)?;
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
        (krate, set.len())
    };
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
        images
    );
    println!(
        "next: spikenas-host build --board {} {}",
        board.name,
        args.out.display()
    );
    Ok(())
}
