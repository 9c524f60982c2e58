//! The `spikenas-host` binary end to end: arguments that used to panic or destroy data
//! are refused with a message that names the value and the fix, and output folders are
//! written whole and replaced only when spikenas wrote them.
//!
//! Every command runs in a scratch folder of its own as the current folder, so a
//! regression can only ever touch that folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MARKER: &str = ".spikenas-output";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh scratch folder holding a file the user cares about.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spikenas-cli-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("precious.txt"), b"keep me").unwrap();
    dir
}

/// The binary, to run in `cwd` (outside the repository) with its built-in catalogue.
fn host_command(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spikenas-host"));
    cmd.current_dir(cwd).env_remove("SPIKENAS_HOME").args(args);
    cmd
}

/// Runs the binary in `cwd`, outside the repository, with its built-in catalogue.
fn host(cwd: &Path, args: &[&str]) -> Output {
    host_command(cwd, args).output().expect("run spikenas-host")
}

/// Generates the tiny synthetic crate `fw` for `board` in `cwd`.
fn generate_tiny_crate(cwd: &Path, board: &str) {
    succeeds(
        cwd,
        &[
            "generate",
            "--board",
            board,
            "--synthetic",
            TINY,
            "--input",
            "1x8x8",
            "--images",
            "4",
            "fw",
        ],
    );
}

/// Asserts the command failed cleanly (no panic) and returns its stderr.
fn refused(cwd: &Path, args: &[&str]) -> String {
    let out = host(cwd, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    assert!(
        !stderr.contains("panicked"),
        "{args:?} panicked instead of refusing: {stderr}"
    );
    stderr
}

/// Asserts the command succeeded and returns its stdout.
fn succeeds(cwd: &Path, args: &[&str]) -> String {
    let out = host(cwd, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn intact(dir: &Path) {
    assert_eq!(fs::read(dir.join("precious.txt")).unwrap(), b"keep me");
}

const TINY: &str = "cell=0003.0000.0000.0000,ch=4,stages=1,fc=0,t=2";

#[test]
fn numeric_arguments_that_used_to_panic_are_refused() {
    let cwd = scratch("args");
    let cases: [(&[&str], &str); 14] = [
        (&["train", "--batch-size", "0"], "--batch-size"),
        (&["train", "--epochs", "0"], "--epochs"),
        (&["train", "--lr", "0"], "--lr"),
        (&["train", "--lr=-0.01"], "--lr"),
        (&["train", "--weight-decay=-1"], "--weight-decay"),
        (&["train", "--max-train", "0"], "--max-train"),
        (&["analyze-ops", "--cells-per-op", "0"], "--cells-per-op"),
        (
            &[
                "quantize",
                "--checkpoint",
                "c",
                "--out",
                "q",
                "--max-test",
                "0",
            ],
            "--max-test",
        ),
        (&["infer", "--model", "m", "--samples", "0"], "--samples"),
        (
            &["infer", "--model", "m", "--device", "cuda"],
            "Fix: add --engine float",
        ),
        (
            &["export", "--checkpoint", "missing", "--nir", "m.nir"],
            "cannot read checkpoint missing",
        ),
        (&["train", "--arch", ""], "the encoding is empty"),
        (&["train", "--arch", "ch=4,ch=8"], "`ch` is given twice"),
        (&["train", "--arch", "bits=264"], "must be 8 or 4"),
    ];
    for (args, needle) in cases {
        let stderr = refused(&cwd, args);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let stderr = refused(&cwd, &["train", "--batch-size", "0"]);
    assert!(stderr.contains("must be at least 1"), "{stderr}");
    // Nothing was written.
    assert_eq!(listing(&cwd), ["precious.txt"]);
    fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn force_never_empties_the_current_folder_or_its_parents() {
    let cwd = scratch("force-dot");
    let sub = cwd.join("work");
    fs::create_dir_all(&sub).unwrap();
    // Even a current folder that carries the marker (a run's own folder) is refused.
    fs::write(sub.join(MARKER), b"").unwrap();
    fs::write(sub.join("precious.txt"), b"keep me").unwrap();
    let abs = format!("{}/.", sub.display());
    for out in [".", "./", "..", "../work/.", abs.as_str()] {
        let commands: [&[&str]; 3] = [
            &[
                "train",
                "--dataset",
                "digits",
                "--epochs",
                "1",
                "--out",
                out,
                "--force",
            ],
            &[
                "quantize",
                "--checkpoint",
                "c.safetensors",
                "--out",
                out,
                "--force",
            ],
            &[
                "generate",
                "--board",
                "microbit",
                "--synthetic",
                TINY,
                "--force",
                out,
            ],
        ];
        for args in commands {
            let stderr = refused(&sub, args);
            assert!(
                stderr.contains("never replaces") && stderr.contains("Fix:"),
                "{args:?}: {stderr}"
            );
        }
    }
    intact(&sub);
    intact(&cwd);
    assert_eq!(listing(&sub), [MARKER, "precious.txt"]);
    assert_eq!(listing(&cwd), ["precious.txt", "work"]);
    fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn force_never_replaces_what_spikenas_did_not_write() {
    let cwd = scratch("force-foreign");
    let mine = cwd.join("mine");
    fs::create_dir_all(&mine).unwrap();
    fs::write(mine.join("thesis.tex"), b"years of work").unwrap();
    for args in [
        &["train", "--epochs", "1", "--out", "mine", "--force"][..],
        &[
            "quantize",
            "--checkpoint",
            "c",
            "--out",
            "mine/.",
            "--force",
        ],
        &[
            "generate",
            "--board",
            "microbit",
            "--synthetic",
            TINY,
            "--force",
            "mine",
        ],
    ] {
        let stderr = refused(&cwd, args);
        assert!(
            stderr.contains("was not written by spikenas") && stderr.contains(MARKER),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(fs::read(mine.join("thesis.tex")).unwrap(), b"years of work");
    // A file is refused at once, and not called a directory.
    let started = std::time::Instant::now();
    let stderr = refused(
        &cwd,
        &[
            "train",
            "--dataset",
            "digits",
            "--out",
            "precious.txt",
            "--force",
        ],
    );
    assert!(started.elapsed().as_secs() < 30, "checked before training");
    assert!(stderr.contains("is an existing file"), "{stderr}");
    assert!(!stderr.contains("directory"), "{stderr}");
    // analyze-ops writes a file: a folder is refused before the proxy trainings.
    let stderr = refused(
        &cwd,
        &[
            "analyze-ops",
            "--dataset",
            "digits",
            "--out",
            "mine",
            "--force",
        ],
    );
    assert!(
        stderr.contains("is a folder") && stderr.contains("Fix:"),
        "{stderr}"
    );
    intact(&cwd);
    assert_eq!(listing(&cwd), ["mine", "precious.txt"]);
    fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn train_output_is_replaced_whole_only_with_force() {
    let cwd = scratch("train");
    let args = [
        "train",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--max-train",
        "200",
        "--arch",
        TINY,
        "--quiet",
        "--out",
        "run",
    ];
    succeeds(&cwd, &args);
    let run = cwd.join("run");
    assert!(run.join(MARKER).is_file() && run.join("checkpoint.safetensors").is_file());
    let stderr = refused(&cwd, &args);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    fs::write(run.join("stale.txt"), b"from before").unwrap();
    let mut forced = args.to_vec();
    forced.push("--force");
    succeeds(&cwd, &forced);
    assert!(
        !run.join("stale.txt").exists(),
        "the old folder was replaced whole"
    );
    assert!(run.join("checkpoint.safetensors").is_file());
    assert_eq!(
        listing(&cwd),
        ["precious.txt", "run"],
        "no staging or old folder left"
    );
    fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn generate_writes_a_whole_crate_or_nothing() {
    let cwd = scratch("generate");
    let gen = |out: &str, arch: &str, extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--board",
            "microbit",
            "--synthetic",
            arch,
            "--input",
            "1x8x8",
            "--images",
            "4",
            out,
        ];
        args.extend_from_slice(extra);
        host(&cwd, &args)
    };
    assert!(gen("fw", TINY, &[]).status.success());
    let fw = cwd.join("fw");
    for file in [
        MARKER,
        "spikenas-crate.json",
        "Cargo.toml",
        "src/model.rs",
        "memory.x",
    ] {
        assert!(fw.join(file).is_file(), "{file}");
    }
    let info = fs::read_to_string(fw.join("spikenas-crate.json")).unwrap();
    assert!(info.contains("\"board\": \"microbit\""), "{info}");
    assert!(
        !gen("fw", TINY, &[]).status.success(),
        "exists without --force"
    );
    assert!(gen("fw", TINY, &["--force"]).status.success());
    // A network that does not fit the micro:bit's 16 KiB of RAM: refused before anything
    // is written, naming the region and the bytes over; the old crate stays.
    let big = "cell=0303.0003.0000.0000,ch=64,stages=2,fc=512,t=4";
    let out = gen("fw", big, &["--force"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("does not fit board `microbit`")
            && stderr.contains("region `")
            && stderr.contains("over by"),
        "{stderr}"
    );
    assert!(fw.join("src/model.rs").is_file(), "the old crate stays");
    let out = gen("other", big, &[]);
    assert!(!out.status.success());
    // A crate written over the model it is generated from would delete the model.
    let stderr = refused(
        &cwd,
        &[
            "generate", "--board", "microbit", "--model", "fw", "--force", "fw",
        ],
    );
    assert!(
        stderr.contains("which replacing the folder would delete"),
        "{stderr}"
    );
    assert!(fw.join("src/model.rs").is_file());
    assert_eq!(
        listing(&cwd),
        ["fw", "precious.txt"],
        "no half crate, no staging folder"
    );
    fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn build_refuses_a_crate_generated_for_another_board() {
    let cwd = scratch("board");
    generate_tiny_crate(&cwd, "netduinoplus2");
    for command in ["build", "validate", "flash"] {
        let stderr = refused(&cwd, &[command, "--board", "microbit", "fw"]);
        assert!(
            stderr.contains("generated for board `netduinoplus2`")
                && stderr.contains("not for `microbit`")
                && stderr.contains("Fix: pass --board netduinoplus2"),
            "{command}: {stderr}"
        );
    }
    fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn a_board_file_cannot_inject_into_the_generated_crate() {
    let cwd = scratch("inject");
    let disco = fs::read_to_string(repo_root().join("boards/stm32f746g-disco.yaml")).unwrap();
    let attacks = [
        (
            "probe_rs_chip",
            disco.replace(
                "probe_rs_chip: STM32F746NGHx",
                r#"probe_rs_chip: "STM32F746NGHx\"\nrustflags = [\"-C\", \"linker=/tmp/evil.sh\"]""#,
            ),
        ),
        ("name", disco.replace("name: stm32f746g-disco", "name: ../../evil")),
        ("name", disco.replace("name: stm32f746g-disco", "name: \"{{RUNNER}}\"")),
        ("regions[1].name", disco.replace("name: dtcm", "name: \"a */ b\"")),
    ];
    for (field, text) in attacks {
        fs::write(cwd.join("evil.yaml"), text).unwrap();
        let stderr = refused(
            &cwd,
            &[
                "generate",
                "--board-file",
                "evil.yaml",
                "--synthetic",
                TINY,
                "fw",
            ],
        );
        assert!(
            stderr.contains("evil.yaml") && stderr.contains(field) && stderr.contains("Fix:"),
            "{field}: {stderr}"
        );
    }
    assert_eq!(listing(&cwd), ["evil.yaml", "precious.txt"]);
    fs::remove_dir_all(&cwd).unwrap();
}

/// The binary carries its catalogue (it runs in a folder far from the checkout), and
/// `$SPIKENAS_HOME` replaces it with a folder of the user's.
#[test]
fn the_catalogue_is_built_in_and_spikenas_home_replaces_it() {
    let cwd = scratch("home");
    let out = host(&cwd, &["boards"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("built into spikenas-host"), "{stderr}");
    assert!(stdout.contains("netduinoplus2") && stdout.contains("rp2040-pico"));

    let home = cwd.join("home");
    fs::create_dir_all(home.join("boards")).unwrap();
    fs::copy(repo_root().join("targets.yaml"), home.join("targets.yaml")).unwrap();
    let mine = fs::read_to_string(repo_root().join("boards/microbit.yaml"))
        .unwrap()
        .replace("name: microbit", "name: my-board");
    fs::write(home.join("boards/my-board.yaml"), mine).unwrap();
    let run = |home: &Path| {
        Command::new(env!("CARGO_BIN_EXE_spikenas-host"))
            .current_dir(&cwd)
            .env("SPIKENAS_HOME", home)
            .arg("boards")
            .output()
            .unwrap()
    };
    let out = run(&home);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("my-board") && !stdout.contains("netduinoplus2"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&home.display().to_string()));

    let out = run(&cwd.join("nowhere"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("SPIKENAS_HOME=") && stderr.contains("nowhere") && stderr.contains("Fix:"),
        "{stderr}"
    );
    fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn export_writes_a_nir_graph_once_and_refuses_the_integer_model() {
    let cwd = scratch("export");
    let arch = "cell=0303.0003.0000.0000,ch=2,stages=1,fc=8,t=2";
    succeeds(
        &cwd,
        &[
            "train",
            "--dataset",
            "digits",
            "--arch",
            arch,
            "--epochs",
            "1",
            "--out",
            "ck",
            "--quiet",
        ],
    );
    let out = succeeds(&cwd, &["export", "--checkpoint", "ck", "--nir", "m.nir"]);
    assert!(
        out.contains("wrote m.nir") && out.contains("nodes"),
        "{out}"
    );
    let first = fs::read(cwd.join("m.nir")).unwrap();
    assert_eq!(&first[..8], b"\x89HDF\r\n\x1a\n", "an HDF5 file");
    // An existing file is kept without --force, replaced with it.
    let stderr = refused(&cwd, &["export", "--checkpoint", "ck", "--nir", "m.nir"]);
    assert!(
        stderr.contains("m.nir already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    succeeds(
        &cwd,
        &[
            "export",
            "--checkpoint",
            "ck/checkpoint.safetensors",
            "--nir",
            "m.nir",
            "--force",
        ],
    );
    // The integer model has no NIR form: the error says what to export instead.
    succeeds(
        &cwd,
        &[
            "quantize",
            "--checkpoint",
            "ck",
            "--out",
            "q",
            "--max-test",
            "50",
        ],
    );
    fs::remove_file(cwd.join("q/checkpoint.safetensors")).unwrap();
    for model in ["q", "q/model.safetensors"] {
        let stderr = refused(&cwd, &["export", "--checkpoint", model, "--nir", "i.nir"]);
        assert!(
            stderr.contains("integer model") && stderr.contains("checkpoint.safetensors"),
            "{stderr}"
        );
    }
    assert!(!cwd.join("i.nir").exists());
    fs::remove_dir_all(&cwd).unwrap();
}

/// What a stopped run wrote and how it ended.
struct Stopped {
    code: Option<i32>,
    stderr: String,
}

/// Starts the binary in `cwd`, waits until a staging folder for `out` holds a training
/// state (the first epoch ended), sends `signal` (`TERM`, `INT`, `KILL`) and waits for
/// the end.
fn stopped_by(signal: &str, cwd: &Path, args: &[&str], out: &str) -> Stopped {
    // Files, not pipes: a pipe nobody reads while waiting could fill and block the run.
    let log = cwd.join(format!("../{out}-{}.stderr", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_spikenas-host"))
        .current_dir(cwd)
        .env("SPIKENAS_ROOT", repo_root())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("run spikenas-host");
    let prefix = format!(".{out}.partial-{}-", child.id());
    loop {
        let kept = fs::read_dir(cwd).unwrap().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(&prefix)
                && e.path().join("resume.safetensors").is_file()
        });
        if kept {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{args:?} ended ({status}) before a training state appeared: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    let stderr = fs::read_to_string(&log).unwrap();
    fs::remove_file(&log).unwrap();
    Stopped { code, stderr }
}

#[test]
fn an_interrupted_training_is_kept_and_resumes_bit_for_bit() {
    let cwd = scratch("resume");
    let args = |out: &'static str| {
        [
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "60",
            "--max-train",
            "300",
            "--arch",
            TINY,
            "--quiet",
            "--out",
            out,
        ]
    };
    let stopped = stopped_by("TERM", &cwd, &args("run"), "run");
    let stderr = stopped.stderr;
    assert_eq!(stopped.code, Some(128 + 15), "{stderr}");
    assert!(
        stderr.contains("training stopped by SIGTERM after step")
            && stderr.contains("kept in run: the training state (resume.safetensors)")
            && stderr.contains("Continue with: spikenas-host train --resume run"),
        "{stderr}"
    );
    let run = cwd.join("run");
    assert_eq!(listing(&run), [MARKER, "resume.safetensors"]);
    // Starting over in its place needs --force; the message says how to go on.
    let stderr = refused(&cwd, &args("run"));
    assert!(
        stderr.contains("holds an interrupted run") && stderr.contains("--resume run"),
        "{stderr}"
    );
    let stderr = refused(&cwd, &["train", "--resume", "run", "--epochs", "3"]);
    assert!(
        stderr.contains("`--epochs` cannot be combined with --resume"),
        "{stderr}"
    );
    let stderr = refused(&cwd, &["search", "--resume", "run"]);
    assert!(
        stderr.contains("holds an interrupted `train` run"),
        "{stderr}"
    );

    succeeds(&cwd, &["train", "--resume", "run", "--quiet"]);
    succeeds(&cwd, &args("whole"));
    assert_eq!(
        fs::read(run.join("checkpoint.safetensors")).unwrap(),
        fs::read(cwd.join("whole/checkpoint.safetensors")).unwrap(),
        "the resumed run's checkpoint is the uninterrupted run's, bit for bit"
    );
    assert_eq!(
        listing(&run),
        [MARKER, "checkpoint.safetensors", "train.json"]
    );

    // Killed outright: the staging folder stays, and --resume picks it up.
    let killed = stopped_by("KILL", &cwd, &args("killed"), "killed");
    assert_eq!(killed.code, None, "ended by the signal");
    assert!(!cwd.join("killed").exists());
    succeeds(&cwd, &["train", "--resume", "killed", "--quiet"]);
    assert_eq!(
        fs::read(cwd.join("killed/checkpoint.safetensors")).unwrap(),
        fs::read(cwd.join("whole/checkpoint.safetensors")).unwrap(),
    );
    assert_eq!(listing(&cwd), ["killed", "precious.txt", "run", "whole"]);
    intact(&cwd);
    fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn an_interrupted_search_keeps_its_report_and_resumes_the_training() {
    let cwd = scratch("search-resume");
    let args = [
        "search",
        "--board",
        "netduinoplus2",
        "--dataset",
        "digits",
        "--max-train",
        "300",
        "--epochs",
        "30",
        "--search-time",
        "2",
        "--train-time",
        "30",
        "--quiet",
        "--out",
        "s",
    ];
    let stopped = stopped_by("INT", &cwd, &args, "s");
    let stderr = stopped.stderr;
    assert_eq!(stopped.code, Some(128 + 2), "{stderr}");
    assert!(
        stderr.contains("stopped by SIGINT (Ctrl-C)")
            && stderr.contains("the search report (report.json, report.md, candidates.svg)")
            && stderr.contains("Continue with: spikenas-host search --resume s"),
        "{stderr}"
    );
    let s = cwd.join("s");
    assert_eq!(
        listing(&s),
        [
            MARKER,
            "candidates.svg",
            "report.json",
            "report.md",
            "resume.safetensors"
        ]
    );
    let report = fs::read_to_string(s.join("report.json")).unwrap();
    assert!(report.contains("\"best\"") && report.contains("\"training\": null"));
    let stdout = succeeds(&cwd, &["search", "--resume", "s", "--quiet"]);
    assert!(stdout.contains("test accuracy"), "{stdout}");
    let names = listing(&s);
    for name in ["checkpoint.safetensors", "model.safetensors", "firmware"] {
        assert!(names.contains(&name.to_string()), "{names:?}");
    }
    assert!(!names.contains(&"resume.safetensors".to_string()));
    fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn board_files_and_names_that_used_to_pass_or_hang_are_answered() {
    let cwd = scratch("boards");
    let profile = fs::read_to_string(repo_root().join("boards/netduinoplus2.yaml")).unwrap();
    let estimate = |file: &str| {
        refused(
            &cwd,
            &[
                "estimate",
                "--arch",
                "ch=4,stages=1,fc=8,t=2",
                "--board-file",
                file,
            ],
        )
    };
    let write = |name: &str, text: String| fs::write(cwd.join(name), text).unwrap();
    write(
        "big.yaml",
        profile.replace("size: 0x100000 # 1 MiB", "size: 0xFFFFFFFFFF"),
    );
    let e = estimate("big.yaml");
    assert!(
        e.contains("regions[0]") && e.contains("past the 4 GiB (0x1_0000_0000) address space"),
        "{e}"
    );
    write(
        "wrap.yaml",
        profile.replace("origin: 0x20000000", "origin: 0xFFFF0000"),
    );
    let e = estimate("wrap.yaml");
    assert!(
        e.contains("region `sram` (origin 0xffff0000, size 0x20000) ends at 0x100010000"),
        "{e}"
    );
    // An endless file is refused after 1 MiB, not read until the memory runs out.
    let e = estimate("/dev/zero");
    assert!(e.contains("/dev/zero is larger than 1048576 bytes"), "{e}");
    // A huge value is not echoed whole.
    write(
        "long.yaml",
        profile.replace(
            "name: netduinoplus2",
            &format!("name: {}", "x".repeat(300_000)),
        ),
    );
    let e = estimate("long.yaml");
    assert!(
        e.contains("... (300000 characters)") && e.len() < 2_000,
        "{e}"
    );
    for (name, hint) in [
        ("netduino", "did you mean `netduinoplus2`?"),
        ("microbit2", "did you mean `microbit`?"),
        (
            "boards/microbit.yaml",
            "to use a profile file, pass it with --board-file boards/microbit.yaml",
        ),
    ] {
        let e = refused(&cwd, &["estimate", "--arch", "ch=4", "--board", name]);
        assert!(e.contains(hint), "{name}: {e}");
    }
    let e = refused(
        &cwd,
        &[
            "estimate",
            "--board",
            "microbit",
            "--arch",
            "ch=4",
            "--input",
            "1x4294967296x1",
        ],
    );
    assert!(e.contains("height 4294967296 is more than 65535"), "{e}");
    fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn quantize_on_a_dataset_of_another_shape_says_so() {
    let cwd = scratch("shape");
    succeeds(
        &cwd,
        &[
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--max-train",
            "100",
            "--arch",
            TINY,
            "--quiet",
            "--out",
            "t",
        ],
    );
    // A 28x28 dataset of its own, in IDX form, for the 8x8 network.
    let idx = cwd.join("idx");
    fs::create_dir_all(&idx).unwrap();
    let images = |n: u32| {
        let mut b = vec![0, 0, 8, 3];
        for d in [n, 28, 28] {
            b.extend(d.to_be_bytes());
        }
        b.extend((0..n * 28 * 28).map(|i| (i % 251) as u8));
        b
    };
    let labels = |n: u32| {
        let mut b = vec![0, 0, 8, 1];
        b.extend(n.to_be_bytes());
        b.extend((0..n).map(|i| (i % 10) as u8));
        b
    };
    for (prefix, n) in [("train", 40), ("t10k", 20)] {
        fs::write(idx.join(format!("{prefix}-images-idx3-ubyte")), images(n)).unwrap();
        fs::write(idx.join(format!("{prefix}-labels-idx1-ubyte")), labels(n)).unwrap();
    }
    let e = refused(
        &cwd,
        &[
            "quantize",
            "--checkpoint",
            "t",
            "--dataset",
            "idx:idx",
            "--out",
            "q",
        ],
    );
    assert!(
        e.contains("images are 1x28x28 with 10 classes")
            && e.contains("the network takes 1x8x8 with 10 classes (trained on digits)")
            && !e.contains("candle_core"),
        "{e}"
    );
    fs::remove_dir_all(&cwd).unwrap();
}

/// `flash` and `validate` refuse a board or an option they cannot serve before they
/// build anything (the generated crate's `target/` stays absent), and every command
/// that takes a board takes `--board-file` too.
#[test]
fn flash_and_validate_refuse_what_they_cannot_serve_before_building() {
    let cwd = scratch("preflight");
    generate_tiny_crate(&cwd, "stm32f746g-disco");
    let disco = repo_root().join("boards/stm32f746g-disco.yaml");
    let disco = disco.to_str().unwrap();
    // No probe-rs on this PATH, whatever the machine has installed.
    let without_probe_rs = |args: &[&str]| {
        let out = host_command(&cwd, args)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("run spikenas-host");
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["validate", "--board", "stm32f746g-disco", "fw"],
            &[
                "`probe-rs` was not found",
                "cargo install --locked probe-rs-tools",
            ],
        ),
        (
            &["validate", "--board-file", disco, "fw"],
            &["`probe-rs` was not found"],
        ),
        (
            &["flash", "--board-file", disco, "fw"],
            &["`probe-rs` was not found", "--dry-run"],
        ),
        (
            &[
                "flash",
                "--board",
                "stm32f746g-disco",
                "--probe",
                "stlink",
                "fw",
            ],
            &["probe `stlink` is not VID:PID or VID:PID:SERIAL"],
        ),
        (
            &[
                "flash",
                "--board",
                "stm32f746g-disco",
                "--uf2-copy",
                ".",
                "fw",
            ],
            &["has no UF2 image", "drop --uf2-copy"],
        ),
    ];
    for (args, wanted) in cases {
        let stderr = without_probe_rs(args);
        for w in wanted {
            assert!(stderr.contains(w), "{args:?}: `{w}` not in {stderr}");
        }
        assert!(
            !cwd.join("fw/target").exists(),
            "{args:?} built before refusing"
        );
    }
    let stderr = refused(&cwd, &["validate", "--board", "jetson-nano", "fw"]);
    assert!(
        stderr.contains("generated for board `stm32f746g-disco`"),
        "{stderr}"
    );
    fs::remove_dir_all(&cwd).unwrap();
}

/// A piped `search` (stderr not a terminal: no progress bars) still says what it is
/// doing, a line per phase.
#[test]
fn a_piped_search_prints_a_line_per_phase() {
    let cwd = scratch("piped");
    let out = host(
        &cwd,
        &[
            "search",
            "--board",
            "microbit",
            "--dataset",
            "digits",
            "--max-train",
            "300",
            "--epochs",
            "2",
            "--out",
            "run",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for phase in [
        "search: ",
        "search budget",
        "training cell=",
        "epoch   2",
        "quantizing to int8",
        "writing the firmware crate for microbit",
    ] {
        assert!(stderr.contains(phase), "`{phase}` not in {stderr}");
    }
    fs::remove_dir_all(&cwd).unwrap();
}

/// `search --no-train` writes the search report only; the old option names still parse.
#[test]
fn search_only_and_the_old_option_names() {
    let cwd = scratch("no-train");
    succeeds(
        &cwd,
        &[
            "search",
            "--board",
            "microbit",
            "--dataset",
            "digits",
            "--time-budget",
            "30",
            "--no-train",
            "--quiet",
            "--out",
            "s",
        ],
    );
    let names = listing(&cwd.join("s"));
    assert!(names.contains(&"report.json".to_string()), "{names:?}");
    assert!(
        !names.contains(&"checkpoint.safetensors".to_string()),
        "{names:?}"
    );
    let stderr = refused(
        &cwd,
        &[
            "train",
            "--time-budget",
            "5",
            "--train-time",
            "5",
            "--out",
            "t",
        ],
    );
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    fs::remove_dir_all(&cwd).unwrap();
}
