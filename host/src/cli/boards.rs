//! `spikenas-host boards`: the shipped board profiles as a table.

use spikenas_host::boards::Catalog;

/// List the boards in boards/*.yaml with their core, memory, runner and emulation.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Print the board table.
pub fn run(_args: Args) -> anyhow::Result<()> {
    let catalog = Catalog::discover()?;
    print!("{}", catalog.render_table());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn prints_the_table() {
        super::run(super::Args {}).unwrap();
    }
}
