//! Process-wide CPU settings that make SNN training fast on a small machine.
//!
//! Two costs dominated a training step on 2 cores before these settings (measured with
//! `perf` on `train --dataset digits`, 8x8 images, batch 64, T 4):
//!
//! - candle 0.11 runs large element-wise ops on its own barrier pool, beside rayon's
//!   pool that the fast kernels use. On 2 cores the pools' threads (and the caller, which
//!   spins without limit until the pool's worker has finished) fight for the cores: 68%
//!   of all cycles were spin loops. With `CANDLE_NUM_THREADS=1` candle's element-wise
//!   ops run inline on the calling thread: 3.6x faster steps. Since the fused kernels
//!   (conv -> batch-norm, conv -> LIF, LIF with pooling) candle runs far fewer large
//!   element-wise ops, and the difference has shrunk: Fashion-MNIST training at T = 2
//!   is within 3% either way, the `train_step` bench's network step at T = 4 about 10%
//!   faster with 2. 1 stays the default: never much slower, and immune to the spinning.
//! - Every tensor of a few hundred KiB or more was a fresh `mmap` from glibc's malloc,
//!   so each op paid a page fault per 4 KiB of its output (20% of the time in the
//!   kernel). Raising glibc's mmap and trim thresholds keeps freed buffers on the heap
//!   for reuse: a further 1.6x.

use std::sync::Once;

/// The mmap threshold set by [`tune_cpu_runtime`]: blocks below it come from the heap
/// (32 MiB, the largest glibc accepts on 64-bit targets).
pub const MMAP_THRESHOLD: i32 = 32 << 20;

static TUNE: Once = Once::new();

/// Applies the settings above once per process (later calls do nothing):
/// sets `CANDLE_NUM_THREADS=1` unless the environment already sets it, and, with
/// glibc, raises malloc's mmap threshold to [`MMAP_THRESHOLD`] and disables trimming.
///
/// Call it before the first large candle op: candle reads `CANDLE_NUM_THREADS` when it
/// starts its barrier pool, at the first element-wise op on 64 Ki elements or more.
/// [`crate::snn::Network::init`] and [`crate::train::train`] call it.
pub fn tune_cpu_runtime() {
    TUNE.call_once(|| {
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters; it takes the allocator's
        // own lock and is safe to call at any time from any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    });
}

/// True once [`tune_cpu_runtime`] has run in this process.
pub fn cpu_runtime_tuned() -> bool {
    TUNE.is_completed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_runs_once_and_keeps_a_user_setting() {
        tune_cpu_runtime();
        assert!(cpu_runtime_tuned());
        // Either the user's value or ours; never unset after tuning.
        assert!(std::env::var_os("CANDLE_NUM_THREADS").is_some());
        tune_cpu_runtime();
        // Big allocations still work (served from the heap now).
        let v = vec![1.0f32; 1 << 22];
        assert_eq!(v.iter().sum::<f32>(), (1 << 22) as f32);
    }
}
