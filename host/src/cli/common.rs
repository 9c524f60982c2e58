//! Options shared by several subcommands.

use std::path::PathBuf;

use anyhow::bail;
use spikenas_host::boards::{Catalog, Profile};

/// Which board: a name from boards/ or a profile file of the user's.
#[derive(Debug, Clone, clap::Args)]
pub struct BoardArgs {
    /// Board name (see `spikenas-host boards`).
    #[arg(long, required_unless_present = "board_file")]
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
            (None, None) => bail!("give --board NAME or --board-file FILE"),
        };
        Ok((catalog, profile))
    }
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
