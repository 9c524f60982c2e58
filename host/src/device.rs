//! Choosing the compute device: `cpu`, or `cuda[:N]` in a build with the `cuda` feature.

use std::fmt;
use std::str::FromStr;

/// A device a user can ask for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The CPU (candle's CPU backend, rayon threads).
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal.
    Cuda(usize),
}

/// Errors choosing a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Not `cpu` or `cuda[:N]`.
    #[error("unknown device `{0}`: use `cpu` or `cuda` (or `cuda:N` for GPU N)")]
    Unknown(String),
    /// CUDA asked for in a build without the feature.
    #[error("`--device cuda` needs a build with CUDA support: rebuild with `cargo build --release --features cuda` (needs the CUDA toolkit); this build runs on the CPU only")]
    NoCudaSupport,
    /// The GPU could not be opened.
    #[error("cannot open CUDA device {0}: {1}")]
    Cuda(usize, candle_core::Error),
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| DeviceError::Unknown(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// Open the device. Without the `cuda` feature, CUDA is a clear error, never a
    /// silent fall-back to the CPU.
    pub fn open(self) -> Result<candle_core::Device, DeviceError> {
        match self {
            DeviceChoice::Cpu => Ok(candle_core::Device::Cpu),
            DeviceChoice::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    return Err(DeviceError::NoCudaSupport);
                }
                candle_core::Device::new_cuda(n).map_err(|e| DeviceError::Cuda(n, e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_open() {
        assert_eq!(
            "cuda:1".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(1)
        );
        assert!("tpu"
            .parse::<DeviceChoice>()
            .unwrap_err()
            .to_string()
            .contains("`tpu`"));
        assert!(DeviceChoice::Cpu.open().unwrap().is_cpu());
        #[cfg(not(feature = "cuda"))]
        assert!(matches!(
            DeviceChoice::Cuda(0).open(),
            Err(DeviceError::NoCudaSupport)
        ));
    }
}
