"""Every refused input: a clear exception naming the parameter, and no tensor written."""
import pytest
import torch

import optkern._optkern as ext
import optkern.torch as ot


def copy(t):
    if t.device.type == "meta":
        return ("meta", tuple(t.shape), t.dtype)
    if t.layout != torch.strided:
        return t.to_dense()
    return t.detach().clone()


def bits(t):
    """A tensor's dtype, shape and bytes (NaN compares equal to itself)."""
    return (t.dtype, tuple(t.shape), bytes(t.detach().reshape(-1).view(torch.uint8).tolist()))


def snapshot(opt):
    out = []
    for g in opt.param_groups:
        for p in g["params"]:
            out.append(copy(p))
            if p.grad is not None:
                out.append(copy(p.grad))
            for v in opt.state.get(p, {}).values():
                out.append(copy(v) if torch.is_tensor(v) else v)
    return out


def same(a, b):
    return len(a) == len(b) and all(
        (x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y))
        if torch.is_tensor(x) else x == y for x, y in zip(a, b))


def make(bad, grad=None):
    """An AdamW with a good parameter already stepped once (so it has state) and `bad` in a
    second group."""
    good = torch.nn.Parameter(torch.randn(100))
    good.grad = torch.randn(100)
    opt = ot.AdamW([good], lr=1e-3)
    opt.step()
    good.grad = torch.randn(100)
    opt.add_param_group({"params": [bad]})
    if grad is not None:
        if grad.dtype != bad.dtype and hasattr(bad, "grad_dtype"):
            bad.grad_dtype = None  # torch 2.10+ refuses a gradient of another dtype otherwise
        bad.grad = grad
    return opt


CASES = {
    "meta": (lambda: torch.nn.Parameter(torch.empty(10, device="meta")), None, TypeError, "is on meta"),
    "float64": (lambda: torch.nn.Parameter(torch.randn(10, dtype=torch.float64)), None, TypeError, "float64 is not supported"),
    "int": (lambda: torch.zeros(10, dtype=torch.int32), torch.zeros(10, dtype=torch.int32), TypeError, "torch.int32"),
    "complex": (lambda: torch.nn.Parameter(torch.randn(10, dtype=torch.complex64)), None, TypeError, "complex64"),
    "non-contiguous": (lambda: torch.nn.Parameter(torch.randn(8, 6).t()), None, ValueError, "not contiguous"),
    "sparse-grad": (lambda: torch.nn.Parameter(torch.randn(10)), torch.randn(10).to_sparse(), TypeError, "sparse"),
    "grad-dtype": (lambda: torch.nn.Parameter(torch.randn(10)), torch.randn(10, dtype=torch.float64), TypeError, "float64"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_and_nothing_written(case):
    make_param, grad, error, message = CASES[case]
    bad = make_param()
    if grad is None:
        if bad.device.type == "meta":
            grad = torch.empty(10, device="meta")
        elif bad.dtype == torch.complex64:
            grad = torch.randn(10, dtype=torch.complex64)
        elif case == "non-contiguous":
            grad = torch.randn(8, 6).t()
        else:
            grad = torch.randn(10, dtype=bad.dtype)
    opt = make(bad, grad)
    before = snapshot(opt)
    with pytest.raises(error, match=message) as info:
        opt.step()
    assert "param_groups[1] parameter 0" in str(info.value)
    assert same(before, snapshot(opt))
    assert len(opt.state.get(bad, {})) == 0


def test_parameters_that_share_memory():
    base = torch.randn(20)
    a = torch.nn.Parameter(base[:12])
    b = torch.nn.Parameter(base[8:])
    a.grad, b.grad = torch.randn(12), torch.randn(12)
    opt = make(a)
    opt.add_param_group({"params": [b]})
    before = snapshot(opt)
    with pytest.raises(ValueError, match="share memory") as info:
        opt.step()
    assert "param_groups[1] parameter 0" in str(info.value) and "param_groups[2] parameter 0" in str(info.value)
    assert same(before, snapshot(opt))


def test_gradient_aliasing_the_parameter():
    p = torch.nn.Parameter(torch.randn(10))
    opt = make(p)
    p.grad = p.detach()  # the same memory
    before = snapshot(opt)
    with pytest.raises(ValueError, match="share memory"):
        opt.step()
    assert same(before, snapshot(opt))


def test_shape_and_length_checks_in_the_extension():
    # torch refuses a .grad of another shape, so the extension's own check is called directly.
    w, g, m, v = torch.zeros(6), torch.ones(2, 3), torch.zeros(6), torch.zeros(6)
    hyper = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
    with pytest.raises(ValueError, match="shape"):
        ext.step([("adam", hyper, [("t", w, g, [m, v], None, 1)])])
    with pytest.raises(ValueError, match="elements"):
        ext.step([("adam", hyper, [("t", w, torch.ones(6), [m, torch.zeros(5)], None, 1)])])
    with pytest.raises(ValueError, match="state tensors"):
        ext.step([("adam", hyper, [("t", w, torch.ones(6), [m], None, 1)])])
    with pytest.raises(ValueError, match="steps count from 1"):
        ext.step([("adam", hyper, [("t", w, torch.ones(6), [m, v], None, 0)])])
    with pytest.raises(TypeError, match="not a torch.Tensor"):
        ext.step([("adam", hyper, [("t", [1.0], torch.ones(6), [m, v], None, 1)])])
    assert torch.equal(w, torch.zeros(6)) and torch.equal(m, torch.zeros(6))


@pytest.mark.parametrize("counter,error,message", [
    (torch.tensor(3.0, dtype=torch.float64), TypeError, "float64"),
    (torch.zeros(2), TypeError, "float32 tensor of one element"),
    (torch.tensor(2.5), ValueError, "whole number"),
    (torch.tensor(-1.0), ValueError, "whole number"),
    (torch.tensor(float("nan")), ValueError, "whole number"),
    (torch.tensor(2.0**24), ValueError, "whole number"),
    ("3", TypeError, "not a torch.Tensor"),
])
def test_bad_step_counters_write_nothing(counter, error, message):
    # Two parameters: the first is fine, the second's counter is refused; nothing is written.
    hyper = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
    good = [torch.ones(4), torch.ones(4), torch.zeros(4), torch.zeros(4), torch.tensor(0.0)]
    bad = [torch.ones(4), torch.ones(4), torch.zeros(4), torch.zeros(4)]
    before = [t.clone() for t in good + bad] + ([counter.clone()] if torch.is_tensor(counter) else [])
    entries = [("good", good[0], good[1], good[2:4], None, good[4]),
               ("bad", bad[0], bad[1], bad[2:4], None, counter)]
    with pytest.raises(error, match=message):
        ext.step([("adam", hyper, entries)])
    after = good + bad + ([counter] if torch.is_tensor(counter) else [])
    assert all(bits(a) == bits(b) for a, b in zip(before, after))


def test_step_counters_are_counted_and_grouped():
    # Entries with different counts are stepped at their own step numbers in one call, and
    # each counter ends at the step taken; the weights equal those of separate calls.
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8)
    g = torch.linspace(-1, 1, 7)
    def fresh():
        return [torch.linspace(0, 1, 7), torch.zeros(7), torch.zeros(7)]
    a, b = fresh(), fresh()
    ca, cb = torch.tensor(0.0), torch.tensor(4.0)
    ext.step([("adam", hyper, [("a", a[0], g, a[1:], None, ca), ("b", b[0], g, b[1:], None, cb)])])
    assert ca.item() == 1.0 and cb.item() == 5.0
    ra, rb = fresh(), fresh()
    ext.step([("adam", hyper, [("a", ra[0], g, ra[1:], None, 1)])])
    ext.step([("adam", hyper, [("b", rb[0], g, rb[1:], None, 5)])])
    for x, y in zip(a + b, ra + rb):
        assert torch.equal(x.view(torch.int32), y.view(torch.int32))


def test_shared_step_counter_is_refused():
    hyper = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
    c = torch.tensor(0.0)
    x = [torch.ones(3), torch.zeros(3), torch.zeros(3)]
    y = [torch.ones(3), torch.zeros(3), torch.zeros(3)]
    with pytest.raises(ValueError, match="share memory"):
        ext.step([("adam", hyper, [("x", x[0], torch.ones(3), x[1:], None, c),
                                   ("y", y[0], torch.ones(3), y[1:], None, c)])])
    assert c.item() == 0.0 and torch.equal(x[0], torch.ones(3))


def test_lamb_clipping_needs_one_step_count():
    hyper = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, max_grad_norm=1.0,
                 bias_correction=True, grad_averaging=True)
    x = [torch.ones(3), torch.zeros(3), torch.zeros(3)]
    y = [torch.ones(3), torch.zeros(3), torch.zeros(3)]
    with pytest.raises(ValueError, match="same step count"):
        ext.step([("lamb", hyper, [("x", x[0], torch.ones(3), x[1:], None, torch.tensor(0.0)),
                                   ("y", y[0], torch.ones(3), y[1:], None, torch.tensor(3.0))])])
    assert torch.equal(x[0], torch.ones(3)) and torch.equal(y[0], torch.ones(3))


@pytest.mark.parametrize("kw,message", [
    (dict(lr=-1.0), "Invalid learning rate"),
    (dict(betas=(0.9, 1.0)), "beta"),
    (dict(eps=1e-50), "eps"),          # 0 in float32: refused as the kernels see it
    (dict(betas=(0.9, 1 - 1e-9)), "beta"),
    (dict(capturable=True), "capturable"),
    (dict(differentiable=True), "differentiable"),
    (dict(threads=0), "threads"),
])
def test_refused_options(kw, message):
    with pytest.raises(ValueError, match=message):
        ot.Adam([torch.nn.Parameter(torch.zeros(3))], **kw)


def test_foreach_and_fused_are_accepted():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = ot.AdamW([p], foreach=True, fused=True)
    assert opt.param_groups[0]["fused"] is True
