//! The board application: the host's side of the integer network on the device. Not
//! the firmware runtime (the `spikenas-firmware` crate, `spikenas_firmware`, which
//! every board application vendors and runs), but what the host does around it: stamp
//! out a board application (the `spikenas-app` crate) for a network ([`codegen`], its
//! folder's metadata in [`metadata`]), build it for the board's Cortex-M target
//! ([`build`]) and measure its sections against the board's regions ([`elf`]), run it in
//! QEMU with an exact instruction count ([`qemu`]), on a real board through probe-rs
//! ([`flash`]) or, for a Pico without a probe, from its UF2 drive ([`uf2`]) and a serial
//! device ([`serial`]), and check on the device that every prediction and spike count
//! equals the host's ([`on_device`], what the `validate` command runs).
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
pub mod on_device;
pub mod qemu;
pub mod serial;
pub mod synthetic;
pub mod template;
pub mod testset;
pub mod uf2;
pub mod vendor;

pub use build::{build, BuildReport, RegionReport};
pub use codegen::{generate, generate_with, GeneratedCrate};
pub use error::BoardAppError;
pub use metadata::{CrateInfo, CrateModel, CRATE_INFO_FILE, MODEL_INFO_FILE};
pub use on_device::{DeviceRun, ImageResult};
pub use testset::TestSet;
