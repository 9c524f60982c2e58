//! Optional defmt logging (feature `defmt`, for real boards): the clock, every image's
//! result and timing, and the end, over RTT (`defmt-rtt`). `probe-rs run` decodes them on
//! the host from the ELF's `.defmt` table (`spikenas-host flash --defmt`). The semihosting
//! protocol of main.rs is unchanged, so `validate` reads the same lines either way.
//!
//! Without the feature every function here is empty and the image has no RTT buffer.

#[cfg(feature = "defmt")]
use defmt_rtt as _;

/// The clock in effect.
#[inline(always)]
pub fn clock(hz: u32, how: &str) {
    #[cfg(feature = "defmt")]
    defmt::info!("clock {=u32} Hz ({=str})", hz, how);
    #[cfg(not(feature = "defmt"))]
    let _ = (hz, how);
}

/// One image: its result, and the cycles it took (0 where the board has no counter).
#[inline(always)]
pub fn image(index: usize, class: usize, label: u8, spikes: u64, synops: u64, cycles: u64) {
    #[cfg(feature = "defmt")]
    defmt::info!(
        "image {=usize}: class {=usize} (label {=u8}), {=u64} spikes, {=u64} synops, {=u64} cycles",
        index,
        class,
        label,
        spikes,
        synops,
        cycles
    );
    #[cfg(not(feature = "defmt"))]
    let _ = (index, class, label, spikes, synops, cycles);
}

/// The end of the run.
#[inline(always)]
pub fn done(images: usize, correct: usize) {
    #[cfg(feature = "defmt")]
    defmt::info!("done: {=usize} of {=usize} images correct", correct, images);
    #[cfg(not(feature = "defmt"))]
    let _ = (images, correct);
}

/// A failure the device reports before it stops.
#[inline(always)]
pub fn error(what: core::fmt::Arguments) {
    #[cfg(feature = "defmt")]
    defmt::error!("{}", defmt::Display2Format(&what));
    #[cfg(not(feature = "defmt"))]
    let _ = what;
}
