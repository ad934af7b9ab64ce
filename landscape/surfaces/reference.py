"""The naive per-point reference loop that peers use, kept as ground truth for the engine.

For every grid point: a fresh copy of the model, the point's weights loaded into it, BatchNorm
statistics recomputed with ``torch.optim.swa_utils.update_bn`` over a DataLoader, then a
DataLoader pass per split. Slow by design; tests and benchmarks compare the engine against it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, Dataset

from landscape.engine.bn import bn_modules
from landscape.engine.layout import ParamLayout
from landscape.surfaces.geometry import PlaneBasis
from landscape.engine.numerics import numerics


def naive_point(
    model: nn.Module,
    weights: torch.Tensor,
    splits: dict[str, Dataset],
    *,
    bn: str,
    bn_train: Dataset | None = None,
    bn_batch_size: int = 128,
    buffers: dict[str, torch.Tensor] | None = None,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, float]]:
    """Loss and accuracy (%) of ``model`` with the (P,) weight vector ``weights``; batches come
    from the datasets through a DataLoader and are moved to ``device`` one by one."""
    m = copy.deepcopy(model).to(device).eval()
    layout = ParamLayout.of(m)
    with torch.no_grad():
        params = dict(m.named_parameters())
        for name, t in layout.unflatten(weights).items():
            params[name].copy_(t)
        own = dict(m.named_buffers())
        for name, t in (buffers or {}).items():
            own[name].copy_(t)
    with numerics("fp32", device):  # IEEE float32, also on GPUs (no TF32)
        if bn == "recompute" and bn_modules(m):
            update_bn(DataLoader(_inputs_only(bn_train), batch_size=bn_batch_size, shuffle=False), m,
                      device=torch.device(device))
        m.eval()
        return {split: _evaluate(m, ds, batch_size, device) for split, ds in splits.items()}


def naive_plane(
    model: nn.Module,
    basis: PlaneBasis,
    x: np.ndarray,
    y: np.ndarray,
    splits: dict[str, Dataset],
    *,
    bn: str,
    bn_train: Dataset | None = None,
    bn_batch_size: int = 128,
    buffer_states: Sequence[dict[str, torch.Tensor]] | None = None,
    batch_size: int = 128,
) -> dict[str, dict[str, np.ndarray]]:
    """(G, G) loss and accuracy arrays, indexed [j, i], one naive evaluation per point.

    ``buffer_states``: the checkpoints' state dicts, for the keep (first) and interpolate
    (affine combination of the first three) policies.
    """
    out = {s: {"loss": np.empty((len(y), len(x))), "acc": np.empty((len(y), len(x)))}
           for s in splits}
    for j, yv in enumerate(y):
        for i, xv in enumerate(x):
            bufs = _point_buffers(model, basis, float(xv), float(yv), bn, buffer_states)
            res = naive_point(model, basis.point(float(xv), float(yv)), splits, bn=bn,
                              bn_train=bn_train, bn_batch_size=bn_batch_size, buffers=bufs,
                              batch_size=batch_size)
            for s in splits:
                out[s]["loss"][j, i], out[s]["acc"][j, i] = res[s]["loss"], res[s]["acc"]
    return out


def _point_buffers(model, basis, xv, yv, bn, states):
    if bn == "recompute" or not states:
        return None
    names = [k for k in dict(model.named_buffers()) if any(
        k == (f"{n}.{b}" if n else b) for n, _ in bn_modules(model)
        for b in ("running_mean", "running_var", "num_batches_tracked"))]
    if bn == "keep":
        return {k: states[0][k] for k in names}
    coef = basis.coefficients(xv, yv)
    return {k: (sum(c * s[k].double() for c, s in zip(coef, states[:3])).float()
                if states[0][k].is_floating_point() else states[0][k]) for k in names}


class _inputs_only(Dataset):
    """update_bn feeds ``batch[0]`` of list batches; keep it to the inputs explicitly."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.ds[i][0]


@torch.no_grad()
def _evaluate(model: nn.Module, ds: Dataset, batch_size: int, device) -> dict[str, float]:
    loss, correct, n = 0.0, 0, 0
    for xb, yb in DataLoader(ds, batch_size=batch_size, shuffle=False):
        xb, yb = xb.to(device), yb.to(device)
        logits = model(xb)
        loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(-1) == yb).sum())
        n += len(yb)
    return {"loss": loss / n, "acc": 100.0 * correct / n}
