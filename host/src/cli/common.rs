//! Options shared by several subcommands.

use std::path::{Path, PathBuf};

use anyhow::bail;
use spikenas_host::boards::{Catalog, Profile};
use spikenas_host::session::{self, RunControl};

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
    let (command, cwd) = session::recorded_command(dir)?;
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
