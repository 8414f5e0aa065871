"""Models, data and tolerances shared by the tests."""
import copy

import torch

STEPS = 50


def mlp(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 4)).to(dtype)


class Block(torch.nn.Module):
    """A pre-norm transformer block (attention and an MLP) with a linear head."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(d)
        # No key bias: its gradient is zero but for rounding (softmax ignores a constant
        # shift), and Adam-style optimizers turn that noise into full-size steps in chaotic
        # directions, which no comparison of two implementations survives.
        self.q = torch.nn.Linear(d, d)
        self.k = torch.nn.Linear(d, d, bias=False)
        self.v = torch.nn.Linear(d, d)
        self.out = torch.nn.Linear(d, d)
        self.norm2 = torch.nn.LayerNorm(d)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(),
                                       torch.nn.Linear(4 * d, d))
        self.head = torch.nn.Linear(d, 4)

    def forward(self, x):
        h = self.norm1(x)
        b, t, d = h.shape
        split = lambda z: z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        a = torch.nn.functional.scaled_dot_product_attention(
            split(self.q(h)), split(self.k(h)), split(self.v(h)))
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(dim=1))


def block(dtype=torch.float32):
    torch.manual_seed(0)
    return Block().to(dtype)


def batches(model_name, dtype=torch.float32, steps=STEPS):
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        if model_name == "mlp":
            x = torch.randn(32, 16, generator=g)
        else:
            x = torch.randn(8, 6, 32, generator=g)
        y = torch.randn(x.shape[0], 4, generator=g)
        out.append((x.to(dtype), y.to(dtype)))
    return out


MODELS = {"mlp": mlp, "block": block}


def train(model, opt, data, scheduler=None, after_step=None):
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x).float(), y.float())
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        if after_step is not None:
            after_step()
    return model


def twin(model):
    return copy.deepcopy(model)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def tolerance(a, b, lr, update=1.0):
    """The elementwise bound on |a - b| for two float32 runs of the same optimizer over STEPS
    steps that differ only in the order of correctly rounded operations: per step, each run
    rounds the new weight once (at most half an ulp each, 2^-24 |w| relative: 2^-23 |w|
    together) and computes the update, of magnitude at most `update * lr`, with a relative
    difference under 16 units of 2^-24 (a dozen operations, each correctly rounded); the two
    runs' gradients differ through the weights (weak feedback over 50 small steps, covered by
    a factor 2). So |a - b| <= 2 * STEPS * (2^-23 |w| + 2^-20 * update * lr)."""
    w = torch.maximum(a.abs(), b.abs()).double()
    return 2 * STEPS * (2.0**-23 * w + 2.0**-20 * update * lr)


def within(a, b, lr, update=1.0):
    """The largest |a - b| over the bound of `tolerance`, over all the tensors."""
    worst = 0.0
    for x, y in zip(a, b):
        bound = tolerance(x.detach().float(), y.detach().float(), lr, update)
        if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
            return float("inf")
        worst = max(worst, ((x.detach().double() - y.detach().double()).abs() / bound).max().item())
    return worst


def max_ulps(a, b):
    """The largest distance between a and b, in units of the last place of float32 at the
    larger magnitude of each pair."""
    a, b = a.double(), b.double()
    scale = torch.maximum(a.abs(), b.abs()).clamp_min(2.0**-126)
    ulp = torch.pow(2.0, torch.floor(torch.log2(scale)) - 23)
    return ((a - b).abs() / ulp).max().item()
