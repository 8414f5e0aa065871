"""Time per optimizer.step() on model-shaped parameter lists, run by hand (not in CI):

    python python/bench.py [--models toy,gpt2,gpt2-medium] [--repeats 5]

Models: GPT-2 small's 148 tensors (124M parameters), GPT-2 medium's 292 (355M), a 10-tensor
toy. Gradients are normal with a fixed 2% of exact zeros (the same tensors for every
optimizer). Peers on the same arrays: torch.optim.AdamW (its default for-loop path),
torch.optim.AdamW(fused=True), DeepSpeed's DeepSpeedCPUAdam (if installed) and
optkern.torch.AdamW; f32 parameters, and bf16 parameters with f32 state; one thread and all
threads. Each figure is the median of `repeats` steps after two warm-up steps, taken in
rounds that step every optimizer once in a rotating order, so that the machine's slow and fast
moments are shared (for the toy, 20 times as many rounds of 10 steps in a row, timed
together: a single step of some 50 us is within the machine's noise), with Python's garbage
collector off during each timing (it runs between them), as `timeit` does; every optimizer starts
from the same parameters. Also times the crate's step call on the same
tensors without the Python layer (`_optkern.step` on prepared entries) to show what the layer
adds. Prints a table and the ratios the README quotes.
"""
import argparse
import gc
import os
import statistics
import sys
import time

# The installed package, not the source folder next to this script (which lacks the
# compiled extension).
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import torch  # noqa: E402

import optkern  # noqa: E402
import optkern._optkern as ext  # noqa: E402
import optkern.torch as ot  # noqa: E402


def gpt2_shapes(layers, d, vocab=50257, ctx=1024):
    shapes = [(vocab, d), (ctx, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,), (d,), (d,),
                   (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
    shapes += [(d,), (d,)]
    return shapes


MODELS = {
    "toy": [(64, 64), (64,)] * 5,
    "gpt2": gpt2_shapes(12, 768),
    "gpt2-medium": gpt2_shapes(24, 1024),
}


def make(shapes, dtype):
    g = torch.Generator().manual_seed(0)
    params, grads = [], []
    for s in shapes:
        p = torch.nn.Parameter((torch.randn(s, generator=g) * 0.02).to(dtype))
        grad = torch.randn(s, generator=g) * 1e-3
        grad[torch.rand(s, generator=g) < 0.02] = 0.0
        params.append(p)
        grads.append(grad.to(dtype))
    return params, grads


def interleaved(steps, repeats, block=1):
    """The median time of one call of each step function, measured in rounds (each function
    `block` times in a row per round, in an order that rotates), so that the machine's slow
    and fast moments are shared by all of them; two warm-up rounds first."""
    names = list(steps)
    times = {name: [] for name in names}
    for r in range(repeats + 2):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            f = steps[name]
            # As timeit does: no garbage collection inside a timing, where it would charge
            # one optimizer for the objects another one allocated (it runs between timings).
            gc.disable()
            t = time.perf_counter()
            for _ in range(block):
                f()
            elapsed = time.perf_counter() - t
            gc.enable()
            if r >= 2:
                times[name].append(elapsed / block)
    return {name: statistics.median(ts) for name, ts in times.items()}


def peers(params, bf16):
    out = {}
    n = sum(p.numel() for p in params)
    if not bf16 and n < 200_000_000:
        # (Not for GPT-2 medium: with every optimizer's copy of the model alive at once, a
        # fourth does not fit in this machine's 24 GiB; it is the slowest by far anyway.)
        out["torch AdamW"] = lambda p: torch.optim.AdamW(p, lr=1e-3)
    if not bf16:
        out["torch AdamW fused"] = lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True)
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        if bf16:
            out["DeepSpeedCPUAdam"] = lambda p: DeepSpeedCPUAdam(p, lr=1e-3, adamw_mode=True, fp32_optimizer_states=True)
        else:
            out["DeepSpeedCPUAdam"] = lambda p: DeepSpeedCPUAdam(p, lr=1e-3, adamw_mode=True)
    except Exception as e:  # not installed, or its op does not build
        print(f"DeepSpeedCPUAdam not run: {e}")
    if bf16:
        out["optkern AdamW"] = lambda p: ot.AdamW(p, lr=1e-3, state_dtype=torch.float32)
    else:
        out["optkern AdamW"] = lambda p: ot.AdamW(p, lr=1e-3)
    return out


def bare_call(opt):
    """The crate's step on the optimizer's own tensors, without the Python layer: the call
    `optkern.torch` makes, prepared once."""
    opt.step()  # the state exists from the first step on
    group = opt.param_groups[0]
    kind, hyper = opt._hyper(group)
    entries = []
    for i, p in enumerate(group["params"]):
        st = opt.state[p]
        entries.append((f"p{i}", p.detach(), p.grad, [st["exp_avg"], st["exp_avg_sq"]], None,
                        st["step"]))
    threads = opt.threads or torch.get_num_threads()
    calls = [(kind, hyper, entries)]
    return lambda: ext.step(calls, threads=threads)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="toy,gpt2,gpt2-medium")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    all_threads = torch.get_num_threads()
    print(f"optkern {optkern.__version__} backend {optkern.backend()}, torch {torch.__version__}, "
          f"{all_threads} threads")
    rows = []
    for model in args.models.split(","):
        shapes = MODELS[model]
        n = sum(torch.Size(s).numel() for s in shapes)
        for bf16 in (False, True):
            dtype = torch.bfloat16 if bf16 else torch.float32
            base, grads = make(shapes, dtype)
            for threads in sorted({1, all_threads}):
                torch.set_num_threads(threads)
                steps = {}
                for name, build in peers(base, bf16).items():
                    params = [torch.nn.Parameter(p.detach().clone()) for p in base]
                    for p, g in zip(params, grads):
                        p.grad = g
                    opt = build(params)
                    steps[name] = opt.step
                    if name == "optkern AdamW":
                        steps["optkern bare call"] = bare_call(opt)
                small = n < 1_000_000
                repeats = args.repeats * (20 if small else 1)
                for name, t in interleaved(steps, repeats, 10 if small else 1).items():
                    rows.append((model, n, "bf16+f32 state" if bf16 else "f32", threads, name, t))
                del steps
    torch.set_num_threads(all_threads)
    print(f"{'model':12} {'params':>11} {'dtypes':15} {'thr':>3} {'optimizer':20} {'ms/step':>9}")
    for model, n, dt, thr, name, t in rows:
        print(f"{model:12} {n:>11,} {dt:15} {thr:>3} {name:20} {t * 1e3:>9.3f}")
    print("ratios (peer time / optkern time; above 1, optkern is faster):")
    for key in sorted({(r[0], r[2], r[3]) for r in rows}):
        sub = {r[4]: r[5] for r in rows if (r[0], r[2], r[3]) == key}
        ours = sub["optkern AdamW"]
        parts = [f"{k} {v / ours:.2f}x" for k, v in sub.items() if k != "optkern AdamW"]
        layer = ours - sub["optkern bare call"]
        parts.append(f"Python layer +{layer * 1e6:.0f} us ({layer / sub['optkern bare call'] * 100:.1f}%)")
        print(f"  {key[0]} {key[1]} {key[2]} thr: " + ", ".join(parts))


if __name__ == "__main__":
    main()
