//! Datasets (in progress)
