"""optkern.torch against torch.optim on real models, and its torch.optim.Optimizer behaviour."""
import os
import subprocess
import sys

import pytest
import torch

import optkern
import optkern.torch as ot
from helpers import MODELS, STEPS, batches, params, train, twin, within

# (optimizer, keyword arguments): every optimizer torch has that optkern has, main options.
CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3)),
    ("SGD", dict(lr=1e-3, momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict(lr=1e-3)),
    ("Adam", dict(lr=1e-3, amsgrad=True, weight_decay=1e-2, maximize=True)),
    ("AdamW", dict(lr=1e-3)),
    ("AdamW", dict(lr=1e-3, amsgrad=True, betas=(0.8, 0.99), eps=1e-6)),
    ("RMSprop", dict(lr=1e-3)),
    ("RMSprop", dict(lr=1e-3, momentum=0.9, centered=True, weight_decay=1e-3)),
    ("Adagrad", dict(lr=1e-2)),
    ("Adagrad", dict(lr=1e-2, lr_decay=1e-3, initial_accumulator_value=0.1, weight_decay=1e-3)),
    ("Adamax", dict(lr=2e-3, weight_decay=1e-3)),
    ("Adadelta", dict(lr=1.0)),
    ("Adadelta", dict(lr=0.5, rho=0.95, eps=1e-5, weight_decay=1e-3)),
    ("NAdam", dict(lr=2e-3)),
    ("NAdam", dict(lr=2e-3, weight_decay=1e-2, decoupled_weight_decay=True, momentum_decay=0.01)),
    ("RAdam", dict(lr=1e-3, weight_decay=1e-3)),
    ("RAdam", dict(lr=1e-3, betas=(0.8, 0.99), weight_decay=1e-2, decoupled_weight_decay=True)),
    ("Rprop", dict(lr=1e-3)),
    ("Rprop", dict(lr=1e-3, etas=(0.3, 1.5), step_sizes=(1e-5, 1e-2), maximize=True)),
    ("ASGD", dict(lr=1e-2)),
    ("ASGD", dict(lr=1e-2, lambd=1e-3, alpha=0.6, t0=10, weight_decay=1e-3)),
]


def update_bound(name, kw):
    """The largest update as a multiple of lr (see helpers.tolerance): Adam-style updates
    are at most about lr; RMSprop divides by sqrt(1 - alpha) at most (10x at alpha 0.99),
    and its momentum buffer sums up to 1 / (1 - momentum) of those."""
    if name == "RMSprop":
        return 10.0 / (1.0 - kw.get("momentum", 0.0))
    if name in ("SGD", "Rprop"):
        return 1e3  # They agree bit for bit; the bound is not what they are checked by.
    if name == "ASGD":
        # eta <= lr, and |g + wd*w| stays below 0.4 on these models (0.36 at most, measured).
        return 1.0
    if name == "Adadelta":
        # |delta| = sqrt(acc + eps) / sqrt(sq + eps) * |g| <= sqrt((acc + eps) / (1 - rho)),
        # as sq >= (1 - rho) g^2: with acc (a running average of delta^2) below 1e-3 on these
        # models (4.8e-4 at most, measured in torch's runs) and rho <= 0.95,
        # |delta| < sqrt(1.01e-3 / 0.05) < 0.15.
        return 0.15
    return 1.0


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_torch_f32(model, name, kw):
    a = MODELS[model]()
    b = twin(a)
    data = batches(model)
    train(a, getattr(torch.optim, name)(a.parameters(), **kw), data)
    train(b, getattr(ot, name)(b.parameters(), **kw), data)
    assert within(a.parameters(), b.parameters(), kw["lr"], update_bound(name, kw)) <= 1.0
    if name in ("SGD", "Rprop"):
        # The same operations in the same order: the same bits (Rprop's move, sign times
        # step size, is exact).
        for x, y in zip(a.parameters(), b.parameters()):
            assert torch.equal(x.view(torch.int32), y.view(torch.int32))


def run_opt(model_name, cls, kw, dtype=torch.float32, steps=STEPS, **options):
    m = MODELS[model_name](dtype)
    opt = cls(m.parameters(), **kw, **options)
    train(m, opt, batches(model_name, dtype, steps))
    return m, opt


# bf16/f16 parameters: torch computes in the parameter's type (every operation rounded to
# bf16), optkern in f32 with one rounding per stored value, so the two are compared against
# a float32 run from the same start with a bound of a few ulps of the half type per step:
# each step rounds the new weight to bf16 (2^-8 relative at most) and the gradient differs
# through the rounded weights. Bound: |w - w32| <= STEPS * 2^-7 * max|w| (+ lr per step).
def half_bound(w32, lr):
    return STEPS * (2.0**-7 * w32.abs().max().item() + lr)


HALF_CASES = [(name, kw, mode, dtype)
              for name, kw in [("AdamW", dict(lr=1e-3)), ("SGD", dict(lr=0.05, momentum=0.9))]
              for mode in ["plain", "f32-state", "master"]
              for dtype in [torch.bfloat16, torch.float16]
              # Adam's second moment in float16 state underflows (g^2 below 6e-8 is 0 for
              # gradients under 2.4e-4) and the step m / (0 + eps) overflows: in torch too.
              if not (name == "AdamW" and mode == "plain" and dtype == torch.float16)]


@pytest.mark.parametrize("name,kw,mode,dtype", HALF_CASES,
                         ids=[f"{n}-{m}-{str(d)[6:]}" for n, _, m, d in HALF_CASES])
def test_half_precision(name, kw, mode, dtype):
    options = {"plain": {}, "f32-state": {"state_dtype": torch.float32},
               "master": {"master_weights": True}}[mode]
    ref, _ = run_opt("mlp", getattr(torch.optim, name), kw)
    m, opt = run_opt("mlp", getattr(ot, name), kw, dtype, **options)
    for p, r in zip(m.parameters(), ref.parameters()):
        assert p.dtype == dtype
        assert (p.float() - r).abs().max().item() <= half_bound(r, kw["lr"])
        st = opt.state[p]
        buffers = [v for k, v in st.items() if k not in ("step", "master_weights")]
        want = dtype if mode == "plain" else torch.float32
        assert buffers and all(b.dtype == want for b in buffers)
        if mode == "master":
            # The parameter is its master weights rounded to nearest.
            assert torch.equal(st["master_weights"].to(dtype).view(torch.int16), p.view(torch.int16))
    if mode == "plain":
        # torch.optim on bf16/f16 parameters keeps its state in that type too.
        tm, _ = run_opt("mlp", getattr(torch.optim, name), kw, dtype)
        for p, t in zip(m.parameters(), tm.parameters()):
            assert (p.float() - t.float()).abs().max().item() <= 2 * half_bound(t.float(), kw["lr"])


def test_stochastic_rounding_is_reproducible():
    a, _ = run_opt("mlp", ot.AdamW, dict(lr=1e-3), torch.bfloat16, steps=5, stochastic_rounding=7)
    b, _ = run_opt("mlp", ot.AdamW, dict(lr=1e-3), torch.bfloat16, steps=5, stochastic_rounding=7)
    c, _ = run_opt("mlp", ot.AdamW, dict(lr=1e-3), torch.bfloat16, steps=5, stochastic_rounding=8)
    assert all(torch.equal(x.view(torch.int16), y.view(torch.int16)) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))


def bits(model):
    return [p.detach().view(torch.int32 if p.dtype == torch.float32 else torch.int16).clone()
            for p in model.parameters()]


@pytest.mark.parametrize("name,kw", [c for c in CASES if c[0] in ("AdamW", "RMSprop", "Adagrad")][:3])
def test_same_bits_on_any_thread_count(name, kw):
    one, _ = run_opt("block", getattr(ot, name), kw, threads=1)
    two, _ = run_opt("block", getattr(ot, name), kw, threads=2)
    assert all(torch.equal(x, y) for x, y in zip(bits(one), bits(two)))


BACKEND_SCRIPT = """
import sys, torch
sys.path.insert(0, {here!r})
import optkern, optkern.torch as ot
from helpers import MODELS, batches, train
m = MODELS["block"]()
train(m, ot.AdamW(m.parameters(), lr=1e-3, amsgrad=True), batches("block", steps=10))
print(optkern.backend())
torch.save([p.detach() for p in m.parameters()], {out!r})
"""


def test_same_bits_on_every_backend(tmp_path):
    here = os.path.dirname(__file__)
    results = {}
    for backend in ["scalar", "avx2", "avx512", "neon"]:
        out = str(tmp_path / f"{backend}.pt")
        env = dict(os.environ, OPTKERN_BACKEND=backend)
        r = subprocess.run([sys.executable, "-c", BACKEND_SCRIPT.format(here=here, out=out)],
                           env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
        if r.returncode == 0:
            assert r.stdout.strip() == backend
            results[backend] = torch.load(out)
        else:
            assert "cannot run on this CPU" in r.stderr, r.stderr
    assert "scalar" in results and optkern.backend() in results
    ref = results["scalar"]
    for backend, ps in results.items():
        for x, y in zip(ref, ps):
            assert torch.equal(x.view(torch.int32), y.view(torch.int32)), backend
    print("backends compared:", sorted(results))


def test_state_dict_round_trips_both_ways():
    kw = dict(lr=1e-3, amsgrad=True)
    data = batches("block", steps=20)
    # torch for 20 steps: the reference.
    ref = MODELS["block"]()
    train(ref, torch.optim.AdamW(ref.parameters(), **kw), data)
    # torch -> optkern: 10 steps in torch, the state dict into optkern, 10 more.
    m = MODELS["block"]()
    t = torch.optim.AdamW(m.parameters(), **kw)
    train(m, t, data[:10])
    o = ot.AdamW(m.parameters(), **kw)
    o.load_state_dict(t.state_dict())
    assert set(o.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    train(m, o, data[10:])
    assert within(ref.parameters(), m.parameters(), 1e-3) <= 1.0
    # optkern -> torch.
    m2 = MODELS["block"]()
    o2 = ot.AdamW(m2.parameters(), **kw)
    train(m2, o2, data[:10])
    t2 = torch.optim.AdamW(m2.parameters(), **kw)
    t2.load_state_dict(o2.state_dict())
    assert float(t2.state[next(m2.parameters())]["step"]) == 10.0
    train(m2, t2, data[10:])
    assert within(ref.parameters(), m2.parameters(), 1e-3) <= 1.0


def test_sgd_state_dict_from_torch_keeps_the_buffer():
    data = batches("mlp", steps=10)
    ref = MODELS["mlp"]()
    train(ref, torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9), data)
    m = MODELS["mlp"]()
    t = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    train(m, t, data[:5])
    o = ot.SGD(m.parameters(), lr=0.05, momentum=0.9)
    o.load_state_dict(t.state_dict())
    train(m, o, data[5:])
    assert all(torch.equal(x, y) for x, y in zip(bits(ref), bits(m)))


SCHEDULERS = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=10, gamma=0.5),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=STEPS),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-2, total_steps=STEPS),
    "LambdaLR": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0 / (1 + s)),
}


@pytest.mark.parametrize("sched", sorted(SCHEDULERS))
def test_lr_schedulers(sched):
    data = batches("mlp")
    a = MODELS["mlp"]()
    b = twin(a)
    oa = torch.optim.AdamW(a.parameters(), lr=1e-3)
    ob = ot.AdamW(b.parameters(), lr=1e-3)
    train(a, oa, data, SCHEDULERS[sched](oa))
    train(b, ob, data, SCHEDULERS[sched](ob))
    assert ob.param_groups[0]["lr"] == oa.param_groups[0]["lr"]
    assert within(a.parameters(), b.parameters(), 1e-2) <= 1.0


def test_closure_param_groups_and_zero_grad():
    a = MODELS["mlp"]()
    b = twin(a)
    groups = lambda m: [{"params": list(m[0].parameters()), "lr": 1e-2, "weight_decay": 0.1},
                        {"params": list(m[2].parameters())}]
    oa = torch.optim.AdamW(groups(a), lr=1e-3)
    ob = ot.AdamW(groups(b), lr=1e-3)
    oa.add_param_group({"params": list(a[4].parameters()), "betas": (0.5, 0.9)})
    ob.add_param_group({"params": list(b[4].parameters()), "betas": (0.5, 0.9)})
    for x, y in batches("mlp", steps=10):
        for m, o in ((a, oa), (b, ob)):
            def closure():
                o.zero_grad()
                loss = torch.nn.functional.mse_loss(m(x), y)
                loss.backward()
                return loss
            loss = o.step(closure)
            assert torch.is_tensor(loss)
    assert within(a.parameters(), b.parameters(), 1e-2) <= 1.0
    ob.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in b.parameters())
    # A parameter without a gradient is skipped: nothing changes, no state.
    before = params(b)
    ob.step()
    assert all(torch.equal(x, y) for x, y in zip(before, b.parameters()))
    with pytest.raises(ValueError):
        ob.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], "lr": -1.0})
    assert len(ob.param_groups) == 3


def test_grad_scaler_with_an_injected_inf():
    data = batches("mlp", steps=6)
    a = MODELS["mlp"]()
    b = twin(a)
    runs = {}
    for name, m, o in (("torch", a, torch.optim.AdamW(a.parameters(), lr=1e-3)),
                       ("optkern", b, ot.AdamW(b.parameters(), lr=1e-3))):
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        scales = []
        for i, (x, y) in enumerate(data):
            o.zero_grad()
            scaler.scale(torch.nn.functional.mse_loss(m(x), y)).backward()
            if i == 2:
                next(m.parameters()).grad[0, 0] = float("inf")
                before = [p.detach().clone() for p in m.parameters()]
                state = [{k: v.clone() for k, v in o.state[p].items()} for p in m.parameters()]
            scaler.step(o)
            scaler.update()
            scales.append(scaler.get_scale())
            if i == 2:
                assert all(torch.equal(p0, p) for p0, p in zip(before, m.parameters()))
                for s0, p in zip(state, m.parameters()):
                    assert all(torch.equal(v, o.state[p][k]) for k, v in s0.items())
        runs[name] = scales
        # The skipped step is not counted.
        assert float(o.state[next(m.parameters())]["step"]) == 5.0
    assert runs["optkern"] == runs["torch"] and runs["torch"][2] == 2.0**9
    assert within(a.parameters(), b.parameters(), 1e-3) <= 1.0


def test_fsdp2_on_cpu(tmp_path):
    """Two processes under torchrun (gloo, loopback only, at most 5 minutes)."""
    out = tmp_path / "result.txt"
    script = os.path.join(os.path.dirname(__file__), "fsdp2_train.py")
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-addr", "127.0.0.1", "--master-port", str(port), script, str(out)],
                       env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    result = out.read_text()
    assert result.startswith("ok "), result


def test_autograd_sees_the_step():
    # The kernels write through data_ptr(); the step bumps the version counters as torch's
    # in-place operations do, so a graph that saved a parameter before the step refuses to
    # run backward through the changed value instead of computing a wrong gradient.
    p = torch.nn.Parameter(torch.ones(3))
    opt = ot.Adam([p], lr=0.1)
    y = (p * p).sum()  # saves p for the backward pass
    p.grad = torch.ones(3)
    before = p._version
    opt.step()
    assert p._version > before
    assert opt.state[p]["exp_avg"]._version > 0 and opt.state[p]["step"]._version > 0
    with pytest.raises(RuntimeError, match="inplace"):
        y.backward()


def test_nadam_state_has_torchs_keys_and_mu_product():
    """NAdam's state as torch keeps it: the same keys, and `mu_product` (the crate computes it
    from the step in float64; torch multiplies it out in float32) within float32 rounding of
    each of its 50 factors: 50 * 2^-24 relative."""
    a = MODELS["mlp"]()
    b = twin(a)
    data = batches("mlp")
    ta = torch.optim.NAdam(a.parameters(), lr=2e-3, momentum_decay=0.01)
    tb = ot.NAdam(b.parameters(), lr=2e-3, momentum_decay=0.01)
    train(a, ta, data)
    train(b, tb, data)
    for p, q in zip(a.parameters(), b.parameters()):
        sa, sb = ta.state[p], tb.state[q]
        assert set(sa) == set(sb) == {"step", "mu_product", "exp_avg", "exp_avg_sq"}
        assert sb["mu_product"].dtype == torch.float32 and sb["mu_product"].shape == ()
        want = float(sa["mu_product"])
        assert abs(float(sb["mu_product"]) - want) <= STEPS * 2.0**-24 * want
    # torch -> optkern and back: the state dict loads both ways.
    tb.load_state_dict(ta.state_dict())
    train(b, tb, data[:2])
    assert float(tb.state[next(b.parameters())]["step"]) == STEPS + 2
