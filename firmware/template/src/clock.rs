//! System clock set-up to the profile's `clock_hz`, with the register values the host
//! computed (`board.rs`, from host/src/board_app/clock.rs, which cites the reference
//! manuals and tests the factors). One family's code is compiled in, chosen by the
//! crate's feature (`stm32f4`, `stm32f7`, `stm32h7`, `rp2040`, `nrf51`, `fixed-clock`).
//!
//! Every wait is bounded: a part whose oscillator or PLL never becomes ready keeps
//! running on its reset clock, and [`setup`] says so. Emulated boards do not call the
//! register code at all (`board::CONFIGURE` is false there: QEMU 7.2 does not model these
//! clock trees); it is compiled in all the same, so the image does not depend on the runner.

use crate::board;

/// The clock in effect after [`setup`].
pub struct Clock {
    /// Hz.
    pub hz: u32,
    /// `pll` (set up here), `fixed` (not settable), `reset` (left at the reset clock:
    /// emulated board), or `failed-<step>` (a bounded wait ran out: still on the reset clock).
    pub how: &'static str,
}

/// Reads of a ready flag before giving up (several ms even at 480 MHz).
const WAIT_LIMIT: u32 = 2_000_000;

#[allow(dead_code)]
unsafe fn rd(addr: u32) -> u32 {
    core::ptr::read_volatile(addr as *const u32)
}

#[allow(dead_code)]
unsafe fn wr(addr: u32, value: u32) {
    core::ptr::write_volatile(addr as *mut u32, value)
}

/// Clears the bits of `clear`, then sets those of `set`.
#[allow(dead_code)]
unsafe fn modify(addr: u32, clear: u32, set: u32) {
    wr(addr, (rd(addr) & !clear) | set)
}

/// Polls until `(reg & mask) == want`; `Err(step)` after [`WAIT_LIMIT`] reads.
#[allow(dead_code)]
unsafe fn wait(addr: u32, mask: u32, want: u32, step: &'static str) -> Result<(), &'static str> {
    for _ in 0..WAIT_LIMIT {
        if rd(addr) & mask == want {
            return Ok(());
        }
    }
    Err(step)
}

/// Sets the clock up (on real boards) and reports the clock in effect.
pub fn setup() -> Clock {
    if !core::hint::black_box(board::CONFIGURE) {
        return Clock {
            hz: board::RESET_HZ,
            how: if board::RESET_HZ == board::CLOCK_HZ { "fixed" } else { "reset" },
        };
    }
    // SAFETY: runs once at start, before anything else uses the clock tree.
    match unsafe { family::setup() } {
        Ok(how) => Clock { hz: board::CLOCK_HZ, how },
        Err(step) => Clock { hz: board::RESET_HZ, how: step },
    }
}

#[cfg(any(feature = "stm32f4", feature = "stm32f7"))]
mod family {
    //! STM32F4 (RM0090 section 6) and STM32F7 (RM0385 section 5): HSI -> main PLL.
    use super::{modify, rd, wait, wr};
    use crate::board::*;

    const RCC: u32 = 0x4002_3800;
    const RCC_CR: u32 = RCC;
    const RCC_PLLCFGR: u32 = RCC + 0x04;
    const RCC_CFGR: u32 = RCC + 0x08;
    const RCC_APB1ENR: u32 = RCC + 0x40;
    const FLASH_ACR: u32 = 0x4002_3C00;
    const PWR_CR: u32 = 0x4000_7000;
    #[cfg(feature = "stm32f7")]
    const PWR_CSR: u32 = 0x4000_7004;

    pub unsafe fn setup() -> Result<&'static str, &'static str> {
        // Power interface clock, then regulator scale 1 (F4: VOS bit 14; F7: VOS[15:14] = 11).
        modify(RCC_APB1ENR, 0, 1 << 28);
        let _ = rd(RCC_APB1ENR);
        modify(PWR_CR, 0b11 << 14, if cfg!(feature = "stm32f7") { 0b11 << 14 } else { 1 << 14 });
        // PLL: source HSI (PLLSRC bit 22 = 0), M [5:0], N [14:6], P [17:16] = P/2 - 1, Q [27:24].
        let fields = 0x3F | (0x1FF << 6) | (0b11 << 16) | (1 << 22) | (0xF << 24);
        modify(
            RCC_PLLCFGR,
            fields,
            PLL_M | (PLL_N << 6) | ((PLL_P / 2 - 1) << 16) | (PLL_Q << 24),
        );
        modify(RCC_CR, 0, 1 << 24); // PLLON
        wait(RCC_CR, 1 << 25, 1 << 25, "failed-pll")?; // PLLRDY
        #[cfg(feature = "stm32f7")]
        if OVERDRIVE != 0 {
            // RM0385 4.1.4: ODEN, wait ODRDY, then ODSWEN, wait ODSWRDY.
            modify(PWR_CR, 0, 1 << 16);
            wait(PWR_CSR, 1 << 16, 1 << 16, "failed-overdrive")?;
            modify(PWR_CR, 0, 1 << 17);
            wait(PWR_CSR, 1 << 17, 1 << 17, "failed-overdrive-switch")?;
        }
        // Flash wait states before the clock goes up; F4: prefetch + I/D caches
        // (bits 8-10), F7: prefetch + ART (bits 8-9).
        let caches = if cfg!(feature = "stm32f7") { 0b011 << 8 } else { 0b111 << 8 };
        wr(FLASH_ACR, FLASH_LATENCY | caches);
        wait(FLASH_ACR, 0xF, FLASH_LATENCY, "failed-flash-latency")?;
        // AHB /1 (HPRE [7:4] = 0), APB1 PPRE1 [12:10], APB2 PPRE2 [15:13], then SW = PLL.
        modify(RCC_CFGR, (0xF << 4) | (0b111 << 10) | (0b111 << 13), (PPRE1 << 10) | (PPRE2 << 13));
        modify(RCC_CFGR, 0b11, 0b10);
        wait(RCC_CFGR, 0b11 << 2, 0b10 << 2, "failed-switch")?; // SWS = PLL
        Ok("pll")
    }
}

#[cfg(feature = "stm32h7")]
mod family {
    //! STM32H743 (RM0433): LDO supply, VOS1, HSI 64 MHz -> PLL1.
    use super::{modify, wait, wr};
    use crate::board::*;

    const PWR: u32 = 0x5802_4800;
    const PWR_CSR1: u32 = PWR + 0x04;
    const PWR_CR3: u32 = PWR + 0x0C;
    const PWR_D3CR: u32 = PWR + 0x18;
    const RCC: u32 = 0x5802_4400;
    const RCC_CR: u32 = RCC;
    const RCC_CFGR: u32 = RCC + 0x10;
    const RCC_D1CFGR: u32 = RCC + 0x18;
    const RCC_D2CFGR: u32 = RCC + 0x1C;
    const RCC_D3CFGR: u32 = RCC + 0x20;
    const RCC_PLLCKSELR: u32 = RCC + 0x28;
    const RCC_PLLCFGR: u32 = RCC + 0x2C;
    const RCC_PLL1DIVR: u32 = RCC + 0x30;
    const FLASH_ACR: u32 = 0x5200_2000;

    pub unsafe fn setup() -> Result<&'static str, &'static str> {
        // Supply: LDO (LDOEN, SCUEN as at reset; the first write locks the configuration,
        // RM0433 6.8.4), wait ACTVOSRDY; then VOS1 and wait VOSRDY.
        wr(PWR_CR3, 0b110);
        wait(PWR_CSR1, 1 << 13, 1 << 13, "failed-supply")?;
        modify(PWR_D3CR, 0b11 << 14, 0b11 << 14);
        wait(PWR_D3CR, 1 << 13, 1 << 13, "failed-vos1")?;
        // Flash: LATENCY [3:0], WRHIGHFREQ [5:4] (table 17), set before the clock goes up.
        modify(FLASH_ACR, 0x3F, FLASH_LATENCY | (WRHIGHFREQ << 4));
        wait(FLASH_ACR, 0x3F, FLASH_LATENCY | (WRHIGHFREQ << 4), "failed-flash-latency")?;
        // PLL1 from HSI (PLLSRC [1:0] = 0), DIVM1 [9:4]; wide VCO (VCOSEL 0), RGE [3:2],
        // integer mode, DIVP1EN (bit 16); DIVN1 [8:0] = N - 1, DIVP1 [15:9] = P - 1.
        modify(RCC_PLLCKSELR, 0b11 | (0x3F << 4), PLL_M << 4);
        modify(RCC_PLLCFGR, 0b1111, (PLL_RANGE << 2));
        modify(RCC_PLLCFGR, 0, 1 << 16);
        modify(RCC_PLL1DIVR, 0xFFFF, (PLL_N - 1) | ((PLL_P - 1) << 9));
        modify(RCC_CR, 0, 1 << 24); // PLL1ON
        wait(RCC_CR, 1 << 25, 1 << 25, "failed-pll")?; // PLL1RDY
        // D1CPRE /1 [11:8], HPRE [3:0], D1PPRE [6:4]; D2PPRE1 [6:4], D2PPRE2 [10:8]; D3PPRE [6:4].
        modify(RCC_D1CFGR, (0xF << 8) | 0xF | (0b111 << 4), HPRE | (PPRE << 4));
        modify(RCC_D2CFGR, (0b111 << 4) | (0b111 << 8), (PPRE << 4) | (PPRE << 8));
        modify(RCC_D3CFGR, 0b111 << 4, PPRE << 4);
        // SW [2:0] = PLL1, wait SWS [5:3].
        modify(RCC_CFGR, 0b111, 0b011);
        wait(RCC_CFGR, 0b111 << 3, 0b011 << 3, "failed-switch")?;
        Ok("pll")
    }
}

#[cfg(feature = "rp2040")]
mod family {
    //! RP2040 (datasheet 2.15 clocks, 2.16 XOSC, 2.18 PLL), as the pico-sdk's
    //! clocks_init does it: XOSC 12 MHz -> PLL_SYS -> clk_sys; clk_ref from XOSC.
    use super::{modify, rd, wait, wr};
    use crate::board::*;

    const CLOCKS: u32 = 0x4000_8000;
    const CLK_REF_CTRL: u32 = CLOCKS + 0x30;
    const CLK_REF_SELECTED: u32 = CLOCKS + 0x38;
    const CLK_SYS_CTRL: u32 = CLOCKS + 0x3C;
    const CLK_SYS_SELECTED: u32 = CLOCKS + 0x44;
    const CLK_SYS_RESUS_CTRL: u32 = CLOCKS + 0x78;
    const RESETS: u32 = 0x4000_C000;
    const RESETS_RESET_DONE: u32 = RESETS + 0x08;
    const XOSC: u32 = 0x4002_4000;
    const PLL_SYS: u32 = 0x4002_8000;
    /// Atomic set / clear aliases of a register (datasheet 2.1.2).
    const SET: u32 = 0x2000;
    const CLR: u32 = 0x3000;
    const RESET_PLL_SYS: u32 = 1 << 12;

    pub unsafe fn setup() -> Result<&'static str, &'static str> {
        wr(CLK_SYS_RESUS_CTRL, 0);
        // XOSC: FREQ_RANGE 1-15 MHz (0xAA0), startup delay (12 MHz * 1 ms + 128) / 256,
        // ENABLE (0xFAB in [23:12]); wait STABLE (bit 31).
        wr(XOSC + 0x0C, (12_000 + 128) / 256);
        wr(XOSC, 0xAA0 | (0xFAB << 12));
        wait(XOSC + 0x04, 1 << 31, 1 << 31, "failed-xosc")?;
        // Run clk_sys from clk_ref and clk_ref from the ring oscillator while the PLL changes.
        modify(CLK_SYS_CTRL, 1, 0);
        wait(CLK_SYS_SELECTED, 0b11, 0b01, "failed-sys-to-ref")?;
        modify(CLK_REF_CTRL, 0b11, 0);
        wait(CLK_REF_SELECTED, 0b111, 0b001, "failed-ref-to-rosc")?;
        // PLL_SYS: reset, REFDIV, FBDIV, power up (PD bit 0, VCOPD bit 5), wait LOCK
        // (CS bit 31), post dividers, then POSTDIVPD (bit 3) off.
        wr(RESETS + SET, RESET_PLL_SYS);
        wr(RESETS + CLR, RESET_PLL_SYS);
        wait(RESETS_RESET_DONE, RESET_PLL_SYS, RESET_PLL_SYS, "failed-pll-reset")?;
        wr(PLL_SYS, PLL_REFDIV);
        wr(PLL_SYS + 0x08, PLL_FBDIV);
        wr(PLL_SYS + 0x04 + CLR, (1 << 0) | (1 << 5));
        wait(PLL_SYS, 1 << 31, 1 << 31, "failed-pll")?;
        wr(PLL_SYS + 0x0C, (PLL_POSTDIV1 << 16) | (PLL_POSTDIV2 << 12));
        wr(PLL_SYS + 0x04 + CLR, 1 << 3);
        // clk_ref <- XOSC (SRC 2); clk_sys <- aux (SRC 1), AUXSRC [7:5] = PLL_SYS (0).
        modify(CLK_REF_CTRL, 0b11, 0b10);
        wait(CLK_REF_SELECTED, 0b111, 0b100, "failed-ref-to-xosc")?;
        modify(CLK_SYS_CTRL, 0b111 << 5, 0);
        modify(CLK_SYS_CTRL, 0, 1);
        wait(CLK_SYS_SELECTED, 0b11, 0b10, "failed-sys-to-pll")?;
        let _ = rd(CLK_SYS_CTRL);
        Ok("pll")
    }
}

#[cfg(any(feature = "nrf51", feature = "fixed-clock"))]
mod family {
    //! nRF51 (16 MHz HFCLK, fixed) and the MPS2 FPGA images (fixed): nothing to set.
    pub unsafe fn setup() -> Result<&'static str, &'static str> {
        Ok("fixed")
    }
}
