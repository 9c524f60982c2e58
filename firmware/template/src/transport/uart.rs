//! The results transport of a Raspberry Pi Pico without a debug probe (feature `uart`):
//! the protocol lines of main.rs go out on UART0, TX on GP0 (pin 1) and RX on GP1
//! (pin 2), 115200 baud 8N1, for a USB-UART adapter or the Debug Probe's UART to read
//! (`spikenas-host flash --uf2-copy DRIVE --serial DEVICE`). No semihosting call is left
//! in the image: without a debugger a semihosting `BKPT` faults. The panic handler
//! reports over the UART too, then the core sleeps (there is no one to tell an exit code).
//!
//! Register addresses and bits from the RP2040 datasheet's register lists, as the
//! pico-sdk's `uart_init` and `gpio_set_function` use them:
//! - CLOCKS 0x4000_8000 (2.15 Clocks): CLK_PERI_CTRL +0x48, ENABLE bit 11, AUXSRC [7:5]
//!   (0 = clk_sys). clk_peri is off out of reset (CTRL resets to 0); clock.rs leaves it.
//! - RESETS 0x4000_C000 (2.14 Subsystem resets): RESET +0x0, RESET_DONE +0x8; IO_BANK0
//!   bit 5, PADS_BANK0 bit 8, UART0 bit 22. Atomic set / clear aliases +0x2000 / +0x3000
//!   (2.1.2).
//! - IO_BANK0 0x4001_4000 (2.19 GPIO): GPIOn_CTRL at +0x04 + 8n, FUNCSEL [4:0], function
//!   2 = UART (GP0 UART0 TX, GP1 UART0 RX).
//! - PADS_BANK0 0x4001_C000 (2.19 GPIO): GPIOn at +0x04 + 4n, OD bit 7, IE bit 6.
//! - UART0 0x4003_4000 (4.2 UART, an ARM PL011): UARTDR +0x00, UARTFR +0x18 (BUSY bit 3,
//!   TXFF bit 5), UARTIBRD +0x24, UARTFBRD +0x28, UARTLCR_H +0x2C (WLEN [6:5] = 0b11
//!   for 8 bits, FEN bit 4; no parity, one stop bit), UARTCR +0x30 (UARTEN bit 0, TXE
//!   bit 8, RXE bit 9). The divisors are written before LCR_H, whose write latches them
//!   (4.2.7.1), and the UART is enabled last.
//!
//! The divisors (`board::UART_IBRD`, `board::UART_FBRD`) are computed on the host for
//! clk_peri = clk_sys at the profile's clock (host/src/board_app/clock.rs, tested against
//! the datasheet's worked example: 125 MHz gives 67 and 52). If the clock set-up failed
//! (`CLOCK ... failed-<step>`), clk_sys is still the ring oscillator and the line speed
//! is wrong: the host then sees garbage or nothing and says so.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::board;

#[cfg(not(feature = "rp2040"))]
compile_error!(
    "the `uart` feature is the RP2040's UART0 (GP0/GP1); other boards report over semihosting"
);

const CLK_PERI_CTRL: u32 = 0x4000_8000 + 0x48;
const RESETS: u32 = 0x4000_C000;
const RESETS_RESET_DONE: u32 = RESETS + 0x08;
const RESET_IO_BANK0: u32 = 1 << 5;
const RESET_PADS_BANK0: u32 = 1 << 8;
const RESET_UART0: u32 = 1 << 22;
const IO_BANK0: u32 = 0x4001_4000;
const PADS_BANK0: u32 = 0x4001_C000;
const FUNCSEL_UART: u32 = 2;
const UART0: u32 = 0x4003_4000;
const UARTDR: u32 = UART0;
const UARTFR: u32 = UART0 + 0x18;
const UARTIBRD: u32 = UART0 + 0x24;
const UARTFBRD: u32 = UART0 + 0x28;
const UARTLCR_H: u32 = UART0 + 0x2C;
const UARTCR: u32 = UART0 + 0x30;
const FR_BUSY: u32 = 1 << 3;
const FR_TXFF: u32 = 1 << 5;
/// Atomic set / clear aliases of a register (datasheet 2.1.2).
const SET: u32 = 0x2000;
const CLR: u32 = 0x3000;

/// Reads of a flag before giving up (a wait that never ends would hide the results).
const WAIT_LIMIT: u32 = 2_000_000;

/// Set once [`init`] has enabled the UART; [`write`] drops bytes before that, so that a
/// panic before `init` cannot wait on a UART that is held in reset.
static READY: AtomicBool = AtomicBool::new(false);

unsafe fn rd(addr: u32) -> u32 {
    core::ptr::read_volatile(addr as *const u32)
}

unsafe fn wr(addr: u32, value: u32) {
    core::ptr::write_volatile(addr as *mut u32, value)
}

/// Polls until `(reg & mask) == want`; false after [`WAIT_LIMIT`] reads.
unsafe fn wait(addr: u32, mask: u32, want: u32) -> bool {
    (0..WAIT_LIMIT).any(|_| rd(addr) & mask == want)
}

/// Sets UART0 up on GP0/GP1 at `board::UART_BAUD` 8N1. Call after `clock::setup`.
pub fn init() {
    // SAFETY: runs once at start; the registers are the RP2040's (see the module docs).
    unsafe {
        // clk_peri from clk_sys: stop it and give the stop three cycles of its source to
        // take effect before AUXSRC is written (as the pico-sdk's clock_configure does
        // for a clock without a glitchless mux), then start it.
        wr(CLK_PERI_CTRL + CLR, 1 << 11);
        cortex_m::asm::delay(8);
        wr(CLK_PERI_CTRL, 1 << 11);
        // UART0 through a reset cycle; GPIO muxing and pads out of reset.
        wr(RESETS + SET, RESET_UART0);
        wr(RESETS + CLR, RESET_UART0 | RESET_IO_BANK0 | RESET_PADS_BANK0);
        let blocks = RESET_UART0 | RESET_IO_BANK0 | RESET_PADS_BANK0;
        if !wait(RESETS_RESET_DONE, blocks, blocks) {
            return;
        }
        wr(UARTIBRD, board::UART_IBRD);
        wr(UARTFBRD, board::UART_FBRD);
        wr(UARTLCR_H, (0b11 << 5) | (1 << 4));
        wr(UARTCR, (1 << 0) | (1 << 8) | (1 << 9));
        for gpio in 0..2u32 {
            // Pad: input enabled, output not disabled; then the UART function.
            let pad = PADS_BANK0 + 0x04 + 4 * gpio;
            wr(pad, (rd(pad) & !(1 << 7)) | (1 << 6));
            wr(IO_BANK0 + 0x04 + 8 * gpio, FUNCSEL_UART);
        }
    }
    READY.store(true, Ordering::Release);
    // Out of reset the pad pulls GP0 low; its rise to the UART's idle level can read as
    // a byte of noise at the other end. Let the line idle for about 1 ms, then end that
    // noise's line, so the first protocol line arrives whole.
    cortex_m::asm::delay(board::CLOCK_HZ / 1000);
    write(b"\n");
}

/// Sends `bytes`, `\n` as `\r\n` for terminal programs (the host's parser takes either).
pub fn write(bytes: &[u8]) {
    if !READY.load(Ordering::Acquire) {
        return;
    }
    for &b in bytes {
        if b == b'\n' {
            put(b'\r');
        }
        put(b);
    }
}

fn put(byte: u8) {
    // SAFETY: UART0 is set up (READY); a full FIFO drains at the line rate.
    unsafe {
        if wait(UARTFR, FR_TXFF, 0) {
            wr(UARTDR, u32::from(byte));
        }
    }
}

/// Ends the run: lets the last line leave the FIFO, then sleeps. The host reads the
/// outcome from the lines (`DONE` or `ERROR`), as there is no exit code to give.
pub fn exit(_success: bool) -> ! {
    if READY.load(Ordering::Acquire) {
        // SAFETY: reads UART0's flag register.
        unsafe {
            wait(UARTFR, FR_BUSY, 0);
        }
    }
    loop {
        cortex_m::asm::wfi();
    }
}

/// Reports a panic over the UART as an `ERROR` line, then sleeps.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    init_if_needed();
    match info.location() {
        Some(at) => crate::fail(format_args!(
            "panic at {}:{}: {}",
            at.file(),
            at.line(),
            info.message()
        )),
        None => crate::fail(format_args!("panic: {}", info.message())),
    }
}

/// A panic before `main` called [`init`] (the clock set-up does not panic, but be sure).
fn init_if_needed() {
    if !READY.load(Ordering::Acquire) {
        init();
    }
}
