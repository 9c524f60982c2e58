//! The board catalogue: `targets.yaml` and `boards/*.yaml`, built into the binary
//! ([`crate::assets`]) or read from the folder `$SPIKENAS_HOME` names.

use std::path::{Path, PathBuf};

use super::{format_size, BoardError, Problem, Profile, Runner, Target, Targets};
use crate::assets;

/// Where a catalogue was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The files built into this binary (host/build.rs).
    BuiltIn,
    /// A folder holding `targets.yaml` and `boards/`.
    Dir(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::BuiltIn => write!(
                f,
                "built into spikenas-host {} (set {} to a folder to use another)",
                env!("CARGO_PKG_VERSION"),
                assets::HOME_ENV
            ),
            Source::Dir(dir) => write!(f, "{} (from {})", dir.display(), assets::HOME_ENV),
        }
    }
}

/// Every shipped target and board profile, loaded and validated.
#[derive(Debug, Clone)]
pub struct Catalog {
    source: Source,
    targets: Targets,
    boards: Vec<Profile>,
}

impl Catalog {
    /// Read `root/targets.yaml` and every `root/boards/*.yaml`; each profile must parse,
    /// validate, and carry its file's name.
    pub fn load(root: &Path) -> Result<Catalog, BoardError> {
        let targets = Targets::from_file(&root.join("targets.yaml"))?;
        let dir = root.join("boards");
        let io = |source| BoardError::Io {
            path: dir.clone(),
            source,
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
        files.sort();
        let mut profiles = Vec::with_capacity(files.len());
        for path in files {
            profiles.push(Profile::from_file(&path, &targets)?);
        }
        Catalog::new(Source::Dir(root.to_path_buf()), targets, profiles)
    }

    /// The catalogue built into this binary (the repository's files when it was built).
    pub fn built_in() -> Result<Catalog, BoardError> {
        let base = Path::new("(built in)");
        let targets = Targets::from_yaml(assets::TARGETS_YAML, &base.join("targets.yaml"))?;
        let mut profiles = Vec::with_capacity(assets::BOARDS.len());
        for (name, text) in assets::BOARDS {
            profiles.push(Profile::from_yaml(
                text,
                &base.join("boards").join(name),
                &targets,
            )?);
        }
        Catalog::new(Source::BuiltIn, targets, profiles)
    }

    /// Checks that each profile carries its file's name.
    fn new(
        source: Source,
        targets: Targets,
        profiles: Vec<Profile>,
    ) -> Result<Catalog, BoardError> {
        let mut boards = Vec::with_capacity(profiles.len());
        for profile in profiles {
            let path = profile.source.clone().unwrap_or_default();
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if profile.name != stem {
                return Err(Problem {
                    field: "name".into(),
                    problem: format!(
                        "name `{}` differs from the file name `{stem}`",
                        profile.name
                    ),
                    fix: format!(
                        "set name: {stem}, or rename the file to {}.yaml",
                        profile.name
                    ),
                }
                .at(&path));
            }
            boards.push(profile);
        }
        Ok(Catalog {
            source,
            targets,
            boards,
        })
    }

    /// The catalogue in effect: the folder `$SPIKENAS_HOME` names if it is set, else the
    /// one built into this binary. The current folder plays no part.
    pub fn discover() -> Result<Catalog, BoardError> {
        Catalog::from_home(assets::home().as_deref())
    }

    /// The catalogue of `home` (a folder with `targets.yaml` and `boards/`), or the
    /// built-in one when `home` is `None`.
    pub fn from_home(home: Option<&Path>) -> Result<Catalog, BoardError> {
        match home {
            None => Catalog::built_in(),
            Some(dir) if dir.join("targets.yaml").is_file() && dir.join("boards").is_dir() => {
                Catalog::load(dir)
            }
            Some(dir) => Err(BoardError::NoHome {
                dir: dir.to_path_buf(),
            }),
        }
    }

    /// Where this catalogue was read from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Every target.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Every board, sorted by name.
    pub fn boards(&self) -> &[Profile] {
        &self.boards
    }

    /// Every board name, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.boards.iter().map(|b| b.name.as_str()).collect()
    }

    /// The board called `name`, or an error listing the known ones.
    pub fn board(&self, name: &str) -> Result<&Profile, BoardError> {
        self.boards
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| BoardError::UnknownBoard {
                name: super::validate::shown(name),
                hint: self.hint_for(name),
                known: self.names().into_iter().map(String::from).collect(),
            })
    }

    /// What the user of an unknown board `name` most likely meant.
    fn hint_for(&self, name: &str) -> String {
        let looks_like_a_file =
            name.ends_with(".yaml") || name.ends_with(".yml") || name.contains('/');
        if looks_like_a_file && name.len() <= 200 {
            return format!("to use a profile file, pass it with --board-file {name}; ");
        }
        let lower = name.to_ascii_lowercase();
        let close = self
            .names()
            .into_iter()
            .map(|known| (edit_distance(&lower, known), known))
            .filter(|(d, known)| {
                *d <= 2.max(known.len() / 3) || (!lower.is_empty() && known.contains(&lower))
            })
            .min();
        close.map_or(String::new(), |(_, known)| {
            format!("did you mean `{known}`? ")
        })
    }

    /// A plain-text table of every board: name, core, flash, RAM per region, runner and
    /// whether QEMU emulates it.
    pub fn render_table(&self) -> String {
        let mut rows = vec![[
            "board".to_string(),
            "core".to_string(),
            "flash".to_string(),
            "RAM regions".to_string(),
            "runner".to_string(),
            "emulated".to_string(),
        ]];
        for b in &self.boards {
            let target = self.target_of(b);
            let core = target.map_or("?", |t| t.core.as_str()).to_string();
            let flash = b
                .flash_region()
                .map_or("-".to_string(), |r| format_size(r.size));
            let regions: Vec<String> = b
                .data_regions()
                .map(|r| format!("{} {}", r.name, format_size(r.size)))
                .collect();
            let mut ram = regions.join(" + ");
            if b.runner == Runner::Linux {
                ram.push_str(&format!(", model budget {}", format_size(b.model_budget())));
            }
            let emulated = match (
                b.is_emulated(),
                target.and_then(|t| t.qemu_machine.as_deref()),
            ) {
                (true, Some(machine)) => format!("yes (qemu {machine})"),
                _ => "no".to_string(),
            };
            rows.push([
                b.name.clone(),
                core,
                flash,
                ram,
                b.runner.as_str().into(),
                emulated,
            ]);
        }
        let mut widths = [0usize; 6];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }

    /// The target of a board (validated profiles always have one).
    pub fn target_of(&self, board: &Profile) -> Option<&Target> {
        self.targets.get(&board.target)
    }
}

/// Levenshtein distance (for "did you mean").
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
