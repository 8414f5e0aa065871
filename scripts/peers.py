"""Times PyTorch's fused CPU optimizers and DeepSpeed's CPU Adam on the arrays the crate's
compare example wrote with --dump. Run by scripts/compare-peers.sh (see there).

usage: peers.py DATA_DIR THREADS OUT.json
"""
import glob, json, os, statistics, sys, time

import numpy as np
import torch

data_dir, threads, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(threads)
LR, MU, BETAS, EPS = 1e-3, 0.9, (0.9, 0.999), 1e-8
# The crate's example steps Adam at a fixed step 10; the peers' counters start from 9.
STEP0 = 9
TORCH_DTYPE = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def load(meta, raw):
    """The buffers of one dump as tensors: weights, the state buffers, gradient."""
    n, off, out = meta["n"], 0, []
    for dt in [meta["weights"]] + [meta["state"]] * meta["states"] + [meta["gradient"]]:
        size = 4 if dt == "f32" else 2
        chunk = np.frombuffer(raw, dtype="<u4" if size == 4 else "<u2", count=n, offset=off)
        off += n * size
        t = torch.from_numpy(chunk.astype(np.int32 if size == 4 else np.int16, copy=True))
        out.append(t.view(TORCH_DTYPE[dt]))
    assert off == len(raw), "the dump's length does not match its description"
    return out


def median_step(step, budget=0.2):
    step(); step()
    t = time.perf_counter(); step(); step(); once = (time.perf_counter() - t) / 2
    reps = int(min(2000, max(5, budget / max(once, 1e-9))))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def torch_fused(meta, bufs):
    w, *s, g = bufs
    p = torch.nn.Parameter(w)
    p.grad = g
    if meta["optimizer"] == "momentum":
        opt = torch.optim.SGD([p], lr=LR, momentum=MU, fused=True)
        opt.state[p]["momentum_buffer"] = s[0]
    else:
        opt = torch.optim.Adam([p], lr=LR, betas=BETAS, eps=EPS, fused=True)
        opt.state[p].update(step=torch.tensor(float(STEP0)), exp_avg=s[0], exp_avg_sq=s[1])
    return opt.step


def deepspeed_adam(meta, bufs, direct):
    from deepspeed.ops.adam import DeepSpeedCPUAdam
    w, m, v, g = bufs
    p = torch.nn.Parameter(w)
    p.grad = g
    opt = DeepSpeedCPUAdam([p], lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0,
                           adamw_mode=False)
    opt.state[p].update(step=STEP0, exp_avg=m, exp_avg_sq=v)
    if not direct:
        return opt.step
    op, oid = opt.ds_opt_adam, opt.opt_id

    def step(opt=opt):  # holds the optimizer: its destructor frees the op's state
        op.adam_update(oid, STEP0 + 1, LR, BETAS[0], BETAS[1], EPS, 0.0, True, p.data, g, m, v)
    return step


rows = []
for path in sorted(glob.glob(os.path.join(data_dir, "*.json"))):
    meta = json.load(open(path))
    raw = open(path[:-5] + ".bin", "rb").read()
    peers = []
    same_type = meta["weights"] == meta["state"] == meta["gradient"]
    if same_type:
        peers.append(("torch fused", lambda b: torch_fused(meta, b)))
    if meta["optimizer"] == "adam" and meta["state"] == "f32" and meta["weights"] == meta["gradient"] != "f16":
        peers.append(("deepspeed step()", lambda b: deepspeed_adam(meta, b, False)))
        peers.append(("deepspeed adam_update", lambda b: deepspeed_adam(meta, b, True)))
    for name, make in peers:
        # Every peer starts from the dump's bytes.
        s = median_step(make(load(meta, raw)))
        row = dict(peer=name, optimizer=meta["optimizer"], dtype=meta["dtype"], data=meta["data"],
                   n=meta["n"], threads=threads, seconds=s)
        rows.append(row)
        print(f"{name:<22} {meta['optimizer']:<9} {meta['dtype']:<14} {meta['data']:<10} "
              f"n={meta['n']:<9} threads={threads}: {s*1e6:.1f} us", file=sys.stderr)
json.dump(dict(torch=torch.__version__, rows=rows), open(out, "w"), indent=1)
