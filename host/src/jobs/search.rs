//! The main job, `search --board B`: search the architecture that fits the board,
//! train it, quantize it, and write the model, the reports and the board application
//! (the firmware crate).

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::arch::Arch;
use crate::boards::{Profile, Targets};
use crate::checkpoint::{self, CheckpointInfo};
use crate::data::{self, input_shape, Dataset, LoadOptions, Source};
use crate::memory;
use crate::output::Staged;
use crate::report::SearchReport;
use crate::search::feasible::TrainBudget;
use crate::search::space::SearchSpace;
use crate::search::{self, Scorer, SearchConfig, SearchData};
use crate::snn::lif::LifParams;
use crate::snn::Network;
use crate::train::{self, TrainConfig};
use crate::train::{ResumeError, Trained};

use super::control::{fingerprint_of, Kept, RunControl};
use super::generate::write_board_app;
use super::JobError;

/// Images used to calibrate the quantizer (from the training split).
pub const CALIBRATION_IMAGES: usize = 256;

/// Test images written beside the firmware crate for `validate`.
pub const FIRMWARE_TEST_IMAGES: usize = 500;

/// What quantization of the winner gave.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct QuantSummary {
    /// Weight bits.
    pub bits: u8,
    /// Float test accuracy.
    pub float_accuracy: f32,
    /// Integer test accuracy (the firmware crate's kernels on the host).
    pub int_accuracy: f32,
    /// Fraction of test images where float and integer predictions agree.
    pub agreement: f32,
    /// Mean spikes per inference.
    pub mean_spikes: f64,
    /// Mean synaptic operations per inference.
    pub mean_synops: f64,
    /// Warnings from calibration (silent or saturating layers).
    pub warnings: Vec<String>,
}

/// Quantize a trained network, evaluate it with the integer runtime, and return the
/// model plus its figures.
pub fn quantize_winner(
    net: &Network,
    varmap: &candle_nn::VarMap,
    data: &Dataset,
    device: &Device,
    conv: crate::kernels::ConvBackend,
) -> Result<(crate::quant::QuantizedNetwork, QuantSummary), JobError> {
    let n_cal = CALIBRATION_IMAGES.min(data.train.len());
    let calibration = data.train.select(&(0..n_cal).collect::<Vec<_>>());
    let (q, report) = crate::quant::quantize(net, varmap, &calibration, net.arch.weight_bits)?;
    let eval = crate::quant::evaluate_int(&q, &data.test)?;
    let float_pred = train::predict(net, &data.test, device, conv)?;
    let correct = float_pred
        .iter()
        .zip(&data.test.labels)
        .filter(|(p, l)| **p == **l as u32)
        .count();
    let summary = QuantSummary {
        bits: net.arch.weight_bits,
        float_accuracy: correct as f32 / data.test.len().max(1) as f32,
        int_accuracy: eval.accuracy,
        agreement: crate::quant::agreement(&eval.predictions, &float_pred),
        mean_spikes: eval.mean_spikes(),
        mean_synops: eval.mean_synops(),
        warnings: report.warnings.clone(),
    };
    Ok((q, summary))
}

/// One search job.
#[derive(Debug, Clone)]
pub struct SearchJob {
    /// The board.
    pub board: Profile,
    /// CPU targets (for the code-size reserve).
    pub targets: Targets,
    /// The dataset.
    pub source: Source,
    /// How to load it.
    pub load: LoadOptions,
    /// The search space.
    pub space: SearchSpace,
    /// How to search.
    pub search: SearchConfig,
    /// How to train the winner (None: search only).
    pub train: Option<TrainConfig>,
    /// Which parts of the training recipe are fitted to the dataset.
    pub fit: RecipeFit,
}

/// The final training's recipe of `job` on `data` (batch size and epochs fitted to the
/// dataset where the job asks for it).
pub fn recipe_of(data: &Dataset, job: &SearchJob) -> Option<TrainConfig> {
    job.train.clone().map(|t| job.fit.apply(data, t))
}

/// Which parts of the final training's recipe `search` fits to the dataset; the others
/// are the job's own (given by the user).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecipeFit {
    /// The batch size ([`train::default_batch_size`]).
    pub batch_size: bool,
    /// The epochs ([`train::default_epochs`], for the batch size in effect).
    pub epochs: bool,
}

impl RecipeFit {
    /// Fit both (the main job's defaults).
    pub const ALL: RecipeFit = RecipeFit {
        batch_size: true,
        epochs: true,
    };

    /// `t` with the parts this fits replaced by the values fitted to `data`.
    pub fn apply(self, data: &Dataset, t: TrainConfig) -> TrainConfig {
        let n = data.train.len();
        let batch_size = if self.batch_size {
            train::default_batch_size(n)
        } else {
            t.batch_size
        };
        let epochs = if self.epochs {
            train::default_epochs(n, batch_size)
        } else {
            t.epochs
        };
        TrainConfig {
            batch_size,
            epochs,
            ..t
        }
    }
}

/// The search configuration of `job` on `data`: the final training's recipe and
/// budget (images, seconds) filled in, so the search chooses for the training that
/// will follow.
pub fn search_config(data: &Dataset, job: &SearchJob) -> SearchConfig {
    let mut cfg = job.search.clone();
    // Search only: choose for the recipe the search's configuration names (`search
    // --no-train` passes the training options it was given, --train-time included).
    let recipe =
        recipe_of(data, job).unwrap_or_else(|| job.fit.apply(data, job.search.recipe.clone()));
    cfg.train_budget = Some(TrainBudget {
        images: (recipe.epochs * data.train.len()) as u64,
        seconds: recipe
            .time_budget
            .map_or(f64::INFINITY, |d| d.as_secs_f64()),
    });
    cfg.recipe = recipe;
    cfg
}

/// Run the search on loaded data (no output written): the core of [`run`], also used
/// by the benchmarks.
pub fn search_on(
    data: &Dataset,
    job: &SearchJob,
    device: &Device,
) -> Result<search::SearchOutcome, JobError> {
    let input = input_shape(data);
    let cfg = search_config(data, job);
    let batches =
        search::score::score_batches(data, cfg.score_batch, cfg.score_repeats, cfg.seed, device)?;
    let mut scorer = Scorer::new(&batches, input, device.clone(), cfg.seed, cfg.conv);
    let (board, targets) = (&job.board, &job.targets);
    let check = |a: &Arch| search::feasible::fit_of(a, &input, board, targets);
    let latency = crate::latency::Budget::for_board(board, targets, input, cfg.latency_ms);
    let ctx = SearchData {
        data,
        input,
        board: &board.name,
        memory: &check,
        latency: &latency,
        device: device.clone(),
    };
    Ok(search::search(&job.space, &ctx, &mut scorer, &cfg)?)
}

/// What [`run`] wrote.
#[derive(Debug)]
pub struct SearchRun {
    /// The output directory.
    pub dir: PathBuf,
    /// The report.
    pub report: SearchReport,
}

/// Search, train the winner, write `report.json`, `report.md`, `candidates.svg` and
/// `checkpoint.safetensors` into `out` (atomically; an existing directory only with
/// `force`).
pub fn run(
    job: &SearchJob,
    device: &Device,
    out: &Path,
    force: bool,
) -> Result<SearchRun, JobError> {
    run_with(job, device, out, force, &RunControl::default())
}

/// The report files of a search run.
const REPORT_FILES: [&str; 3] = ["report.json", "report.md", "candidates.svg"];

fn write_reports(staged: &Staged, report: &SearchReport) -> Result<(), JobError> {
    let [json, md, svg] = REPORT_FILES;
    staged.write(json, serde_json::to_string_pretty(report)?.as_bytes())?;
    staged.write(md, report.markdown().as_bytes())?;
    staged.write(svg, report.svg().as_bytes())?;
    Ok(())
}

/// The metadata key of the search result kept with the training state (YAML, which
/// unlike JSON keeps NaN and infinite scores).
const SEARCH_KEY: &str = "spikenas.search";

/// The search result of the interrupted run in `out`, kept with its training state.
fn searched_before(out: &Path) -> Result<search::SearchOutcome, JobError> {
    let path = out.join(crate::train::resume::FILE);
    let (_, meta) = crate::train::Snapshot::read(&path)?;
    let format = |problem: String| ResumeError::Format {
        path: path.clone(),
        problem,
    };
    let yaml = meta
        .get(SEARCH_KEY)
        .ok_or_else(|| format(format!("it has no search result (`{SEARCH_KEY}`)")))?;
    Ok(serde_norway::from_str(yaml)
        .map_err(|e| format(format!("its search result is unreadable ({e})")))?)
}

/// [`run`], interruptible and resumable as `ctl` says: when the training of the
/// winner is interrupted, the output folder keeps the search report and the training
/// state, and `ctl.resume` continues the training (the search is not run again).
pub fn run_with(
    job: &SearchJob,
    device: &Device,
    out: &Path,
    force: bool,
    ctl: &RunControl,
) -> Result<SearchRun, JobError> {
    let staged = Staged::new(out, force || ctl.resume)?;
    let data = data::load(&job.source, &job.load)?;
    let input = input_shape(&data);
    let outcome = if ctl.resume {
        searched_before(out)?
    } else {
        search_on(&data, job, device)?
    };
    let estimate = memory::estimate(&outcome.best, &input, &job.board, &job.targets);
    let mut report = SearchReport {
        board: job.board.name.clone(),
        dataset: job.source.to_string(),
        input: format!(
            "{}x{}x{}, {} classes",
            input.channels, input.height, input.width, input.classes
        ),
        seed: job.search.seed,
        memory_table: estimate.render(),
        regions: SearchReport::regions_of(&estimate),
        search: outcome,
        training: None,
        quantization: None,
        sections: Vec::new(),
        clock_hz: job.board.clock_hz,
    };
    let mut staged = staged;
    let say = |msg: String| {
        if job.search.progress {
            eprintln!("{msg}");
        }
    };
    if let Some(cfg) = &recipe_of(&data, job) {
        let arch = report.search.best;
        say(format!(
            "training {arch}: {} epochs of {} images, batch {}{}",
            cfg.epochs,
            data.train.len(),
            cfg.batch_size,
            cfg.time_budget
                .map(|b| format!(", at most {:.0} s", b.as_secs_f64()))
                .unwrap_or_default()
        ));
        let (net, varmap) =
            Network::init(arch, input, LifParams::default(), device, job.search.seed)?;
        let fingerprint = serde_json::json!({
            "board": job.board.name,
            "arch": arch.to_string(),
            "dataset": job.source.to_string(),
            "load": &job.load,
            "config": fingerprint_of(cfg),
            "seed": job.search.seed,
        })
        .to_string();
        let resumed = ctl.resume_state(out, &fingerprint)?;
        let kept = Kept {
            staged,
            ctl,
            fingerprint,
            resume_command: format!("spikenas-host search --resume {}", out.display()),
            extra_meta: [(
                SEARCH_KEY.to_string(),
                serde_norway::to_string(&report.search).map_err(|e| ResumeError::Format {
                    path: out.join(crate::train::resume::FILE),
                    problem: format!("the search result cannot be written ({e})"),
                })?,
            )]
            .into(),
        };
        let t = match kept.train(&net, &varmap, &data, device, cfg, resumed.as_ref())? {
            Trained::Finished(t) => t,
            Trained::Stopped(s) => {
                write_reports(&kept.staged, &report)?;
                let others = ["the search report (report.json, report.md, candidates.svg)"];
                return Err(kept.interrupted(&s, cfg, &others)?.into());
            }
        };
        staged = kept.staged;
        let mut extra = std::collections::HashMap::new();
        extra.insert("board".to_string(), job.board.name.clone());
        // `quantize` and `infer` on this run's files reuse the split.
        extra.insert(checkpoint::DATA_SEED.to_string(), job.load.seed.to_string());
        let info = CheckpointInfo {
            arch,
            input,
            dataset: job.source.to_string(),
            accuracy: t.test_accuracy,
            lif: net.lif,
            extra,
        };
        checkpoint::save(&staged.path(checkpoint::FILE), &varmap, &info)?;
        report.training = Some(t);
        let conv = cfg.conv;
        say(format!(
            "quantizing to int{}: calibrating on {} training images, then {} test images \
             through the firmware's integer kernels",
            arch.weight_bits,
            CALIBRATION_IMAGES.min(data.train.len()),
            data.test.len()
        ));
        let (q, summary) = quantize_winner(&net, &varmap, &data, device, conv)?;
        let model_info = crate::quant::export::ModelInfo {
            dataset: job.source.to_string(),
            float_accuracy: Some(summary.float_accuracy),
            int_accuracy: Some(summary.int_accuracy),
            board: Some(job.board.name.clone()),
            extra: [(
                crate::checkpoint::DATA_SEED.to_string(),
                job.load.seed.to_string(),
            )]
            .into(),
        };
        staged.write(
            crate::quant::export::MODEL_FILE,
            &crate::quant::export::to_bytes(&q, &model_info),
        )?;
        let mut body = format!(
            "| | |\n|---|---|\n| weights | int{} |\n| float test accuracy | {:.2}% |\n| integer test accuracy (firmware kernels on the host) | {:.2}% |\n| float/integer agreement | {:.2}% |\n| spikes per inference | {:.0} |\n| synaptic operations per inference | {:.0} |\n",
            summary.bits,
            100.0 * summary.float_accuracy,
            100.0 * summary.int_accuracy,
            100.0 * summary.agreement,
            summary.mean_spikes,
            summary.mean_synops
        );
        for w in &summary.warnings {
            body.push_str(&format!("\nwarning: {w}\n"));
        }
        report
            .sections
            .push(("Quantization (model.safetensors)".into(), body));
        if job.board.is_mcu() {
            say(format!(
                "writing the firmware crate for {} ({} test images with the host's results)",
                job.board.name,
                FIRMWARE_TEST_IMAGES.min(data.test.len())
            ));
            let dir = staged.path("firmware");
            let krate = write_board_app(
                &q,
                &job.board,
                &job.targets,
                &dir,
                &data.test,
                FIRMWARE_TEST_IMAGES,
            )?;
            let final_dir = staged.target().join("firmware");
            report.sections.push((
                "Firmware".into(),
                format!(
                    "A `no_std` crate for {} ({}) in `firmware/`: workspace {} bytes{}, model constants {} bytes, {} test images with the host's results.\n\n```sh\nspikenas-host build --board {} {}\nspikenas-host validate --board {} {}\n```\n",
                    krate.board,
                    krate.triple,
                    krate.layout.bytes(),
                    krate.fast_region.as_ref().map(|r| format!(" (membranes in {r})")).unwrap_or_default(),
                    krate.constant_bytes,
                    FIRMWARE_TEST_IMAGES.min(data.test.len()),
                    job.board.name,
                    final_dir.display(),
                    job.board.name,
                    final_dir.display()
                ),
            ));
        }
        report.quantization = Some(summary);
    }
    write_reports(&staged, &report)?;
    let dir = staged.commit()?;
    Ok(SearchRun { dir, report })
}
