#!/usr/bin/env bash
# The x86-64 test binaries on emulated CPUs: qemu-x86_64 with a model without AVX (Nehalem)
# and with one that has AVX2, FMA and F16C (Haswell). Each run checks which backend the crate
# detected (OPTKERN_EXPECT_BACKEND: scalar on Nehalem, avx2 on Haswell), and qemu raises an
# illegal-instruction signal on any instruction the model lacks, which fails the run: so the
# dispatch is proven never to execute an instruction the CPU does not have. Every test runs,
# the golden trajectories included, on sampled inputs: the conversion sweeps check a fixed
# sample of the 2^32 patterns (OPTKERN_CONVERSIONS=sampled; the exhaustive sweep runs natively
# on every backend the machine has) and each property test runs OPTKERN_PROPTEST_CASES random
# cases (default 16 here).
#
# Installs qemu-user when missing (Debian package; idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

ensure "command -v qemu-x86_64" qemu-user
echo "--> $(qemu-x86_64 --version | head -1)"
timed "build" cargo test --release --tests --no-run
mapfile -t binaries < <(test_executables --release --tests)
[ "${#binaries[@]}" -gt 0 ] || { echo "no test binaries found" >&2; exit 1; }

failed=0
# Each model's tests exercise the backend it must detect against the scalar oracle (the
# 16-lane emulations are covered by the native run; under qemu they would double the time).
for model in Nehalem:scalar Haswell:avx2; do
    cpu=${model%%:*}
    expect=${model##*:}
    runner="qemu-x86_64 -cpu $cpu"
    start=$SECONDS
    for binary in "${binaries[@]}"; do
        log=$(mktemp)
        set +e
        OPTKERN_EXPECT_BACKEND=$expect OPTKERN_TEST_RUNNER="$runner" OPTKERN_TEST_BACKENDS=$expect \
            OPTKERN_CONVERSIONS="${OPTKERN_CONVERSIONS-sampled}" \
            OPTKERN_PROPTEST_CASES="${OPTKERN_PROPTEST_CASES-16}" \
            $runner "$binary" --test-threads=2 --nocapture >"$log" 2>&1
        status=$?
        set -e
        # qemu warns about host features TCG does not model; those lines are noise.
        grep -v "TCG doesn't support requested feature" "$log" \
            | grep -E 'backends tested here|detected:|test result|FAILED|panicked|Illegal|signal' || true
        if grep -q 'Illegal instruction\|uncaught target signal' "$log"; then
            echo "!!! $(basename "$binary") executed an instruction the $cpu model lacks" >&2
            failed=1
        elif [ "$status" -ne 0 ]; then
            echo "!!! $(basename "$binary") failed on $cpu (exit $status)" >&2
            failed=1
        fi
        rm -f "$log"
    done
    echo "--> $cpu (expecting $expect): $((SECONDS - start)) s"
done
[ "$failed" -eq 0 ] || { echo "x86 baseline suite FAILED" >&2; exit 1; }
echo "--> x86 baseline suite passed"
