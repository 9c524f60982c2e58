//! Tests of the shipped catalog, the parser's errors and the validation checks.

use std::path::{Path, PathBuf};

use super::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn catalog() -> Catalog {
    Catalog::load(&root()).unwrap_or_else(|e| panic!("shipped catalog must load: {e}"))
}

fn shipped_text(name: &str) -> String {
    std::fs::read_to_string(root().join("boards").join(format!("{name}.yaml"))).unwrap()
}

/// A three-region profile (flash, SRAM, CCM) for the schema tests.
fn f405_ccm_text() -> String {
    include_str!("testdata/f405-ccm.yaml").to_string()
}

fn parse(text: &str) -> Result<Profile, BoardError> {
    Profile::from_yaml(text, Path::new("test.yaml"), catalog().targets())
}

fn invalid_field(text: &str) -> (String, String) {
    match parse(text) {
        Err(BoardError::Invalid { field, problem, .. }) => (field, problem),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn every_shipped_profile_parses_and_validates() {
    let c = catalog();
    let names = c.names();
    for expected in [
        "jetson-nano",
        "jetson-orin-nano",
        "microbit",
        "mps2-an386",
        "mps2-an500",
        "netduinoplus2",
        "nucleo-h743zi",
        "rp2040-pico",
        "stm32f746g-disco",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for b in c.boards() {
        b.validate(c.targets()).unwrap();
        assert!(c.target_of(b).is_some());
    }
}

#[test]
fn shipped_capacities_match_the_reference_manuals() {
    let c = catalog();
    let sizes = |name: &str| -> Vec<(String, u64, u64)> {
        c.board(name)
            .unwrap()
            .regions
            .iter()
            .map(|r| (r.name.clone(), r.origin, r.size))
            .collect()
    };
    let kib = 1024;
    assert_eq!(
        sizes("netduinoplus2"),
        vec![
            ("flash".into(), 0x0800_0000, 1024 * kib),
            ("sram".into(), 0x2000_0000, 128 * kib),
        ]
    );
    assert_eq!(c.board("stm32f746g-disco").unwrap().ram_bytes(), 320 * kib);
    assert_eq!(
        c.board("nucleo-h743zi").unwrap().ram_bytes(),
        (128 + 512 + 128 + 128 + 32 + 64) * kib
    );
    assert_eq!(c.board("rp2040-pico").unwrap().ram_bytes(), 264 * kib);
    assert_eq!(c.board("microbit").unwrap().ram_bytes(), 16 * kib);
    assert_eq!(
        c.board("microbit").unwrap().flash_region().unwrap().size,
        256 * kib
    );
    let jetson = c.board("jetson-nano").unwrap();
    assert_eq!(jetson.ram_bytes(), 4 << 30);
    assert_eq!(jetson.model_budget(), 512 << 20);
    assert_eq!(jetson.capacity_of(&jetson.regions[0]), 512 << 20);
    let orin = c.board("jetson-orin-nano").unwrap();
    assert_eq!(orin.ram_bytes(), 8 << 30);
    assert_eq!(orin.model_budget(), 1 << 30);
    assert!(c.board("netduinoplus2").unwrap().is_emulated());
    assert!(!c.board("rp2040-pico").unwrap().is_emulated());
}

#[test]
fn reserve_region_defaults_to_largest_sram() {
    let c = catalog();
    assert_eq!(
        c.board("stm32f746g-disco")
            .unwrap()
            .reserve_region()
            .unwrap()
            .name,
        "sram1"
    );
    assert_eq!(
        c.board("nucleo-h743zi")
            .unwrap()
            .reserve_region()
            .unwrap()
            .name,
        "axi_sram"
    );
    assert_eq!(
        c.board("netduinoplus2")
            .unwrap()
            .reserve_region()
            .unwrap()
            .name,
        "sram"
    );
}

#[test]
fn unknown_field_is_refused_with_its_line() {
    let text = f405_ccm_text();
    let bad = text.replacen("    size: 0x10000 # 64 KiB", "    sise: 0x10000", 1);
    assert_ne!(bad, text, "the test edit must apply");
    let line = bad.lines().position(|l| l.contains("sise")).unwrap() + 1;
    match parse(&bad) {
        Err(BoardError::Parse {
            line: Some(l),
            field,
            message,
            ..
        }) => {
            assert_eq!(l as usize, line, "{message}");
            assert_eq!(field, "regions[2].sise");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    let shown = parse(&bad).unwrap_err().to_string();
    assert!(shown.contains(&format!("test.yaml:{line}:")), "{shown}");
    assert!(shown.contains("Fix:"), "{shown}");
}

#[test]
fn unknown_top_level_field_and_bad_value_are_refused() {
    let text = shipped_text("microbit");
    let e = parse(&format!("{text}colour: blue\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("colour"), "{e}");
    let e = parse(&text.replace("runner: qemu", "runner: jtag")).unwrap_err();
    assert!(
        matches!(e, BoardError::Parse { ref field, .. } if field == "runner"),
        "{e}"
    );
}

#[test]
fn overlapping_regions_are_refused() {
    let text = f405_ccm_text().replace("origin: 0x10000000", "origin: 0x2001F000");
    let (field, problem) = invalid_field(&text);
    assert_eq!(field, "regions[2]");
    assert!(
        problem.contains("overlaps") && problem.contains("`sram`"),
        "{problem}"
    );
}

#[test]
fn unknown_board_lists_the_known_ones() {
    let e = catalog().board("arduino-uno").unwrap_err().to_string();
    assert!(e.contains("arduino-uno"), "{e}");
    for name in ["netduinoplus2", "microbit", "jetson-nano", "rp2040-pico"] {
        assert!(e.contains(name), "{e}");
    }
}

#[test]
fn rule_breaks_name_their_field() {
    let nd = shipped_text("netduinoplus2");
    // Unknown target lists the known targets.
    let (field, _) = invalid_field(&nd.replace("target: stm32f405", "target: avr"));
    assert_eq!(field, "target");
    // QEMU runner needs a machine: the STM32F746 has none.
    let (field, problem) = invalid_field(&nd.replace("target: stm32f405", "target: stm32f746"));
    assert_eq!(field, "runner", "{problem}");
    // Zero-sized region.
    let (field, _) = invalid_field(&nd.replace("size: 0x20000 # 128 KiB", "size: 0"));
    assert_eq!(field, "regions[1].size");
    // Reserves larger than the RAM they go in.
    let (field, _) = invalid_field(&nd.replace("stack_bytes: 8192", "stack_bytes: 200000"));
    assert_eq!(field, "reserves");
    // Two flash regions.
    let two = nd.replace("kind: sram", "kind: flash");
    let (field, problem) = invalid_field(&two);
    assert_eq!(field, "regions", "{problem}");
    // probe-rs without a chip.
    let pico = shipped_text("rp2040-pico").replace("probe_rs_chip: RP2040\n", "");
    let (field, _) = invalid_field(&pico);
    assert_eq!(field, "probe_rs_chip");
    // A model budget on a microcontroller.
    let (field, _) = invalid_field(&format!("{nd}model_budget_bytes: 1024\n"));
    assert_eq!(field, "model_budget_bytes");
    // A reserve region that does not exist.
    let named = nd.replace("runtime_bytes: 2048", "runtime_bytes: 2048\n  region: tcm");
    let (field, _) = invalid_field(&named);
    assert_eq!(field, "reserves.region");
}

#[test]
fn hex_and_decimal_numbers_both_parse() {
    let p = parse(&shipped_text("netduinoplus2")).unwrap();
    assert_eq!(p.flash_region().unwrap().origin, 134_217_728);
    assert_eq!(p.clock_hz, 168_000_000);
}

#[test]
fn user_profile_file_loads() {
    let dir = std::env::temp_dir().join(format!("spikenas-boards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mine.yaml");
    let text = shipped_text("microbit").replace("name: microbit", "name: mine");
    std::fs::write(&path, text).unwrap();
    let p = Profile::from_file(&path, catalog().targets()).unwrap();
    assert_eq!(p.name, "mine");
    assert_eq!(p.source.as_deref(), Some(path.as_path()));
    let missing = Profile::from_file(&dir.join("nope.yaml"), catalog().targets()).unwrap_err();
    assert!(matches!(missing, BoardError::Io { .. }));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn targets_are_checked() {
    let bad = "m0:\n  description: x\n  triple: thumbv6m-none-eabi\n  core: cortex-m0\n  fpu: sp\n  isa: armv6m\n  code_reserve_bytes: 1\n";
    let e = Targets::from_yaml(bad, Path::new("t.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("m0.fpu"), "{e}");
    let c = catalog();
    assert_eq!(
        c.targets().get("nrf51").unwrap().qemu_machine.as_deref(),
        Some("microbit")
    );
    // The RP2040's code reserve holds the ARMv6-M runtime plus its 256-byte boot2 and
    // its clock set-up (measured: 864 bytes over the nRF51's).
    assert!(
        c.targets().get("rp2040").unwrap().code_reserve_bytes
            >= c.targets().get("nrf51").unwrap().code_reserve_bytes + 256
    );
}

#[test]
fn rule_breaks_carry_the_line_of_their_field() {
    let nd = f405_ccm_text().replace("size: 0x10000 # 64 KiB", "size: 0");
    let line = nd.lines().position(|l| l.trim() == "size: 0").unwrap() + 1;
    match parse(&nd) {
        Err(e @ BoardError::Invalid { line: Some(l), .. }) => {
            assert_eq!(l as usize, line);
            assert!(
                e.to_string()
                    .starts_with(&format!("test.yaml:{line}: regions[2].size")),
                "{e}"
            );
        }
        other => panic!("expected a located validation error, got {other:?}"),
    }
    let nd = shipped_text("netduinoplus2").replace("stack_bytes: 8192", "stack_bytes: 999999");
    let line = nd.lines().position(|l| l.starts_with("reserves:")).unwrap() + 1;
    assert!(
        matches!(parse(&nd), Err(BoardError::Invalid { line: Some(l), .. }) if l as usize == line)
    );
}

/// Values that would break out of the generated crate's files or paths if written as
/// they are (YAML double-quoted strings, so `\n` and `\"` are real newlines and quotes).
const INJECTIONS: [&str; 9] = [
    r#""STM32F746NGHx\"\nrustflags = [\"-C\", \"linker=/path/to/script\"]""#,
    r#""x\"y""#,
    r#""a\nb""#,
    r#""{{RUNNER}}""#,
    r#""back\\slash""#,
    r#""with space""#,
    r#""evil */ MEMORY""#,
    r#""../../evil""#,
    r#""/abs""#,
];

#[test]
fn injections_in_every_written_profile_string_are_refused() {
    let disco = shipped_text("stm32f746g-disco");
    let cases = [
        ("name", "name: stm32f746g-disco", "name: "),
        (
            "probe_rs_chip",
            "probe_rs_chip: STM32F746NGHx",
            "probe_rs_chip: ",
        ),
        ("regions[2].name", "name: sram1", "name: "),
    ];
    for (field, original, key) in cases {
        for attack in INJECTIONS {
            let text = disco.replace(original, &format!("{key}{attack}"));
            assert_ne!(text, disco);
            let err = parse(&text).unwrap_err();
            let BoardError::Invalid {
                field: f,
                problem,
                fix,
                ..
            } = &err
            else {
                panic!("{field} = {attack}: expected a validation error, got {err:?}");
            };
            assert_eq!(f, field, "{attack}: {err}");
            assert!(problem.contains("is refused"), "{err}");
            assert!(fix.contains("letters, digits"), "{err}");
            // The message names the file, the field and the fix.
            let text = err.to_string();
            assert!(
                text.starts_with("test.yaml") && text.contains(field) && text.contains("Fix:"),
                "{text}"
            );
        }
    }
    // The reserve region is looked up by name, but checked the same way.
    let named = shipped_text("netduinoplus2").replace(
        "runtime_bytes: 2048",
        "runtime_bytes: 2048\n  region: \"sram\\nx\"",
    );
    let (field, _) = invalid_field(&named);
    assert_eq!(field, "reserves.region");
}

#[test]
fn board_names_must_be_safe_file_names() {
    let nd = shipped_text("netduinoplus2");
    for name in [
        "../../evil",
        "/abs",
        ".hidden",
        "-rf",
        "a/b",
        "a\\b",
        "x y",
        "",
    ] {
        let text = nd.replace("name: netduinoplus2", &format!("name: {name:?}"));
        let (field, problem) = invalid_field(&text);
        assert_eq!(field, "name", "{name}: {problem}");
    }
    let err = parse(&nd.replace("name: netduinoplus2", "name: ../../evil")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "test.yaml:5: name: board name \"../../evil\" is refused: it starts with `.`; it is \
         written into generated files, commands and paths. Fix: use only letters, digits, `_`, \
         `.` and `-` (not first), at most 64 characters, e.g. my-board"
    );
    for good in ["my-board", "stm32f746g-disco", "Board_2.v1"] {
        let text = nd.replace("name: netduinoplus2", &format!("name: {good}"));
        parse(&text).unwrap();
    }
}

#[test]
fn injections_in_target_strings_are_refused() {
    let good = "m4:\n  description: x\n  triple: thumbv7em-none-eabihf\n  core: cortex-m4f\n  fpu: sp\n  isa: armv7em\n  qemu_machine: netduinoplus2\n  code_reserve_bytes: 1\n";
    Targets::from_yaml(good, Path::new("t.yaml")).unwrap();
    for attack in INJECTIONS {
        for (field, original, key) in [
            ("m4.triple", "triple: thumbv7em-none-eabihf", "triple: "),
            (
                "m4.qemu_machine",
                "qemu_machine: netduinoplus2",
                "qemu_machine: ",
            ),
        ] {
            let text = good.replace(original, &format!("{key}{attack}"));
            let e = Targets::from_yaml(&text, Path::new("t.yaml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field) && e.contains("is refused"), "{e}");
        }
    }
}

#[test]
fn the_built_in_catalogue_is_the_repository_one() {
    let built_in = Catalog::built_in().unwrap();
    let on_disk = catalog();
    assert_eq!(built_in.source(), &Source::BuiltIn);
    assert_eq!(built_in.targets(), on_disk.targets());
    assert_eq!(built_in.names(), on_disk.names());
    for (a, b) in built_in.boards().iter().zip(on_disk.boards()) {
        // Equal but for where each was read from.
        let mut a = a.clone();
        a.source.clone_from(&b.source);
        assert_eq!(&a, b);
    }
    assert_eq!(Catalog::from_home(None).unwrap().source(), &Source::BuiltIn);
    assert_eq!(
        Catalog::from_home(Some(&root())).unwrap().source(),
        &Source::Dir(root())
    );
    let err = Catalog::from_home(Some(Path::new("/nonexistent-home"))).unwrap_err();
    assert!(matches!(err, BoardError::NoHome { .. }), "{err}");
    assert!(
        err.to_string().contains("SPIKENAS_HOME=/nonexistent-home"),
        "{err}"
    );
}
