//! Results of a board without a debug probe, read from a serial device: a Raspberry Pi
//! Pico flashed from its BOOTSEL drive runs the board application's `uart` build, which
//! prints the same protocol lines as semihosting (firmware/template/src/main.rs) on
//! UART0, GP0 TX, 115200 8N1. A USB-UART adapter or the Debug Probe's UART port shows
//! them as `/dev/ttyUSB0` or `/dev/ttyACM0`; [`flash_uf2_serial`] opens that device,
//! copies the UF2 onto the drive, and reads the lines until `DONE` (or `ERROR`), which
//! [`parse_output`] parses exactly as it parses semihosting output.
//!
//! A character device is set up with `stty -F DEVICE raw -echo 115200 cs8 -cstopb
//! -parenb clocal` (`clocal`: no wait for a modem's carrier on open). Anything else (a
//! FIFO, a regular file: a capture of the lines, or the tests) is read as it is.
//!
//! The reading runs on a thread of its own, so that a silent device ends in a timeout
//! with the fix instead of a read that never returns; when the run is over (or timed
//! out) the thread ends with the next byte or end of file.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::clock::UART_BAUD;
use super::flash::{check_bootsel_drive, copy_uf2, FlashOutcome};
use super::on_device::{log_lines, parse_output};
use super::BoardAppError;

/// Longest line taken before deciding the bytes are not the protocol (a wrong baud rate
/// gives bytes without line ends).
pub const MAX_LINE_BYTES: usize = 4096;

/// What the board should be wired and built as, for the fix of an error.
const WIRING: &str = "check that the Pico's GP0 (UART0 TX, pin 1) goes to the adapter's RX \
                      and GND to GND, that DEVICE is that adapter (`ls /dev/ttyUSB* \
                      /dev/ttyACM*` before and after plugging it in), and that the image \
                      was built with the `uart` feature (`flash --serial` does; `build \
                      --uart`); then press the Pico's reset, or copy the UF2 again";

/// What the reading thread saw.
#[derive(Debug)]
enum Event {
    /// One line, its line end (`\n` or `\r\n`) removed, invalid UTF-8 replaced.
    Line(String),
    /// End of file (a FIFO's writer closed it, or a regular file ended).
    End,
    /// `MAX_LINE_BYTES` bytes without a line end.
    Overlong,
    /// Opening or reading failed.
    Failed(std::io::Error),
}

/// A serial device being read in the background since [`SerialPort::open`].
#[derive(Debug)]
pub struct SerialPort {
    device: PathBuf,
    events: Receiver<Event>,
    opened: Instant,
}

/// The lines of one run, read by [`SerialPort::read_run`].
#[derive(Debug, Clone, PartialEq)]
pub struct SerialRun {
    /// The protocol, parsed.
    pub output: super::on_device::DeviceOutput,
    /// The lines of the run that are not protocol lines.
    pub log: Vec<String>,
    /// Seconds from opening the device to the run's last line.
    pub seconds: f64,
}

/// Checks that `device` exists and returns its metadata (called before a build too, so
/// that a missing adapter is named at once; [`SerialPort::open`] checks it again).
pub fn check_device(device: &Path) -> Result<std::fs::Metadata, BoardAppError> {
    std::fs::metadata(device).map_err(|e| BoardAppError::Serial {
        device: device.to_path_buf(),
        why: format!("cannot be found ({e})"),
        fix: "plug in the USB-UART adapter (or the Debug Probe) and pass the device it shows \
              as, e.g. /dev/ttyUSB0 or /dev/ttyACM0 (`ls /dev/ttyUSB* /dev/ttyACM*`)"
            .into(),
    })
}

impl SerialPort {
    /// Sets `device` up for the board application's UART (115200 8N1, raw) when it is a
    /// terminal, and starts reading it. Open it before the board starts, or the first
    /// lines are lost: [`flash_uf2_serial`] opens it before copying the UF2.
    pub fn open(device: &Path) -> Result<SerialPort, BoardAppError> {
        if is_char_device(&check_device(device)?) {
            configure(device)?;
        }
        let (send, events) = mpsc::channel();
        let path = device.to_path_buf();
        std::thread::spawn(move || {
            // Opening a FIFO waits for its writer, so it happens here too.
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    let _ = send.send(Event::Failed(e));
                    return;
                }
            };
            let mut reader = BufReader::new(file);
            let mut line = Vec::new();
            loop {
                line.clear();
                let event = match (&mut reader)
                    .take(MAX_LINE_BYTES as u64)
                    .read_until(b'\n', &mut line)
                {
                    Ok(0) => Event::End,
                    Ok(_) if line.last() == Some(&b'\n') => {
                        let text = String::from_utf8_lossy(&line);
                        Event::Line(text.trim_end_matches(['\n', '\r']).to_string())
                    }
                    // A last line without its line end is still a line; a full buffer
                    // without one is not the protocol.
                    Ok(n) if n < MAX_LINE_BYTES => {
                        Event::Line(String::from_utf8_lossy(&line).trim_end().to_string())
                    }
                    Ok(_) => Event::Overlong,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Event::Failed(e),
                };
                let last = !matches!(event, Event::Line(_));
                if send.send(event).is_err() || last {
                    return;
                }
            }
        });
        Ok(SerialPort {
            device: device.to_path_buf(),
            events,
            opened: Instant::now(),
        })
    }

    /// The device.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Reads the lines of one run of `images` images (of the image at `image`, for the
    /// messages) until `DONE` or `ERROR`. A `CLOCK` line (or a `SPIKENAS` line, should the
    /// first line be garbled) starts a run: what came before it (a former run's end still
    /// in the adapter's buffer, noise from before the board started) is dropped, and a
    /// `DONE` before it does not end the reading. Fails when no line comes
    /// for `idle` (naming the device and the wiring), when the bytes are not lines,
    /// and on anything [`parse_output`] refuses (a malformed line, the device's `ERROR`).
    pub fn read_run(
        self,
        image: &Path,
        images: usize,
        idle: Duration,
    ) -> Result<SerialRun, BoardAppError> {
        let serial = |why: String, fix: &str| BoardAppError::Serial {
            device: self.device.clone(),
            why,
            fix: fix.to_string(),
        };
        let runner = format!("serial ({})", self.device.display());
        let tail = |lines: &[String]| {
            let from = lines.len().saturating_sub(30);
            lines[from..].join("\n")
        };
        let mut lines: Vec<String> = Vec::new();
        let mut received = 0usize;
        let mut garbled = false;
        let mut in_run = false;
        loop {
            match self.events.recv_timeout(idle) {
                Ok(Event::Line(line)) => {
                    received += 1;
                    // Noise before a line (a pin switching to the UART as the board
                    // starts) shows as control bytes or invalid UTF-8.
                    let line = line
                        .trim_start_matches(|c: char| c.is_control() || c == '\u{fffd}')
                        .to_string();
                    garbled |= line.contains(char::REPLACEMENT_CHARACTER);
                    let first = line.split_whitespace().next().unwrap_or("");
                    let after_clock = lines
                        .last()
                        .is_some_and(|l| l.starts_with("CLOCK ") && in_run);
                    match first {
                        "CLOCK" => lines.clear(),
                        "SPIKENAS" if !after_clock => lines.clear(),
                        _ => {}
                    }
                    in_run |= matches!(first, "CLOCK" | "SPIKENAS");
                    let end = in_run && matches!(first, "DONE" | "ERROR");
                    lines.push(line);
                    if end {
                        break;
                    }
                }
                Ok(Event::Overlong) => {
                    return Err(serial(
                        format!("{MAX_LINE_BYTES} bytes came without a line end"),
                        &format!(
                            "the line speed is likely wrong: the board sends {UART_BAUD} \
                             baud 8N1 (`stty -F DEVICE` shows the device's); if the Pico \
                             printed `CLOCK ... failed-<step>` its clock set-up failed. \
                             Else {WIRING}"
                        ),
                    ))
                }
                Ok(Event::Failed(e)) => {
                    let fix = if e.kind() == std::io::ErrorKind::PermissionDenied {
                        "add your user to the group that owns the device (`ls -l DEVICE`; \
                         usually `sudo usermod -aG dialout $USER`, then log in again)"
                    } else {
                        WIRING
                    };
                    return Err(serial(format!("reading failed: {e}"), fix));
                }
                Ok(Event::End) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(BoardAppError::Run {
                        runner,
                        elf: image.to_path_buf(),
                        why: format!(
                            "the device ended after {received} lines, before `DONE` (a \
                             capture that stops early, or a device that went away)"
                        ),
                        output: tail(&lines),
                    })
                }
                Err(RecvTimeoutError::Timeout) if received == 0 => {
                    return Err(serial(
                        format!("no output within {:.1} s", idle.as_secs_f64()),
                        WIRING,
                    ))
                }
                Err(RecvTimeoutError::Timeout) => {
                    let why = if garbled {
                        format!(
                            "no line for {:.1} s after {received} lines, some of them \
                             garbled (not {UART_BAUD} baud 8N1?)",
                            idle.as_secs_f64()
                        )
                    } else {
                        format!(
                            "no line for {:.1} s after {received} lines (the board hung or \
                             was reset; a longer --serial-timeout if one image takes longer)",
                            idle.as_secs_f64()
                        )
                    };
                    return Err(BoardAppError::Run {
                        runner,
                        elf: image.to_path_buf(),
                        why,
                        output: tail(&lines),
                    });
                }
            }
        }
        let text = lines.join("\n");
        let output = parse_output(&text, images).map_err(|why| BoardAppError::Run {
            runner,
            elf: image.to_path_buf(),
            why,
            output: tail(&lines),
        })?;
        Ok(SerialRun {
            output,
            log: log_lines(&text),
            seconds: self.opened.elapsed().as_secs_f64(),
        })
    }
}

/// Flashes a probe-less Pico and collects its results: opens `device` (so that no line
/// is missed), copies `uf2` onto the BOOTSEL drive at `drive` (the Pico then writes it
/// to flash and restarts into it), and reads the run of `images` images, with `idle` as
/// the longest wait for a line. The outcome is the one `probe-rs` runs give, so the
/// comparison with the host is the same; its `command` is the copy (`cp UF2 TO`).
pub fn flash_uf2_serial(
    uf2: &Path,
    drive: &Path,
    device: &Path,
    images: usize,
    idle: Duration,
) -> Result<FlashOutcome, BoardAppError> {
    check_bootsel_drive(drive)?;
    let port = SerialPort::open(device)?;
    let to = copy_uf2(uf2, drive)?;
    let run = port.read_run(uf2, images, idle)?;
    Ok(FlashOutcome::Ran {
        command: vec![
            "cp".into(),
            uf2.display().to_string(),
            to.display().to_string(),
        ],
        output: run.output,
        seconds: run.seconds,
        log: run.log,
    })
}

#[cfg(unix)]
fn is_char_device(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device()
}

#[cfg(not(unix))]
fn is_char_device(_meta: &std::fs::Metadata) -> bool {
    false
}

/// `stty -F DEVICE raw -echo 115200 cs8 -cstopb -parenb clocal`.
fn configure(device: &Path) -> Result<(), BoardAppError> {
    let serial = |why: String, fix: &str| BoardAppError::Serial {
        device: device.to_path_buf(),
        why,
        fix: fix.to_string(),
    };
    let baud = UART_BAUD.to_string();
    let out = Command::new("stty")
        .arg("-F")
        .arg(device)
        .args(["raw", "-echo", &baud, "cs8", "-cstopb", "-parenb", "clocal"])
        .output()
        .map_err(|e| {
            serial(
                format!("`stty` could not be started ({e})"),
                "install coreutils, which has stty",
            )
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let fix = if stderr.contains("Permission denied") {
        "add your user to the group that owns the device (`ls -l DEVICE`; usually `sudo \
         usermod -aG dialout $USER`, then log in again)"
    } else {
        "pass the serial port of the USB-UART adapter or Debug Probe (`ls /dev/ttyUSB* \
         /dev/ttyACM*`), not another device"
    };
    Err(serial(
        format!(
            "`stty` could not set it to {UART_BAUD} baud 8N1 raw: {}",
            stderr.trim()
        ),
        fix,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board_app::on_device::{compare, DeviceRun, ImageResult};

    const IDLE: Duration = Duration::from_secs(5);

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("spikenas-serial-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mkfifo(path: &Path) {
        let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
        assert!(ok, "mkfifo {}", path.display());
    }

    /// Two images as the Pico sends them over the UART (`\r\n`, with cycles).
    const RUN: &str = "CLOCK 125000000 pll\r\nSPIKENAS 2 64\r\nR 0 3 120 4000 3 51000\r\n\
                       R 1 1 99 3500 2 47000\r\nDONE 2 1\r\n";

    fn host() -> Vec<ImageResult> {
        vec![
            ImageResult {
                class: 3,
                spikes: 120,
                synops: 4000,
            },
            ImageResult {
                class: 1,
                spikes: 99,
                synops: 3500,
            },
        ]
    }

    fn read(device: &Path, images: usize, idle: Duration) -> Result<SerialRun, BoardAppError> {
        SerialPort::open(device)?.read_run(Path::new("app.uf2"), images, idle)
    }

    /// A capture with noise and the end of a former run before this run's `CLOCK`: the
    /// run parses as semihosting output does, and compares with the host as probe-rs
    /// runs do.
    #[test]
    fn a_run_is_read_after_its_clock_line_and_compared_with_the_host() {
        let dir = scratch("file");
        let capture = dir.join("capture.txt");
        let text = format!("\u{0}\u{ff}garbage\r\nR 7 1 1 1 1\r\nDONE 8 3\r\n\u{0}{RUN}");
        std::fs::write(&capture, text.as_bytes()).unwrap();
        let run = read(&capture, 2, IDLE).unwrap();
        assert_eq!(run.output.cycles, [51_000, 47_000]);
        assert_eq!(run.output.correct, 1);
        assert!(run.log.is_empty(), "{:?}", run.log);
        let device = DeviceRun::from_output(run.output, run.seconds);
        assert_eq!(device.clock.as_ref().map(|c| c.hz), Some(125_000_000));
        assert!(compare(&host(), &device).all_agree());
        let mut other = host();
        other[1].spikes = 98;
        let cmp = compare(&other, &device);
        assert_eq!(cmp.first_mismatch.map(|m| m.0), Some(1));
        // A garbled first line: the run starts at `SPIKENAS`.
        let text = format!(
            "DONE 8 3\r\nC\u{fffd}K 1\r\n{}",
            &RUN[RUN.find("SPIKENAS").unwrap()..]
        );
        std::fs::write(&capture, text.as_bytes()).unwrap();
        let run = read(&capture, 2, IDLE).unwrap();
        assert_eq!(
            (run.output.results.len(), run.output.clock.is_none()),
            (2, true)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Through a FIFO, line by line as a device sends them; the UF2 is copied onto the
    /// drive after the device is opened, and the "board" starts only once it is there.
    #[test]
    fn flash_uf2_serial_opens_copies_and_reads_a_fifo() {
        let dir = scratch("fifo");
        let fifo = dir.join("ttyACM0");
        mkfifo(&fifo);
        let drive = dir.join("RPI-RP2");
        std::fs::create_dir_all(&drive).unwrap();
        std::fs::write(
            drive.join(super::super::flash::UF2_INFO_FILE),
            "UF2 Bootloader\n",
        )
        .unwrap();
        let uf2 = dir.join("spikenas-app.uf2");
        std::fs::write(&uf2, [0u8; 512]).unwrap();
        let (board_fifo, copied) = (fifo.clone(), drive.join("spikenas-app.uf2"));
        let board = std::thread::spawn(move || {
            use std::io::Write as _;
            let mut tx = std::fs::OpenOptions::new()
                .write(true)
                .open(&board_fifo)
                .unwrap();
            while !copied.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
            for line in RUN.split_inclusive('\n') {
                tx.write_all(line.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let outcome = flash_uf2_serial(&uf2, &drive, &fifo, 2, IDLE).unwrap();
        board.join().unwrap();
        match outcome {
            FlashOutcome::Ran {
                command, output, ..
            } => {
                assert_eq!(command[0], "cp");
                let device = DeviceRun::from_output(output, 0.0);
                assert!(compare(&host(), &device).all_agree());
            }
            other => panic!("{other:?}"),
        }
        // A folder that is not a BOOTSEL drive is refused before anything is read.
        let err = flash_uf2_serial(&uf2, &dir, &fifo, 2, IDLE).unwrap_err();
        assert!(err.to_string().contains("INFO_UF2.TXT"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A device that is open but says nothing, or stops half way.
    #[test]
    fn a_silent_device_times_out_naming_the_device_and_the_wiring() {
        let dir = scratch("silent");
        let fifo = dir.join("ttyUSB0");
        mkfifo(&fifo);
        let idle = Duration::from_millis(300);
        let port = SerialPort::open(&fifo).unwrap();
        let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let err = port.read_run(Path::new("app.uf2"), 2, idle).unwrap_err();
        drop(writer);
        let text = err.to_string();
        assert!(matches!(err, BoardAppError::Serial { .. }), "{text}");
        assert!(
            text.contains(&fifo.display().to_string())
                && text.contains("no output")
                && text.contains("GP0")
                && text.contains("uart"),
            "{text}"
        );
        // Half a run, then silence (a longer wait: the lines must arrive on a loaded
        // machine before it ends). Its own FIFO: the silent port's reader thread may not
        // have seen its writer close yet, and would read these lines from the same one.
        let idle = Duration::from_secs(3);
        let fifo = dir.join("ttyUSB1");
        mkfifo(&fifo);
        let port = SerialPort::open(&fifo).unwrap();
        let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        std::io::Write::write_all(&mut writer, b"CLOCK 125000000 pll\nSPIKENAS 2 64\n").unwrap();
        let err = port.read_run(Path::new("app.uf2"), 2, idle).unwrap_err();
        drop(writer);
        let text = err.to_string();
        assert!(matches!(err, BoardAppError::Run { .. }), "{text}");
        assert!(
            text.contains("after 2 lines") && text.contains("SPIKENAS 2 64"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_lines_device_errors_and_early_ends_are_refused() {
        let dir = scratch("bad");
        let file = dir.join("capture");
        let cases: [(&[u8], &str); 5] = [
            (
                b"CLOCK 125000000 pll\nSPIKENAS 2 64\nR 0 3 x 4000 3\nR 1 1 99 3500 2\nDONE 2 1\n",
                "malformed line `R 0 3 x 4000 3`",
            ),
            (
                b"CLOCK 125000000 pll\nSPIKENAS 2 64\nERROR panic at src/main.rs:9: boom\n",
                "the device reported: ERROR panic at src/main.rs:9: boom",
            ),
            (
                b"CLOCK 125000000 pll\nSPIKENAS 2 64\nR 0 3 120 4000 3\nDONE 1 1\n",
                "reported 1 images, expected 2",
            ),
            (
                b"CLOCK 125000000 pll\nSPIKENAS 2 64\nR 0 3 120 4000 3\n",
                "ended after 3 lines",
            ),
            (&[0x55; MAX_LINE_BYTES + 10], "without a line end"),
        ];
        for (bytes, want) in cases {
            std::fs::write(&file, bytes).unwrap();
            let err = read(&file, 2, IDLE).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
            assert!(err.contains(&file.display().to_string()), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_or_wrong_device_is_named_with_the_fix() {
        let err = SerialPort::open(Path::new("/dev/ttyNOSUCH9")).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, BoardAppError::Serial { .. }), "{text}");
        assert!(
            text.contains("/dev/ttyNOSUCH9") && text.contains("ls /dev/ttyUSB* /dev/ttyACM*"),
            "{text}"
        );
        // A character device that is not a terminal: stty refuses it.
        let err = SerialPort::open(Path::new("/dev/null"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/dev/null") && err.contains("stty") && err.contains("115200"),
            "{err}"
        );
    }
}
