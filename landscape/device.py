"""Device resolution: done once, by the caller (the CLI), then passed down."""

from __future__ import annotations

import torch

from landscape.errors import UserError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        UserError: an unknown spec, or CUDA asked for where there is none.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: no CUDA device is available here; use cpu or auto")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise UserError(f"unknown device {spec!r}; expected auto, cpu, cuda or cuda:N")
