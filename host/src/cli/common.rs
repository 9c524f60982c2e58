//! Options shared by several subcommands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use spikenas_host::boards::{Catalog, Profile};
use spikenas_host::data::{Augment, LoadOptions};
use spikenas_host::device::DeviceChoice;
use spikenas_host::jobs::{self, RunControl};
use spikenas_host::kernels::ConvBackend;
use spikenas_host::train::{OptimizerKind, TrainConfig};

/// Which board: a name from boards/ or a profile file of the user's.
#[derive(Debug, Clone, clap::Args)]
pub struct BoardArgs {
    /// Board name (see `spikenas-host boards`), or --board-file for a profile of your own.
    // Not `required` in clap: `search --resume DIR` takes the board from DIR's run, and
    // `quantize` only records it; `load` says what is missing.
    #[arg(long)]
    pub board: Option<String>,
    /// Your own board profile, a YAML file with the fields of boards/*.yaml.
    #[arg(long, conflicts_with = "board")]
    pub board_file: Option<PathBuf>,
}

impl BoardArgs {
    /// The catalog and the chosen profile.
    pub fn load(&self) -> anyhow::Result<(Catalog, Profile)> {
        let catalog = Catalog::discover()?;
        let profile = match (&self.board_file, &self.board) {
            (Some(path), _) => Profile::from_file(path, catalog.targets())?,
            (None, Some(name)) => catalog.board(name)?.clone(),
            (None, None) => bail!(
                "no board given. Fix: give --board NAME (see `spikenas-host boards`) or \
                 --board-file FILE"
            ),
        };
        Ok((catalog, profile))
    }

    /// [`BoardArgs::load`] where a board is optional: `None` when neither option is given.
    pub fn load_optional(&self) -> anyhow::Result<Option<(Catalog, Profile)>> {
        if self.board.is_none() && self.board_file.is_none() {
            return Ok(None);
        }
        self.load().map(Some)
    }
}

/// The training options `train` and `search` share. Unset values come from
/// [`TrainConfig::default`] (`train`) or are fitted to the dataset (`search`).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainingArgs {
    /// Passes over the training split [train: 15; search: 15, or more on small datasets
    /// so that training takes at least 3,000 steps].
    #[arg(long, value_parser = at_least_one)]
    pub epochs: Option<usize>,
    /// Images per step [train: 64; search: fitted to the dataset, 16 to 64].
    #[arg(long, value_parser = at_least_one)]
    pub batch_size: Option<usize>,
    /// Peak learning rate (cosine schedule).
    #[arg(long, default_value_t = TrainConfig::default().lr, value_parser = positive)]
    pub lr: f64,
    /// Weight decay.
    #[arg(long, default_value_t = TrainConfig::default().weight_decay, value_parser = non_negative)]
    pub weight_decay: f64,
    /// Optimiser.
    #[arg(long, value_enum, default_value_t = TrainConfig::default().optimizer)]
    pub optimizer: OptimizerKind,
    /// Distortions of the training images: none, shift (up to 2 pixels), shift-flip
    /// (also mirrored left-right), or flip (mirrored only); the mirrors are for
    /// mirror-symmetric classes such as clothing, not digits.
    #[arg(long, value_enum, default_value_t = TrainConfig::default().augment)]
    pub augment: Augment,
    /// Stop training after this many seconds (`search` also leaves out networks whose
    /// recipe would not finish in this time).
    #[arg(long, value_parser = at_least_one_second)]
    pub train_time: Option<u64>,
    /// Use at most this many training images (quick runs).
    #[arg(long, value_parser = at_least_one)]
    pub max_train: Option<usize>,
    /// Seed for splits, initialisation and batch order (and the search).
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// cpu, or cuda (needs a build with --features cuda).
    #[arg(long, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    /// Convolution implementation on the CPU.
    #[arg(long, default_value_t = ConvBackend::default())]
    pub conv: ConvBackend,
}

impl TrainingArgs {
    /// The training configuration, unset values from [`TrainConfig::default`].
    pub fn config(&self, progress: bool) -> TrainConfig {
        let d = TrainConfig::default();
        TrainConfig {
            epochs: self.epochs.unwrap_or(d.epochs),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            lr: self.lr,
            weight_decay: self.weight_decay,
            optimizer: self.optimizer,
            seed: self.seed,
            conv: self.conv,
            max_steps_per_epoch: None,
            time_budget: self.train_time.map(Duration::from_secs),
            augment: self.augment,
            progress,
        }
    }

    /// How to load the dataset: this seed's split, at most `max_train` images.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            seed: self.seed,
            max_train: self.max_train,
            ..Default::default()
        }
    }
}

/// How a job's training is stopped and resumed from the command line: SIGINT and
/// SIGTERM stop it after the current step; `resume` continues the run in its --out.
pub fn run_control(resume: bool, command: Vec<String>) -> RunControl {
    RunControl {
        resume,
        signals: true,
        stop_after_steps: None,
        command,
    }
}

/// This process's command line, as recorded for `--resume`.
pub fn this_command() -> Vec<String> {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// The command line of the interrupted `subcommand` run in `dir`, to run again with
/// `--resume`: refuses other options beside --resume (the run's own are used) and a
/// working folder other than the run's (its options may name relative paths).
pub fn resumed_command(dir: &Path, subcommand: &str) -> anyhow::Result<Vec<String>> {
    let now = this_command();
    let mut extra = now.iter().skip(2).filter(|a| {
        !(a.as_str() == "--resume"
            || a.starts_with("--resume=")
            || a.as_str() == "--quiet"
            || Path::new(a.as_str()) == dir)
    });
    if let Some(a) = extra.next() {
        bail!(
            "`{a}` cannot be combined with --resume: the interrupted run's options are used \
             (only --quiet may be added). Fix: run `spikenas-host {subcommand} --resume {}`",
            dir.display()
        );
    }
    let (command, cwd) = jobs::recorded_command(dir)?;
    if command.get(1).map(String::as_str) != Some(subcommand) {
        bail!(
            "{} holds an interrupted `{}` run, not a `{subcommand}` run. Fix: run \
             `spikenas-host {} --resume {}`",
            dir.display(),
            command[1],
            command[1],
            dir.display()
        );
    }
    let here = std::env::current_dir()?;
    if here.canonicalize().ok() != cwd.canonicalize().ok() {
        bail!(
            "the run in {} was started in {} and its options may name paths relative to \
             it. Fix: cd {} and run the command again",
            dir.display(),
            cwd.display(),
            cwd.display()
        );
    }
    Ok(command)
}

/// clap parser for counts that must be at least 1 (epochs, batch size, images).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

/// clap parser for seconds that must be at least 1 (time budgets).
pub fn at_least_one_second(text: &str) -> Result<u64, String> {
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number of seconds"))?;
    if n == 0 {
        return Err("must be at least 1 second".into());
    }
    Ok(n)
}

fn finite(text: &str) -> Result<f64, String> {
    let x: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if !x.is_finite() {
        return Err(format!("`{text}` is not a finite number"));
    }
    Ok(x)
}

/// clap parser for a number above 0 (learning rate).
pub fn positive(text: &str) -> Result<f64, String> {
    let x = finite(text)?;
    if x <= 0.0 {
        return Err("must be above 0, e.g. 3e-3".into());
    }
    Ok(x)
}

/// clap parser for a number of at least 0 (weight decay).
pub fn non_negative(text: &str) -> Result<f64, String> {
    let x = finite(text)?;
    if x < 0.0 {
        return Err("must be 0 or more (0 turns it off)".into());
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_parsers_refuse_what_they_must() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert_eq!(at_least_one("0").unwrap_err(), "must be at least 1");
        assert!(at_least_one("-1").is_err());
        assert!(at_least_one_second("0").is_err());
        assert_eq!(positive("3e-3"), Ok(3e-3));
        for bad in ["0", "-0.1", "nan", "inf", "x"] {
            assert!(positive(bad).is_err(), "{bad}");
        }
        assert_eq!(non_negative("0"), Ok(0.0));
        for bad in ["-1e-4", "nan", "-inf"] {
            assert!(non_negative(bad).is_err(), "{bad}");
        }
    }
}
