//! The integer network on the device: stamp out a board application for a network
//! ([`codegen`]), build it for the board's Cortex-M target ([`build`]) and measure its
//! sections against the board's regions ([`elf`]), run it in QEMU with an exact
//! instruction count ([`qemu`]), on a real board through probe-rs ([`flash`]) or, for a
//! Pico without a probe, from its UF2 drive and a serial device ([`serial`]), and check
//! that every device prediction and spike count equals the host's ([`validate`]).
//!
//! The generated crate (see firmware/template/) reads its test images from the host
//! ([`testset`]), runs `spikenas_firmware::Network::infer` on each and prints one line
//! per image over semihosting (plain text, not defmt: semihosting text needs no decoder
//! on the host and works the same under QEMU and probe-rs), or the same lines over a
//! UART (the `uart` build, RP2040).
//!
//! Every generated crate carries the runtime's sources ([`vendor`]) and the binary carries
//! the template ([`template::Template`]), so neither needs the spikenas checkout.
//!
//! [`synthetic`] builds networks with deterministic pseudo-random weights of any
//! architecture, so the whole device path can be checked without a trained model.

pub mod build;
pub mod clock;
pub mod codegen;
pub mod elf;
mod error;
pub mod flash;
pub mod metadata;
pub mod qemu;
pub mod serial;
pub mod synthetic;
pub mod template;
pub mod testset;
pub mod uf2;
pub mod validate;
pub mod vendor;

pub use build::{build, BuildReport, RegionReport};
pub use codegen::{generate, generate_with, GeneratedCrate};
pub use metadata::{CrateInfo, CrateModel, CRATE_INFO_FILE, MODEL_INFO_FILE};
pub use error::FirmwareError;
pub use testset::TestSet;
pub use validate::{DeviceRun, ImageResult};
