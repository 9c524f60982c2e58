//! spikenas-firmware: the `no_std` integer runtime for spiking neural networks.
//!
//! This crate is the single numeric truth of spikenas: the host evaluates quantized
//! networks by calling these kernels, and the board application links the same code.
#![cfg_attr(not(test), no_std)]

pub mod lif;
