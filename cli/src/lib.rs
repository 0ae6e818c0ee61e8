//! The tools built on the `lossgraph` library: the benchmark harness behind
//! `lossgraph bench` and the criterion benches ([`bench`]), the demo behind
//! `lossgraph demo` ([`demo`]) with its embedded dataset ([`digits`]) and
//! history plot ([`plot`]); the Keras guide's VAE ([`vae`], `lossgraph demo vae`). The `lossgraph` binary (`src/main.rs`, `src/cli/`)
//! is a thin shell over these and the library.
//!
//! Everything here uses only the public API of `lossgraph`,
//! `lossgraph-ir` and `lossgraph-runtime`.

pub mod bench;
pub mod demo;
pub mod digits;
pub mod plot;
pub mod vae;
