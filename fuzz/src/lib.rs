//! In-process mutation fuzzing on the stable toolchain (no cargo-fuzz, no
//! sanitizers): mutators seeded from the repository's own inputs, targets
//! that run one input each, and a harness that runs a target in a worker
//! process under a memory limit with a per-input timeout, restarting it
//! after an abort and saving every crashing input.
pub mod harness;
pub mod mutate;
pub mod targets;
