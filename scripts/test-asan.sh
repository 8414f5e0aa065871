#!/usr/bin/env bash
# The x86-64 test suite under AddressSanitizer, with debug assertions and overflow checks, with
# the nightly toolchain on the machine.
# The kernels read and write through raw pointers at tails and misaligned starts; an access
# one element out of bounds there is what this run would catch (the tests use lengths
# 0..=2100 and offsets 1..15, on every backend this CPU runs but one, see below).
#
# `--target` keeps build scripts uninstrumented; the standard library is not instrumented
# (that would need -Zbuild-std and the rust-src component), which ASan tolerates.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
export CARGO_TARGET_DIR=target/asan
# The emulated 16-lane scalar backend is not compiled on x86-64 (the AVX2-pair emulation, also
# 16 lanes, runs the driver's 16-lane walk: full vectors and the zero-padded tails); its own
# loads and stores (16-element loops in src/arch/portable.rs) are not run under the sanitizer.
# Debug assertions and overflow checks as well: the release test build the other steps run
# has neither, so an arithmetic overflow (a debug-build panic, a silent wrap in release) would
# otherwise never be caught.
export RUSTFLAGS="-Zsanitizer=address -C debug-assertions -C overflow-checks=on"
export ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1"
echo "--> $(rustup run nightly rustc --version)"
timed "asan build" cargo +nightly test --release --target x86_64-unknown-linux-gnu --tests --no-run
# The conversion sweeps have no tails (blocks of 2^20): a fixed sample of them is enough here;
# the exhaustive sweep runs in the native test step.
timed "asan tests" env OPTKERN_CONVERSIONS="${OPTKERN_CONVERSIONS-sampled}" \
    cargo +nightly test --release --target x86_64-unknown-linux-gnu --tests
echo "--> sanitizer run passed"
