"""A researcher's own evaluation data: per split a torch ``Dataset``, ``(X, y)`` tensors or a
``DataLoader``, given to ``plane``, ``interpolate`` and the CLI's ``--data file.py:factory``.

Each split is read once, in order, into tensors (``resident``), so BN recompute keeps its fixed
batches of ``bn_batch_size`` in a fixed order whatever a loader does: a ``DataLoader``'s dataset
is read directly, its shuffling, sampler and batching ignored. A dataset that gives different
inputs each time it is read (random augmentation) is refused. The data's name, split sizes and a
hash of its contents go into every result file's identity, so that a rerun on other data is
refused instead of mixed in.

Example:
    >>> data = landscape.Data(train=(x_train, y_train), test=TensorDataset(x_test, y_test),
    ...                       name="my-task", num_classes=10)
    >>> landscape.plane([m1, m2, m3], out="plane.h5", data=data)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from landscape.assets.resident import SPLITS, ArrayDataset, as_tensors
from landscape.errors import UserError, first_line


@dataclass(frozen=True, eq=False)
class Data:
    """Evaluation data given as objects.

    Attributes:
        train, test: a torch ``Dataset`` of (input, label) pairs, ``(inputs, labels)`` tensors
            (or arrays), or a ``DataLoader`` (its dataset is read in order); None where absent.
        name: the name recorded in result files.
        num_classes: checked against the checkpoints' heads when given.
    """

    train: Any = None
    test: Any = None
    name: str = "data"
    num_classes: int | None = None
    _tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.train is None and self.test is None:
            raise UserError("Data needs a train or a test split (Data(train=..., test=...))")
        if not (isinstance(self.name, str) and self.name):
            raise UserError(f"Data's name must be a non-empty string, got {self.name!r}")
        if self.num_classes is not None and not (isinstance(self.num_classes, int) and self.num_classes >= 1):
            raise UserError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        for split in SPLITS:
            if getattr(self, split) is not None:
                as_dataset(getattr(self, split), split)  # a wrong type fails here, in one line

    def has(self, split: str) -> bool:
        return getattr(self, split, None) is not None

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The split as (inputs, labels) tensors, read once, in order."""
        if not self.has(split):
            raise UserError(f"the data {self.name!r} has no {split} split; pass Data({split}=...)"
                            + (" or use --bn keep (BN recompute needs the train split)" if split == "train" else ""))
        if split not in self._tensors:
            dataset = as_dataset(getattr(self, split), split)
            check_repeatable(dataset, split)
            try:
                self._tensors[split] = as_tensors(dataset)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise UserError(f"the {split} split of {self.name!r} cannot be read as (input, label) "
                                f"pairs: {str(exc).splitlines()[0][:160]}") from None
        return self._tensors[split]

    def dataset(self, split: str) -> Dataset:
        """The split as an ``ArrayDataset`` of its tensors."""
        return ArrayDataset(*self.tensors(split))

    def identity(self, splits: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Size and content hash of each split used, for a result file's identity."""
        return {s: {"size": len(self.tensors(s)[1]), "sha256": content_sha256(*self.tensors(s))} for s in splits}


def as_dataset(obj: Any, split: str) -> Dataset:
    """A split given as a Dataset, (inputs, labels) or a DataLoader, as a Dataset."""
    if isinstance(obj, DataLoader):
        return obj.dataset
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and not isinstance(obj, Dataset):
        x, y = (torch.as_tensor(a) for a in obj)
        if len(x) != len(y):
            raise UserError(f"the {split} split has {len(x)} inputs but {len(y)} labels")
        return ArrayDataset(x, y)
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
        return obj
    raise UserError(f"the {split} split must be a torch Dataset, (inputs, labels) tensors or a DataLoader, "
                    f"got {type(obj).__name__}")


def check_repeatable(dataset: Dataset, split: str, *, samples: int = 4) -> None:
    """Refuse a dataset whose first samples differ from one read to the next (random
    augmentation): BN statistics and losses would change at every point."""
    n = len(dataset)
    if n == 0:
        raise UserError(f"the {split} split is empty")
    for i in sorted({0, n // 2, n - 1})[:samples]:
        try:
            a, b = dataset[i], dataset[i]
            same = all(torch.equal(torch.as_tensor(u), torch.as_tensor(v)) for u, v in zip(a, b))
        except (TypeError, ValueError, RuntimeError):  # not tensors: reading it as tensors says why
            return
        if not same:
            raise UserError(f"the {split} split gives a different sample {i} each time it is read (random "
                            "augmentation?); give it with the evaluation transform only")


def content_sha256(inputs: torch.Tensor, labels: torch.Tensor) -> str:
    """A hash of a split's inputs and labels (dtype, shape and bytes)."""
    h = hashlib.sha256()
    for t in (inputs, labels):
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def data_factory(spec: str, load: Callable[[str], Callable[..., Any]]) -> Data:
    """``--data path/to/file.py:factory``: the factory's splits as ``Data``. ``load`` resolves the
    spec to the callable; the factory returns ``Data``, or a dict of splits."""
    factory = load(spec)
    if not callable(factory):
        raise UserError(f"--data {spec} is a {type(factory).__name__}, not a function returning the splits")
    try:
        made = factory()
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code: any error is reported in one line
        raise UserError(f"--data {spec} failed: {type(exc).__name__}: {first_line(exc)}") from None
    if isinstance(made, Data):
        return made
    if isinstance(made, dict) and set(made) <= {"train", "test", "name", "num_classes"}:
        return Data(**{"name": spec.rsplit(":", 1)[-1], **made})
    raise UserError(f"--data {spec} returned {type(made).__name__}; expected landscape.Data or a dict "
                    "with train and/or test splits")
