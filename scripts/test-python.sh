#!/usr/bin/env bash
# The Python package (python/): its lints, `pip install ./python` as the README says, and its
# pytest suite (against torch.optim, lion-pytorch, timm, pytorch_optimizer and schedulefree on
# real models and bit for bit against the crate's StatefulOptimizer, state dicts, schedulers, GradScaler, bad
# input, every backend this CPU has, and FSDP2 on two processes under torchrun over loopback).
# torch is pinned (2.15.0, about 5 GB with its CUDA libraries, which its import needs even on a
# CPU-only machine) in a virtual environment kept outside the checkout, created when missing
# and reused (OPTKERN_PEERS_VENV, default ~/.cache/optkern-peers; scripts/compare-peers.sh
# uses the same one).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

venv=${OPTKERN_PEERS_VENV:-$HOME/.cache/optkern-peers}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import torch, numpy, pytest; assert torch.__version__.startswith('2.15.0')" 2>/dev/null; then
    timed "torch install" "$venv/bin/pip" install --quiet "torch==2.15.0" numpy pytest
fi
# The libraries whose Lion, LAMB, ADOPT, AdEMAMix and schedule-free classes optkern.torch follows, for
# tests/test_libraries.py: pure Python, pinned to the versions of the golden cases, without
# dependencies (timm's would pull a torchvision for another torch; the test loads timm's
# optimizer module alone; pytorch_optimizer needs only torch and numpy).
if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('lion-pytorch') == '0.2.5' and m.version('timm') == '1.0.31' and m.version('pytorch_optimizer') == '4.1.0' and m.version('schedulefree') == '1.4.1'" 2>/dev/null; then
    timed "lion-pytorch, timm, pytorch_optimizer, schedulefree install" "$venv/bin/pip" install --quiet --no-deps \
        "lion-pytorch==0.2.5" "timm==1.0.31" "pytorch_optimizer==4.1.0" "schedulefree==1.4.1"
fi
echo "--> $("$venv/bin/python" -c 'import torch, sys; print("torch", torch.__version__, "python", sys.version.split()[0])')"
timed "python fmt" cargo fmt --manifest-path python/Cargo.toml -- --check
PYO3_PYTHON="$venv/bin/python" timed "python clippy" \
    cargo clippy --manifest-path python/Cargo.toml --release -- -D warnings
# The install the README gives: pip builds the wheel with maturin (fetched from PyPI into an
# isolated build environment) from this checkout.
timed "pip install ./python" "$venv/bin/pip" install --quiet --force-reinstall --no-deps ./python
cd python/tests
timed "pytest" "$venv/bin/python" -m pytest -q -p no:cacheprovider .
