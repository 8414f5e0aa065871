"""Time per step of the torch.optim optimizers that have no fused CPU kernel in torch, against
optkern.torch, run by hand (not in CI):

    python python/bench_optim.py [--n 1048576] [--repeats 21] [--optimizers NAdam,RAdam,...]

One f32 parameter of `n` elements (default 1M: out of the L2 cache of most CPUs, inside the
last level of many), gradients normal (scale 1e-3, no exact zeros, so that no state decays
into subnormals), the same tensors for every optimizer. For each optimizer: torch.optim's
default (the single-tensor for-loop on CPU), torch.optim with foreach=True (the multi-tensor
ops; for one tensor the same passes over memory), and optkern.torch, on one thread and on all
of them (torch.set_num_threads). Each figure is the median of `repeats` steps after two
warm-up steps, taken in rounds that step every optimizer once in a rotating order, with
Python's garbage collector off during each timing. Prints a table and the ratios.
"""
import argparse
import gc
import os
import statistics
import sys
import time

_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import torch  # noqa: E402

import optkern  # noqa: E402
import optkern.torch as ot  # noqa: E402

KW = {
    "NAdam": dict(lr=2e-3),
    "RAdam": dict(lr=1e-3),
    "Adamax": dict(lr=2e-3),
    "Adadelta": dict(lr=1.0),
    "Rprop": dict(lr=1e-3),
    "ASGD": dict(lr=1e-2),
}


def interleaved(steps, repeats):
    names = list(steps)
    times = {name: [] for name in names}
    for r in range(repeats + 2):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            gc.disable()
            t = time.perf_counter()
            steps[name]()
            elapsed = time.perf_counter() - t
            gc.enable()
            if r >= 2:
                times[name].append(elapsed)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1 << 20)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--optimizers", default=",".join(KW))
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(args.n, generator=g) * 0.5
    grad = torch.randn(args.n, generator=g) * 1e-3
    all_threads = torch.get_num_threads()
    print(f"optkern {optkern.backend()}, torch {torch.__version__}, n = {args.n}, f32, "
          f"{all_threads} threads available")
    print(f"{'optimizer':10} {'threads':>7} {'torch loop':>12} {'torch foreach':>14} {'optkern':>10} "
          f"{'vs loop':>8} {'vs foreach':>10}")
    for name in args.optimizers.split(","):
        kw = KW[name]
        for threads in sorted({1, all_threads}):
            torch.set_num_threads(threads)
            steps = {}
            for label, make in (("loop", lambda p: getattr(torch.optim, name)([p], **kw)),
                                ("foreach", lambda p: getattr(torch.optim, name)([p], foreach=True, **kw)),
                                ("optkern", lambda p: getattr(ot, name)([p], threads=threads, **kw))):
                p = torch.nn.Parameter(w0.clone())
                p.grad = grad.clone()
                opt = make(p)
                steps[label] = opt.step
            t = interleaved(steps, args.repeats)
            print(f"{name:10} {threads:7} {t['loop'] * 1e3:10.3f}ms {t['foreach'] * 1e3:12.3f}ms "
                  f"{t['optkern'] * 1e3:8.3f}ms {t['loop'] / t['optkern']:7.2f}x "
                  f"{t['foreach'] / t['optkern']:9.2f}x")
    torch.set_num_threads(all_threads)


if __name__ == "__main__":
    main()
