//! One test binary for the suites of many-tensor steps, the `Optimizer` enum and the stateful optimizer.
//!
//! The suites live in their own files (each documents what it tests); they are compiled
//! together because they instantiate the same generic kernels (the same optimizers on the same
//! element types and backends), which a release build then compiles once instead of once per
//! file. The monomorphized kernels dominate the build's time.

mod common;

#[path = "mixed_precision.rs"]
mod mixed_precision;
#[path = "optimizers.rs"]
mod optimizers;
#[path = "stateful.rs"]
mod stateful;
