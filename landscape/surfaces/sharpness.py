"""How sharp a minimum is (PyHessian's measures, for any model): the top eigenvalues of the
Hessian of the training loss by the Lanczos method with full reorthogonalisation, and its trace by
Hutchinson's estimator, both from Hessian-vector products (double backward through the model),
on a seeded subset of the train split with BatchNorm in eval mode (the loss is a fixed function of
the weights).

Each eigenvalue comes with its residual ``|H y - lambda y|`` (the Ritz vector ``y`` has norm 1),
which is zero at convergence; the trace with its standard error over the Rademacher probes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from landscape.errors import UserError
from landscape.progress import progress

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # per-sample loss (outputs, targets) -> (N,)


@dataclass(frozen=True)
class SharpnessConfig:
    """Settings of ``sharpness``.

    Attributes:
        top: how many of the largest eigenvalues.
        iterations: Lanczos steps (at least ``top``; more give better converged eigenvalues).
        trace_samples: Rademacher probes of Hutchinson's estimator.
        subset: train samples used (seeded; None: all).
        batch_size: samples per forward pass (the loss is their exact mean, whatever the size).
        seed: seeds the subset, the Lanczos start vector and the probes.
    """

    top: int = 3
    iterations: int = 30
    trace_samples: int = 50
    subset: int | None = 1000
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("top", "iterations", "trace_samples", "batch_size"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise UserError(f"{name} must be a positive integer, got {v!r}")
        if self.iterations < self.top:
            raise UserError(f"iterations ({self.iterations}) must be at least top ({self.top})")
        if self.subset is not None and not (isinstance(self.subset, int) and self.subset >= 1):
            raise UserError(f"subset must be a positive integer or None, got {self.subset!r}")


@dataclass(frozen=True)
class Sharpness:
    """The sharpness of one model's training loss.

    Attributes:
        eigenvalues: the ``top`` largest Hessian eigenvalues, in decreasing order.
        residuals: ``|H y - lambda y|`` of each (its convergence: 0 when exact).
        trace, trace_stderr: Hutchinson's estimate of the Hessian's trace and its standard error.
        loss: the training loss on the subset.
        samples, parameters: the subset's size and the number of weights.
    """

    eigenvalues: tuple[float, ...]
    residuals: tuple[float, ...]
    trace: float
    trace_stderr: float
    loss: float
    samples: int
    parameters: int


class HessianOperator:
    """Hessian-vector products of the mean per-sample loss of ``model`` on (``inputs``,
    ``targets``) with respect to its trainable parameters (flattened, float64 vectors outside)."""

    def __init__(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss: Loss,
                 batch_size: int = 256) -> None:
        self.model, self.inputs, self.targets, self.loss_fn, self.batch_size = model.eval(), inputs, targets, loss, batch_size
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise UserError("the model has no trainable parameters to take a Hessian of")
        self.size = sum(p.numel() for p in self.params)

    def _batches(self):
        n = len(self.targets)
        for s in range(0, n, self.batch_size):
            yield self.inputs[s:s + self.batch_size], self.targets[s:s + self.batch_size], min(self.batch_size, n - s) / n

    def loss(self) -> float:
        with torch.no_grad():
            return float(sum(w * self.loss_fn(self.model(x), y).double().mean() for x, y, w in self._batches()))

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v for a (P,) vector ``v``."""
        pieces = self._split(v)
        out = torch.zeros(self.size, dtype=torch.float64)
        for x, y, w in self._batches():
            loss = self.loss_fn(self.model(x), y).mean() * w
            grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
            dot = sum((g * p).sum() for g, p in zip(grads, pieces) if g is not None)
            if not torch.is_tensor(dot) or not dot.requires_grad:  # no weight reaches the loss twice: H v = 0
                continue
            hv = torch.autograd.grad(dot, self.params, allow_unused=True)
            out += torch.cat([(torch.zeros_like(p) if h is None else h).reshape(-1).double().cpu()
                              for h, p in zip(hv, self.params)])
        return out

    def _split(self, v: torch.Tensor) -> list[torch.Tensor]:
        out, start = [], 0
        for p in self.params:
            out.append(v[start:start + p.numel()].reshape(p.shape).to(p.device, p.dtype))
            start += p.numel()
        return out


def lanczos_top(op: HessianOperator, top: int, iterations: int, seed: int,
                step: Callable[[], None] = lambda: None) -> tuple[list[float], list[float]]:
    """The ``top`` largest eigenvalues of ``op`` and their residuals, from ``iterations``
    Lanczos steps with full reorthogonalisation (``step`` is called after each product)."""
    m = min(iterations, op.size)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(op.size, generator=gen, dtype=torch.float64)
    q /= torch.linalg.vector_norm(q)
    basis, alpha, beta = [q], [], []
    for j in range(m):
        w = op.matvec(basis[j])
        step()
        alpha.append(float(w @ basis[j]))
        for b in basis:  # full reorthogonalisation, twice for stability
            w -= (w @ b) * b
        for b in basis:
            w -= (w @ b) * b
        norm = float(torch.linalg.vector_norm(w))
        if j == m - 1 or norm < 1e-12:
            break
        beta.append(norm)
        basis.append(w / norm)
    k = len(alpha)
    t = np.diag(alpha) + np.diag(beta[:k - 1], 1) + np.diag(beta[:k - 1], -1)
    values, vectors = np.linalg.eigh(t)
    order = np.argsort(values)[::-1][:top]
    q = torch.stack(basis[:k], dim=1)  # (P, k)
    eig, res = [], []
    for i in order:
        y = q @ torch.from_numpy(vectors[:, i])
        y /= torch.linalg.vector_norm(y)
        hy = op.matvec(y)
        step()
        lam = float(y @ hy)
        eig.append(lam)
        res.append(float(torch.linalg.vector_norm(hy - lam * y)))
    return eig, res


def hutchinson_trace(op: HessianOperator, samples: int, seed: int,
                     step: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """Hutchinson's estimate ``mean(v^T H v)`` over Rademacher ``v``, and its standard error."""
    gen = torch.Generator().manual_seed(seed + 1)
    values = []
    for _ in range(samples):
        v = torch.randint(0, 2, (op.size,), generator=gen, dtype=torch.int64).double() * 2 - 1
        values.append(float(v @ op.matvec(v)))
        step()
    se = float(np.std(values, ddof=1) / math.sqrt(samples)) if samples > 1 else math.nan
    return float(np.mean(values)), se


def sharpness(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss: Loss,
              config: SharpnessConfig = SharpnessConfig(), *, desc: str = "sharpness") -> Sharpness:
    """The top Hessian eigenvalues and the trace of ``model``'s mean ``loss`` on the given
    samples (already the subset; BatchNorm in eval mode)."""
    op = HessianOperator(model, inputs, targets, loss, config.batch_size)
    total = min(config.iterations, op.size) + config.top + config.trace_samples
    with progress(total=total, desc=desc, unit="hvp") as bar:
        eig, res = lanczos_top(op, config.top, config.iterations, config.seed, lambda: bar.update(1))
        trace, se = hutchinson_trace(op, config.trace_samples, config.seed, lambda: bar.update(1))
    return Sharpness(tuple(eig), tuple(res), trace, se, op.loss(), len(targets), op.size)


def dense_hessian(op: HessianOperator) -> torch.Tensor:
    """The (P, P) Hessian column by column (for small models: tests and checks)."""
    eye = torch.eye(op.size, dtype=torch.float64)
    return torch.stack([op.matvec(eye[i]) for i in range(op.size)], dim=1)


def measure_sharpness(
    checkpoints,
    *,
    data=None,
    data_root=None,
    loss="ce",
    config: SharpnessConfig = SharpnessConfig(),
    image=None,
    device: str | torch.device = "cpu",
    skip: Callable[[str, str], Sharpness | None] = lambda name, sha: None,
    on_result: Callable[[str, str, Sharpness], None] = lambda name, sha, result: None,
) -> list[tuple[str, Sharpness]]:
    """The sharpness of every checkpoint (files, ``Checkpoint``s or modules) on the train split of
    ``data`` (default: the dataset they record), by display name, in order.

    ``skip(name, sha256)`` may return a result computed before (it is then not computed again);
    ``on_result`` receives each new one as it finishes (the CLI writes its file there).

    Example:
        >>> for name, s in measure_sharpness(["m1.safetensors", "m2.safetensors"]):
        ...     print(name, s.eigenvalues[0], s.trace, s.trace_stderr)
    """
    from landscape.assets.datasets import load_dataset
    from landscape.assets.modules import as_checkpoints
    from landscape.assets.resident import as_tensors
    from landscape.assets.resolve import dataset_name
    from landscape.grid.identity import CheckpointRef, display_names
    from landscape.grid.objectives import per_sample_loss
    from landscape.grid.prepare import check_classes, image_transform, resolve_data
    from landscape.grid.settings import GridSettings

    ckpts = as_checkpoints(checkpoints)
    dataset = resolve_data(data, ckpts)
    for c in ckpts:
        check_classes(c, dataset)
    transform = image_transform(dataset, GridSettings(image=image), ckpts)
    from landscape.assets.resident import subset_indices

    train = load_dataset(dataset_name(dataset), "train", data_root, image=transform)
    x, y = as_tensors(train, subset_indices(len(train), config.subset, seed=config.seed))  # the subset only
    x, y = x.to(device), y.to(device)
    fn = per_sample_loss(loss)
    out = []
    for name, c in zip(display_names(ckpts), ckpts):
        sha = CheckpointRef.of(c).sha256
        result = skip(name, sha)
        if result is None:
            for p in c.model.parameters():
                if not torch.isfinite(p).all():
                    raise UserError(f"{name} has non-finite weights (NaN or inf); its Hessian is undefined")
            result = sharpness(c.model.to(device), x, y, fn, config, desc=f"sharpness {name}")
            on_result(name, sha, result)
        out.append((name, result))
    return out
