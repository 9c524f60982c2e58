//! The `generate` job for a trained model (also the last step of `search`): the board
//! application for a quantized network, with a test set and the host's integer
//! results on it (what `validate` compares the device against) and the crate's
//! `model.txt` ([`CrateModel`]).

use std::path::Path;

use crate::board_app::on_device::{self, TESTSET_FILE};
use crate::board_app::{self, BoardAppError, CrateModel, GeneratedCrate, TestSet};
use crate::boards::{Profile, Targets};
use crate::data::Split;
use crate::quant::QuantizedNetwork;

use super::JobError;

/// Write the board application for `q` into `dir`, with the first `images` test images
/// and the host's integer results on them (what `validate` compares against).
pub fn write_board_app(
    q: &QuantizedNetwork,
    board: &Profile,
    targets: &Targets,
    dir: &Path,
    test: &Split,
    images: usize,
) -> Result<GeneratedCrate, JobError> {
    let n = images.min(test.len());
    let set = TestSet::new(
        test.image_len(),
        test.images[..n * test.image_len()].to_vec(),
        test.labels[..n].to_vec(),
    )
    .map_err(|why| BoardAppError::TestSet {
        path: dir.join(TESTSET_FILE),
        why,
    })?;
    let krate = q.with_firmware(|fw| -> Result<_, BoardAppError> {
        let krate = board_app::generate(fw, board, targets, dir)?;
        on_device::write_test_data(dir, fw, &set)?;
        Ok(krate)
    })?;
    CrateModel {
        arch: q.arch,
        input: q.input,
    }
    .write(dir)?;
    Ok(krate)
}
