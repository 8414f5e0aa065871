#!/usr/bin/env bash
# Times other libraries' CPU optimizer steps on the same arrays as the crate's compare example:
# PyTorch's fused optimizers (torch.optim.SGD(momentum=0.9, fused=True) and
# torch.optim.Adam(fused=True); every buffer in the parameter's type, as PyTorch keeps its
# state) and DeepSpeed's DeepSpeedCPUAdam (its step(), and its adam_update op called directly;
# f32 parameters, and bf16 parameters with f32 state), on both data sets of the example
# (`normal`, `zero-grads`), at 64K, 1M and 16M elements, on 1 thread and on all cores.
#
# The example writes its starting buffers (`--dump`), and every peer starts from those bytes
# with the same hyperparameters (lr 1e-3; momentum 0.9; Adam betas (0.9, 0.999), eps 1e-8,
# no weight decay). Each time is the median of repeated steps after two warm-up steps. Prints
# every peer time with the ratio to the crate's default backend (the peer's time over the
# crate's: above 1, the crate is faster), with the crate's `Keep` policy (IEEE 754, as the
# peers compute) and with `Flush`.
#
# Not part of CI: it makes a Python virtual environment with torch and DeepSpeed from PyPI
# (gigabytes; DeepSpeed with DS_BUILD_OPS=0 compiles its CPU Adam op with g++ and ninja on
# first use, about two minutes). Environment: OPTKERN_PEERS_VENV (default
# ~/.cache/optkern-peers), TORCH_SPEC (default torch==2.15.*), DEEPSPEED_SPEC (default
# deepspeed==0.19.*), OPTKERN_COMPARE_SIZES (default 65536,1048576,16777216).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${OPTKERN_PEERS_VENV:-$HOME/.cache/optkern-peers}
torch_spec=${TORCH_SPEC:-torch==2.15.*}
ds_spec=${DEEPSPEED_SPEC:-deepspeed==0.19.*}
sizes=${OPTKERN_COMPARE_SIZES:-65536,1048576,16777216}
all=$(nproc)
out=target/compare-peers
mkdir -p "$out"
rm -rf "$out/data"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import torch, deepspeed" 2>/dev/null; then
    "$venv/bin/pip" install --quiet "$torch_spec" numpy ninja py-cpuinfo psutil packaging
    DS_BUILD_OPS=0 "$venv/bin/pip" install --quiet --no-build-isolation "$ds_spec"
fi
# DeepSpeed's JIT build finds ninja on PATH.
export PATH="$venv/bin:$PATH"

echo "==> optkern (compare example)"
cargo run --release --example compare -- --sizes "$sizes" --data both --subnormals both \
    --json "$out/optkern.json" --dump "$out/data" >"$out/optkern.txt" 2>"$out/optkern.log"

for threads in $(printf '%s\n' 1 "$all" | sort -un); do
    echo "==> peers, $threads thread(s)"
    OMP_NUM_THREADS=$threads "$venv/bin/python" scripts/peers.py "$out/data" "$threads" \
        "$out/peers-$threads.json"
done

"$venv/bin/python" - "$out" "$all" <<'PY'
import glob, json, sys
out, all_threads = sys.argv[1], int(sys.argv[2])
doc = json.load(open(f"{out}/optkern.json"))
default = doc["default_backend"]
crate = {(r["optimizer"], r["dtype"], r["data"], r["n"], r["threads"], r["subnormals"]): r["seconds"]
         for r in doc["rows"] if r["backend"] in (default, f"{default} keep", f"{default} flush")}
peers = []
for path in sorted(glob.glob(f"{out}/peers-*.json")):
    peers += json.load(open(path))["rows"]
import torch, deepspeed
print(f"machine: {doc['machine']}; torch {torch.__version__}, deepspeed {deepspeed.__version__}; "
      f"optkern backend {default}")
print("ratio: the peer's time over the crate's (above 1: the crate is faster)")
print(f"{'optimizer':<9} {'dtype':<13} {'data':<10} {'n':>9} {'thr':>3} {'peer':<22} "
      f"{'peer time':>10} {'keep':>10} {'ratio':>6} {'flush':>10} {'ratio':>6}")
def ms(s): return f"{s*1e3:.4f}ms" if s >= 1e-3 else f"{s*1e6:.1f}us"
for p in sorted(peers, key=lambda p: (p["data"], p["optimizer"], p["dtype"], p["n"], p["threads"], p["peer"])):
    key = (p["optimizer"], p["dtype"], p["data"], p["n"], p["threads"])
    keep, flush = crate.get(key + ("keep",)), crate.get(key + ("flush",))
    if keep is None:
        continue
    print(f"{p['optimizer']:<9} {p['dtype']:<13} {p['data']:<10} {p['n']:>9} {p['threads']:>3} "
          f"{p['peer']:<22} {ms(p['seconds']):>10} {ms(keep):>10} {p['seconds']/keep:>5.2f}x "
          f"{ms(flush):>10} {p['seconds']/flush:>5.2f}x")
PY

"$venv/bin/python" scripts/peers-table.py "$out" >"$out/table.md"
echo "markdown tables: $out/table.md"
