"""The float arithmetic of an evaluation (``--precision``).

PyTorch's CUDA default runs float32 convolutions on TF32 tensor cores (10-bit mantissa), so a
"float32" plane on a GPU would differ from the same plane on a CPU by about 1e-4. Evaluations
therefore say which arithmetic they use:

- ``fp32``: IEEE float32 throughout (TF32 off for cuDNN convolutions and CUDA matmuls). Values
  match the CPU and the naive reference loop to float rounding.
- ``tf32``: TF32 tensor cores for float32 convolutions and matmuls (GPU only; on a CPU it is the
  same arithmetic as fp32). Several times faster on Ampere and later; changes the numbers slightly.
- ``bf16``: bfloat16 autocast (what autocast keeps in float32 stays IEEE float32).

On CUDA, cuDNN picks its algorithms by its heuristics unless ``autotune`` asks it to time them
(``torch.backends.cudnn.benchmark``), which it then does for each new input shape on each thread.
Every setting is restored on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS = ("fp32", "tf32", "bf16")


@contextlib.contextmanager
def numerics(precision: str, device: torch.device | str, *, autotune: bool = False) -> Iterator[None]:
    """Run the enclosed evaluation with ``precision``'s arithmetic on ``device`` (and cuDNN's
    autotuner on or off: ``autotune``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    with contextlib.ExitStack() as stack:
        if device.type == "cuda":
            stack.enter_context(_cuda_flags(tf32=precision == "tf32", autotune=autotune))
        if precision == "bf16":
            stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
        yield


@contextlib.contextmanager
def _cuda_flags(*, tf32: bool, autotune: bool) -> Iterator[None]:
    """TF32 on or off for cuDNN convolutions and CUDA matmuls, cuDNN's autotuner as asked. Uses the
    ``fp32_precision`` settings where this torch has them (2.9 and later: mixing them with the
    legacy ``allow_tf32`` flags makes torch raise), else the legacy flags."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    conv = getattr(cudnn, "conv", None)
    if hasattr(conv, "fp32_precision") and hasattr(matmul, "fp32_precision"):
        objects, names, value = (conv, matmul), ("fp32_precision",) * 2, "tf32" if tf32 else "ieee"
    else:
        objects, names, value = (cudnn, matmul), ("allow_tf32",) * 2, tf32
    saved = [getattr(o, n) for o, n in zip(objects, names)] + [cudnn.benchmark]
    try:
        for o, n in zip(objects, names):
            setattr(o, n, value)
        cudnn.benchmark = autotune
        yield
    finally:
        for o, n, v in zip(objects, names, saved):
            setattr(o, n, v)
        cudnn.benchmark = saved[-1]
