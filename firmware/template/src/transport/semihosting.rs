//! The results transport of boards with a debugger attached (QEMU, or a probe through
//! `probe-rs run`): semihosting stdout and exit codes. Also the panic handler, which
//! reports the panic over semihosting and exits with failure (panic-semihosting).

use cortex_m_semihosting::{debug, hio};
use panic_semihosting as _;

/// Nothing to set up: the debugger serves semihosting.
pub fn init() {}

/// Writes `bytes` to the host's stdout in one semihosting call.
pub fn write(bytes: &[u8]) {
    if let Ok(mut out) = hio::hstdout() {
        let _ = out.write_all(bytes);
    }
}

/// Ends the run: the exit code tells QEMU / probe-rs whether it succeeded.
pub fn exit(success: bool) -> ! {
    debug::exit(if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::bkpt();
    }
}
