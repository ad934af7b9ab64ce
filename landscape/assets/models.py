"""Model registry: built-in small models with BatchNorm, any timm model as ``timm:<name>``, and yours.

Every model follows timm's head contract: ``get_classifier()`` returns the head and
``reset_classifier(num_classes)`` replaces it with a freshly initialised one (needed to
fine-tune; evaluating a landscape needs only an ``nn.Module``). Names resolve through one
registry, filled with ``register_model`` in the style of timm: the built-ins below are
registered exactly as a user registers their own.

Example: a model of your own, usable by name everywhere (``--arch my_mlp``; the name is
recorded in its checkpoints, so they load again once the registering module is imported):

    >>> from torch import nn
    >>> from landscape import register_model, create_model
    >>> @register_model
    ... def my_mlp(num_classes: int = 10, width: int = 64) -> nn.Module:
    ...     return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, num_classes))
    >>> create_model("my_mlp", 3, width=32)(torch.randn(5, 8)).shape
    torch.Size([5, 3])
"""

from __future__ import annotations

import difflib
import functools
from typing import Any, Callable

import torch
from torch import nn

from landscape.assets.imports import is_import_path
from landscape.assets.registry import Registry
from landscape.errors import UserError, first_line

TIMM_PREFIX = "timm:"

# factory(num_classes=..., **arch_kwargs) -> nn.Module
ModelFactory = Callable[..., nn.Module]
_MODELS: Registry[ModelFactory] = Registry("model")


def register_model(
    name: str | ModelFactory | None = None,
    factory: ModelFactory | None = None,
    *,
    overwrite: bool = False,
) -> Any:
    """Register a model factory; usable as ``@register_model``, ``@register_model("name")`` or
    ``register_model("name", factory)``, as in timm.

    The factory is called as ``factory(num_classes=N, **arch_kwargs)`` and returns an
    ``nn.Module`` with random weights (weights come from checkpoints, never downloads); give it
    ``get_classifier()`` and ``reset_classifier(num_classes)`` to fine-tune it with a new head.

    Args:
        name: the registry name (default: the factory's ``__name__``); no ``:`` in it
            (``timm:<name>`` names timm's models).
        factory: the factory; omit it to use ``register_model`` as a decorator.
        overwrite: replace a model already registered under ``name``.

    Returns:
        ``factory`` (unchanged), or, without one, a decorator that registers and returns it.

    Raises:
        ValueError: a malformed or taken name.
        TypeError: a factory that is not callable.

    Example:
        >>> _ = register_model("wide_cnn", functools.partial(Mnist1dCNN, width=64))
        >>> create_model("wide_cnn", 10).num_features
        256
    """
    if callable(name) and factory is None:  # @register_model
        return register_model(None, name, overwrite=overwrite)
    if factory is None:  # @register_model("name") or @register_model()
        return functools.partial(register_model, name, overwrite=overwrite)
    if not callable(factory):
        raise TypeError(f"a model factory must be callable, got {factory!r}")
    name = factory.__name__ if name is None else name
    if isinstance(name, str) and ":" in name:
        raise ValueError(f"a model name cannot hold ':' (timm:<name> names timm's models), got {name!r}")
    _MODELS.register(name, factory, overwrite=overwrite)
    return factory


class Mnist1dCNN(nn.Module):
    """A small 1-D CNN with BatchNorm for MNIST-1D (inputs of shape (B, 40) or (B, 1, 40))."""

    def __init__(self, num_classes: int = 10, width: int = 16, in_channels: int = 1) -> None:
        super().__init__()
        w = width
        self.in_channels = in_channels
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, w),
            _conv_bn_relu(w, w),
            nn.MaxPool1d(2),  # 40 -> 20
            _conv_bn_relu(w, 2 * w),
            _conv_bn_relu(2 * w, 2 * w),
            nn.MaxPool1d(2),  # 20 -> 10
            _conv_bn_relu(2 * w, 4 * w),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
        )
        self.num_features = 4 * w
        self.head = nn.Linear(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # (B, L) -> (B, 1, L)
            x = x.unsqueeze(1)
        return self.head(self.features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(cin, cout, kernel_size=5, padding=2, bias=False),
        nn.BatchNorm1d(cout),
        nn.ReLU(),
    )


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. (2016), depth 6n+2 (ResNet-20 for n=3), inputs (B, 3, 32, 32)."""

    def __init__(self, num_classes: int = 10, depth: int = 20, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise UserError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, ...), got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        layers, cin = [], width
        for stage, mult in enumerate((1, 2, 4)):
            for block in range(n):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(_BasicBlock(cin, width * mult, stride))
                cin = width * mult
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = cin
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.layers(self.stem(x))))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes)


register_model("mnist1d_cnn", Mnist1dCNN)


@register_model
def resnet20(num_classes: int = 10, **kwargs: Any) -> CifarResNet:
    """ResNet-20 for 32 px images."""
    return CifarResNet(num_classes, depth=20, **kwargs)


@register_model
def resnet32(num_classes: int = 10, **kwargs: Any) -> CifarResNet:
    """ResNet-32 for 32 px images."""
    return CifarResNet(num_classes, depth=32, **kwargs)


@register_model
def resnet56(num_classes: int = 10, **kwargs: Any) -> CifarResNet:
    """ResNet-56 for 32 px images."""
    return CifarResNet(num_classes, depth=56, **kwargs)


def model_names() -> list[str]:
    """The registered architecture names, sorted (any timm model is also accepted as ``timm:<name>``)."""
    return _MODELS.names()


def create_model(arch: str, num_classes: int, *, trust_arch: bool = False, **arch_kwargs: Any) -> nn.Module:
    """Build an architecture with random weights (never downloads weights).

    Args:
        arch: a registered name (``mnist1d_cnn``, ``resnet20``, ..., see ``model_names()``),
            ``timm:<timm model name>``, or a factory of your own, ``path/to/file.py:factory``
            or ``package.module:factory`` (names resolve in that order; ``assets.modules``).
        num_classes: size of the classification head.
        trust_arch: import an import-path ``arch`` even if nothing else allowed it; importing
            runs that code, so it happens only where the user named it (``assets.modules``).
        **arch_kwargs: forwarded to the constructor (e.g. ``width=64``).

    Returns:
        The model, in train mode, on the CPU.

    Raises:
        UserError: unknown or untrusted architecture, a missing file, a failed import or call,
            or a factory that returns no ``nn.Module`` (one line each).

    Example:
        >>> create_model("resnet20", 100, width=32).get_classifier().out_features
        100
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes must be a positive integer, got {num_classes!r}")
    if isinstance(arch, str) and arch.startswith("module:"):  # assets.modules.MODULE_PREFIX
        raise UserError(f"arch {arch!r} names a model given as an nn.Module object, which no name rebuilds; "
                        "give --arch path/to/file.py:factory (or register_model) to read its weights")
    try:
        factory, timm_name = _MODELS.resolve(arch)
    except UserError as exc:
        if not (isinstance(arch, str) and is_import_path(arch)):
            raise UserError(f"{exc}, path/to/file.py:factory or package.module:factory") from None
        from landscape.assets.modules import imported_factory  # it imports this module

        factory, timm_name = imported_factory(arch, trust=trust_arch), None
    if timm_name is not None:
        return factory(timm_name, num_classes, arch_kwargs)
    try:
        model = factory(num_classes=num_classes, **arch_kwargs)
    except UserError:
        raise
    except TypeError as exc:
        raise UserError(f"bad arguments {arch_kwargs} for model {arch!r}: {first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the user's code: any error is reported in one line
        raise UserError(f"building model {arch!r} failed: {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model {arch!r} returned {type(model).__name__}, not a torch nn.Module")
    return model


def _create_timm(name: str, num_classes: int, arch_kwargs: dict[str, Any]) -> nn.Module:
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f" Did you mean: {', '.join('timm:' + c for c in close)}?" if close else ""
        raise UserError(
            f"unknown timm model {name!r}.{hint} List names with timm.list_models('*pattern*')."
        )
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **arch_kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure of a (possibly user-registered) timm model
        hint = ("; its timm entrypoint must take **kwargs (timm passes pretrained_cfg), or register it "
                "with landscape.register_model" if "pretrained_cfg" in str(exc) else "")
        raise UserError(f"timm could not build {name!r} with num_classes={num_classes} and {arch_kwargs}: "
                        f"{type(exc).__name__}: {first_line(exc)}{hint}") from None


_MODELS.register(TIMM_PREFIX, _create_timm, usage="timm:<name> (e.g. timm:resnet18)")


def reset_head(model: nn.Module, num_classes: int, *, seed: int) -> None:
    """Replace the model's classifier by a fresh head initialised from ``seed`` (in place)."""
    if not hasattr(model, "reset_classifier"):
        raise UserError(
            f"{type(model).__name__} has no reset_classifier(); use a registry or timm model"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.reset_classifier(num_classes)


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names (as in ``named_parameters``) of the classifier's parameters."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if head is None:
        return set()
    ids = {id(p) for p in head.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}
