//! Filling the `{{NAME}}` fields of firmware/template's build files, with every value
//! escaped for the place it lands in.
//!
//! Board profiles come from users (`--board-file`), and the filled files are run by
//! cargo (`.cargo/config.toml` names a linker and a runner). Profile validation already
//! refuses anything but plain names; this module makes sure that even a value that got
//! past it stays one string: the template is scanned once (a value that contains
//! `{{...}}` is not filled again), and each value is written as the body of a TOML basic
//! string (quotes, backslashes and control characters escaped).

use std::fmt::Write as _;

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
    fn comment_text_stays_in_the_comment() {
        let text = comment_text("evil */ MEMORY { X : ORIGIN = 0 } /*\nnext");
        assert!(!text.contains("*/"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}
