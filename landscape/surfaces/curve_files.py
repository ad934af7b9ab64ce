"""The curve file: a ``.safetensors`` file holding the bends' tensors (``bend<i>.<state-dict
key>``) and, under the metadata key ``landscape_curve``, a JSON document: the kind, the number of
bends, the architecture, the dataset, the endpoints by path and sha256, and how the bends were
trained. Nothing in it is executed: tensors and JSON only; every field is checked on reading."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from landscape.assets.checkpoint import Checkpoint
from landscape.assets.modules import CheckpointLike, as_checkpoint, load_checkpoint
from landscape.atomic import write_bytes
from landscape.errors import UserError
from landscape.grid.identity import CheckpointRef
from landscape.surfaces.curve_shape import check_shape
from landscape.surfaces.curves import Curve, make_curve

FORMAT = "landscape-curve"
META_KEY = "landscape_curve"


def save_curve(curve: Curve, path: str | os.PathLike) -> Path:
    """Write ``curve`` to the curve file ``path`` (``.safetensors``, atomically)."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"a curve file is a .safetensors file, got {path.name}")
    a, b = curve.endpoints
    tensors = {f"bend{i}.{k}": v.detach().cpu().contiguous()
               for i, bend in enumerate(curve.bends, 1) for k, v in bend.model.state_dict().items()}
    doc = {"format": FORMAT, "version": 1, "kind": curve.kind, "bends": len(curve.bends),
           "arch": a.meta.arch, "arch_kwargs": a.meta.arch_kwargs, "num_classes": a.meta.num_classes,
           "dataset": curve.record.get("dataset", a.meta.dataset),
           "endpoints": [_endpoint(c) for c in curve.endpoints], "train": curve.record}
    return write_bytes(path, save(tensors, metadata={META_KEY: json.dumps(doc, allow_nan=False)}))


def _endpoint(c: Checkpoint) -> dict[str, Any]:
    return {"name": c.name, "path": str(c.path.resolve()) if c.path is not None else None,
            "sha256": CheckpointRef.of(c).sha256}


def read_curve_doc(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON document of a curve file, checked.

    Raises:
        UserError: not a readable curve file, or a field missing or of the wrong type.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    fix = "fit it again with `landscape curve`"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        doc = json.loads(meta.get(META_KEY, "null"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable curve file ({type(exc).__name__}); {fix}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{path} is not a curve file of this toolkit (no {META_KEY} metadata); {fix}")
    kinds = {"kind": str, "bends": int, "arch": str, "arch_kwargs": dict, "num_classes": int,
             "endpoints": list, "train": dict}
    for key, cls in kinds.items():
        if not isinstance(doc.get(key), cls) or isinstance(doc.get(key), bool):
            raise UserError(f"{path}: field {key!r} must be a {cls.__name__}; {fix}")
    check_shape(doc["kind"], doc["bends"])
    ends = doc["endpoints"]
    if len(ends) != 2 or not all(isinstance(e, dict) and isinstance(e.get("sha256"), str)
                                 and (e.get("path") is None or isinstance(e["path"], str)) for e in ends):
        raise UserError(f"{path}: field 'endpoints' must hold two endpoints with a sha256 and a path; {fix}")
    return doc


def load_curve(path: str | os.PathLike, endpoints: Sequence[CheckpointLike] | None = None,
               device: str | torch.device = "cpu") -> Curve:
    """The curve in the curve file ``path``; its endpoints are read from the paths it records
    (or given as ``endpoints``), each checked against the sha256 the file records.

    Raises:
        UserError: a damaged file, a missing endpoint, or an endpoint that is not the one the
            curve was fitted between.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    doc = read_curve_doc(path)
    if endpoints is None:
        missing = [str(e.get("path") or e.get("name", "?")) for e in doc["endpoints"]
                   if not e.get("path") or not Path(e["path"]).is_file()]
        if missing:
            raise UserError(f"{path} records endpoints that are not on disk ({', '.join(missing)}); pass them: "
                            "load_curve(path, endpoints=(A, B)), or `landscape plane A BEND B --curve` with A and B")
        endpoints = [e["path"] for e in doc["endpoints"]]
    ends = [load_checkpoint(e, device=device) if isinstance(e, (str, os.PathLike)) else as_checkpoint(e)
            for e in endpoints]
    for i, (c, rec) in enumerate(zip(ends, doc["endpoints"])):
        if CheckpointRef.of(c).sha256 != rec["sha256"]:
            raise UserError(f"endpoint {'AB'[i]} ({c.name}) is not the checkpoint {path.name} was fitted from "
                            f"(sha256 {rec['sha256'][:12]}...); pass the original")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable curve file ({type(exc).__name__}); fit it again") from None
    models = []
    for i in range(1, doc["bends"] + 1):
        state = {k[len(f"bend{i}."):]: v for k, v in tensors.items() if k.startswith(f"bend{i}.")}
        model = copy.deepcopy(ends[0].model)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise UserError(f"{path}: bend {i} does not fit the endpoints' architecture "
                            f"({str(exc).splitlines()[0]})") from None
        if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
            raise UserError(f"{path}: bend {i} holds non-finite weights (NaN or inf)")
        models.append(model.to(device))
    curve = make_curve(doc["kind"], ends[0], ends[1], models, doc["train"])
    return Curve(curve.kind, curve.endpoints, curve.bends, curve.record, path)
