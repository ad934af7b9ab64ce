"""Which layers moved: per block of a model (modules at one depth of the module tree, e.g. a
ResNet's conv1, bn1, layer1..layer4; the classifier as ``head``; ``model_blocks``), the L2 distance and the cosine
similarity of the weights between members and from each member's pre-trained checkpoint, found
through the ``parent`` lineage. The squared block distances add up to the squared distance over
the same parameters (``total``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from landscape.assets.heads import head_parameter_names, last_linear
from landscape.assets.modules import CheckpointLike, as_checkpoints
from landscape.errors import UserError
from landscape.grid.identity import display_names
from landscape.surfaces.basins import lineage_root

HEAD, TOTAL = "head", "total"


@dataclass(frozen=True)
class BlockDistance:
    """One block's L2 distance and cosine similarity between two models (NaN where the block's
    tensors differ in shape, e.g. a head of other classes)."""

    block: str
    a: str
    b: str
    l2: float
    cosine: float
    parameters: int


@dataclass(frozen=True)
class DistanceReport:
    """Per-block distances of a set of members.

    Attributes:
        blocks: block names in model order (``head`` last), then ``total``.
        members: the members' names.
        pairs: every pair of members, every block.
        from_pretrained: every member against its pre-trained checkpoint (the ``pretrained``
            name recorded per member; none found: left out).
        pretrained: member name -> the name of its pre-trained checkpoint.
    """

    blocks: list[str]
    members: list[str]
    pairs: list[BlockDistance]
    from_pretrained: list[BlockDistance]
    pretrained: dict[str, str]


def model_blocks(model: nn.Module, depth: int | None = None) -> dict[str, list[str]]:
    """Parameter names by block, in model order, the classifier (``get_classifier``, else the
    last ``nn.Linear``) last as ``head``. A block is a module ``depth`` levels down the module
    tree (a parameter shallower than that is a block of its own); by default the shallowest depth,
    up to 3, at which the backbone splits into at least three blocks (a ResNet: conv1, bn1,
    layer1..layer4; MNIST-1D's CNN: its five conv-BN units)."""
    head = _head_names(model)
    backbone = [n for n, _ in model.named_parameters() if n not in head]
    if depth is None:
        depth = next((d for d in (1, 2, 3) if len({_prefix(n, d) for n in backbone}) >= 3), 3)
    if not (isinstance(depth, int) and depth >= 1):
        raise UserError(f"depth must be a positive integer, got {depth!r}")
    out: dict[str, list[str]] = {}
    for n in backbone:
        out.setdefault(_prefix(n, depth), []).append(n)
    if head:
        out[HEAD] = [n for n, _ in model.named_parameters() if n in head]
    return out


def _prefix(name: str, depth: int) -> str:
    """The module path ``depth`` levels down (``features.0.1.weight``, 2: ``features.0``)."""
    parts = name.split(".")[:-1]  # the module path, without the tensor's own name
    return ".".join(parts[:depth]) if parts else name


def _head_names(model: nn.Module) -> set[str]:
    head = head_parameter_names(model)
    if head:
        return head
    try:
        name, _ = last_linear(model)
    except UserError:
        return set()
    return {f"{name}.{n}" for n, _ in model.get_submodule(name).named_parameters()}


def block_distances(a: nn.Module, b: nn.Module, blocks: dict[str, list[str]], names: tuple[str, str]
                    ) -> list[BlockDistance]:
    """Each block's distance and cosine between ``a`` and ``b``, then ``total`` over the blocks
    whose shapes match."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    out, sq, dot, na, nb, count = [], 0.0, 0.0, 0.0, 0.0, 0
    for block, params in blocks.items():
        if any(n not in pb or pb[n].shape != pa[n].shape for n in params):
            out.append(BlockDistance(block, *names, math.nan, math.nan, sum(pa[n].numel() for n in params)))
            continue
        x = torch.cat([pa[n].detach().reshape(-1).double().cpu() for n in params])
        y = torch.cat([pb[n].detach().reshape(-1).double().cpu() for n in params])
        d2, xy, xx, yy = float(((x - y) ** 2).sum()), float(x @ y), float(x @ x), float(y @ y)
        out.append(BlockDistance(block, *names, math.sqrt(d2), _cosine(xy, xx, yy), len(x)))
        sq, dot, na, nb, count = sq + d2, dot + xy, na + xx, nb + yy, count + len(x)
    out.append(BlockDistance(TOTAL, *names, math.sqrt(sq), _cosine(dot, na, nb), count))
    return out


def _cosine(xy: float, xx: float, yy: float) -> float:
    return xy / math.sqrt(xx * yy) if xx > 0 and yy > 0 else math.nan


def layer_distances(members: Sequence[CheckpointLike], pretrained: Sequence[CheckpointLike] = (),
                    depth: int | None = None) -> DistanceReport:
    """Per-block distances between every pair of ``members`` and from each member's pre-trained
    checkpoint (among ``pretrained``, found through the ``parent`` hashes); ``depth`` as in
    ``model_blocks``.

    Example:
        >>> r = layer_distances(["m1.safetensors", "m2.safetensors"], pretrained=["pre.safetensors"])
        >>> [(d.block, d.l2) for d in r.from_pretrained if d.a == "m1"]
    """
    ckpts = as_checkpoints(list(members))
    if len(ckpts) < 1:
        raise UserError("layer distances need at least one member")
    pre = as_checkpoints(list(pretrained)) if pretrained else []
    names = display_names(ckpts)
    blocks = model_blocks(ckpts[0].model, depth)
    for c, n in zip(ckpts[1:], names[1:]):
        if set(model_blocks(c.model, depth)) != set(blocks):
            raise UserError(f"{n} does not have the blocks of {names[0]}; compare members of one architecture")
    pairs = [d for i in range(len(ckpts)) for j in range(i + 1, len(ckpts))
             for d in block_distances(ckpts[i].model, ckpts[j].model, blocks, (names[i], names[j]))]
    found, roots = {}, []
    pre_names = dict(zip((id(c) for c in pre), display_names(pre))) if pre else {}
    for c, n in zip(ckpts, names):
        root = lineage_root(c, ckpts, pre)
        if root is not None:
            found[n] = pre_names.get(id(root), root.name)
            roots.append(block_distances(c.model, root.model, blocks, (n, found[n])))
    return DistanceReport([*blocks, TOTAL], names, pairs, [d for r in roots for d in r], found)

