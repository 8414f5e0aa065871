"""optkern: fused, hand-vectorized CPU optimizer steps, bit-identical across AVX-512, AVX2,
NEON and scalar, chosen at run time.

`optkern.torch` holds drop-in replacements for `torch.optim` optimizers. `backend()` names the
instruction set this CPU runs (set OPTKERN_BACKEND=scalar|avx2|avx512|neon before the first
step to choose another one the CPU has).
"""
from ._optkern import __version__, backend

__all__ = ["__version__", "backend"]
