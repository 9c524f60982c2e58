//! The end-to-end tests across the spikenas crates, one test binary (`--test e2e`):
//! each module is one area, and `common` holds the helpers they share. Run one area with a filter on its module, e.g.
//! `cargo test -p spikenas-tests --test e2e -- device::`.
//!
//! - `search`: the search on the host, for every board profile.
//! - `pipeline`: search to device in QEMU, the whole promise.
//! - `quant`: float against int8 on Fashion-MNIST.
//! - `interop`: the Python `nir` and `safetensors` clients read what spikenas writes.
//! - `memory_fit`: the memory model against the linker.
//! - `device`: generated firmware in QEMU against the host; the opt-in hardware tests.

mod common;

mod device;
mod interop;
mod memory_fit;
mod pipeline;
mod quant;
mod search;
