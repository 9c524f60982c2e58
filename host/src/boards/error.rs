//! The typed error of board and target loading: every message names the file, the line
//! and column when the YAML parser knows them, the field, and how to fix it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// An error reading, parsing or checking `targets.yaml` or a board profile.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// The file could not be read.
    #[error("cannot read {}: {source}. Fix: check the path and its permissions", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any board profile.
    #[error(
        "{} is larger than {limit} bytes, far more than a board profile or targets file \
         needs. Fix: pass the YAML file that describes the board (see boards/*.yaml)",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The most bytes read.
        limit: u64,
    },
    /// The YAML is malformed or does not match the schema (unknown field, wrong type, ...).
    #[error("{}: {field}: {message}. Fix: {fix}", place(path, *line, *column))]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line, when the parser knows it.
        line: Option<u32>,
        /// 1-based column, when the parser knows it.
        column: Option<u32>,
        /// The field at fault as a path (`regions[2].size`), or `(document)`.
        field: String,
        /// What the parser said, without its location suffix.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// The file parsed but breaks a rule (overlapping regions, unknown target, ...).
    #[error("{}: {field}: {problem}. Fix: {fix}", place(path, *line, None))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the field, found in the text after parsing (best effort).
        line: Option<u32>,
        /// The field at fault as a path (`regions[2]`).
        field: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// No board of that name is shipped.
    #[error(
        "unknown board {name}; {hint}known boards: {}. Fix: pass one of them, or describe \
         your board in a YAML file and pass it with --board-file",
        known.join(", ")
    )]
    UnknownBoard {
        /// The name asked for (shortened if long).
        name: String,
        /// `did you mean ...? ` or `to read a file use --board-file ...; `, or empty.
        hint: String,
        /// Every shipped board name.
        known: Vec<String>,
    },
    /// `$SPIKENAS_HOME` names a folder without a catalogue.
    #[error(
        "SPIKENAS_HOME={} holds no targets.yaml and boards/. Fix: point SPIKENAS_HOME at a \
         folder laid out like the spikenas repository (targets.yaml, boards/*.yaml, \
         optionally firmware/template/), or unset it to use the catalogue built into \
         spikenas-host",
        dir.display()
    )]
    NoHome {
        /// The folder it names.
        dir: PathBuf,
    },
}

fn place(path: &Path, line: Option<u32>, column: Option<u32>) -> String {
    let mut s = path.display().to_string();
    if let Some(line) = line {
        let _ = write!(s, ":{line}");
        if let Some(column) = column {
            let _ = write!(s, ":{column}");
        }
    }
    s
}

impl BoardError {
    /// Turn a serde_norway error into a [`BoardError::Parse`] with its location, the
    /// field path it names and a fix suited to the kind of error.
    pub(crate) fn parse(path: &Path, error: &serde_norway::Error) -> BoardError {
        let location = error.location();
        let mut message = error.to_string();
        // serde_norway appends " at line L column C"; the location is kept separately.
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        // Schema errors start with the path of the value being read: `regions[0]: ...`.
        let mut field = String::new();
        if let Some((head, rest)) = message.split_once(": ") {
            if !head.is_empty() && !head.contains(' ') {
                field = head.to_string();
                message = rest.to_string();
            }
        }
        let named = |msg: &str, prefix: &str| -> Option<String> {
            let rest = msg.strip_prefix(prefix)?;
            Some(rest.split('`').next()?.to_string())
        };
        let join = |field: &str, key: &str| {
            if field.is_empty() {
                key.to_string()
            } else {
                format!("{field}.{key}")
            }
        };
        let fix;
        if let Some(key) = named(&message, "unknown field `") {
            field = join(&field, &key);
            fix =
                format!("remove or rename `{key}`; the allowed fields are listed in this message");
        } else if let Some(key) = named(&message, "missing field `") {
            field = join(&field, &key);
            fix = format!("add `{key}` (see host/src/boards/mod.rs for what it means)");
        } else if message.starts_with("unknown variant") {
            fix = "use one of the listed values".to_string();
        } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
            fix =
                "give a value of the expected type (numbers may be decimal or 0x hex)".to_string();
        } else {
            fix = "correct the YAML at that line".to_string();
        }
        if field.is_empty() {
            field = "(document)".to_string();
        }
        BoardError::Parse {
            path: path.to_path_buf(),
            line: location
                .as_ref()
                .map(|l| u32::try_from(l.line()).unwrap_or(u32::MAX)),
            column: location
                .as_ref()
                .map(|l| u32::try_from(l.column()).unwrap_or(u32::MAX)),
            field,
            message,
            fix,
        }
    }
}
