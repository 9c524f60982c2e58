//! Cycles per inference on real boards: the DWT cycle counter on Cortex-M3/M4/M7
//! (ARMv7-M ARM C1.8), SysTick with a wrap count on the RP2040's Cortex-M0+, and TIMER0
//! at 16 MHz (= the CPU clock) on the nRF51, whose Cortex-M0 has no SysTick. Emulated
//! boards do not start a counter (`board::MEASURE_CYCLES` is false): QEMU models no
//! cycles, and the host counts instructions there instead.

#[allow(dead_code)]
unsafe fn wr(addr: u32, value: u32) {
    core::ptr::write_volatile(addr as *mut u32, value)
}

#[allow(dead_code)]
unsafe fn rd(addr: u32) -> u32 {
    core::ptr::read_volatile(addr as *const u32)
}

#[cfg(not(any(feature = "rp2040", feature = "nrf51")))]
mod counter {
    //! DWT CYCCNT: DEMCR.TRCENA (bit 24), unlock (the Cortex-M7's DWT has a lock
    //! access register), CYCCNT = 0, CTRL.CYCCNTENA (bit 0).
    use super::{rd, wr};
    const DEMCR: u32 = 0xE000_EDFC;
    const DWT_CTRL: u32 = 0xE000_1000;
    const DWT_CYCCNT: u32 = 0xE000_1004;
    const DWT_LAR: u32 = 0xE000_1FB0;

    pub unsafe fn start() {
        wr(DEMCR, rd(DEMCR) | (1 << 24));
        wr(DWT_LAR, 0xC5AC_CE55);
        wr(DWT_CYCCNT, 0);
        wr(DWT_CTRL, rd(DWT_CTRL) | 1);
    }

    /// 32 bits: an inference of more than 2^32 cycles (10 s at 400 MHz) would wrap.
    pub const MASK: u64 = 0xFFFF_FFFF;

    pub fn now() -> u64 {
        unsafe { u64::from(rd(DWT_CYCCNT)) }
    }
}

#[cfg(feature = "rp2040")]
mod counter {
    //! SysTick on the processor clock (CSR: ENABLE, TICKINT, CLKSOURCE), reload 2^24 - 1;
    //! the exception counts the wraps.
    use super::{rd, wr};
    use core::sync::atomic::{AtomicU32, Ordering};
    const SYST_CSR: u32 = 0xE000_E010;
    const SYST_RVR: u32 = 0xE000_E014;
    const SYST_CVR: u32 = 0xE000_E018;
    const RELOAD: u32 = 0x00FF_FFFF;
    static WRAPS: AtomicU32 = AtomicU32::new(0);
    pub const MASK: u64 = u64::MAX;

    #[cortex_m_rt::exception]
    fn SysTick() {
        // Only this handler writes WRAPS (thumbv6m has no atomic read-modify-write).
        WRAPS.store(WRAPS.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    pub unsafe fn start() {
        wr(SYST_RVR, RELOAD);
        wr(SYST_CVR, 0);
        wr(SYST_CSR, 0b111);
    }

    pub fn now() -> u64 {
        loop {
            let before = WRAPS.load(Ordering::Relaxed);
            let value = unsafe { rd(SYST_CVR) };
            if WRAPS.load(Ordering::Relaxed) == before {
                return u64::from(before) * u64::from(RELOAD + 1) + u64::from(RELOAD - value);
            }
        }
    }
}

#[cfg(feature = "nrf51")]
mod counter {
    //! TIMER0 (nRF51 Series Reference Manual v3.0 section 18): timer mode, 32 bits,
    //! prescaler 0 (16 MHz); CAPTURE[0] latches the count into CC[0].
    use super::{rd, wr};
    const TIMER0: u32 = 0x4000_8000;
    /// 32 bits: wraps after 268 s at 16 MHz.
    pub const MASK: u64 = 0xFFFF_FFFF;

    pub unsafe fn start() {
        wr(TIMER0 + 0x504, 0); // MODE = timer
        wr(TIMER0 + 0x508, 3); // BITMODE = 32 bit
        wr(TIMER0 + 0x510, 0); // PRESCALER = 0: 16 MHz
        wr(TIMER0 + 0x00C, 1); // TASKS_CLEAR
        wr(TIMER0, 1); // TASKS_START
    }

    pub fn now() -> u64 {
        unsafe {
            wr(TIMER0 + 0x040, 1); // TASKS_CAPTURE[0]
            u64::from(rd(TIMER0 + 0x540)) // CC[0]
        }
    }
}

/// Starts the counter where the board measures cycles; true if it runs.
pub fn start() -> bool {
    if !core::hint::black_box(crate::board::MEASURE_CYCLES) {
        return false;
    }
    // SAFETY: once, at start; the counter belongs to this module.
    unsafe { counter::start() };
    true
}

/// The counter now (call only after [`start`] returned true).
pub fn now() -> u64 {
    counter::now()
}

/// Cycles from `t0` (a [`now`]) to now.
pub fn since(t0: u64) -> u64 {
    counter::now().wrapping_sub(t0) & counter::MASK
}
