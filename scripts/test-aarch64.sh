#!/usr/bin/env bash
# The aarch64 suite. Cross-builds the tests for aarch64-unknown-linux-gnu with Debian's rustc
# (it carries the aarch64 standard library, which rustup cannot add here) and runs them under
# qemu-aarch64 twice: on qemu's default CPU model ("max": NEON with the FP16 and BF16
# extensions) and on a Cortex-A53 (plain ARMv8.0, no FP16 arithmetic). Each run checks that
# the crate detected NEON (OPTKERN_EXPECT_BACKEND) and runs every test against the scalar
# oracle, the golden trajectories included, on sampled inputs: the conversion sweeps check a
# fixed sample of the 2^32 patterns (OPTKERN_CONVERSIONS=sampled; the exhaustive sweep runs
# natively) and each property test runs OPTKERN_PROPTEST_CASES random cases (default 16 here).
# Then the comparison example runs on each model (its figures mean nothing under emulation,
# and it says so).
#
# Installs what it needs when missing (Debian packages; idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

ensure "test -d /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib && test -x /usr/bin/rustc" \
    rustc-web cargo-web libstd-rust-web-dev:arm64
ensure "command -v aarch64-linux-gnu-gcc && test -e /usr/aarch64-linux-gnu/lib/libc.so.6" \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross
ensure "command -v qemu-aarch64" qemu-user

target=aarch64-unknown-linux-gnu
# A target folder of its own: Debian's rustc and rustup's must not overwrite each other's
# build scripts and dependencies.
export CARGO_TARGET_DIR=target/aarch64
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# The runs below test NEON only: the emulated 16-lane scalar backend is left out of the build
# (a third of the kernels compiled otherwise).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="--cfg optkern_no_scalar16"

echo "--> $($RUSTC --version), $(qemu-aarch64 --version | head -1)"
timed "cross build" cargo test --release --target "$target" --tests --no-run
timed "cross build (example)" cargo build --release --target "$target" --example compare

# The backends the tests exercise here: NEON against the scalar oracle (the 16-lane emulation
# is portable code that the native x86-64 run already covers; under qemu it would double the
# time, and it is not even compiled here).
for cpu in max cortex-a53; do
    # -L finds the cross loader; LD_LIBRARY_PATH makes it load the cross libc that belongs
    # to it. Without that, it picks up the multiarch libc6:arm64 (a dependency of
    # libstd-rust-web-dev:arm64, a different build), and the first thread creation hangs.
    runner="qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib -cpu $cpu"
    echo "--> tests on qemu-aarch64 -cpu $cpu"
    timed "tests on $cpu" env CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$runner" \
        OPTKERN_TEST_RUNNER="$runner" OPTKERN_EXPECT_BACKEND=neon \
        OPTKERN_TEST_BACKENDS="${OPTKERN_TEST_BACKENDS-neon}" \
        OPTKERN_CONVERSIONS="${OPTKERN_CONVERSIONS-sampled}" \
        OPTKERN_PROPTEST_CASES="${OPTKERN_PROPTEST_CASES-16}" \
        cargo test --release --target "$target" --tests -- --nocapture
    echo "--> comparison example on qemu-aarch64 -cpu $cpu"
    timed "compare on $cpu" $runner "$CARGO_TARGET_DIR/$target/release/examples/compare" --quick --sizes 4096,65536
done
echo "--> aarch64 suite passed"
