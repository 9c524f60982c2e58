//! Runs an ELF in `qemu-system-arm` with semihosting, a timeout, and optionally the
//! instruction-counting plugin (scripts/qemu-icount/icount.c).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::elf::Elf;
use super::FirmwareError;

/// The emulator binary.
pub const QEMU: &str = "qemu-system-arm";
/// Overrides the plugin's location.
pub const PLUGIN_ENV: &str = "SPIKENAS_QEMU_PLUGIN";
/// Symbol of the function called just before each inference.
pub const BEGIN_SYMBOL: &str = "spikenas_infer_begin";
/// Symbol of the function called just after each inference.
pub const END_SYMBOL: &str = "spikenas_infer_end";

/// The outcome of one QEMU run that exited with status 0.
#[derive(Debug, Clone, PartialEq)]
pub struct QemuRun {
    /// Everything the firmware wrote to semihosting stdout.
    pub stdout: String,
    /// Instructions executed in each begin..end window, in order (empty without the
    /// plugin).
    pub windows: Vec<u64>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// The instruction-counting plugin: `$SPIKENAS_QEMU_PLUGIN`, or
/// `target/qemu-icount/libicount.so`, built from scripts/qemu-icount/ with gcc if it is
/// missing or older than its source (scripts/setup builds it too).
pub fn icount_plugin() -> Result<PathBuf, FirmwareError> {
    if let Some(path) = std::env::var_os(PLUGIN_ENV) {
        return Ok(PathBuf::from(path));
    }
    let root = repo_root();
    let out = root.join("target/qemu-icount/libicount.so");
    let script = root.join("scripts/qemu-icount/build.sh");
    let built = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .output()
        .map_err(FirmwareError::io(&script))?;
    if !built.status.success() {
        return Err(FirmwareError::ToolMissing {
            tool: "gcc".into(),
            why: String::from_utf8_lossy(&built.stderr).trim().to_string(),
            fix: "run scripts/setup (installs gcc and builds the plugin)".into(),
        });
    }
    Ok(out)
}

/// Reads a pipe to the end on a thread (so a chatty child never blocks on a full pipe).
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

/// Runs `elf` on QEMU machine `machine` with working directory `workdir` (where
/// semihosting file reads are served from). With `count_instructions`, the plugin
/// counts every window between [`BEGIN_SYMBOL`] and [`END_SYMBOL`].
pub fn run(
    elf: &Path,
    machine: &str,
    workdir: &Path,
    count_instructions: bool,
    timeout: Duration,
) -> Result<QemuRun, FirmwareError> {
    let elf = elf.canonicalize().map_err(FirmwareError::io(elf))?;
    let mut cmd = Command::new(QEMU);
    cmd.current_dir(workdir)
        .args([
            "-machine",
            machine,
            "-nographic",
            "-monitor",
            "none",
            "-serial",
            "none",
        ])
        .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let counts = workdir.join("icount.txt");
    if count_instructions {
        let symbols = Elf::read(&elf)?;
        let addr = |name: &str| {
            symbols.symbol(name).ok_or_else(|| FirmwareError::Elf {
                path: elf.clone(),
                why: format!("no symbol `{name}` (was it built from firmware/template?)"),
            })
        };
        let (begin, end) = (addr(BEGIN_SYMBOL)?, addr(END_SYMBOL)?);
        let plugin = icount_plugin()?;
        cmd.arg("-plugin").arg(format!(
            "{},begin={begin:#x},end={end:#x},out={}",
            plugin.display(),
            counts.display()
        ));
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| FirmwareError::ToolMissing {
        tool: QEMU.into(),
        why: e.to_string(),
        fix: "run scripts/setup (installs qemu-system-arm 7.2)".into(),
    })?;
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let status = loop {
        match child.try_wait().map_err(FirmwareError::io(&elf))? {
            Some(status) => break Some(status),
            None if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let output = || {
        let all = format!("{stdout}{stderr}");
        let lines: Vec<&str> = all.lines().rev().take(30).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    let failed = |why: String| FirmwareError::Run {
        runner: QEMU.into(),
        elf: elf.clone(),
        why,
        output: output(),
    };
    match status {
        None => {
            return Err(failed(format!(
                "no exit within {} s (timeout)",
                timeout.as_secs()
            )))
        }
        Some(s) if !s.success() => {
            return Err(failed(format!(
                "exited with {s} (the firmware reports failures as ERROR lines)"
            )))
        }
        Some(_) => {}
    }
    let windows = if count_instructions {
        let text = std::fs::read_to_string(&counts).map_err(FirmwareError::io(&counts))?;
        text.lines()
            .map(|l| l.trim().parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                failed(format!(
                    "bad instruction count in {}: {e}",
                    counts.display()
                ))
            })?
    } else {
        Vec::new()
    };
    Ok(QemuRun {
        stdout,
        windows,
        seconds,
    })
}
