//! `spikenas-host boards`: the shipped board profiles as a table.

use spikenas_host::boards::Catalog;

/// List the boards with their core, memory, runner and emulation: the catalogue built
/// into this binary, or the folder `$SPIKENAS_HOME` names (its targets.yaml and
/// boards/*.yaml).
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Print the board table (and, on stderr, where the catalogue came from).
pub fn run(_args: Args) -> anyhow::Result<()> {
    let catalog = Catalog::discover()?;
    eprintln!("board catalogue: {}", catalog.source());
    print!("{}", catalog.render_table());
    Ok(())
}

#[cfg(test)]
mod tests {
    use spikenas_host::boards::Catalog;

    #[test]
    fn the_table_lists_every_board_with_its_core_and_emulation() {
        super::run(super::Args {}).unwrap();
        let catalog = Catalog::discover().unwrap();
        let table = catalog.render_table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("board") && lines[0].contains("emulated"));
        for b in catalog.boards() {
            let row = lines
                .iter()
                .find(|l| l.split_whitespace().next() == Some(b.name.as_str()))
                .unwrap_or_else(|| panic!("{} missing from\n{table}", b.name));
            let core = &catalog.target_of(b).unwrap().core;
            assert!(row.contains(core.as_str()), "{row}");
            assert_eq!(row.contains("yes (qemu"), b.is_emulated(), "{row}");
        }
    }
}
