"""Kronecker-factored Laplace approximation (Ritter, Botev, Barber, ICLR 2018, "A Scalable
Laplace Approximation for Neural Networks"), with K-FAC factors (Martens & Grosse 2015) and
their convolutional form KFC (Grosse & Martens 2016).

Around the fine-tuned member 1 (weights w*), for every ``nn.Linear``, ``nn.Conv1d`` and
``nn.Conv2d`` layer (groups 1, zero or no padding mode, any stride/dilation) of the whole
network (not only the last layer), with a = the layer's input (a conv's unfolded input patch;
a trailing 1 when the layer has a bias) and g = the gradient of the loss with respect to the
layer's output, over the N train examples (evaluation transform, model in eval mode):

    A = (1/N) sum_n sum_t a_{n,t} a_{n,t}^T,        G = (1/N) sum_n (1/T) sum_t g_{n,t} g_{n,t}^T

(T spatial positions of a conv, or T tokens of a Linear applied to (B, T, C) inputs as in
ViT/Swin: the tokens share one weight as a conv's positions do; T = 1 for a Linear on (B, C))
where the loss is the cross-entropy of a label drawn
from the model's own predictive distribution (the Fisher, one Monte-Carlo label per example,
seeded). The posterior precision of the layer's weight matrix W (out x in, bias as last column)
is approximated as in Ritter et al., Section 3.3:

    (sqrt(N) G + sqrt(tau) I) kron (sqrt(N) A + sqrt(tau) I)

with tau the prior precision (``--laplace-prior-precision``; default N * wd, the Gaussian prior
that the run's weight decay wd already is: N * (mean CE + wd/2 |w|^2) = sum CE + N wd/2 |w|^2).
A sample is W = W* + sqrt(s) * Gt^(-1/2) Z At^(-1/2) with Z ~ N(0, I): its covariance is
s * Gt^-1 kron At^-1, s = ``--sample-scale``, a covariance (variance) scale as for swag (default
1: the Laplace posterior itself). Other
parameters (BatchNorm affine, layers of other kinds) stay at w*. Every sample's BN statistics are
recomputed on the train split. The factors are kept in ``kfac-laplace-state.safetensors``.

Implemented here rather than with ``laplace-torch``: its Kronecker backends (ASDL, BackPACK,
curvlinops) cover Linear and Conv2d but not the Conv1d layers of the embedded MNIST-1D model, and
it would pull eleven packages (one pinned to an alpha release) for one method.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ensembles.methods.common import (
    BN_BATCH_SIZE,
    Context,
    LocalMethod,
    LocalOptions,
    load_state,
    save_state,
)
from ensembles.methods.registry import register_method
from landscape.engine.bn import recompute_bn_
from landscape.errors import UserError
from landscape.progress import progress

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass(frozen=True)
class LaplaceOptions(LocalOptions):
    """KFAC-Laplace's own options: the prior precision tau (``--laplace-prior-precision``;
    None: N * wd) and the sample scale s (``--sample-scale``; None: 1)."""

    laplace_prior_precision: float | None = None
    sample_scale: float | None = None

    def __post_init__(self) -> None:
        tau = self.laplace_prior_precision
        if tau is not None and not tau > 0:
            raise UserError(f"--laplace-prior-precision must be positive, got {tau!r}")
        if self.sample_scale is not None and not self.sample_scale >= 0:
            raise UserError(f"--sample-scale must be >= 0, got {self.sample_scale!r}")


@dataclass(frozen=True)
class LaplaceConfig:
    """``prior_precision`` tau (None: N * wd) and the sample ``scale`` s."""

    prior_precision: float | None = None
    scale: float = 1.0

    @classmethod
    def of(cls, run) -> "LaplaceConfig":
        o = run.options
        return cls(o.laplace_prior_precision, 1.0 if o.sample_scale is None else o.sample_scale)


@dataclass(frozen=True)
class KronFactors:
    """The factors of one layer: ``A`` (in' x in', in' = inputs [+1 for the bias]) and ``G``
    (out x out), both per-example expectations (float64)."""

    name: str
    A: torch.Tensor
    G: torch.Tensor


def supported_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers the approximation covers (see the module docstring)."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, SUPPORTED) and m.weight.requires_grad:
            if isinstance(m, (nn.Conv1d, nn.Conv2d)) and (
                    m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str)):
                continue
            out.append((name, m))
    return out


def _patches(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, T, in') rows a_{n,t}: the unfolded input patches of a conv (order matches
    ``weight.reshape(out, -1)``), a Linear's inputs (T = 1 for (B, in) inputs, the tokens of
    (B, ..., in) inputs); a 1 appended for a bias."""
    if isinstance(m, nn.Linear):
        a = x.reshape(x.shape[0], -1, x.shape[-1])
    else:
        if isinstance(m, nn.Conv1d):
            x = x[:, :, None, :]
            k, p, s, d = (1, m.kernel_size[0]), (0, m.padding[0]), (1, m.stride[0]), (1, m.dilation[0])
        else:
            k, p, s, d = m.kernel_size, m.padding, m.stride, m.dilation
        a = F.unfold(x, k, dilation=d, padding=p, stride=s).transpose(1, 2)  # (B, T, C*k)
    if m.bias is not None:
        a = torch.cat([a, a.new_ones(*a.shape[:-1], 1)], dim=-1)
    return a


def _output_grads(m: nn.Module, g: torch.Tensor) -> torch.Tensor:
    """(B, T, out) rows g_{n,t} (T as in ``_patches``)."""
    if isinstance(m, nn.Linear):
        return g.reshape(g.shape[0], -1, g.shape[-1])
    return g.flatten(2).transpose(1, 2)


def kfac_factors(model: nn.Module, inputs: torch.Tensor, *, batch_size: int = 128,
                 generator: torch.Generator, device="cpu") -> list[KronFactors]:
    """K-FAC factors of the Fisher of ``model`` (eval mode) over ``inputs``, labels sampled from
    its predictive distribution with ``generator``. The model is not modified."""
    layers = supported_layers(model)
    if not layers:
        raise UserError("kfac-laplace found no Linear/Conv1d/Conv2d layer to approximate")
    sums = {n: [0.0, 0.0] for n, _ in layers}
    inputs_seen: dict[str, torch.Tensor] = {}
    grads_seen: dict[str, torch.Tensor] = {}

    def capture(name: str):
        def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
            inputs_seen[name] = inp[0].detach()
            out.register_hook(lambda g: grads_seen.__setitem__(name, g.detach()))
        return hook

    hooks = [m.register_forward_hook(capture(name)) for name, m in layers]
    was_training = model.training
    model.eval()
    try:
        with progress(total=len(inputs), desc="kfac factors", unit="ex") as bar:
            for start in range(0, len(inputs), batch_size):
                xb = inputs[start:start + batch_size].to(device)
                logits = model(xb)
                probs = torch.softmax(logits.detach().double().cpu(), -1)
                labels = torch.multinomial(probs, 1, generator=generator)[:, 0].to(logits.device)
                model.zero_grad(set_to_none=True)
                F.cross_entropy(logits.float(), labels, reduction="sum").backward()
                for name, m in layers:  # outside the hooks: autograd's thread is slow at im2col
                    if name in inputs_seen and name in grads_seen:  # called as a module
                        _accumulate(sums, name, m, inputs_seen[name], grads_seen[name])
                inputs_seen.clear()
                grads_seen.clear()
                bar.update(len(xb))
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    n = len(inputs)
    # layers whose weight is used without calling the module (nn.MultiheadAttention's out_proj)
    # have no factors and stay at w*
    seen = [name for name, _ in layers if torch.is_tensor(sums[name][0])]
    if not seen:
        raise UserError("kfac-laplace found no Linear/Conv1d/Conv2d layer called by the model")
    return [KronFactors(name, sums[name][0] / n, sums[name][1] / n) for name in seen]


def _accumulate(sums: dict, name: str, m: nn.Module, x: torch.Tensor, g: torch.Tensor) -> None:
    a = _patches(m, x).double()           # (B, T, in')
    gg = _output_grads(m, g.detach()).double()  # (B, T, out)
    t = a.shape[1]
    sums[name][0] = sums[name][0] + torch.einsum("bti,btj->ij", a, a).cpu()
    sums[name][1] = sums[name][1] + torch.einsum("bti,btj->ij", gg, gg).cpu() / t


def _inv_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric inverse square root of a symmetric positive-definite matrix."""
    vals, vecs = torch.linalg.eigh(matrix)
    return (vecs * vals.clamp_min(1e-12).rsqrt()) @ vecs.T


def posterior_factors(f: KronFactors, n_data: int, prior_precision: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gt = sqrt(N) G + sqrt(tau) I and At = sqrt(N) A + sqrt(tau) I (Ritter et al. 2018, 3.3)."""
    root_n, root_tau = math.sqrt(n_data), math.sqrt(prior_precision)
    return (root_n * f.G + root_tau * torch.eye(len(f.G), dtype=f.G.dtype),
            root_n * f.A + root_tau * torch.eye(len(f.A), dtype=f.A.dtype))


def sample_layer(f: KronFactors, n_data: int, prior_precision: float, scale: float, *,
                 generator: torch.Generator) -> torch.Tensor:
    """A (out, in') deviation ``sqrt(scale) * Gt^(-1/2) Z At^(-1/2)``; in row-major order its
    covariance is ``scale * kron(Gt^-1, At^-1)`` (``scale`` multiplies the covariance)."""
    g_t, a_t = posterior_factors(f, n_data, prior_precision)
    z = torch.randn(len(g_t), len(a_t), generator=generator, dtype=torch.float64)
    return math.sqrt(scale) * _inv_sqrt(g_t) @ z @ _inv_sqrt(a_t)


def sample_model(model: nn.Module, factors: list[KronFactors], n_data: int, prior_precision: float,
                 scale: float, *, generator: torch.Generator) -> nn.Module:
    """A copy of ``model`` with every covered layer's weights (and bias) moved by a sample."""
    out = copy.deepcopy(model).cpu()
    modules = dict(out.named_modules())
    with torch.no_grad():
        for f in factors:
            m = modules[f.name]
            delta = sample_layer(f, n_data, prior_precision, scale, generator=generator)
            w_cols = m.weight[0].numel()
            m.weight.add_(delta[:, :w_cols].reshape(m.weight.shape).to(m.weight.dtype))
            if m.bias is not None:
                m.bias.add_(delta[:, w_cols].to(m.bias.dtype))
    return out.eval()


def _factor_tensors(factors: list[KronFactors]) -> dict[str, torch.Tensor]:
    return {**{f"A/{f.name}": f.A for f in factors}, **{f"G/{f.name}": f.G for f in factors}}


def _factors_from(tensors: dict[str, torch.Tensor], names: list[str]) -> list[KronFactors]:
    return [KronFactors(n, tensors[f"A/{n}"], tensors[f"G/{n}"]) for n in names]


def run(ctx: Context) -> None:
    """Fit the factors around member 1 (or reuse the state file) and write K-1 samples."""
    cfg = LaplaceConfig.of(ctx.config)
    pending = ctx.pending()
    if not pending:
        return
    bn_inputs = ctx.bn_inputs()
    n_data = len(bn_inputs)
    tau = ctx.config.wd * n_data if cfg.prior_precision is None else cfg.prior_precision
    if not tau > 0:
        raise UserError("kfac-laplace needs a positive prior precision: pass "
                        "--laplace-prior-precision TAU (the default N * wd is 0 with --wd 0)")
    path = ctx.run_dir.state_path("kfac-laplace")
    found = load_state(path, member1=ctx.first.sha256, method="kfac-laplace")
    if found is None:
        factors = kfac_factors(ctx.first.model, bn_inputs, batch_size=ctx.config.batch_size,
                               generator=torch.Generator().manual_seed(ctx.seed(1) + 1000),
                               device=ctx.device)
        save_state(path, _factor_tensors(factors), {"member1": ctx.first.sha256,
                                                     "method": "kfac-laplace", "n_data": n_data,
                                                     "layers": [f.name for f in factors]})
    else:
        factors = _factors_from(found[0], found[1]["layers"])
    for i in pending:
        gen = torch.Generator().manual_seed(ctx.seed(i))
        model = sample_model(ctx.first.model, factors, n_data, tau, cfg.scale, generator=gen)
        recompute_bn_(model, bn_inputs, batch_size=BN_BATCH_SIZE)
        ctx.write(i, model, parent=ctx.first.sha256, epochs=0, lrs=[], lr=None,
                  extra={"sample": i - 1, "scale": cfg.scale, "prior_precision": tau,
                         "n_data": n_data, "layers": [f.name for f in factors], "state": path.name})


@register_method("kfac-laplace")
class KFACLaplace(LocalMethod):
    """Samples of a Kronecker-factored Laplace posterior around member 1."""

    options = LaplaceOptions

    def hyperparameters(self, config) -> LaplaceConfig:
        return LaplaceConfig.of(config)

    def make_members(self, ctx: Context) -> None:
        run(ctx)
