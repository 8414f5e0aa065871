"""Run under `torchrun --nproc-per-node 2`: FSDP2 (fully_shard on a CPU device mesh, gloo)
training of a small model with optkern.torch.AdamW, compared on rank 0 with single-process
torch.optim.AdamW on the same model and data. Every rank gets the same batches, so the
averaged gradient is the single-process one. Writes "ok <max ratio to the bound>" or the
failure to the file named by argv[1]."""
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

sys.path.insert(0, os.path.dirname(__file__))
import optkern.torch as ot  # noqa: E402
from helpers import MODELS, batches, train, twin, within  # noqa: E402

STEPS = 20


def main():
    out = sys.argv[1]
    dist.init_process_group("gloo", timeout=__import__("datetime").timedelta(seconds=60))
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model = MODELS["block"]()
    reference = twin(model)
    for layer in (model.q, model.k, model.v, model.out, model.mlp, model.head):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    assert any(hasattr(p, "_local_tensor") for p in model.parameters()), "not sharded"
    data = batches("block", steps=STEPS)
    train(model, ot.AdamW(model.parameters(), lr=1e-3), data)
    full = [p.full_tensor() if hasattr(p, "full_tensor") else p.detach() for p in model.parameters()]
    if dist.get_rank() == 0:
        train(reference, torch.optim.AdamW(reference.parameters(), lr=1e-3), data)
        ratio = within(reference.parameters(), full, 1e-3)
        with open(out, "w") as f:
            f.write(f"ok {ratio}\n" if ratio <= 1.0 else f"too far {ratio}\n")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
