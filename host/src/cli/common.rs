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
