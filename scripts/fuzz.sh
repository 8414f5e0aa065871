#!/usr/bin/env bash
# The checkpoint loader under libFuzzer (cargo-fuzz, the nightly toolchain, AddressSanitizer,
# debug assertions and overflow checks): each target of fuzz/ runs for OPTKERN_FUZZ_SECONDS
# (60) from the committed seed corpus of real checkpoints (fuzz/corpus/checkpoints, every
# optimizer and state type; tests/stateful.rs checks it is current). Any crash, panic, hang
# (one input over 10 s), single allocation over 64 MiB or resident size over 2 GiB fails the
# run; inputs are at most 64 KiB, for which the loader allocates under 2 MiB. What the fuzzer
# finds is left in target/fuzz-artifacts/ (and becomes a regression test in tests/stateful.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    timed "cargo-fuzz install" cargo install cargo-fuzz --locked
fi
echo "--> $(rustup run nightly rustc --version), $(cargo fuzz --version)"
seconds=${OPTKERN_FUZZ_SECONDS:-60}
# Overflow checks on top of cargo-fuzz's own flags (it adds the sanitizer and the coverage).
export RUSTFLAGS="-C overflow-checks=on"
dir=$PWD/target/fuzz
timed "fuzz build" cargo +nightly fuzz build --debug-assertions --target-dir "$dir/build"
for target in load load_mended; do
    # The fuzzer adds what it finds to the first corpus folder: a scratch copy, not the seeds.
    rm -rf "$dir/corpus/$target" "$dir/artifacts/$target"
    mkdir -p "$dir/corpus/$target" "$dir/artifacts/$target"
    timed "fuzz $target" cargo +nightly fuzz run --debug-assertions --target-dir "$dir/build" \
        "$target" "$dir/corpus/$target" fuzz/corpus/checkpoints -- \
        -max_total_time="$seconds" -max_len=65536 -timeout=10 -malloc_limit_mb=64 \
        -rss_limit_mb=2048 -artifact_prefix="$dir/artifacts/$target/" -print_final_stats=1
done
echo "--> fuzzing found nothing"
