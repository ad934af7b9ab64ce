"""Simplicial Pointwise Random Optimization (Benton, Maddox, Lotfi, Wilson, ICML 2021, "Loss
Surface Simplexes for Mode Connecting Volumes and Fast Ensembling", Section 4 and Algorithm 1).

A simplex of V vertices (``--spro-vertices``, default 3) is grown around the fine-tuned member 1
(vertex 0, fixed). Vertices are added one at a time; vertex j starts at the centroid of vertices
0..j-1 plus a small seeded Gaussian perturbation (1% of each tensor's RMS, so that the simplex
is not degenerate) and is trained alone (the earlier vertices fixed) for ``--cycle-epochs``
epochs with SGD (the run's momentum and weight decay; the per-epoch cosine from
``--cycle-lr``) on

    loss = CE(sum_i alpha_i theta_i; batch) - lambda * log V(theta_0, ..., theta_j),
    alpha ~ Uniform(simplex) = Dirichlet(1, ..., 1), drawn afresh for every batch,

with lambda = ``--spro-volume-reg`` (default 0.01) and V the simplex's j-dimensional volume.
The volume is computed from the Gram matrix of the edges E = [theta_1 - theta_0, ...]:
V = sqrt(det(E^T E)) / j!, which equals the Cayley-Menger determinant form of the paper. Every
floating-point parameter (BatchNorm affine included) is part of the vertices; frozen ones
(``requires_grad`` False) are the same in every vertex. BN statistics use the batch in training
and are recomputed for every sample. The steps are plain fp32 SGD: the recipe settings
``--optimizer``, ``--amp``, ``--label-smoothing``, ``--mixup``, ``--cutmix`` and ``--grad-clip``
are refused rather than ignored. Members 2..K are K-1 points drawn
uniformly from the finished simplex (Dirichlet(1) weights, seeded by the member's seed) with BN
recomputed on the train split; their barycentric weights are recorded. Finished vertices are
kept in ``spro-state.safetensors``, so a rerun trains only the missing ones.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ensembles.methods.common import (
    Context,
    LocalMethod,
    LocalOptions,
    batch_stream,
    load_state,
    refuse_recipe,
    require_cycle,
    sampled_model,
    save_state,
    steps_per_epoch,
    weight_vector,
)
from ensembles.methods.registry import register_method
from ensembles.schedules import cosine_lr
from landscape.errors import UserError
from landscape.engine.layout import ParamLayout
from landscape.progress import progress


@dataclass(frozen=True)
class SPROOptions(LocalOptions):
    """SPRO's own options: the simplex's vertices, member 1 included (``--spro-vertices``), and
    the volume regulariser lambda (``--spro-volume-reg``)."""

    spro_vertices: int = 3
    spro_volume_reg: float = 0.01

    def __post_init__(self) -> None:
        if not isinstance(self.spro_vertices, int) or self.spro_vertices < 2:
            raise UserError(f"--spro-vertices must be an integer >= 2 (member 1 and at least one "
                            f"trained vertex), got {self.spro_vertices!r}")
        if not self.spro_volume_reg >= 0:
            raise UserError(f"--spro-volume-reg must be >= 0, got {self.spro_volume_reg!r}")


@dataclass(frozen=True)
class SPROConfig:
    """SPRO's hyperparameters: ``vertices`` (member 1 included), ``epochs`` and ``lr`` per new
    vertex, and the volume regulariser ``volume_reg`` (lambda)."""

    vertices: int
    epochs: int
    lr: float
    volume_reg: float = 0.01

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise UserError(f"spro needs a positive --cycle-lr, got {self.lr!r}")

    @classmethod
    def of(cls, run) -> "SPROConfig":
        require_cycle(run, "spro", "--cycle-epochs F (epochs per new vertex) and --cycle-lr LR (their "
                      "learning rate), e.g. --cycle-epochs 5 --cycle-lr 0.02")
        refuse_recipe(run, "spro")
        return cls(run.options.spro_vertices, run.cycle_epochs, run.cycle_lr,
                   run.options.spro_volume_reg)


def log_volume(vertices: Sequence[torch.Tensor]) -> torch.Tensor:
    """log of the (n-1)-dimensional volume of the simplex of n (P,) vertices:
    ``0.5 * logdet(E^T E) - log((n-1)!)`` with E the (P, n-1) edges from vertex 0."""
    edges = torch.stack([v - vertices[0] for v in vertices[1:]], dim=1).double()
    gram = edges.T @ edges
    return 0.5 * torch.logdet(gram) - math.lgamma(len(vertices))


def simplex_volume(vertices: Sequence[torch.Tensor]) -> float:
    """The simplex's volume (0 when it is degenerate)."""
    value = float(log_volume(vertices).exp())
    return value if math.isfinite(value) else 0.0


def uniform_weights(n: int, *, generator: torch.Generator) -> torch.Tensor:
    """(n,) barycentric weights uniform on the simplex: normalised Exp(1) draws = Dirichlet(1)."""
    e = -torch.log(torch.rand(n, generator=generator, dtype=torch.float64).clamp_min(1e-300))
    return e / e.sum()


def barycentric(point: torch.Tensor, vertices: Sequence[torch.Tensor]) -> tuple[torch.Tensor, float]:
    """Affine coordinates (n,) of ``point`` in the simplex's affine hull (least squares) and the
    distance from ``point`` to that hull."""
    v0 = vertices[0].double()
    edges = torch.stack([v.double() - v0 for v in vertices[1:]], dim=1)
    rhs = point.double() - v0
    coef = torch.linalg.lstsq(edges, rhs[:, None]).solution[:, 0]
    residual = float(torch.linalg.norm(edges @ coef - rhs))
    return torch.cat([(1 - coef.sum())[None], coef]), residual


def trainable_mask(model: nn.Module) -> torch.Tensor:
    """(P,) bool, True on the entries of the weight vector whose parameter requires grad."""
    return torch.cat([torch.full((p.numel(),), p.requires_grad) for p in model.parameters()
                      if p.is_floating_point()])


def _perturbed_centroid(vertices: list[torch.Tensor], layout: ParamLayout, seed: int,
                        trainable: torch.Tensor) -> torch.Tensor:
    """The centroid of the (CPU) ``vertices`` plus 1% of each tensor's RMS of seeded noise on
    the ``trainable`` entries (frozen ones stay where all vertices have them)."""
    centroid = torch.stack(vertices).mean(0)
    gen = torch.Generator().manual_seed(seed)
    parts, start = [], 0
    for shape in layout.shapes:
        n = math.prod(shape)
        chunk = centroid[start:start + n]
        rms = float(chunk.pow(2).mean().sqrt()) or 1e-3
        noise = 0.01 * rms * torch.randn(n, generator=gen, dtype=chunk.dtype)
        parts.append(chunk + noise * trainable[start:start + n])
        start += n
    return torch.cat(parts)


def train_vertex(ctx: Context, cfg: SPROConfig, vertices: list[torch.Tensor], *, seed: int) -> torch.Tensor:
    """Train one new vertex (the earlier ``vertices``, (P,) float32 on the CPU, fixed); returns it
    as a (P,) float32 vector on the CPU. Only here do vertices live on ``ctx.device``."""
    run = ctx.config
    model = copy.deepcopy(ctx.first.model).to(ctx.device).train()
    layout = ParamLayout.of(model)
    vertices = [v.float().cpu() for v in vertices]
    trainable = trainable_mask(model)
    frozen = (~trainable).to(ctx.device)
    has_frozen = not bool(trainable.all())
    fixed = [v.to(ctx.device) for v in vertices]
    new = _perturbed_centroid(vertices, layout, seed, trainable).to(ctx.device)
    new.requires_grad_(True)
    opt = torch.optim.SGD([new], lr=cfg.lr, momentum=run.momentum, weight_decay=run.wd)
    buffers = dict(model.named_buffers())
    train_set = ctx.train_set()
    per_epoch = steps_per_epoch(train_set, run.batch_size)
    batches = batch_stream(train_set, run.batch_size, seed=seed, device=ctx.device)
    gen = torch.Generator().manual_seed(seed + 7919)
    with progress(total=cfg.epochs * per_epoch, desc=f"spro vertex {len(vertices)}", unit="step") as bar:
        for epoch in range(1, cfg.epochs + 1):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(cfg.lr, epoch, cfg.epochs)
            for _ in range(per_epoch):
                xb, yb = next(batches)
                loss = _spro_loss(model, layout, buffers, fixed + [new], cfg.volume_reg, xb, yb, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if has_frozen:  # frozen parameters stay put (no gradient, no weight decay)
                    with torch.no_grad():
                        new[frozen] = fixed[0][frozen]
                bar.update(1)
    return new.detach().float().cpu()


def _spro_loss(model: nn.Module, layout: ParamLayout, buffers: dict, vertices: list[torch.Tensor],
               volume_reg: float, xb, yb, gen: torch.Generator) -> torch.Tensor:
    alpha = uniform_weights(len(vertices), generator=gen).float().to(xb.device)
    point = sum(a * v for a, v in zip(alpha, vertices))
    params = layout.unflatten(point)
    logits = functional_call(model, {**params, **buffers}, (xb,))
    loss = F.cross_entropy(logits.float(), yb)
    if volume_reg > 0:
        loss = loss - volume_reg * log_volume(vertices).float()
    return loss


def fit_simplex(ctx: Context, cfg: SPROConfig) -> list[torch.Tensor]:
    """The simplex's vertices (vertex 0 = member 1), reusing the vertices already saved."""
    path = ctx.run_dir.state_path("spro")
    found = load_state(path, member1=ctx.first.sha256, method="spro")
    vertices = [weight_vector(ctx.first.model).float().cpu()]  # the model may be on the GPU
    if found is not None:
        vertices += [found[0][f"vertex-{j}"].float().cpu()
                     for j in range(1, found[1]["vertices"])][:cfg.vertices - 1]
    while len(vertices) < cfg.vertices:
        vertices.append(train_vertex(ctx, cfg, vertices, seed=ctx.seed(1) + 1000 + len(vertices)))
        save_state(path, {f"vertex-{j}": v for j, v in enumerate(vertices)},
                   {"member1": ctx.first.sha256, "method": "spro", "vertices": len(vertices)})
    return vertices


def run(ctx: Context) -> None:
    """Fit the simplex around member 1 and write K-1 uniform samples from it."""
    cfg = SPROConfig.of(ctx.config)
    pending = ctx.pending()
    if not pending:
        return
    vertices = fit_simplex(ctx, cfg)
    bn_inputs = ctx.bn_inputs()
    volume = simplex_volume(vertices)
    for i in pending:
        alpha = uniform_weights(len(vertices), generator=torch.Generator().manual_seed(ctx.seed(i)))
        point = sum(a * v.double() for a, v in zip(alpha, vertices))
        model = sampled_model(ctx.first.model, point, bn_inputs)
        ctx.write(i, model, parent=ctx.first.sha256, epochs=cfg.epochs * (cfg.vertices - 1), lrs=[],
                  lr=cfg.lr, extra={"sample": i - 1, "barycentric": [float(a) for a in alpha],
                                    "vertices": cfg.vertices, "volume": volume,
                                    "state": ctx.run_dir.state_path("spro").name})


@register_method("spro")
class SPRO(LocalMethod):
    """Uniform samples of a low-loss simplex grown around member 1."""

    options = SPROOptions

    def hyperparameters(self, config) -> SPROConfig:
        return SPROConfig.of(config)

    def make_members(self, ctx: Context) -> None:
        run(ctx)
