//! NIR export in a build without the `nir` feature: every call says how to get it.

use std::path::Path;

use super::{Graph, NirError};

/// Always [`NirError::NotEnabled`]: this build has no HDF5 writer.
pub fn write(_path: &Path, _graph: &Graph) -> Result<(), NirError> {
    Err(NirError::NotEnabled)
}
