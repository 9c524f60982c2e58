//! The shipped catalog: `targets.yaml` and `boards/*.yaml` from the repository root.

use std::path::{Path, PathBuf};

use super::{format_size, BoardError, Problem, Profile, Runner, Target, Targets};

/// Environment variable that points at the repository root (the folder holding
/// `targets.yaml` and `boards/`).
pub const ROOT_ENV: &str = "SPIKENAS_ROOT";

/// Every shipped target and board profile, loaded and validated.
#[derive(Debug, Clone)]
pub struct Catalog {
    root: PathBuf,
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
        let mut boards = Vec::with_capacity(files.len());
        for path in files {
            let profile = Profile::from_file(&path, &targets)?;
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
            root: root.to_path_buf(),
            targets,
            boards,
        })
    }

    /// Find the repository root and load it: `$SPIKENAS_ROOT` if set, else the first
    /// folder holding `targets.yaml` and `boards/` from the current directory upwards,
    /// else the source tree this binary was built from.
    pub fn discover() -> Result<Catalog, BoardError> {
        Catalog::load(&find_root()?)
    }

    /// The repository root this catalog was read from.
    pub fn root(&self) -> &Path {
        &self.root
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

/// Where the catalog lives (see [`Catalog::discover`]).
pub fn find_root() -> Result<PathBuf, BoardError> {
    let mut tried = Vec::new();
    let is_root = |dir: &Path| dir.join("targets.yaml").is_file() && dir.join("boards").is_dir();
    if let Some(dir) = std::env::var_os(ROOT_ENV) {
        let dir = PathBuf::from(dir);
        if is_root(&dir) {
            return Ok(dir);
        }
        tried.push(dir);
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            if is_root(dir) {
                return Ok(dir.to_path_buf());
            }
        }
        tried.push(cwd);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if is_root(&built) {
        return Ok(built);
    }
    tried.push(built);
    Err(BoardError::NoRoot { tried })
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
