//! No library code of its own: Cargo wants a library or a binary in every package.
//! The end-to-end tests are the one test binary in `tests/e2e/`
//! (`cargo test -p spikenas-tests --test e2e`), and the helpers they share are its
//! `common` module.
