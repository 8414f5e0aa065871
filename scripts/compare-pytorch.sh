#!/usr/bin/env bash
# Compares the crate's optimizer steps with PyTorch's fused CPU optimizers on this machine:
# torch.optim.Adam(fused=True) and torch.optim.SGD(momentum=0.9, fused=True), f32 and bf16
# (every buffer in that type, as PyTorch keeps its state in the parameter's type), sizes 4K,
# 64K, 1M and 16M elements, on 1 thread and on all cores. Prints the median time per step of
# each and the ratio (PyTorch's time over the crate's: above 1, the crate is faster).
#
# Not part of CI: it makes a Python virtual environment and downloads torch from PyPI
# (gigabytes). Environment: TORCH_SPEC (default "torch==2.15.*"), OPTKERN_TORCH_VENV (default
# target/torch-venv), OPTKERN_COMPARE_SIZES (default 4096,65536,1048576,16777216).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${OPTKERN_TORCH_VENV:-target/torch-venv}
spec=${TORCH_SPEC:-torch==2.15.*}
sizes=${OPTKERN_COMPARE_SIZES:-4096,65536,1048576,16777216}
threads=$(nproc)
out=target/compare-pytorch
mkdir -p "$out"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    "$venv/bin/pip" install --quiet "$spec" numpy
fi

echo "==> PyTorch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
"$venv/bin/python" - "$sizes" "$threads" "$out/torch.json" <<'PY'
import json, statistics, sys, time
import torch

sizes = [int(s) for s in sys.argv[1].split(",")]
all_threads = int(sys.argv[2])
rows = []

def median_step(opt, budget=0.3):
    opt.step(); opt.step()
    t = time.perf_counter(); opt.step(); once = time.perf_counter() - t
    reps = int(min(2000, max(5, budget / max(once, 1e-9))))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)

for threads in sorted({1, all_threads}):
    torch.set_num_threads(threads)
    for dtype_name, dtype in [("f32", torch.float32), ("bf16", torch.bfloat16)]:
        for n in sizes:
            for name in ["momentum", "adam"]:
                p = torch.nn.Parameter(((torch.arange(n) % 1000).float() * 1e-3 - 0.5).to(dtype))
                p.grad = ((torch.arange(n) % 313).float() * 1e-4 - 0.0156).to(dtype)
                if name == "adam":
                    opt = torch.optim.Adam([p], lr=1e-3, fused=True)
                else:
                    opt = torch.optim.SGD([p], lr=1e-3, momentum=0.9, fused=True)
                s = median_step(opt)
                rows.append(dict(optimizer=name, dtype=dtype_name, n=n, threads=threads, seconds=s))
                print(f"torch {name:<9} {dtype_name:<5} n={n:<9} threads={threads}: {s*1e3:.4f} ms", file=sys.stderr)
json.dump(rows, open(sys.argv[3], "w"))
PY

echo "==> optkern"
cargo run --release --example compare -- --sizes "$sizes" --json "$out/optkern.json" >"$out/optkern.txt"

python3 - "$out/torch.json" "$out/optkern.json" <<'PY'
import json, sys
torch_rows = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
default = doc["default_backend"]
# The crate's default backend (the best the CPU has), as a user gets it.
best = {(r["optimizer"], r["dtype"], r["n"], r["threads"]): (r["backend"], r["seconds"])
        for r in doc["rows"] if r["backend"] == default}
print(f"{'optimizer':<10} {'dtype':<5} {'n':>9} {'threads':>7} {'PyTorch fused':>14} {'optkern':>12} {'backend':>8} {'ratio':>7}")
for t in torch_rows:
    key = (t["optimizer"], t["dtype"], t["n"], t["threads"])
    if key not in best:
        continue
    backend, s = best[key]
    print(f"{t['optimizer']:<10} {t['dtype']:<5} {t['n']:>9} {t['threads']:>7} {t['seconds']*1e3:>11.4f} ms {s*1e3:>9.4f} ms {backend:>8} {t['seconds']/s:>6.2f}x")
PY
