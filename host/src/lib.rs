//! spikenas host library: datasets, the spiking network in candle, training, board
//! profiles, the memory model, the SpikeNAS search, quantization and export.
//!
//! The `spikenas-host` binary is a thin layer over these modules.

pub mod analysis;
pub mod arch;
pub mod assets;
pub mod boards;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod board_app;
pub mod integrity;
pub mod interrupt;
pub mod kernels;
pub mod latency;
pub mod memory;
pub mod nir;
pub mod output;
pub mod pipeline;
pub mod quant;
pub mod report;
pub mod rng;
pub mod search;
pub mod session;
pub mod snn;
pub mod stats;
pub mod train;
