//! The sizes of the network description's own types ([`crate::Network`], [`crate::Stage`],
//! [`crate::Edge`]) on the device, for the host's flash estimate.
//!
//! Generated firmware writes a network as `static` items of these types, so their flash
//! is `size_of` of each. The host runs on a 64-bit machine and the device is 32-bit,
//! where every `usize` and every slice (a pointer and a length) is half as wide; so the
//! host cannot take `size_of` of the types themselves. It takes `size_of` of a *mirror*
//! of them instead: the same fields, in the same order and nesting, with every
//! pointer-sized part a type parameter ([`mirror`]). Instantiated with the native
//! widths the mirror must equal the real types (checked at compile time on every
//! target); on a 32-bit target that is the 32-bit instantiation, so every device build
//! of this crate checks the device figures as well. [`DEVICE`] is the 32-bit one.

use core::mem::size_of;
use core::num::{NonZeroU32, NonZeroUsize};

use crate::network::{Edge, Network, Stage};

/// Flash bytes of the description's types on one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorBytes {
    /// One [`crate::Edge`] (an element of a cell's `edges` slice).
    pub edge: usize,
    /// One [`crate::Stage`] (an element of the network's `stages` slice).
    pub stage: usize,
    /// The [`crate::Network`].
    pub network: usize,
}

impl DescriptorBytes {
    /// Flash of a description with `stages` stages and `edges` edges in all.
    pub const fn total(&self, stages: usize, edges: usize) -> usize {
        self.edge * edges + self.stage * stages + self.network
    }
}

/// The sizes on a 32-bit device (every Cortex-M).
pub const DEVICE: DescriptorBytes = mirror::sizes::<NonZeroU32, u32>();

/// The sizes on the target this crate is compiled for (the real types).
pub const NATIVE: DescriptorBytes = DescriptorBytes {
    edge: size_of::<Edge<'static>>(),
    stage: size_of::<Stage<'static>>(),
    network: size_of::<Network<'static>>(),
};

// The mirror is the real layout: on a 64-bit host, and on a 32-bit device (where this
// also proves `DEVICE`).
const _: () = {
    let m = mirror::sizes::<NonZeroUsize, usize>();
    assert!(m.edge == NATIVE.edge && m.stage == NATIVE.stage && m.network == NATIVE.network);
};
#[cfg(target_pointer_width = "32")]
const _: () = {
    assert!(DEVICE.edge == NATIVE.edge);
    assert!(DEVICE.stage == NATIVE.stage);
    assert!(DEVICE.network == NATIVE.network);
};

/// The description's types with the pointer (`P`, non-null) and `usize` (`W`) parts as
/// type parameters. Keep it in step with `network.rs`, `weights.rs` and `requant.rs`: the
/// compile-time checks above fail when a field changes there and not here.
#[allow(dead_code)]
pub mod mirror {
    use core::mem::size_of;

    use super::DescriptorBytes;
    use crate::lif::Lif;

    /// `&[T]`.
    #[derive(Clone, Copy, Debug)]
    pub struct Slice<P, W> {
        ptr: P,
        len: W,
    }

    /// [`crate::Weights`].
    #[derive(Clone, Copy, Debug)]
    pub enum Weights<P, W> {
        /// `I8`.
        I8(Slice<P, W>),
        /// `I4`.
        I4(Slice<P, W>),
    }

    /// [`crate::Requant`].
    #[derive(Clone, Copy, Debug)]
    pub struct Requant<P, W> {
        mult: Slice<P, W>,
        bias: Slice<P, W>,
        shift: u8,
    }

    /// [`crate::ConvLayer`].
    #[derive(Clone, Copy, Debug)]
    pub struct ConvLayer<P, W> {
        cin: W,
        cout: W,
        k: W,
        weights: Weights<P, W>,
        requant: Requant<P, W>,
    }

    /// [`crate::LinearLayer`].
    #[derive(Clone, Copy, Debug)]
    pub struct LinearLayer<P, W> {
        inputs: W,
        outputs: W,
        weights: Weights<P, W>,
        requant: Requant<P, W>,
    }

    /// [`crate::Op`].
    #[derive(Clone, Copy, Debug)]
    pub enum Op<P, W> {
        /// `Zero`.
        Zero,
        /// `Skip`.
        Skip,
        /// `Conv`.
        Conv {
            /// `lif`.
            lif: Lif,
            /// `conv`.
            conv: ConvLayer<P, W>,
        },
        /// `AvgPool3`.
        AvgPool3,
    }

    /// [`crate::Edge`].
    #[derive(Clone, Copy, Debug)]
    pub struct Edge<P, W> {
        from: u8,
        to: u8,
        op: Op<P, W>,
    }

    /// [`crate::Cell`].
    #[derive(Clone, Copy, Debug)]
    pub struct Cell<P, W> {
        edges: Slice<P, W>,
    }

    /// [`crate::Reduction`].
    #[derive(Clone, Copy, Debug)]
    pub struct Reduction<P, W> {
        bn: Requant<P, W>,
        lif: Lif,
        conv: ConvLayer<P, W>,
    }

    /// [`crate::Stage`].
    #[derive(Clone, Copy, Debug)]
    pub struct Stage<P, W> {
        reduction: Option<Reduction<P, W>>,
        cell: Cell<P, W>,
    }

    /// [`crate::Hidden`].
    #[derive(Clone, Copy, Debug)]
    pub struct Hidden<P, W> {
        fc: LinearLayer<P, W>,
        lif: Lif,
    }

    /// [`crate::Head`].
    #[derive(Clone, Copy, Debug)]
    pub struct Head<P, W> {
        bn: Requant<P, W>,
        lif: Lif,
        hidden: Option<Hidden<P, W>>,
        output: LinearLayer<P, W>,
    }

    /// [`crate::Network`].
    #[derive(Clone, Copy, Debug)]
    pub struct Network<P, W> {
        channels: W,
        height: W,
        width: W,
        input_pool: W,
        timesteps: W,
        stem: ConvLayer<P, W>,
        stages: Slice<P, W>,
        head: Head<P, W>,
        classes: W,
        cluster: W,
    }

    /// The sizes with pointers `P` and `usize` `W`.
    pub const fn sizes<P, W>() -> DescriptorBytes {
        DescriptorBytes {
            edge: size_of::<Edge<P, W>>(),
            stage: size_of::<Stage<P, W>>(),
            network: size_of::<Network<P, W>>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_figures_are_the_measured_ones() {
        // `arm-none-eabi-nm -S` on the EDGES_S*, STAGES and NETWORK statics of built
        // images (the host's ELF tests check the whole estimate against the linker).
        assert_eq!(
            DEVICE,
            DescriptorBytes {
                edge: 56,
                stage: 80,
                network: 196
            }
        );
        assert_eq!(DEVICE.total(2, 6), 56 * 6 + 80 * 2 + 196);
    }
}
