"""The settings every grid evaluation shares (planes and paths): one record, one validator, one
set of defaults. ``PlaneConfig`` and ``PathConfig`` (``landscape.surfaces``) add their own
geometry to it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from landscape.assets.images import ImageTransform
from landscape.assets.resident import DATA_ON, SPLITS
from landscape.engine.numerics import PRECISIONS
from landscape.engine.settings import STRATEGIES
from landscape.errors import UserError
from landscape.grid.objectives import check_loss, loss_name, objective_metrics

# Settings that change the speed but never the numbers: not part of a file's identity.
ENGINE_KNOBS = ("batch_size", "engine", "group_size", "channels_last", "workers", "data_on")
# Settings recorded in the identity in another form: the image transform as resolved (`image`).
RESOLVED_LATER = ("image",)
SCORING = ("loss", "accuracy")  # recorded by name, and only when not the defaults
DEFAULT_GROUP_SIZE = 8


@dataclass(frozen=True)
class GridSettings:
    """What a grid evaluation needs besides its geometry.

    Attributes:
        bn: BN policy (None: ``recompute`` for BN models, else ``keep``).
        bn_batch_size: fixed batch size for BN statistics.
        splits: which splits to evaluate.
        train_subset, test_subset: evaluate on a seeded random subset of that many samples.
        seed: seeds the subsets (and a random plane's directions).
        batch_size: evaluation batch size (engine knob; does not change the numbers).
        engine: ``auto`` (measure), ``loop`` or ``vmap`` (engine knob: the strategy).
        group_size: points evaluated together (engine knob; None: 8, and measured with
            ``engine="auto"``).
        precision: ``fp32``, ``tf32`` or ``bf16`` (``landscape.engine.numerics``; the last two
            change the numbers, so they are part of the file's identity).
        channels_last: channels-last memory format for 4-D tensors (engine knob).
        workers: points evaluated at once by the loop strategy, each in its own thread (on a
            GPU each on its own CUDA stream) (engine knob; None: measured with
            ``engine="auto"``, else 1).
        data_on: on a GPU, where the evaluation data lives: ``auto``, ``device`` or ``host``
            (copied batch by batch) (engine knob; ``landscape.assets.resident.place``).
        image: an image dataset's evaluation transform (``landscape.ImageTransform``: size,
            resize, mean, std, channels; unset parts take the dataset's or a ``timm:`` model's
            defaults). The transform used is recorded in the file's identity as ``image``.
        loss: what a point is scored by: ``ce`` (cross-entropy on class indices), ``mse``, an
            import path, or a per-sample callable (``landscape.grid.objectives``).
        accuracy: count accuracy too (None: for ``ce`` only).
    """

    # The order of the fields in files written before these settings were shared (the HDF5
    # attributes are created in this order, so that files stay byte for byte the same).
    FIELD_ORDER: ClassVar[tuple[str, ...]] = ()

    bn: str | None = None
    bn_batch_size: int = 128
    splits: tuple[str, ...] = ("train", "test")
    train_subset: int | None = None
    test_subset: int | None = None
    seed: int = 0
    batch_size: int = 512
    engine: str = "auto"
    group_size: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    workers: int | None = None
    data_on: str = "auto"
    image: ImageTransform | None = None
    loss: Any = "ce"
    accuracy: bool | None = None

    def __post_init__(self) -> None:
        check_loss(self.loss)
        check(self.accuracy in (None, True, False), f"accuracy must be True, False or None, got {self.accuracy!r}")
        check(self.image is None or isinstance(self.image, ImageTransform),
              f"image must be a landscape.ImageTransform or None, got {type(self.image).__name__}")
        check(self.workers is None or (isinstance(self.workers, int) and self.workers >= 1),
              f"workers must be a positive integer, got {self.workers!r}")
        check(self.data_on in DATA_ON, f"unknown data_on {self.data_on!r}; expected one of {', '.join(DATA_ON)}")
        check(self.precision in PRECISIONS,
              f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        check(isinstance(self.bn_batch_size, int) and self.bn_batch_size >= 2,
              f"bn_batch_size must be an integer >= 2, got {self.bn_batch_size!r}")
        check(len(self.splits) > 0 and set(self.splits) <= set(SPLITS) and len(set(self.splits)) == len(self.splits),
              f"splits must be distinct names from {', '.join(SPLITS)}, got {self.splits!r}")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            check(value is None or (isinstance(value, int) and value >= 2),
                  f"{name} must be an integer >= 2, got {value!r}")
        check(isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2**63,
              f"seed must be an integer in 0 .. 2**63 - 1, got {self.seed!r}")
        check(isinstance(self.batch_size, int) and self.batch_size >= 1,
              f"batch_size must be a positive integer, got {self.batch_size!r}")
        check(self.engine in STRATEGIES, f"unknown engine {self.engine!r}; expected one of {', '.join(STRATEGIES)}")
        check(self.group_size is None or (isinstance(self.group_size, int) and self.group_size >= 1),
              f"group_size must be a positive integer, got {self.group_size!r}")

    @property
    def group(self) -> int:
        """Points a group (``group_size``, or its default)."""
        return self.group_size or DEFAULT_GROUP_SIZE

    def identity_fields(self, policy: str, *, random_plane: bool = False) -> dict[str, Any]:
        """The settings that can change the numbers, in the file's order: every field but the
        engine knobs, less those inert here (``drop_inert``)."""
        order = self.FIELD_ORDER or tuple(f.name for f in fields(self))
        cfg = {name: getattr(self, name) for name in order if name not in ENGINE_KNOBS + RESOLVED_LATER + SCORING}
        cfg["splits"] = list(self.splits)
        drop_inert(cfg, self, policy, random_plane=random_plane)
        if self.loss != "ce":  # absent for cross-entropy, as in files of earlier versions
            cfg["loss"] = loss_name(self.loss)
        metrics = list(objective_metrics(self.loss, self.accuracy))
        if metrics != ["loss", "acc"]:
            cfg["metrics"] = metrics
        return cfg


def drop_inert(cfg: dict[str, Any], settings: GridSettings, policy: str, *, random_plane: bool) -> None:
    """Remove settings that cannot change the numbers, so that a rerun differing only in them
    resumes instead of being refused: the BN batch size without BN recompute, a subset of a split
    that is not used, and the seed when nothing random depends on it. fp32 precision is left
    out too, so files written before the precision setting existed still resume."""
    if cfg.get("precision") == "fp32":
        cfg.pop("precision")
    uses_train = "train" in settings.splits or policy == "recompute"
    uses_test = "test" in settings.splits
    if policy != "recompute":
        cfg.pop("bn_batch_size", None)
    if not uses_train:
        cfg.pop("train_subset", None)
    if not uses_test:
        cfg.pop("test_subset", None)
    subsets = (uses_train and settings.train_subset) or (uses_test and settings.test_subset)
    if not random_plane and not subsets:
        cfg.pop("seed", None)


def check(ok: bool, message: str) -> None:
    """Raise ``UserError(message)`` unless ``ok``."""
    if not ok:
        raise UserError(message)
