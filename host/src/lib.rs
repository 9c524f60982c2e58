//! spikenas host library: datasets, the spiking network in candle, training, board
//! profiles, the memory model, the SpikeNAS search, quantization and the model file,
//! the board application, and the jobs that chain them.
//!
//! The pipeline, in the order a `search` runs it: [`data`] -> [`search`] (with
//! [`memory`] and [`latency`] for the board's limits) -> [`train`] -> [`quant`]
//! (`model.safetensors`: [`quant::export`]) -> [`board_app`] (the firmware crate:
//! generate, build, run, validate on the device). [`jobs`] holds the jobs the
//! `spikenas-host` binary runs (search, train, quantize, infer, analyze, generate);
//! the binary is a thin layer over them.

pub mod arch;
pub mod assets;
pub mod board_app;
pub mod boards;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod integrity;
pub mod interrupt;
pub mod jobs;
pub mod kernels;
pub mod latency;
pub mod memory;
pub mod nir;
pub mod output;
pub mod quant;
pub mod report;
pub mod rng;
pub mod search;
pub mod snn;
pub mod stats;
pub mod train;
