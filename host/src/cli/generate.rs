//! `spikenas-host generate`: stamp out the board application for a network.

use std::path::PathBuf;

use anyhow::bail;
use spikenas_host::arch::{Arch, InputShape};
use spikenas_host::board_app::{self, synthetic};
use spikenas_host::boards::{Profile, Targets};
use spikenas_host::data::{self, LoadOptions, Source};
use spikenas_host::jobs::generate::write_board_app;
use spikenas_host::memory;
use spikenas_host::output::{self, Staged};
use spikenas_host::quant::export;

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
    #[arg(long, default_value_t = 200, value_parser = super::common::at_least_one)]
    images: usize,
    /// Output folder (must not exist yet; --force replaces a crate spikenas generated).
    out: PathBuf,
    /// Replace an output folder that spikenas generated earlier (one with a
    /// .spikenas-output marker).
    #[arg(long)]
    force: bool,
}

/// Generate the crate and its test data.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (catalog, board) = args.board.load()?;
    // Checked before any work; the crate is written beside the target and renamed into
    // place whole, so a failure never leaves half a crate, and --force replaces only a
    // folder spikenas wrote.
    if let Some(model) = &args.model {
        output::refuse_if_inside(&args.out, model, "the model --model reads")?;
    }
    let staged = Staged::new(&args.out, args.force)?;
    let dir = staged.dir().to_path_buf();
    let (krate, images) = if let Some(model) = &args.model {
        let file = if model.is_dir() {
            model.join(export::MODEL_FILE)
        } else {
            model.clone()
        };
        let (q, info) = export::load(&file)?;
        check_fit(&q.arch, &q.input, &board, catalog.targets())?;
        let source: Source = match &args.dataset {
            Some(s) => s.clone(),
            None => info.dataset.parse()?,
        };
        let data = data::load(&source, &LoadOptions::default())?;
        let krate = write_board_app(&q, &board, catalog.targets(), &dir, &data.test, args.images)?;
        (krate, args.images.min(data.test.len()))
    } else {
        let arch: Arch = args.synthetic.as_deref().unwrap_or_default().parse()?;
        let input = InputShape::parse(&args.input, args.classes).map_err(anyhow::Error::msg)?;
        check_fit(&arch, &input, &board, catalog.targets())?;
        let net = synthetic::SyntheticNetwork::new(&arch, &input, args.seed)
            .map_err(anyhow::Error::msg)?;
        let set = synthetic::images(&input, args.images, args.seed);
        let krate = net.with_network(|n| -> anyhow::Result<_> {
            let krate = board_app::generate(n, &board, catalog.targets(), &dir)?;
            board_app::on_device::write_test_data(&dir, n, &set)?;
            Ok(krate)
        })?;
        board_app::CrateModel {
            arch: *net.arch(),
            input,
        }
        .write(&dir)?;
        (krate, set.len())
    };
    let out = staged.commit()?;
    println!(
        "generated {} for {} ({}): workspace {} bytes{}, constants {} bytes, {} test images",
        out.display(),
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

/// Refuses a network that the memory model says does not fit `board`, before anything
/// is written, naming the region and the bytes over.
fn check_fit(
    arch: &Arch,
    input: &InputShape,
    board: &Profile,
    targets: &Targets,
) -> anyhow::Result<()> {
    let estimate = memory::estimate(arch, input, board, targets);
    if let Some(problem) = &estimate.problem {
        bail!(
            "{arch} on {input} cannot be laid out for board `{}`: {problem}",
            board.name
        );
    }
    if let Some(overflow) = estimate.first_overflow() {
        bail!(
            "{arch} on {input} does not fit board `{}`: {overflow}. Fix: choose a smaller \
             network (fewer channels or stages, a narrower fc, pool=2, bits=4) or a board \
             with more memory; `spikenas-host estimate --board {} --arch ARCH` shows every \
             region",
            board.name,
            board.name
        );
    }
    Ok(())
}
