//! Runs an ELF in `qemu-system-arm` with semihosting, a timeout, and optionally the
//! instruction-counting plugin (scripts/qemu-icount/icount.c).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::elf::Elf;
use super::BoardAppError;

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

/// The plugin's source, for an installed binary whose checkout is gone.
const ICOUNT_C: &str = include_str!("../../../scripts/qemu-icount/icount.c");

/// The instruction-counting plugin: `$SPIKENAS_QEMU_PLUGIN`, or
/// `target/qemu-icount/libicount.so` of the checkout this host was built from, built from
/// scripts/qemu-icount/ with gcc if it is missing or older than its source
/// (scripts/setup builds it too). Without that checkout, the source built into this
/// binary is compiled once into `$XDG_CACHE_HOME/spikenas/` (or `~/.cache/spikenas/`).
pub fn icount_plugin() -> Result<PathBuf, BoardAppError> {
    if let Some(path) = std::env::var_os(PLUGIN_ENV) {
        return Ok(PathBuf::from(path));
    }
    let gcc_failed = |why: String| BoardAppError::ToolMissing {
        tool: "gcc".into(),
        why,
        fix: "install gcc (scripts/setup does), or set SPIKENAS_QEMU_PLUGIN to a built \
              libicount.so"
            .into(),
    };
    if let Some(root) = super::build::checkout() {
        let out = root.join("target/qemu-icount/libicount.so");
        let script = root.join("scripts/qemu-icount/build.sh");
        let built = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .output()
            .map_err(BoardAppError::io(&script))?;
        if !built.status.success() {
            return Err(gcc_failed(
                String::from_utf8_lossy(&built.stderr).trim().to_string(),
            ));
        }
        return Ok(out);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or_else(|| gcc_failed("neither XDG_CACHE_HOME nor HOME is set".into()))?;
    // Named by the source's hash: a plugin of another version is never picked up.
    let dir = cache.join("spikenas").join(format!(
        "qemu-icount-{:016x}",
        crate::integrity::fnv1a64(ICOUNT_C.as_bytes())
    ));
    let out = dir.join("libicount.so");
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(&dir).map_err(BoardAppError::io(&dir))?;
    let source = dir.join("icount.c");
    std::fs::write(&source, ICOUNT_C).map_err(BoardAppError::io(&source))?;
    let partial = dir.join(format!("libicount.so.{}.tmp", std::process::id()));
    let built = Command::new("gcc")
        .args(["-O2", "-shared", "-fPIC", "-Wall", "-o"])
        .arg(&partial)
        .arg(&source)
        .output()
        .map_err(|e| gcc_failed(e.to_string()))?;
    if !built.status.success() {
        return Err(gcc_failed(
            String::from_utf8_lossy(&built.stderr).trim().to_string(),
        ));
    }
    std::fs::rename(&partial, &out).map_err(BoardAppError::io(&out))?;
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

/// The error for a QEMU that cannot be started.
pub fn qemu_missing(why: String) -> BoardAppError {
    BoardAppError::ToolMissing {
        tool: QEMU.into(),
        why,
        fix: "run scripts/setup (installs qemu-system-arm 7.2)".into(),
    }
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
) -> Result<QemuRun, BoardAppError> {
    let elf = elf.canonicalize().map_err(BoardAppError::io(elf))?;
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
            symbols.symbol(name).ok_or_else(|| BoardAppError::Elf {
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
    let mut child = cmd.spawn().map_err(|e| qemu_missing(e.to_string()))?;
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let status = loop {
        match child.try_wait().map_err(BoardAppError::io(&elf))? {
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
    let failed = |why: String| BoardAppError::Run {
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
        let text = std::fs::read_to_string(&counts).map_err(BoardAppError::io(&counts))?;
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
