"""optkern.torch.Lion against lion-pytorch 0.2.5 and optkern.torch.LAMB against timm 1.0.31,
the libraries whose semantics they follow (the versions of the crate's golden cases), on real
models for 50 steps. Both are installed by scripts/test-python.sh; timm's optimizer module is
loaded without the rest of timm (whose import needs torchvision)."""
import importlib
import importlib.util
import pathlib
import sys
import types

import pytest
import torch

import optkern.torch as ot
from helpers import MODELS, batches, train, twin, within

from lion_pytorch import Lion as LibraryLion  # noqa: E402


def timm_lamb():
    if "timm.optim.lamb" not in sys.modules:
        root = pathlib.Path(importlib.util.find_spec("timm").submodule_search_locations[0])
        for name, path in (("timm", root), ("timm.optim", root / "optim")):
            if name not in sys.modules:
                module = types.ModuleType(name)
                module.__path__ = [str(path)]
                sys.modules[name] = module
    return importlib.import_module("timm.optim.lamb").Lamb


LION = [dict(lr=1e-4), dict(lr=3e-4, betas=(0.95, 0.98), weight_decay=0.1)]


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("kw", LION, ids=["defaults", "decay"])
def test_lion_matches_lion_pytorch(model, kw):
    # Every update is lr * sign(.): `update` 1 in helpers.tolerance (the rounding of the decay
    # w * (1 - lr wd) and of the weight itself are what the bound allows). A sign that flips
    # (an interpolation within rounding of zero) would move a weight by 2 lr and fail.
    a = MODELS[model]()
    b = twin(a)
    data = batches(model)
    train(a, LibraryLion(a.parameters(), **kw), data)
    train(b, ot.Lion(b.parameters(), **kw), data)
    assert within(a.parameters(), b.parameters(), kw["lr"], 1.0) <= 1.0


LAMB = [dict(lr=1e-3), dict(lr=2e-3, weight_decay=0.1, max_grad_norm=None),
        dict(lr=1e-3, trust_clip=True, always_adapt=True, decoupled_decay=True)]


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("kw", LAMB, ids=["defaults", "no-clip", "clip-adapt-decoupled"])
def test_lamb_matches_timm(model, kw):
    # LAMB's update of an element is lr * r * u_i with the trust ratio r = |w| / |u| of its
    # tensor (1 when trust_clip caps it there), so |update| <= lr * |w| for every element:
    # `update` is the largest tensor norm, times 4 because the norms (and the global gradient
    # norm of the clipping) are sums of thousands of terms taken in another order than
    # torch's, which adds up to about log2(4096) = 12 units of 2^-24 to r: four times the
    # 2^-20 per step that helpers.tolerance allows for a dozen rounded operations.
    a = MODELS[model]()
    b = twin(a)
    data = batches(model)
    largest = max(p.detach().norm().item() for p in a.parameters())
    train(a, timm_lamb()(a.parameters(), **kw), data)
    train(b, ot.LAMB(b.parameters(), **kw), data)
    grown = max(p.detach().norm().item() for p in a.parameters())
    assert within(a.parameters(), b.parameters(), kw["lr"], 4.0 * max(largest, grown)) <= 1.0
