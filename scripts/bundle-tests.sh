#!/usr/bin/env bash
# Packs the x86-64 test binaries, the golden cases and a runner into one folder, to run the
# suite on another machine (one with AVX-512, say) without a Rust toolchain there:
#
#   scripts/bundle-tests.sh target/bundle          # here
#   target/bundle/run.sh avx512                    # there; the argument is the backend the
#                                                  # crate must detect (omit it to just report)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

out=${1:?usage: scripts/bundle-tests.sh OUTPUT_FOLDER}
rm -rf "$out"
mkdir -p "$out/bin"
cargo test --release --tests --no-run
test_executables --release --tests | while read -r exe; do
    name=$(basename "$exe")
    cp "$exe" "$out/bin/${name%-*}"
done
cargo build --release --example compare
cp target/release/examples/compare "$out/compare"
cp -r "${OPTKERN_GOLDEN_DIR:-tests/golden}" "$out/golden"
cp -r tests/fixtures "$out/fixtures"
cat >"$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs every bundled test binary; $1 (optional) is the backend the crate must detect.
cd "$(dirname "$0")"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) threads"
echo "avx512 flags: $(grep -m1 -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
export OPTKERN_GOLDEN_DIR=$PWD/golden OPTKERN_FIXTURES_DIR=$PWD/fixtures
[ -n "${1:-}" ] && export OPTKERN_EXPECT_BACKEND=$1
status=0
for t in bin/*; do
    echo "=== $t"
    if ! "$t" --nocapture >log.txt 2>&1; then
        echo "!!! $t FAILED"
        status=1
    fi
    grep -E 'backends tested here|detected:|test result|FAILED|panicked|golden:|f32 -> ' log.txt
done
rm -f log.txt
echo "=== compare --quick"
./compare --quick
[ "$status" -eq 0 ] && echo "=== all test binaries passed" || echo "=== SOME TEST BINARIES FAILED"
exit $status
RUN
chmod +x "$out/run.sh"
echo "--> bundle in $out ($(du -sh "$out" | cut -f1))"
