"""optkern.torch against the crate's own StatefulOptimizer, bit for bit.

`optkern._optkern.Reference` is the crate's `StatefulOptimizer` over torch tensors: it keeps
its state in Rust, counts its steps and numbers the model's elements (for stochastic
rounding) itself, and takes the crate's hyperparameters, written out below by hand from each
library's documented names and defaults. A model trained by `optkern.torch.X` and a copy of
its parameters stepped by the Reference with the same gradients must hold the same bits after
every step: this checks the Python layer's state handling, step counting, dtype setups,
learning-rate changes and gradient scaling against the crate's."""
import pytest
import torch

import optkern._optkern as ext
import optkern.torch as ot
from helpers import MODELS, batches

STEPS = 20

# (optkern.torch class, its keyword arguments, the crate's kind and hyperparameters).
CASES = [
    ("SGD", dict(lr=0.05), "sgd", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3),
     "momentum", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3)),
    ("SGD", dict(lr=1e-3, momentum=0.9, nesterov=True, maximize=True),
     "momentum", dict(lr=1e-3, momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict(lr=1e-3, amsgrad=True, weight_decay=1e-2),
     "adam", dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-3), "adam",
     dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2, decoupled=True)),
    ("RMSprop", dict(lr=1e-3, momentum=0.9, centered=True),
     "rmsprop", dict(lr=1e-3, alpha=0.99, eps=1e-8, momentum=0.9, centered=True)),
    ("Adagrad", dict(lr=1e-2, lr_decay=1e-3, initial_accumulator_value=0.1, weight_decay=1e-3),
     "adagrad", dict(lr=1e-2, lr_decay=1e-3, initial_accumulator_value=0.1, eps=1e-10,
                     weight_decay=1e-3)),
    ("Adamax", dict(lr=2e-3, weight_decay=1e-3),
     "adamax", dict(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-3)),
    ("Adadelta", dict(lr=0.5, rho=0.95, weight_decay=1e-3, maximize=True),
     "adadelta", dict(lr=0.5, rho=0.95, eps=1e-6, weight_decay=1e-3, maximize=True)),
    ("NAdam", dict(lr=2e-3, weight_decay=1e-2, decoupled_weight_decay=True),
     "nadam", dict(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, momentum_decay=4e-3,
                   weight_decay=1e-2, decoupled=True)),
    ("RAdam", dict(lr=1e-3, weight_decay=1e-3, maximize=True),
     "radam", dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-3,
                   maximize=True)),
    ("Rprop", dict(lr=1e-3, etas=(0.3, 1.5), maximize=True),
     "rprop", dict(lr=1e-3, eta_minus=0.3, eta_plus=1.5, step_min=1e-6, step_max=50.0,
                   maximize=True)),
    ("ASGD", dict(lr=1e-2, lambd=1e-3, t0=5, weight_decay=1e-3),
     "asgd", dict(lr=1e-2, lambd=1e-3, alpha=0.75, t0=5, weight_decay=1e-3)),
    ("ADOPT", dict(lr=1e-3, weight_decay=1e-2, weight_decouple=True),
     "adopt", dict(lr=1e-3, beta1=0.9, beta2=0.9999, eps=1e-6, weight_decay=1e-2,
                   decoupled=True, clip=True)),
    ("AdEMAMix", dict(lr=1e-3, t_alpha_beta3=10.0, weight_decay=1e-3),
     "ademamix", dict(lr=1e-3, beta1=0.9, beta2=0.999, beta3=0.9999, alpha=5.0,
                      t_alpha_beta3=10.0, eps=1e-8, weight_decay=1e-3)),
    ("AdamWScheduleFree", dict(lr=2.5e-3, warmup_steps=5, weight_decay=1e-2),
     "schedulefree_adamw", dict(lr=2.5e-3, beta1=0.9, beta2=0.999, eps=1e-8, warmup_steps=5,
                                r=0.0, weight_lr_power=2.0, weight_decay=1e-2,
                                decoupled=True)),
    ("SGDScheduleFree", dict(lr=0.05, warmup_steps=3, r=0.5, weight_decay=1e-3),
     "schedulefree_sgd", dict(lr=0.05, momentum=0.9, warmup_steps=3, r=0.5,
                              weight_lr_power=2.0, weight_decay=1e-3)),
    ("Lion", dict(lr=1e-4, weight_decay=0.1),
     "lion", dict(lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.1, decoupled=True)),
    ("LAMB", dict(lr=1e-3),
     "lamb", dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01,
                  bias_correction=True, grad_averaging=True, max_grad_norm=1.0)),
]

# (name, parameter dtype, optkern.torch options, the Reference's state dtype and seed).
SETUPS = [
    ("f32", torch.float32, {}, "float32", None),
    ("bf16", torch.bfloat16, {}, "bfloat16", None),
    ("f16", torch.float16, {}, "float16", None),
    ("bf16-f32-state", torch.bfloat16, dict(state_dtype=torch.float32), "float32", None),
    ("bf16-master", torch.bfloat16, dict(master_weights=True), "float32", None),
    ("f16-master", torch.float16, dict(master_weights=True), "float32", None),
    ("bf16-rounding", torch.bfloat16, dict(stochastic_rounding=20261204), "bfloat16", 20261204),
]


def bits(t):
    return t.detach().reshape(-1).view(torch.int16 if t.element_size() == 2 else torch.int32)


def assert_same_bits(a, b, what):
    for k, (x, y) in enumerate(zip(a, b)):
        assert x.dtype == y.dtype, what
        diff = (bits(x) != bits(y)).sum().item()
        assert diff == 0, f"{what}: tensor {k}: {diff} of {x.numel()} values differ"


def run(case, setup, model="mlp", schedule=False, scale=None):
    name, kw, kind, hyper = case
    _, dtype, options, state_dtype, seed = setup
    m = MODELS[model](dtype)
    ps = list(m.parameters())
    opt = getattr(ot, name)(ps, **kw, **options)
    if hasattr(opt, "train"):  # schedule-free: train mode before the first step
        opt.train()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS) if schedule else None
    ref = ext.Reference(kind, hyper, state_dtype, seed=seed)
    master = options.get("master_weights", False)
    ref_w = [p.detach().float().clone() if master else p.detach().clone() for p in ps]
    ref_c = [p.detach().clone() for p in ps] if master else None
    if scale is not None:
        ref.set_grad_scale(1.0 / scale)
    for step, (x, y) in enumerate(batches(model, dtype, STEPS), 1):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(m(x).float(), y.float())
        (loss if scale is None else loss * scale).backward()
        grads = [p.grad.detach().clone() for p in ps]
        if scale is not None:
            opt.grad_scale = torch.tensor(float(scale))
        opt.step()
        ref.step(ref_w, grads, ref_c)
        if sched is not None:
            sched.step()
            ref.set_lr(opt.param_groups[0]["lr"])
        if master:
            assert_same_bits([opt.state[p]["master_weights"] for p in ps], ref_w,
                             f"step {step} master weights")
            assert_same_bits(ps, ref_c, f"step {step} parameters")
        else:
            assert_same_bits(ps, ref_w, f"step {step} parameters")
    assert ref.steps() == STEPS
    assert all(int(opt.state[p]["step"]) == STEPS for p in ps)


@pytest.mark.parametrize("setup", SETUPS, ids=[s[0] for s in SETUPS])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_same_bits_as_the_stateful_optimizer(case, setup):
    run(case, setup)


@pytest.mark.parametrize("case", [CASES[4], CASES[10]], ids=["AdamW", "LAMB"])
def test_same_bits_on_a_transformer_block_with_a_schedule_and_a_loss_scale(case):
    run(case, SETUPS[0], model="block", schedule=True, scale=1024.0)


def test_reference_refuses_what_a_step_refuses():
    ref = ext.Reference("adam", dict(lr=1e-3), "float32")
    w, g = torch.zeros(4), torch.ones(4)
    with pytest.raises(ValueError, match="not contiguous"):
        ref.step([torch.zeros(4, 2).t()], [torch.ones(2, 4)])
    with pytest.raises(ValueError, match="share memory"):
        ref.step([w], [w])
    assert ref.steps() == 0 and torch.equal(w, torch.zeros(4))
    ref.step([w], [g])
    assert ref.steps() == 1
