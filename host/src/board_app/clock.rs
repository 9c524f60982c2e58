//! The system clock a board application sets up: PLL factors, flash wait states, bus
//! prescalers and voltage scaling per chip family, computed here from the profile's
//! `clock_hz` and written into the generated crate's `src/board.rs` as plain integers.
//! The template's `src/clock.rs` only writes them into the registers, so everything
//! that can be got wrong is computed (and tested) on the host.
//!
//! Every family starts from its internal oscillator, so no board crystal is assumed:
//!
//! | family | reset clock | PLL input | limits (reference manual) |
//! |---|---|---|---|
//! | STM32F4 (F405) | HSI 16 MHz | HSI/M, 1-2 MHz | RM0090 6.3.2: N 50-432, VCO 192-432 MHz (F40x), P 2/4/6/8, Q 2-15; SYSCLK <= 168 MHz; wait states table 10 (2.7-3.6 V); APB1 <= 42, APB2 <= 84 MHz |
//! | STM32F7 (F746) | HSI 16 MHz | HSI/M, 1-2 MHz | RM0385 5.3.2: N 50-432, VCO 100-432 MHz, P 2/4/6/8, Q 2-15; over-drive above 180 MHz; wait states table 5 (2.7-3.6 V); APB1 <= 54, APB2 <= 108 MHz |
//! | STM32H7 (H743) | HSI 64 MHz | HSI/M, 2-16 MHz | RM0433 8.7: DIVN 4-512, wide VCO 192-836 MHz, DIVP even; VOS1 for up to 400 MHz; AXI/AHB <= 200 MHz, APB <= 100 MHz; wait states table 17 (VOS1) |
//! | RP2040 | ring oscillator (~6 MHz) | XOSC 12 MHz | datasheet 2.18.2: FBDIV 16-320, VCO 750-1600 MHz, POSTDIV 1-7; XIP flash needs no wait states |
//! | nRF51 | HFCLK 16 MHz | - | fixed 16 MHz (nRF51 Series Reference Manual v3.0 section 13) |
//! | MPS2 FPGA | 25 MHz | - | fixed by the FPGA image |
//!
//! Emulated boards (runner `qemu`) keep their reset clock: QEMU 7.2 does not model these
//! clock trees, and a wait for a PLL-ready flag would never end. The code is built in
//! all the same (so the image and its size do not depend on the runner) and switched off
//! by `CONFIGURE = false`. On real parts every wait is bounded, and the application
//! reports the clock actually in effect (`CLOCK <hz> <how>`).

use std::fmt::Write as _;

use crate::boards::{Profile, Runner};

/// The clock-setup code a target's board application carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// STM32F4 (RM0090).
    Stm32f4,
    /// STM32F7 (RM0385).
    Stm32f7,
    /// STM32H7 (RM0433).
    Stm32h7,
    /// RP2040 (RP2040 datasheet).
    Rp2040,
    /// nRF51: a fixed 16 MHz clock.
    Nrf51,
    /// A clock the chip does not let software change (the MPS2 FPGA images).
    Fixed,
}

impl Family {
    /// The family of a target in `targets.yaml`, by its name.
    pub fn of_target(target: &str) -> Family {
        match target {
            "stm32f405" => Family::Stm32f4,
            "stm32f746" => Family::Stm32f7,
            "stm32h743" => Family::Stm32h7,
            "rp2040" => Family::Rp2040,
            "nrf51" => Family::Nrf51,
            _ => Family::Fixed,
        }
    }

    /// The template's cargo feature that selects this family's code.
    pub fn feature(self) -> &'static str {
        match self {
            Family::Stm32f4 => "stm32f4",
            Family::Stm32f7 => "stm32f7",
            Family::Stm32h7 => "stm32h7",
            Family::Rp2040 => "rp2040",
            Family::Nrf51 => "nrf51",
            Family::Fixed => "fixed-clock",
        }
    }

    /// The clock the part runs on out of reset, in Hz (`None`: the profile's clock).
    fn reset_hz(self) -> Option<u32> {
        match self {
            Family::Stm32f4 | Family::Stm32f7 => Some(16_000_000),
            Family::Stm32h7 => Some(64_000_000),
            // The ring oscillator: nominally 6 MHz, 1.8-12 MHz over process and
            // temperature (RP2040 datasheet 2.17).
            Family::Rp2040 => Some(6_000_000),
            Family::Nrf51 => Some(16_000_000),
            Family::Fixed => None,
        }
    }
}

/// A `clock_hz` the family's clock tree cannot produce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("board `{board}`: clock_hz {hz} cannot be set up on the {family:?}: {why}. Fix: set clock_hz in the profile to {fix}")]
pub struct ClockError {
    /// Board name.
    pub board: String,
    /// The family.
    pub family: Family,
    /// The requested clock.
    pub hz: u64,
    /// Which limit it breaks.
    pub why: String,
    /// A value that works.
    pub fix: String,
}

/// STM32F4/F7 main PLL: SYSCLK = HSI / M * N / P; the 48 MHz domain gets VCO / Q.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StmPll {
    /// Input divider (PLLM).
    pub m: u32,
    /// VCO multiplier (PLLN).
    pub n: u32,
    /// System clock divider (PLLP: 2, 4, 6 or 8).
    pub p: u32,
    /// 48 MHz domain divider (PLLQ).
    pub q: u32,
}

/// STM32H7 PLL1: sys_ck = HSI / DIVM1 * DIVN1 / DIVP1 (wide VCO range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H7Pll {
    /// DIVM1.
    pub m: u32,
    /// DIVN1.
    pub n: u32,
    /// DIVP1 (even).
    pub p: u32,
    /// PLL1RGE: the reference's range (0: 1-2, 1: 2-4, 2: 4-8, 3: 8-16 MHz).
    pub range: u32,
}

/// RP2040 PLL_SYS: clk_sys = 12 MHz / REFDIV * FBDIV / (POSTDIV1 * POSTDIV2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rp2040Pll {
    /// REFDIV.
    pub refdiv: u32,
    /// FBDIV.
    pub fbdiv: u32,
    /// POSTDIV1.
    pub postdiv1: u32,
    /// POSTDIV2.
    pub postdiv2: u32,
}

/// Register values of one family's set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// STM32F4 or F7: PLL, flash latency, APB1/APB2 divider codes (RCC_CFGR PPREx),
    /// and whether over-drive is needed (F7 above 180 MHz).
    Stm32f {
        /// The PLL.
        pll: StmPll,
        /// FLASH_ACR LATENCY.
        flash_latency: u32,
        /// RCC_CFGR PPRE1 code.
        ppre1: u32,
        /// RCC_CFGR PPRE2 code.
        ppre2: u32,
        /// F7 only: switch the regulator to over-drive.
        overdrive: bool,
    },
    /// STM32H7.
    Stm32h7 {
        /// PLL1.
        pll: H7Pll,
        /// FLASH_ACR LATENCY.
        flash_latency: u32,
        /// FLASH_ACR WRHIGHFREQ.
        wrhighfreq: u32,
        /// RCC_D1CFGR HPRE code (AXI/AHB clock).
        hpre: u32,
        /// APB prescaler code used for D1PPRE, D2PPRE1, D2PPRE2 and D3PPRE.
        ppre: u32,
    },
    /// RP2040.
    Rp2040 {
        /// PLL_SYS.
        pll: Rp2040Pll,
        /// UART0's baud divisors for [`UART_BAUD`] from clk_peri = clk_sys (the results
        /// transport of a probe-less Pico, the board application's `uart` feature).
        uart: UartDivisors,
    },
    /// Nothing to set.
    None,
}

/// The clock set-up of one board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockPlan {
    /// The family.
    pub family: Family,
    /// The clock the application sets (the profile's `clock_hz`).
    pub hz: u32,
    /// The clock out of reset.
    pub reset_hz: u32,
    /// Set the clock up at start (real boards); false on emulated ones.
    pub configure: bool,
    /// Measure cycles per inference (real boards; QEMU counts instructions instead).
    pub measure_cycles: bool,
    /// The register values.
    pub setup: Setup,
}

/// The clock plan for `board`, whose target is `target_name`.
pub fn plan(board: &Profile) -> Result<ClockPlan, ClockError> {
    let family = Family::of_target(&board.target);
    let fail = |why: String, fix: &str| ClockError {
        board: board.name.clone(),
        family,
        hz: board.clock_hz,
        why,
        fix: fix.to_string(),
    };
    let hz = u32::try_from(board.clock_hz)
        .ok()
        .filter(|&hz| hz > 0)
        .ok_or_else(|| fail("not between 1 Hz and 4.29 GHz".into(), "the chip's clock"))?;
    let setup = match family {
        Family::Stm32f4 => stm32f4(hz).map_err(|why| fail(why, "168000000"))?,
        Family::Stm32f7 => stm32f7(hz).map_err(|why| fail(why, "216000000"))?,
        Family::Stm32h7 => stm32h7(hz).map_err(|why| fail(why, "400000000"))?,
        Family::Rp2040 => Setup::Rp2040 {
            pll: rp2040_pll(hz).map_err(|why| fail(why, "125000000"))?,
            uart: uart_divisors(hz, UART_BAUD).map_err(|why| fail(why, "125000000"))?,
        },
        Family::Nrf51 if hz != 16_000_000 => {
            return Err(fail(
                "the nRF51's CPU clock is fixed at 16 MHz".into(),
                "16000000",
            ))
        }
        Family::Nrf51 | Family::Fixed => Setup::None,
    };
    let real = board.runner == Runner::ProbeRs;
    Ok(ClockPlan {
        family,
        hz,
        reset_hz: family.reset_hz().unwrap_or(hz),
        configure: real,
        measure_cycles: real,
        setup,
    })
}

impl ClockPlan {
    /// The clock the application runs at: `hz` when it sets the clock up (or the clock
    /// is fixed), else the reset clock.
    pub fn effective_hz(&self) -> u32 {
        if self.configure || self.setup == Setup::None {
            self.hz
        } else {
            self.reset_hz
        }
    }

    /// The generated `src/board.rs`: integers only, read by the template's `clock.rs`.
    pub fn board_rs(&self, board: &str) -> String {
        let mut s = format!(
            "//! Clock set-up of board {board:?}: register values computed by spikenas-host\n\
             //! (host/src/board_app/clock.rs) from the profile's clock_hz.\n\
             //!\n\
             //! generated by spikenas-host, do not edit.\n\
             #![allow(dead_code)]\n\n\
             /// Set the clock up at start (false on emulated boards: QEMU does not model the clock tree).\n\
             pub const CONFIGURE: bool = {};\n\
             /// Measure cycles per inference (real boards).\n\
             pub const MEASURE_CYCLES: bool = {};\n\
             /// The clock the application sets up, in Hz.\n\
             pub const CLOCK_HZ: u32 = {};\n\
             /// The clock out of reset, in Hz.\n\
             pub const RESET_HZ: u32 = {};\n",
            self.configure, self.measure_cycles, self.hz, self.reset_hz
        );
        let mut consts: Vec<(&str, u32)> = Vec::new();
        match self.setup {
            Setup::Stm32f {
                pll,
                flash_latency,
                ppre1,
                ppre2,
                overdrive,
            } => consts.extend([
                ("PLL_M", pll.m),
                ("PLL_N", pll.n),
                ("PLL_P", pll.p),
                ("PLL_Q", pll.q),
                ("FLASH_LATENCY", flash_latency),
                ("PPRE1", ppre1),
                ("PPRE2", ppre2),
                ("OVERDRIVE", overdrive as u32),
            ]),
            Setup::Stm32h7 {
                pll,
                flash_latency,
                wrhighfreq,
                hpre,
                ppre,
            } => consts.extend([
                ("PLL_M", pll.m),
                ("PLL_N", pll.n),
                ("PLL_P", pll.p),
                ("PLL_RANGE", pll.range),
                ("FLASH_LATENCY", flash_latency),
                ("WRHIGHFREQ", wrhighfreq),
                ("HPRE", hpre),
                ("PPRE", ppre),
            ]),
            Setup::Rp2040 { pll, uart } => consts.extend([
                ("PLL_REFDIV", pll.refdiv),
                ("PLL_FBDIV", pll.fbdiv),
                ("PLL_POSTDIV1", pll.postdiv1),
                ("PLL_POSTDIV2", pll.postdiv2),
                ("UART_BAUD", UART_BAUD),
                ("UART_IBRD", uart.ibrd),
                ("UART_FBRD", uart.fbrd),
            ]),
            Setup::None => {}
        }
        for (name, value) in consts {
            let _ = writeln!(s, "pub const {name}: u32 = {value};");
        }
        s
    }
}

const MHZ: u64 = 1_000_000;

/// RCC_CFGR PPREx code for dividing by `div` (1, 2, 4, 8, 16): RM0090 / RM0385 / RM0433
/// (`0xx` = /1, `100` = /2, ... `111` = /16).
fn ppre_code(div: u64) -> u32 {
    match div {
        0 | 1 => 0,
        d => 0b100 | (d.trailing_zeros() - 1),
    }
}

/// RCC_D1CFGR HPRE code for dividing by `div` (1, 2, 4, 8, 16): RM0433 (`0xxx` = /1,
/// `1000` = /2, `1001` = /4, `1010` = /8, `1011` = /16).
fn hpre_code(div: u64) -> u32 {
    match div {
        0 | 1 => 0,
        d => 0b1000 | (d.trailing_zeros() - 1),
    }
}

/// The smallest power-of-two divider (1..=16) that brings `hz` down to `max_hz`.
fn bus_divider(hz: u64, max_hz: u64) -> u64 {
    let mut d = 1;
    while hz > max_hz * d && d < 16 {
        d *= 2;
    }
    d
}

/// STM32F4/F7 PLL from HSI 16 MHz: VCO input 2 MHz (RM0090/RM0385 recommend 2 MHz to
/// limit jitter; 1 MHz if needed), the lowest VCO that gives `hz` exactly, and Q for
/// 48 MHz (or the nearest below).
fn stm_pll(hz: u64, vco_min: u64, vco_max: u64) -> Result<StmPll, String> {
    const HSI: u64 = 16 * MHZ;
    for m in [8u64, 16] {
        let vco_in = HSI / m;
        for p in [2u64, 4, 6, 8] {
            let vco = hz * p;
            if vco % vco_in != 0 || !(vco_min..=vco_max).contains(&vco) {
                continue;
            }
            let n = vco / vco_in;
            if !(50..=432).contains(&n) {
                continue;
            }
            let q = vco.div_ceil(48 * MHZ).clamp(2, 15);
            return Ok(StmPll {
                m: m as u32,
                n: n as u32,
                p: p as u32,
                q: q as u32,
            });
        }
    }
    Err(format!(
        "no PLL factors give it exactly from the 16 MHz HSI (VCO {}-{} MHz, P 2/4/6/8)",
        vco_min / MHZ,
        vco_max / MHZ
    ))
}

/// FLASH_ACR LATENCY for the STM32F405 at 2.7-3.6 V: one wait state per 30 MHz of HCLK
/// (RM0090 table 10: 0 WS up to 30 MHz, ..., 5 WS up to 168 MHz).
pub fn stm32f4_wait_states(hclk: u64) -> u32 {
    (hclk.saturating_sub(1) / (30 * MHZ)) as u32
}

/// FLASH_ACR LATENCY for the STM32F746 at 2.7-3.6 V (RM0385 table 5: 0 WS up to 30 MHz,
/// one more per 30 MHz, 7 WS up to 216 MHz).
pub fn stm32f7_wait_states(hclk: u64) -> u32 {
    (hclk.saturating_sub(1) / (30 * MHZ)) as u32
}

/// FLASH_ACR (LATENCY, WRHIGHFREQ) for the STM32H743 at VOS1, by AXI clock
/// (RM0433 table 17).
pub fn stm32h7_wait_states(aclk: u64) -> (u32, u32) {
    match aclk / MHZ {
        0..70 => (0, 0),
        70..140 => (1, 1),
        140..185 => (2, 1),
        185..210 => (2, 2),
        _ => (3, 2),
    }
}

fn stm32f4(hz: u32) -> Result<Setup, String> {
    let hz = u64::from(hz);
    if hz > 168 * MHZ {
        return Err("above the STM32F405's 168 MHz maximum (DS8626)".into());
    }
    let pll = stm_pll(hz, 192 * MHZ, 432 * MHZ)?;
    Ok(Setup::Stm32f {
        pll,
        flash_latency: stm32f4_wait_states(hz),
        ppre1: ppre_code(bus_divider(hz, 42 * MHZ)),
        ppre2: ppre_code(bus_divider(hz, 84 * MHZ)),
        overdrive: false,
    })
}

fn stm32f7(hz: u32) -> Result<Setup, String> {
    let hz = u64::from(hz);
    if hz > 216 * MHZ {
        return Err("above the STM32F746's 216 MHz maximum (DS10916)".into());
    }
    let pll = stm_pll(hz, 100 * MHZ, 432 * MHZ)?;
    Ok(Setup::Stm32f {
        pll,
        flash_latency: stm32f7_wait_states(hz),
        ppre1: ppre_code(bus_divider(hz, 54 * MHZ)),
        ppre2: ppre_code(bus_divider(hz, 108 * MHZ)),
        // Scale 1 without over-drive stops at 180 MHz (RM0385 4.1.4).
        overdrive: hz > 180 * MHZ,
    })
}

/// STM32H7 PLL1 from HSI 64 MHz, wide VCO (192-836 MHz; reference 2-16 MHz).
fn h7_pll(hz: u64) -> Result<H7Pll, String> {
    const HSI: u64 = 64 * MHZ;
    for m in 4..=32u64 {
        let reference = HSI / m;
        if HSI % m != 0 || !(2 * MHZ..=16 * MHZ).contains(&reference) {
            continue;
        }
        for p in (2..=128u64).step_by(2) {
            let vco = hz * p;
            if vco % reference != 0 || !(192 * MHZ..=836 * MHZ).contains(&vco) {
                continue;
            }
            let n = vco / reference;
            if !(4..=512).contains(&n) {
                continue;
            }
            let range = match reference / MHZ {
                ..4 => 1,
                4..8 => 2,
                _ => 3,
            };
            return Ok(H7Pll {
                m: m as u32,
                n: n as u32,
                p: p as u32,
                range,
            });
        }
    }
    Err("no PLL1 factors give it exactly from the 64 MHz HSI (VCO 192-836 MHz)".into())
}

fn stm32h7(hz: u32) -> Result<Setup, String> {
    let hz = u64::from(hz);
    if hz > 400 * MHZ {
        return Err(
            "above 400 MHz, the VOS1 maximum (480 MHz needs VOS0 and silicon revision V, \
             which this set-up does not do)"
                .into(),
        );
    }
    let pll = h7_pll(hz)?;
    // AXI/AHB at most 200 MHz, APB at most 100 MHz (DS12110 table 23 / RM0433 8.5.6).
    let hdiv = bus_divider(hz, 200 * MHZ);
    let aclk = hz / hdiv;
    let (flash_latency, wrhighfreq) = stm32h7_wait_states(aclk);
    Ok(Setup::Stm32h7 {
        pll,
        flash_latency,
        wrhighfreq,
        hpre: hpre_code(hdiv),
        ppre: ppre_code(bus_divider(aclk, 100 * MHZ)),
    })
}

/// RP2040 PLL_SYS from the 12 MHz crystal as the pico-sdk's vcocalc chooses it: the
/// highest VCO (750-1600 MHz) first, then the largest POSTDIV1 (>= POSTDIV2).
pub fn rp2040_pll(hz: u32) -> Result<Rp2040Pll, String> {
    const XOSC: u64 = 12 * MHZ;
    let hz = u64::from(hz);
    if hz > 133 * MHZ {
        return Err("above the RP2040's rated 133 MHz (datasheet 1.1)".into());
    }
    for fbdiv in (16..=320u64).rev() {
        let vco = XOSC * fbdiv;
        if !(750 * MHZ..=1600 * MHZ).contains(&vco) {
            continue;
        }
        for postdiv1 in (1..=7u64).rev() {
            for postdiv2 in (1..=postdiv1).rev() {
                if vco == hz * postdiv1 * postdiv2 {
                    return Ok(Rp2040Pll {
                        refdiv: 1,
                        fbdiv: fbdiv as u32,
                        postdiv1: postdiv1 as u32,
                        postdiv2: postdiv2 as u32,
                    });
                }
            }
        }
    }
    Err("no PLL_SYS factors give it exactly from the 12 MHz crystal".into())
}

/// The baud rate of the RP2040's results UART (8N1): what USB-UART adapters and the
/// Raspberry Pi Debug Probe's UART default to.
pub const UART_BAUD: u32 = 115_200;

/// A PL011 UART's baud rate divisor (RP2040 datasheet 4.2.7.1): UARTCLK / (16 x baud)
/// as a 16-bit integer part (UARTIBRD) and a 6-bit fraction in 64ths (UARTFBRD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UartDivisors {
    /// UARTIBRD, 1..=65535.
    pub ibrd: u32,
    /// UARTFBRD, 0..=63.
    pub fbrd: u32,
}

impl UartDivisors {
    /// The baud rate these divisors give from `uart_clk_hz`: UARTCLK x 4 / (64 x IBRD + FBRD).
    pub fn baud(self, uart_clk_hz: u32) -> f64 {
        4.0 * f64::from(uart_clk_hz) / f64::from(64 * self.ibrd + self.fbrd)
    }
}

/// The divisors for `baud` from a UART clock of `uart_clk_hz`, the divisor rounded to the
/// nearest 64th (the datasheet's `FBRD = int(fraction x 64 + 0.5)`, with a carry into
/// IBRD where the fraction rounds up to a whole). Refused when the divisor is outside
/// 1..=65535 or the rate comes out more than 2% off (a UART frame tolerates a few per
/// cent between both ends).
pub fn uart_divisors(uart_clk_hz: u32, baud: u32) -> Result<UartDivisors, String> {
    if baud == 0 {
        return Err("a baud rate of 0".into());
    }
    // Divisor in 64ths: 64 x UARTCLK / (16 x baud) = 4 x UARTCLK / baud, rounded.
    let sixty_fourths = (8 * u64::from(uart_clk_hz) / u64::from(baud)).div_ceil(2);
    let (ibrd, fbrd) = (sixty_fourths >> 6, sixty_fourths & 63);
    if !(1..=65535).contains(&ibrd) || (ibrd == 65535 && fbrd != 0) {
        return Err(format!(
            "the UART divisor for {baud} baud from {uart_clk_hz} Hz is outside the PL011's \
             1 to 65535 (RP2040 datasheet 4.2.7.1)"
        ));
    }
    let divisors = UartDivisors {
        ibrd: ibrd as u32,
        fbrd: fbrd as u32,
    };
    let error = (divisors.baud(uart_clk_hz) - f64::from(baud)).abs() / f64::from(baud);
    if error > 0.02 {
        return Err(format!(
            "{baud} baud from {uart_clk_hz} Hz comes out {:.1}% off",
            100.0 * error
        ));
    }
    Ok(divisors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boards::Catalog;

    /// RP2040 datasheet 4.2.7.1, the worked example: 115200 baud from a 125 MHz UARTCLK
    /// is a divisor of 67.817, so IBRD 67 and FBRD int(0.817 x 64 + 0.5) = 52, for an
    /// actual rate of 115207 baud (4 x 125e6 / (64 x 67 + 52) = 115207.37).
    #[test]
    fn uart_divisors_follow_the_datasheet_example() {
        let d = uart_divisors(125_000_000, 115_200).unwrap();
        assert_eq!((d.ibrd, d.fbrd), (67, 52));
        assert_eq!(d.baud(125_000_000).round(), 115_207.0);
        // The same as the pico-sdk's uart_set_baudrate for the Pico's other clocks.
        assert_eq!(
            uart_divisors(133_000_000, 115_200).unwrap(),
            UartDivisors { ibrd: 72, fbrd: 10 }
        );
        assert_eq!(
            uart_divisors(12_000_000, 115_200).unwrap(),
            UartDivisors { ibrd: 6, fbrd: 33 }
        );
        // A fraction that rounds up to a whole carries into IBRD instead of giving FBRD 64
        // (6399 Hz for 100 baud is a divisor of 3.9994, 63.96 64ths past 3).
        assert_eq!(
            uart_divisors(6_399, 100).unwrap(),
            UartDivisors { ibrd: 4, fbrd: 0 }
        );
        for (clk, baud) in [(1_000_000, 115_200), (125_000_000, 0), (125_000_000, 10)] {
            assert!(uart_divisors(clk, baud).is_err(), "{clk} {baud}");
        }
        // The generated board.rs carries them for the Pico.
        let catalog = Catalog::discover().unwrap();
        let text = plan(catalog.board("rp2040-pico").unwrap())
            .unwrap()
            .board_rs("rp2040-pico");
        for line in [
            "pub const UART_BAUD: u32 = 115200;",
            "pub const UART_IBRD: u32 = 67;",
            "pub const UART_FBRD: u32 = 52;",
        ] {
            assert!(text.contains(line), "{text}");
        }
    }

    #[test]
    fn shipped_boards_get_the_reference_settings() {
        let catalog = Catalog::discover().unwrap();
        let plan_of = |name: &str| plan(catalog.board(name).unwrap()).unwrap();
        // STM32F405 at 168 MHz: HSI/8 = 2 MHz, x168 = 336 MHz, /2; Q 7 -> 48 MHz;
        // 5 WS; APB1 /4 (42 MHz), APB2 /2 (84 MHz). Emulated: not configured.
        let f4 = plan_of("netduinoplus2");
        assert_eq!(
            f4.setup,
            Setup::Stm32f {
                pll: StmPll {
                    m: 8,
                    n: 168,
                    p: 2,
                    q: 7
                },
                flash_latency: 5,
                ppre1: 0b101,
                ppre2: 0b100,
                overdrive: false,
            }
        );
        assert!(!f4.configure && !f4.measure_cycles);
        assert_eq!(f4.effective_hz(), 16_000_000);
        // STM32F746 at 216 MHz: x216 = 432 MHz, /2, Q 9 -> 48 MHz; 7 WS; over-drive.
        let f7 = plan_of("stm32f746g-disco");
        assert_eq!(
            f7.setup,
            Setup::Stm32f {
                pll: StmPll {
                    m: 8,
                    n: 216,
                    p: 2,
                    q: 9
                },
                flash_latency: 7,
                ppre1: 0b101,
                ppre2: 0b100,
                overdrive: true,
            }
        );
        assert!(f7.configure && f7.measure_cycles);
        assert_eq!(f7.effective_hz(), 216_000_000);
        // STM32H743 at 400 MHz: HSI/4 = 16 MHz (range 8-16), x50 = 800 MHz, /2;
        // AXI 200 MHz -> 2 WS, WRHIGHFREQ 2; APB 100 MHz.
        let h7 = plan_of("nucleo-h743zi");
        assert_eq!(
            h7.setup,
            Setup::Stm32h7 {
                pll: H7Pll {
                    m: 4,
                    n: 50,
                    p: 2,
                    range: 3
                },
                flash_latency: 2,
                wrhighfreq: 2,
                hpre: 0b1000,
                ppre: 0b100,
            }
        );
        // RP2040 at 125 MHz: the pico-sdk's 1500 MHz / 6 / 2.
        let rp = plan_of("rp2040-pico");
        assert_eq!(
            rp.setup,
            Setup::Rp2040 {
                pll: Rp2040Pll {
                    refdiv: 1,
                    fbdiv: 125,
                    postdiv1: 6,
                    postdiv2: 2
                },
                uart: UartDivisors { ibrd: 67, fbrd: 52 },
            }
        );
        assert_eq!(plan_of("microbit").setup, Setup::None);
        assert_eq!(plan_of("microbit").effective_hz(), 16_000_000);
        assert_eq!(plan_of("mps2-an386").effective_hz(), 25_000_000);
    }

    #[test]
    fn wait_states_follow_the_reference_manual_tables() {
        // RM0090 table 10, 2.7-3.6 V: (HCLK upper bound MHz, WS).
        for (mhz, ws) in [
            (30, 0),
            (31, 1),
            (60, 1),
            (90, 2),
            (120, 3),
            (150, 4),
            (168, 5),
        ] {
            assert_eq!(stm32f4_wait_states(mhz * MHZ), ws, "F4 {mhz} MHz");
        }
        // RM0385 table 5, 2.7-3.6 V.
        for (mhz, ws) in [
            (30, 0),
            (60, 1),
            (90, 2),
            (120, 3),
            (150, 4),
            (180, 5),
            (210, 6),
            (216, 7),
        ] {
            assert_eq!(stm32f7_wait_states(mhz * MHZ), ws, "F7 {mhz} MHz");
        }
        // RM0433 table 17, VOS1.
        for (mhz, ws) in [
            (64, (0, 0)),
            (100, (1, 1)),
            (160, (2, 1)),
            (200, (2, 2)),
            (220, (3, 2)),
        ] {
            assert_eq!(stm32h7_wait_states(mhz * MHZ), ws, "H7 {mhz} MHz");
        }
    }

    #[test]
    fn pll_factors_reproduce_the_clock_within_their_limits() {
        for mhz in [24u64, 48, 72, 84, 96, 100, 120, 144, 168] {
            let Setup::Stm32f { pll, .. } = stm32f4(mhz as u32 * 1_000_000).unwrap() else {
                panic!()
            };
            let vco = 16 * MHZ / u64::from(pll.m) * u64::from(pll.n);
            assert_eq!(vco / u64::from(pll.p), mhz * MHZ, "{mhz} MHz: {pll:?}");
            assert!((192 * MHZ..=432 * MHZ).contains(&vco), "{pll:?}");
            assert!(vco / u64::from(pll.q) <= 48 * MHZ, "{pll:?}");
        }
        for mhz in [64u64, 100, 200, 240, 400] {
            let Setup::Stm32h7 { pll, .. } = stm32h7(mhz as u32 * 1_000_000).unwrap() else {
                panic!()
            };
            let vco = 64 * MHZ / u64::from(pll.m) * u64::from(pll.n);
            assert_eq!(vco / u64::from(pll.p), mhz * MHZ, "{mhz} MHz: {pll:?}");
            assert!(pll.p % 2 == 0 && (192 * MHZ..=836 * MHZ).contains(&vco));
        }
        for mhz in [48u32, 100, 120, 125, 133] {
            let pll = rp2040_pll(mhz * 1_000_000).unwrap();
            let vco = 12 * MHZ * u64::from(pll.fbdiv);
            assert_eq!(
                vco / u64::from(pll.postdiv1 * pll.postdiv2),
                u64::from(mhz) * MHZ
            );
            assert!(pll.postdiv1 >= pll.postdiv2);
        }
    }

    #[test]
    fn impossible_clocks_are_refused_with_a_fix() {
        let catalog = Catalog::discover().unwrap();
        let mut board = catalog.board("stm32f746g-disco").unwrap().clone();
        board.clock_hz = 250_000_000;
        let err = plan(&board).unwrap_err().to_string();
        assert!(
            err.contains("250000000") && err.contains("216000000"),
            "{err}"
        );
        board.clock_hz = 100_000_001;
        assert!(plan(&board).unwrap_err().why.contains("no PLL factors"));
        let mut nrf = catalog.board("microbit").unwrap().clone();
        nrf.clock_hz = 32_000_000;
        assert!(plan(&nrf).unwrap_err().to_string().contains("16000000"));
        let mut rp = catalog.board("rp2040-pico").unwrap().clone();
        rp.clock_hz = 200_000_000;
        assert!(plan(&rp).unwrap_err().to_string().contains("133 MHz"));
    }

    #[test]
    fn board_rs_holds_only_integers_and_flags() {
        let catalog = Catalog::discover().unwrap();
        let plan = plan(catalog.board("nucleo-h743zi").unwrap()).unwrap();
        let text = plan.board_rs("x\"*/\n//! injected");
        assert!(text.contains("pub const CONFIGURE: bool = true;"));
        assert!(text.contains("pub const PLL_N: u32 = 50;"));
        assert!(!text.contains("\n//! injected"), "{text}");
    }
}
