"""Parameter-space geometry: weight vectors, planes through checkpoints, random planes, projections.

The weight vector of a model is every floating-point parameter (BatchNorm affine included), in
``named_parameters`` order, as one float64 vector. Planes are computed in float64 so that grid
points land on the checkpoints to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

from dataclasses import dataclass

import numpy as np
import torch

from landscape.engine.layout import ParamLayout
from landscape.errors import UserError


@dataclass(frozen=True)
class PlaneBasis:
    """A plane ``origin + x*u + y*v`` in weight space (float64 vectors of length P).

    For a plane through three checkpoints (``mode="three_point"``) the scalars ``norm_b``
    (|B-A|), ``c_u`` ((C-A).u) and ``norm_c_perp`` (|C-A - ((C-A).u) u|) give every point's
    affine coefficients on A, B, C.
    """

    origin: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    mode: str
    norm_b: float = float("nan")
    c_u: float = float("nan")
    norm_c_perp: float = float("nan")

    def point(self, x: float, y: float) -> torch.Tensor:
        """The weight vector at plane coordinates (x, y), computed from the origin directly."""
        return self.origin + x * self.u + y * self.v

    def points(self, xy: torch.Tensor) -> torch.Tensor:
        """(K, P) weight vectors for (K, 2) coordinates."""
        xy = xy.to(self.origin)
        return self.origin + xy[:, :1] * self.u + xy[:, 1:] * self.v

    def coefficients(self, x: float, y: float) -> tuple[float, float, float]:
        """Affine coefficients (alpha, beta, gamma) with point = alpha A + beta B + gamma C."""
        if self.mode != "three_point":
            raise UserError("affine coefficients exist only for planes through three checkpoints")
        beta = x / self.norm_b - y * self.c_u / (self.norm_c_perp * self.norm_b)
        gamma = y / self.norm_c_perp
        return 1.0 - beta - gamma, beta, gamma

    def project(self, w: torch.Tensor) -> tuple[float, float, float]:
        """Coordinates (x, y) of ``w``'s projection onto the plane, and the residual distance."""
        d = w.to(self.origin) - self.origin
        x, y = float(d @ self.u), float(d @ self.v)
        residual = float(torch.linalg.vector_norm(d - x * self.u - y * self.v))
        return x, y, residual


def three_point_basis(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> PlaneBasis:
    """Garipov et al. (2018): origin A, u = (B-A)/|B-A|, v = Gram-Schmidt of C-A against u.

    Raises:
        UserError: two checkpoints are identical or the three are collinear.
    """
    bd, cd = b - a, c - a
    norm_b = float(torch.linalg.vector_norm(bd))
    scale = max(float(torch.linalg.vector_norm(a)), 1.0)
    if norm_b <= 1e-12 * scale:
        raise UserError("checkpoints A and B are identical; a plane needs three distinct models")
    if float(torch.linalg.vector_norm(cd)) <= 1e-12 * scale:
        raise UserError("checkpoints A and C are identical; a plane needs three distinct models")
    u = bd / norm_b
    c_u = float(cd @ u)
    perp = cd - c_u * u
    norm_perp = float(torch.linalg.vector_norm(perp))
    if norm_perp <= 1e-6 * max(norm_b, float(torch.linalg.vector_norm(cd))):
        raise UserError(
            "the three checkpoints are collinear (C lies on the line through A and B); "
            "choose a C off that line, or use `landscape interp` for a path"
        )
    return PlaneBasis(a, u, perp / norm_perp, "three_point", norm_b, c_u, norm_perp)


def filter_normalized_direction(
    params: dict[str, torch.Tensor], layout: ParamLayout, *, generator: torch.Generator,
    ignore_1d: bool = True,
) -> torch.Tensor:
    """Li et al. (2018): a Gaussian direction whose every output filter has its weight's norm.

    Tensors with one dimension (biases, norm affines) are zero when ``ignore_1d`` (the paper's
    default); otherwise they are copied from the weights. Returns a (P,) float64 vector.
    """
    parts = []
    for name in layout.names:
        w = params[name].detach().to(torch.float64).cpu()
        if w.dim() <= 1:
            parts.append(torch.zeros_like(w) if ignore_1d else w.clone())
            continue
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64)
        wn = w.reshape(w.shape[0], -1).norm(dim=1)
        dn = d.reshape(d.shape[0], -1).norm(dim=1)
        d = d * (wn / dn.clamp_min(1e-30)).reshape(-1, *([1] * (w.dim() - 1)))
        parts.append(d)
    return torch.cat([p.reshape(-1) for p in parts])


def random_basis(
    params: dict[str, torch.Tensor], layout: ParamLayout, *, seed: int, ignore_1d: bool = True
) -> PlaneBasis:
    """A filter-normalised random plane around one checkpoint; the second direction is made
    orthogonal to the first (Gram-Schmidt). Coordinates are in units of the directions."""
    gen = torch.Generator().manual_seed(seed)
    u = filter_normalized_direction(params, layout, generator=gen, ignore_1d=ignore_1d)
    v = filter_normalized_direction(params, layout, generator=gen, ignore_1d=ignore_1d)
    v = v - (v @ u) / (u @ u) * u
    origin = layout.flatten(params).cpu()
    return PlaneBasis(origin, u, v, "random")


def axis(lo: float, hi: float, margin: float, n: int) -> np.ndarray:
    """``n`` evenly spaced values covering [lo, hi] widened by ``margin`` of the span each side."""
    span = hi - lo
    return np.linspace(lo - margin * span, hi + margin * span, n)


def pca_basis(vecs: Sequence[torch.Tensor]) -> tuple[PlaneBasis, tuple[float, float]]:
    """The plane through the mean of ``vecs`` along their top two principal directions (of the
    centred weight vectors), and the fraction of the variance each direction explains.

    Raises:
        UserError: fewer than three vectors, or vectors on one line (no second direction).
    """
    if len(vecs) < 3:
        raise UserError("a PCA plane needs at least three checkpoints")
    v = torch.stack([x.double() for x in vecs])
    mean = v.mean(0)
    d = v - mean
    gram = d @ d.T  # (n, n): the directions from the small eigenproblem, never (P, P)
    values, vectors = torch.linalg.eigh(gram)
    order = torch.argsort(values, descending=True)
    values, vectors = values[order].clamp(min=0), vectors[:, order]
    total = float(values.sum())
    if total <= 0 or float(values[1]) <= 1e-12 * total:
        raise UserError("the checkpoints lie on one line (or coincide): their PCA plane has no second direction")
    u, w = (d.T @ vectors[:, k] for k in (0, 1))
    u, w = u / torch.linalg.vector_norm(u), w / torch.linalg.vector_norm(w)
    w = w - (w @ u) * u
    w = w / torch.linalg.vector_norm(w)
    return PlaneBasis(mean, u, w, "pca"), (float(values[0]) / total, float(values[1]) / total)
