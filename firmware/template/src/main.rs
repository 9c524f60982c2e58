//! spikenas board application: runs the generated network (`model.rs`) on a test set and
//! reports every prediction over semihosting, or with the `uart` feature (a Raspberry Pi
//! Pico without a debug probe) over UART0.
//!
//! Stamped out by `spikenas-host generate` from firmware/template/ (only `model.rs`,
//! `memory.x` and the `{{...}}` fields of the build files differ between boards and
//! models). Protocol, one line each on semihosting stdout (or the UART):
//!
//! ```text
//! CLOCK <hz> <how>                              the clock in effect (see clock.rs)
//! SPIKENAS <images> <image_len>                 start
//! R <index> <class> <spikes> <synops> <label> [<cycles>]
//!                                               one per image; cycles on real boards
//! DONE <images> <correct>                       end, then exit with EXIT_SUCCESS
//! ERROR <what>                                  then exit with EXIT_FAILURE
//! ```
//!
//! The transport is one file, chosen by the `uart` feature: src/transport/semihosting.rs
//! (stdout and exit codes through the debugger, and panic-semihosting) or
//! src/transport/uart.rs (RP2040 UART0 on GP0/GP1, 115200 8N1, and a panic handler that
//! reports over it; the UART build carries the test set in flash and makes no semihosting
//! call, so it runs without a debugger).
//!
//! The test set (`testset.bin`: magic `SNTS`, u32 version 1, u32 count, u32 image_len,
//! then per image `image_len` pixels and one label byte, little endian) is read from the
//! host through semihosting file reads (`SYS_OPEN`/`SYS_READ`; QEMU serves the file from
//! its working directory), or with the `embedded-testset` feature from flash.
//!
//! With the `defmt` feature the same results also go out as defmt logs over RTT
//! (src/log.rs), for `probe-rs run` to decode.
//!
//! `spikenas_infer_begin` / `spikenas_infer_end` bracket each inference so that the QEMU
//! instruction-counting plugin (scripts/qemu-icount) can count exactly what it executes.
#![no_std]
#![no_main]

mod board;
mod clock;
mod cycles;
mod log;
mod model;
#[cfg_attr(not(feature = "uart"), path = "transport/semihosting.rs")]
#[cfg_attr(feature = "uart", path = "transport/uart.rs")]
mod transport;

use core::fmt::{self, Write as _};

use cortex_m_rt::{entry, exception, ExceptionFrame};

/// Bytes of the test-set header.
const HEADER_LEN: usize = 16;

/// A line formatted in memory, written to the host in one semihosting call.
struct Line {
    buf: [u8; 128],
    len: usize,
}

impl Line {
    const fn new() -> Line {
        Line {
            buf: [0; 128],
            len: 0,
        }
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn emit(args: fmt::Arguments) {
    let mut line = Line::new();
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    transport::write(&line.buf[..line.len]);
}

fn fail(what: fmt::Arguments) -> ! {
    log::error(what);
    emit(format_args!("ERROR {what}"));
    transport::exit(false)
}

/// Marks the start of one inference for the instruction counter (never inlined, and
/// different from `spikenas_infer_end` so the two are not merged).
#[no_mangle]
#[inline(never)]
pub extern "C" fn spikenas_infer_begin() {
    cortex_m::asm::nop();
}

/// Marks the end of one inference for the instruction counter.
#[no_mangle]
#[inline(never)]
pub extern "C" fn spikenas_infer_end() {
    cortex_m::asm::nop();
    cortex_m::asm::nop();
}

#[cfg(not(feature = "embedded-testset"))]
mod source {
    //! The test set, read from the host through semihosting.
    use cortex_m_semihosting::{nr, syscall};

    pub struct Source {
        fd: usize,
    }

    impl Source {
        pub fn open() -> Result<Source, &'static str> {
            let name = b"testset.bin\0";
            // Mode 1 is "rb"; the length excludes the terminating NUL.
            let fd = unsafe { syscall(nr::OPEN, &[name.as_ptr() as usize, 1, name.len() - 1]) };
            if fd as isize == -1 {
                return Err("cannot open testset.bin through semihosting (is QEMU's working directory the one holding it?)");
            }
            Ok(Source { fd })
        }

        pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), &'static str> {
            // SYS_READ returns the number of bytes NOT read.
            let left = unsafe { syscall(nr::READ, &[self.fd, buf.as_mut_ptr() as usize, buf.len()]) };
            if left == 0 {
                Ok(())
            } else {
                Err("testset.bin ended early")
            }
        }
    }
}

#[cfg(feature = "embedded-testset")]
mod source {
    //! The test set, built into flash.
    static TESTSET: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/testset.bin"));

    pub struct Source {
        at: usize,
    }

    impl Source {
        pub fn open() -> Result<Source, &'static str> {
            Ok(Source { at: 0 })
        }

        pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), &'static str> {
            let end = self.at + buf.len();
            let src = TESTSET.get(self.at..end).ok_or("testset.bin ended early")?;
            buf.copy_from_slice(src);
            self.at = end;
            Ok(())
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

#[cfg(feature = "rp2040")]
mod boot2 {
    //! The RP2040's second-stage bootloader: the bootrom copies these 256 bytes (their
    //! last 4 are a CRC32 it checks) from the start of flash into SRAM and runs them; they
    //! set up XIP for the Pico's W25Q16JV and jump to the vector table at 0x1000_0100.
    /// Placed by memory.x's `.boot2` section (region BOOT2).
    #[link_section = ".boot2"]
    #[no_mangle]
    #[used]
    pub static BOOT2_FIRMWARE: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;
}

#[entry]
fn main() -> ! {
    let clock = clock::setup();
    transport::init();
    emit(format_args!("CLOCK {} {}", clock.hz, clock.how));
    log::clock(clock.hz, clock.how);
    let timed = cycles::start();
    // SAFETY: called once, before anything else touches the workspace.
    let (mut ws, image) = unsafe { model::workspace() };
    // Read through `black_box` so that LTO cannot specialise the runtime for this one
    // network (fold its validation, drop the error path, inline per shape): the code is
    // then the same for every model, which the memory model charges as one figure per
    // target (targets.yaml `code_reserve_bytes`). Without it `.text` varied by up to
    // 9.4 KiB with the network (measured on the netduinoplus2).
    let network: &spikenas_firmware::Network<'static> = core::hint::black_box(&model::NETWORK);
    // Once per boot: validation and the per-layer accumulator choice (reads weights).
    let network = match network.prepare() {
        Ok(p) => p,
        Err(e) => fail(format_args!("{e}")),
    };
    let mut src = match source::Source::open() {
        Ok(s) => s,
        Err(e) => fail(format_args!("{e}")),
    };
    let mut header = [0u8; HEADER_LEN];
    if let Err(e) = src.read_exact(&mut header) {
        fail(format_args!("{e}"));
    }
    if &header[..4] != b"SNTS" || u32_at(&header, 4) != 1 {
        fail(format_args!("testset.bin is not a version-1 spikenas test set"));
    }
    let (count, image_len) = (u32_at(&header, 8), u32_at(&header, 12));
    if image_len != image.len() {
        fail(format_args!(
            "testset.bin holds images of {image_len} bytes, the model reads {}",
            image.len()
        ));
    }
    emit(format_args!("SPIKENAS {count} {image_len}"));
    let mut correct = 0usize;
    for index in 0..count {
        let mut label = [0u8; 1];
        if let Err(e) = src.read_exact(image).and_then(|()| src.read_exact(&mut label)) {
            fail(format_args!("image {index}: {e}"));
        }
        let t0 = if timed { cycles::now() } else { 0 };
        spikenas_infer_begin();
        let result = network.infer(image, &mut ws);
        spikenas_infer_end();
        let elapsed = if timed { cycles::since(t0) } else { 0 };
        match result {
            Ok(r) => {
                correct += (r.class == label[0] as usize) as usize;
                log::image(index, r.class, label[0], r.spikes, r.synops, elapsed);
                if timed {
                    emit(format_args!(
                        "R {index} {} {} {} {} {elapsed}",
                        r.class, r.spikes, r.synops, label[0]
                    ));
                } else {
                    emit(format_args!(
                        "R {index} {} {} {} {}",
                        r.class, r.spikes, r.synops, label[0]
                    ));
                }
            }
            Err(e) => fail(format_args!("image {index}: {e}")),
        }
    }
    emit(format_args!("DONE {count} {correct}"));
    log::done(count, correct);
    transport::exit(true)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    fail(format_args!(
        "HardFault at pc {:#010x} (lr {:#010x})",
        frame.pc(),
        frame.lr()
    ))
}
