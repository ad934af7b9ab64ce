"""Barriers, basin labels and distances of the pairs of a paths file (docs/architecture.md, "Barriers and
basins"): for each pair, the loss and accuracy barriers on train and test with the alpha where
each peaks, the same-basin label from the test accuracy barrier, the L2 distance between the
endpoints, and each endpoint's distance from its pre-trained checkpoint over the backbone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from landscape.assets.checkpoint import Checkpoint
from landscape.assets.heads import head_parameter_names
from landscape.assets.modules import CheckpointLike, as_checkpoints
from landscape.engine.layout import ParamLayout
from landscape.errors import UserError
from landscape.results import PathSet
from landscape.surfaces.barriers import DEFAULT_THRESHOLD_PP, Barrier, barrier, same_basin

DEFAULT_LOSS_THRESHOLD = 0.1  # without accuracy: same basin below a tenth of the endpoints' mean loss


@dataclass(frozen=True)
class PairReport:
    """Barriers, the basin label and distances of one pair (accuracies in percent, barriers of
    accuracy in percentage points; NaN where a split was not evaluated or a distance unknown)."""

    a: str
    b: str
    loss_barrier_train: float
    loss_barrier_train_alpha: float
    loss_barrier_test: float
    loss_barrier_test_alpha: float
    acc_barrier_train: float
    acc_barrier_train_alpha: float
    acc_barrier_test: float
    acc_barrier_test_alpha: float
    same_basin: bool
    label: str
    threshold: float
    distance: float
    a_from_pretrained: float
    b_from_pretrained: float


def path_report(
    paths: PathSet,
    checkpoints: Sequence[CheckpointLike],
    *,
    threshold: float = DEFAULT_THRESHOLD_PP,
    pretrained: Sequence[CheckpointLike] = (),
    loss_threshold: float = DEFAULT_LOSS_THRESHOLD,
) -> list[PairReport]:
    """Barriers on train and test, the label from the test accuracy barrier (for a file without
    accuracy, such as an MSE one: from the test loss barrier, same basin when it is below
    ``loss_threshold`` times the endpoints' mean test loss; the report's ``threshold`` is then
    that fraction), the L2 distance
    between the endpoints, and each endpoint's distance from its pre-trained checkpoint over the
    backbone (parameters outside the classifier head whose shapes match), found through the
    checkpoints' ``parent`` lineage among ``checkpoints`` and ``pretrained``.

    Raises:
        UserError: the test split was not evaluated (the label needs it).
    """
    if "test" not in paths.metrics:
        raise UserError("the basin label needs the test split; evaluate with --splits train,test")
    checkpoints, pretrained = as_checkpoints(checkpoints), as_checkpoints(pretrained)
    layout = ParamLayout.of(checkpoints[0].model)
    vecs = [layout.flatten(c.model.state_dict()) for c in checkpoints]
    from_pre = [_distance_from_pretrained(c, checkpoints, pretrained) for c in checkpoints]
    out = []
    for p, (i, j) in enumerate(paths.pairs):
        b = {f"{kind}_{split}": barrier(paths.alpha, paths.curve(p, split, metric), kind=kind)
             if split in paths.metrics and metric in paths.metrics[split] else _NAN
             for kind, metric in (("loss", "loss"), ("acc", "acc")) for split in ("train", "test")}
        acc_test = b["acc_test"].height
        if paths.has_acc:
            local, used = same_basin(acc_test, threshold), threshold
        else:
            local, used = relative_loss_barrier(paths, p) < loss_threshold, loss_threshold
        out.append(PairReport(
            a=paths.names[i], b=paths.names[j],
            loss_barrier_train=b["loss_train"].height, loss_barrier_train_alpha=b["loss_train"].alpha,
            loss_barrier_test=b["loss_test"].height, loss_barrier_test_alpha=b["loss_test"].alpha,
            acc_barrier_train=b["acc_train"].height, acc_barrier_train_alpha=b["acc_train"].alpha,
            acc_barrier_test=acc_test, acc_barrier_test_alpha=b["acc_test"].alpha,
            same_basin=local, label="same basin" if local else "different basin",
            threshold=used, distance=float(torch.linalg.vector_norm(vecs[i] - vecs[j])),
            a_from_pretrained=from_pre[i], b_from_pretrained=from_pre[j],
        ))
    return out


_NAN = Barrier(float("nan"), float("nan"))  # a split that was not evaluated


def relative_loss_barrier(paths: PathSet, p: int, split: str = "test") -> float:
    """Pair ``p``'s loss barrier as a fraction of its endpoints' mean loss (NaN if undefined)."""
    loss = paths.curve(p, split, "loss")
    ends = [loss[np.flatnonzero(np.isclose(paths.alpha, a))] for a in (0.0, 1.0)]
    if not all(e.size for e in ends):
        return float("nan")
    scale = 0.5 * (float(ends[0][0]) + float(ends[1][0]))
    height = barrier(paths.alpha, loss, kind="loss").height
    return height / scale if scale > 0 else float("nan")


def _distance_from_pretrained(ckpt: Checkpoint, family: Sequence[Checkpoint],
                              pretrained: Sequence[Checkpoint]) -> float:
    root = lineage_root(ckpt, family, pretrained)
    if root is None:
        return float("nan")
    head = head_parameter_names(ckpt.model)
    mine, theirs = dict(ckpt.model.named_parameters()), dict(root.model.named_parameters())
    sq = 0.0
    for name, p in mine.items():
        q = theirs.get(name)
        if name in head or q is None or q.shape != p.shape:
            continue
        sq += float(((p.detach().double() - q.detach().double()) ** 2).sum())
    return float(np.sqrt(sq))


def lineage_root(ckpt, family, pretrained):
    """Follow ``parent`` hashes through known checkpoints to a pre-trained one."""
    by_sha = {c.sha256: c for c in (*family, *pretrained) if c.sha256}
    pre_shas = {c.sha256 for c in pretrained}
    seen, current = set(), ckpt
    while current.meta.parent and current.meta.parent not in seen:
        seen.add(current.meta.parent)
        parent = by_sha.get(current.meta.parent)
        if parent is None:
            return None
        if parent.sha256 in pre_shas or parent.meta.method == "pretrain" or not parent.meta.parent:
            return parent
        current = parent
    return None


def near_chance(acc_percent: float, num_classes: int) -> bool:
    """Whether an accuracy (%) is close to guessing: below chance plus a fifth of the way from
    chance to 100%. A trained endpoint there usually means inputs that do not match the model's
    training transform (image size, mean and std) rather than a bad model."""
    chance = 100.0 / num_classes
    return bool(np.isfinite(acc_percent)) and acc_percent < chance + 0.2 * (100.0 - chance)


def endpoint_accuracies(paths: PathSet, split: str = "test") -> dict[str, float]:
    """Each checkpoint's accuracy (%) on ``split`` where a path starts or ends at it."""
    out: dict[str, float] = {}
    if split not in paths.metrics or "acc" not in paths.metrics[split]:
        return out
    ends = {0.0: 0, 1.0: 1}
    for p, pair in enumerate(paths.pairs):
        acc = paths.curve(p, split, "acc")
        for a, side in ends.items():
            at = np.flatnonzero(np.isclose(paths.alpha, a))
            if at.size and np.isfinite(acc[at[0]]):
                out[paths.names[pair[side]]] = float(acc[at[0]])
    return out


def chance_warnings(accuracies: dict[str, float], num_classes: int, split: str = "test") -> list[str]:
    """One line for each named accuracy that is ``near_chance``."""
    chance = 100.0 / num_classes
    return [f"the {split} accuracy of {name} is {acc:.1f}%, near chance ({chance:.1f}% for {num_classes} classes): "
            "the inputs may not match the model's training transform (image size, mean and std)"
            for name, acc in accuracies.items() if near_chance(acc, num_classes)]
