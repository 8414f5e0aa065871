"""optkern.torch.Lion against lion-pytorch 0.2.5, optkern.torch.LAMB against timm 1.0.31 and
optkern.torch.ADOPT and AdEMAMix against pytorch_optimizer 4.1.0 and optkern.torch's
schedule-free classes against schedulefree 1.4.1, the libraries whose
semantics they follow (the versions of the crate's golden cases), on real models for 50
steps. All are installed by scripts/test-python.sh; timm's optimizer module is loaded without
the rest of timm (whose import needs torchvision)."""
import copy
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


ADOPT = [dict(lr=1e-3), dict(lr=1e-3, weight_decay=1e-2, weight_decouple=True),
         dict(lr=1e-3, clip_lambda=None, weight_decay=1e-3, betas=(0.8, 0.999))]


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("kw", ADOPT, ids=["defaults", "decoupled", "no-clip-l2"])
def test_adopt_matches_pytorch_optimizer(model, kw):
    # ADOPT moves a weight by lr * m, m an average of normalized gradients clipped to
    # step^0.25 <= 50^0.25 < 2.7: `update` 2.7. Without the clip the normalized gradient,
    # g over the root of the previous step's second moment, is not bounded: on these models
    # it moves a weight by up to 690 lr in one step (step 2, measured), so `update` is 700
    # there. The library's foreach path is switched off (the same math, possibly compiled).
    from pytorch_optimizer import ADOPT as LibraryAdopt
    a = MODELS[model]()
    b = twin(a)
    data = batches(model)
    train(a, LibraryAdopt(a.parameters(), foreach=False, **kw), data)
    train(b, ot.ADOPT(b.parameters(), **kw), data)
    update = 2.7 if kw.get("clip_lambda", True) is not None else 700.0
    assert within(a.parameters(), b.parameters(), kw["lr"], update) <= 1.0


ADEMAMIX = [dict(lr=1e-3),
            dict(lr=1e-3, alpha=8.0, t_alpha_beta3=20.0, weight_decay=1e-2, weight_decouple=True)]


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("kw", ADEMAMIX, ids=["defaults", "warmup-decoupled"])
def test_ademamix_matches_pytorch_optimizer(model, kw):
    # The Adam part of the update is about lr at most (as Adam's, helpers.tolerance); the slow
    # part adds lr * alpha_t * slow / denom, with the slow average at most (1 - beta3^50) of
    # the largest gradient: under 0.5 lr on these models (measured): `update` 1.5.
    from pytorch_optimizer import AdEMAMix as LibraryAdemamix
    a = MODELS[model]()
    b = twin(a)
    data = batches(model)
    train(a, LibraryAdemamix(a.parameters(), foreach=False, **kw), data)
    train(b, ot.AdEMAMix(b.parameters(), **kw), data)
    assert within(a.parameters(), b.parameters(), kw["lr"], 1.5) <= 1.0


SCHEDULE_FREE = [("AdamWScheduleFree", dict(lr=2.5e-3)),
                 ("AdamWScheduleFree", dict(lr=2.5e-3, warmup_steps=10, weight_decay=1e-2)),
                 ("SGDScheduleFree", dict(lr=0.05)),
                 ("SGDScheduleFree", dict(lr=0.05, warmup_steps=10, r=0.5, weight_decay=1e-3))]


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("name,kw", SCHEDULE_FREE,
                         ids=["adamw", "adamw-warmup-decay", "sgd", "sgd-warmup-r-decay"])
def test_schedulefree_matches_schedulefree(model, name, kw):
    # y moves by lr_t * (b(1-c) - 1) * u plus c (z - y), z by lr_t * u: measured on these
    # models, no weight moves by more than 1.4 lr in one step (AdamW; SGD under 0.4 lr), so
    # `update` is 1.5 for y and for x (y and z mixed with the weights -1/beta and 1/beta,
    # |1 - 1/beta| = 1/9 at beta = 0.9: no larger moves).
    import schedulefree
    a = MODELS[model]()
    b = twin(a)
    data = batches(model)
    theirs = getattr(schedulefree, name)(a.parameters(), foreach=False, **kw)
    ours = getattr(ot, name)(b.parameters(), **kw)
    with pytest.raises(RuntimeError, match="train mode"):
        ours.step()
    theirs.train()
    ours.train()
    train(a, theirs, data)
    train(b, ours, data)
    assert within(a.parameters(), b.parameters(), kw["lr"], 1.5) <= 1.0
    theirs.eval()
    ours.eval()
    assert within(a.parameters(), b.parameters(), kw["lr"], 1.5) <= 1.0
    # The groups' bookkeeping is the library's: its state dict loads into ours and back.
    for key in ("k", "train_mode"):
        assert ours.param_groups[0][key] == theirs.param_groups[0][key], key
    for key in ("lr_max", "weight_sum", "scheduled_lr"):  # the same float, bit for bit
        assert float(ours.param_groups[0][key]).hex() == float(theirs.param_groups[0][key]).hex(), key
    # (A copy, as a checkpoint on disk: loading shares the tensors of a live state dict.)
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    ours.train()
    theirs.train()
    train(a, theirs, data[:5])
    train(b, ours, data[:5])
    assert within(a.parameters(), b.parameters(), kw["lr"], 1.5) <= 1.0
