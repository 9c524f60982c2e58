//! The board application template (firmware/template/): where its files come from
//! ([`Template`]: built into the binary, or `$SPIKENAS_HOME/firmware/template/`), and
//! filling the `{{NAME}}` fields of its build files, with every value escaped for the
//! place it lands in.
//!
//! Board profiles come from users (`--board-file`), and the filled files are run by
//! cargo (`.cargo/config.toml` names a linker and a runner). Profile validation already
//! refuses anything but plain names; this module makes sure that even a value that got
//! past it stays one string: the template is scanned once (a value that contains
//! `{{...}}` is not filled again), and each value is written as the body of a TOML basic
//! string (quotes, backslashes and control characters escaped).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::BoardAppError;

/// The template files `generate` uses, by path in firmware/template/.
pub const FILES: [&str; 12] = [
    "Cargo.toml",
    "Cargo.lock",
    ".cargo/config.toml",
    "rust-toolchain.toml",
    "build.rs",
    "src/main.rs",
    "src/clock.rs",
    "src/cycles.rs",
    "src/log.rs",
    "src/transport/semihosting.rs",
    "src/transport/uart.rs",
    "vendor/spikenas-firmware/Cargo.toml",
];

/// The template's files ([`FILES`]), read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The folder they were read from; `None` for the built-in copy.
    pub dir: Option<PathBuf>,
    files: BTreeMap<&'static str, String>,
}

impl Template {
    /// The copy built into this binary (firmware/template/ when it was built).
    pub fn built_in() -> Template {
        let files = FILES
            .iter()
            .map(|&name| {
                let text = crate::assets::TEMPLATE
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or("", |(_, text)| text);
                (name, text.to_string())
            })
            .collect();
        Template { dir: None, files }
    }

    /// Every file of [`FILES`] from `dir`; a missing one is an error naming it.
    pub fn load(dir: &Path) -> Result<Template, BoardAppError> {
        let mut files = BTreeMap::new();
        for name in FILES {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).map_err(BoardAppError::io(&path))?;
            files.insert(name, text);
        }
        Ok(Template {
            dir: Some(dir.to_path_buf()),
            files,
        })
    }

    /// `$SPIKENAS_HOME/firmware/template/` when that folder exists, else the built-in copy.
    pub fn discover() -> Result<Template, BoardAppError> {
        match crate::assets::home().map(|home| home.join("firmware/template")) {
            Some(dir) if dir.is_dir() => Template::load(&dir),
            _ => Ok(Template::built_in()),
        }
    }

    /// The text of `name`, one of [`FILES`].
    pub fn file(&self, name: &str) -> &str {
        self.files.get(name).map_or("", String::as_str)
    }
}

/// A template field (`{{NAME}}`, NAME in capitals, digits and `_`) that has no value:
/// a bug in the template or in the caller, reported with the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template field `{{{{{0}}}}}` has no value (known fields: {1})")]
pub struct UnknownField(pub String, pub String);

/// `template` with every `{{NAME}}` replaced by the TOML-escaped value of `NAME` in
/// `values`. Every `{{NAME}}` of the build templates sits inside a TOML basic string
/// (`"..."`), so the escaped value can never end that string.
pub fn fill_toml(template: &str, values: &[(&str, &str)]) -> Result<String, UnknownField> {
    let known = || {
        values
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let is_field = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name = after.find("}}").map(|end| &after[..end]);
        match name {
            Some(name) if is_field(name) => {
                let value = values
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| UnknownField(name.to_string(), known()))?;
                out.push_str(&toml_basic_string_body(value));
                rest = &after[name.len() + 2..];
            }
            // Not a field (the templates' comments mention `{{...}}`): kept as it is.
            _ => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `value` escaped as the inside of a TOML basic string (between its `"`s): `"` and `\`
/// are escaped, and so is every control character (TOML 1.0, "Basic strings").
pub fn toml_basic_string_body(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '\u{8}' => s.push_str("\\b"),
            '\u{c}' => s.push_str("\\f"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{:04X}", c as u32);
            }
            c => s.push(c),
        }
    }
    s
}

/// `value` as text that stays inside a C-style comment (`/* ... */`, as in `memory.x`)
/// and on one line: quoted and escaped like a Rust string, with `*/` broken up.
pub fn comment_text(value: &str) -> String {
    format!("{value:?}").replace("*/", "*\\/")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the value of `key = "..."` back with a minimal TOML basic-string parser, so
    /// the tests check what cargo would see, not just what was written.
    fn toml_string_value(text: &str, key: &str) -> String {
        let line_start = text
            .find(&format!("{key} = \""))
            .unwrap_or_else(|| panic!("no {key} in {text}"));
        let mut chars = text[line_start + key.len() + 4..].chars();
        let mut value = String::new();
        loop {
            match chars.next().expect("unterminated string") {
                '"' => return value,
                '\n' => panic!("raw newline inside a basic string: {text}"),
                '\\' => match chars.next().unwrap() {
                    '"' => value.push('"'),
                    '\\' => value.push('\\'),
                    'n' => value.push('\n'),
                    'r' => value.push('\r'),
                    't' => value.push('\t'),
                    'b' => value.push('\u{8}'),
                    'f' => value.push('\u{c}'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        value.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                    }
                    other => panic!("invalid escape \\{other}"),
                },
                c => value.push(c),
            }
        }
    }

    #[test]
    fn values_cannot_leave_their_string() {
        let template = "[build]\ntarget = \"{{TARGET}}\"\n[x]\nrunner = \"{{RUNNER}}\"\n";
        let attacks = [
            "STM32F746NGHx\"\nrustflags = [\"-C\", \"linker=/tmp/evil.sh\"]",
            "a\\\"\nb",
            "back\\slash\\",
            "tab\tcr\rnul\u{0}del\u{7f}",
            "{{RUNNER}}",
            "{{TARGET}}{{",
        ];
        for attack in attacks {
            let filled = fill_toml(template, &[("TARGET", attack), ("RUNNER", "qemu")]).unwrap();
            // Still two keys, each one line, and the value reads back unchanged.
            assert_eq!(filled.lines().count(), 4, "{filled}");
            assert!(
                !filled.lines().any(|l| l.starts_with("rustflags")),
                "{filled}"
            );
            assert_eq!(toml_string_value(&filled, "target"), attack);
            assert_eq!(toml_string_value(&filled, "runner"), "qemu");
        }
    }

    #[test]
    fn a_value_is_not_filled_again() {
        let filled = fill_toml("a=\"{{A}}\" b=\"{{B}}\"", &[("A", "{{B}}"), ("B", "x")]).unwrap();
        assert_eq!(filled, "a=\"{{B}}\" b=\"x\"");
    }

    #[test]
    fn unknown_fields_are_errors_and_other_braces_stay() {
        let err = fill_toml("x = \"{{NOPE}}\"", &[("A", "1")]).unwrap_err();
        assert_eq!(err.0, "NOPE");
        assert!(err.to_string().contains("`{{NOPE}}`"), "{err}");
        let text = "# `{{...}}` is filled in; {{A\nx = \"{{A}}\"";
        assert_eq!(
            fill_toml(text, &[("A", "1")]).unwrap(),
            "# `{{...}}` is filled in; {{A\nx = \"1\""
        );
    }

    #[test]
    fn the_built_in_template_has_every_file_and_a_folder_can_replace_it() {
        let built_in = Template::built_in();
        for name in FILES {
            assert!(!built_in.file(name).is_empty(), "{name} is not built in");
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/template");
        assert_eq!(Template::load(&repo).unwrap().files, built_in.files);
        // A folder without one of the files is refused, naming it.
        let dir = std::env::temp_dir().join(format!("spikenas-template-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Cargo.toml"), "x").unwrap();
        let err = Template::load(&dir).unwrap_err().to_string();
        assert!(err.contains("Cargo.lock"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The vendored runtime's manifest states every dependency and feature of
    /// firmware/Cargo.toml (which inherits them from the workspace).
    #[test]
    fn the_vendored_manifest_keeps_in_step_with_the_runtime() {
        let vendored = Template::built_in()
            .file("vendor/spikenas-firmware/Cargo.toml")
            .to_string();
        let runtime = crate::assets::FIRMWARE
            .iter()
            .find(|(n, _)| *n == "Cargo.toml")
            .unwrap()
            .1;
        let workspace = include_str!("../../../Cargo.toml");
        let section = |text: &str, name: &str| -> Vec<String> {
            let start = text
                .find(&format!("[{name}]\n"))
                .unwrap_or_else(|| panic!("[{name}]"));
            text[start..]
                .lines()
                .skip(1)
                .take_while(|l| !l.starts_with('['))
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(section(runtime, "features"), section(&vendored, "features"));
        // The runtime's version is the workspace's, as the host's is.
        assert!(vendored.contains(&format!("\nversion = \"{}\"\n", env!("CARGO_PKG_VERSION"))));
        let deps = section(&vendored, "dependencies");
        for line in section(runtime, "dependencies") {
            let name = line.split(['.', ' ']).next().unwrap();
            // `name.workspace = true`: the version is the workspace's.
            let version = section(workspace, "workspace.dependencies")
                .into_iter()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} not in the workspace"));
            let version = version.split('"').nth(1).unwrap().to_string();
            assert!(
                deps.iter()
                    .any(|d| d.starts_with(&format!("{name} "))
                        && d.contains(&format!("\"{version}\""))),
                "{name} {version} missing from the vendored manifest: {deps:?}"
            );
        }
        assert_eq!(
            deps.len(),
            section(runtime, "dependencies").len(),
            "{deps:?}"
        );
    }

    #[test]
    fn comment_text_stays_in_the_comment() {
        let text = comment_text("evil */ MEMORY { X : ORIGIN = 0 } /*\nnext");
        assert!(!text.contains("*/"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}
