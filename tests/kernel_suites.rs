//! One test binary for the suites of the single-tensor calls, each optimizer's own entry point.
//!
//! The suites live in their own files (each documents what it tests); they are compiled
//! together because they instantiate the same generic kernels (the same optimizers on the same
//! element types and backends), which a release build then compiles once instead of once per
//! file. The monomorphized kernels dominate the build's time.

mod common;

#[path = "bad_input.rs"]
mod bad_input;
#[path = "golden.rs"]
mod golden;
#[path = "optimizer_props.rs"]
mod optimizer_props;
#[path = "reference_optimizers.rs"]
mod reference_optimizers;
