"""Model registry: built-in small models with BatchNorm, any timm model as ``timm:<name>``, and yours.

Every model follows timm's head contract: ``get_classifier()`` returns the head and
``reset_classifier(num_classes)`` replaces it with a freshly initialised one (needed to
fine-tune; evaluating a landscape needs only an ``nn.Module``). Names resolve through one
registry, filled with ``register_model`` in the style of timm: the built-ins below are
registered exactly as a user registers their own. Arguments may come from a file (a checkpoint's
metadata), so ``build_model`` checks them before any factory sees them.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Mapping
from typing import Any, Callable

import torch
from torch import nn

from landscape.assets.imports import is_import_path
from landscape.assets.registry import Registry, brief, call_checked, check_int, check_kwargs
from landscape.errors import UserError, first_line

TIMM_PREFIX = "timm:"
# Bounds for sizes that may come from a file (beyond them: a mistake, or an attack on memory): the
# head, the built-ins' channels, any integer argument of a timm model.
MAX_CLASSES, MAX_WIDTH, MAX_TIMM_INT = 100_000, 1024, 1 << 14
NOT_KWARGS = {"num_classes": "the head's size is given apart: the dataset's classes or --num-classes"}
# timm's options beside the architecture, refused (with those of timm_options()): timm reads nothing here
TIMM_WHY = ("one of timm's options for pretrained weights, files, downloads or placement: models are built "
            "here with random weights on the CPU, and their weights come from the checkpoint")
TIMM_OPTIONS = frozenset({"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path",
                          "cache_dir", "pretrained_strict", "pretrained_filter_fn", "pretrained_model_args",
                          "features_only", "feature_cls", "feature_cfg", "out_indices", "pruned",
                          "kwargs_filter", "model_cfg", "device", "dtype", "scriptable", "exportable", "no_jit"})

ModelFactory = Callable[..., nn.Module]  # factory(num_classes=..., **arch_kwargs) -> nn.Module
_MODELS: Registry[ModelFactory] = Registry("model")


def register_model(name: str | ModelFactory | None = None, factory: ModelFactory | None = None, *,
                   overwrite: bool = False) -> Any:
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
        w = check_int("width", width, 1, MAX_WIDTH)
        self.in_channels = check_int("in_channels", in_channels, 1, MAX_WIDTH)
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
    return nn.Sequential(nn.Conv1d(cin, cout, kernel_size=5, padding=2, bias=False), nn.BatchNorm1d(cout), nn.ReLU())


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. (2016), depth 6n+2 (ResNet-20 for n=3), inputs (B, 3, 32, 32)."""

    def __init__(self, num_classes: int = 10, depth: int = 20, width: int = 16) -> None:
        super().__init__()
        if (check_int("depth", depth, 8, 1000) - 2) % 6 != 0:
            raise UserError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, ...), got {depth}")
        n, width = (depth - 2) // 6, check_int("width", width, 1, MAX_WIDTH)
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
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


def _cifar_resnet(depth: int) -> ModelFactory:
    def factory(num_classes: int = 10, width: int = 16) -> CifarResNet:
        return CifarResNet(num_classes, depth=depth, width=width)

    factory.__doc__ = f"ResNet-{depth} for 32 px images."
    return factory


register_model("mnist1d_cnn", Mnist1dCNN)
for _depth in (20, 32, 56):
    register_model(f"resnet{_depth}", _cifar_resnet(_depth))


def model_names() -> list[str]:
    """The registered architecture names, sorted (any timm model is also accepted as ``timm:<name>``)."""
    return _MODELS.names()


def create_model(arch: str, num_classes: int, /, *, trust_arch: bool = False, **arch_kwargs: Any) -> nn.Module:
    """Build an architecture with random weights (never downloads weights).

    Args:
        arch: a registered name (``mnist1d_cnn``, ``resnet20``, ..., see ``model_names()``),
            ``timm:<timm model name>``, or a factory of your own, ``path/to/file.py:factory``
            or ``package.module:factory`` (names resolve in that order; ``assets.modules``).
        num_classes: size of the classification head, 1 to ``MAX_CLASSES``.
        trust_arch: import an import-path ``arch`` even if nothing else allowed it; importing
            runs that code, so it happens only where the user named it (``assets.modules``).
        **arch_kwargs: forwarded to the constructor (e.g. ``width=64``), checked (``build_model``).

    Returns:
        The model, in train mode, on the CPU.

    Raises:
        UserError: unknown or untrusted architecture, refused arguments, a missing file, a
            failed import or call, or a factory that returns no ``nn.Module`` (one line each).

    Example:
        >>> create_model("resnet20", 100, width=32).get_classifier().out_features
        100
    """
    return build_model(arch, num_classes, arch_kwargs, trust_arch=trust_arch)


def build_model(arch: str, num_classes: int, arch_kwargs: Mapping[str, Any] | None = None, *,
                trust_arch: bool = False) -> nn.Module:
    """``create_model`` with the keyword arguments as one mapping: arguments read from a file or a
    flag reach only the factory, never ``trust_arch``. Checked first: names the factory takes
    (``num_classes`` is not one) and finite numbers; for ``timm:`` none of ``timm_options()``
    and integers up to ``MAX_TIMM_INT``; the built-ins check their sizes themselves."""
    check_int("num_classes", num_classes, 1, MAX_CLASSES)
    if isinstance(arch, str) and arch.startswith("module:"):  # assets.modules.MODULE_PREFIX
        raise UserError(f"arch {brief(arch)} names a model given as an nn.Module object, which no name rebuilds; "
                        "give --arch path/to/file.py:factory (or register_model) to read its weights")
    kwargs = check_kwargs({} if arch_kwargs is None else arch_kwargs, f"arch_kwargs of model {brief(arch)}",
                          reserved=NOT_KWARGS)
    try:
        factory, timm_name = _MODELS.resolve(arch)
    except UserError as exc:
        if not (isinstance(arch, str) and is_import_path(arch)):
            raise UserError(f"{exc}, path/to/file.py:factory or package.module:factory") from None
        from landscape.assets.modules import imported_factory  # it imports this module

        factory, timm_name = imported_factory(arch, trust=trust_arch), None
    if timm_name is not None:
        return factory(timm_name, num_classes, kwargs)
    model = call_checked(factory, f"model {arch!r} with arch_kwargs {brief(kwargs)}", num_classes=num_classes, **kwargs)
    if not isinstance(model, nn.Module):
        raise UserError(f"model {arch!r} returned {type(model).__name__}, not a torch nn.Module")
    return model


def _create_timm(name: str, num_classes: int, arch_kwargs: dict[str, Any]) -> nn.Module:
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f" Did you mean: {', '.join('timm:' + c for c in close)}?" if close else ""
        raise UserError(f"unknown timm model {brief(name)}.{hint} List names with timm.list_models('*pattern*').")
    check_kwargs(arch_kwargs, f"arch_kwargs of model 'timm:{name}'", reserved=dict.fromkeys(timm_options(), TIMM_WHY),
                 max_int=MAX_TIMM_INT)
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **arch_kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure of a (possibly user-registered) timm model
        hint = ("; its timm entrypoint must take **kwargs (timm passes pretrained_cfg), or register it "
                "with landscape.register_model" if "pretrained_cfg" in str(exc) else "")
        raise UserError(f"timm could not build {name!r} with num_classes={num_classes} and {brief(arch_kwargs)}: "
                        f"{type(exc).__name__}: {first_line(exc)}{hint}") from None


@functools.cache
def timm_options() -> frozenset[str]:
    """``TIMM_OPTIONS`` and the named parameters of the installed timm's factory and builder."""
    from timm.models import build_model_with_cfg
    from timm.models import create_model as timm_create

    named = {p.name for f in (timm_create, build_model_with_cfg) for p in inspect.signature(f).parameters.values()
             if p.kind is not p.VAR_KEYWORD}
    return TIMM_OPTIONS | (named - {"model_name", "model_cls", "variant"})


_MODELS.register(TIMM_PREFIX, _create_timm, usage="timm:<name> (e.g. timm:resnet18)")
