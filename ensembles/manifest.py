"""A run's ``manifest.json``: the configuration it was trained with, its finished members, the
versions; and a run directory read back (``read_run``).

The manifest's ``config`` is ``RunConfig.flat()`` (format 1: every built-in method's options,
other methods' at their defaults) with each checkpoint given by its resolved path and sha256. A
rerun must match it: checkpoints are matched by content, not by the path they were given with,
and keys missing from an older manifest take their defaults.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ensembles.config import RunConfig
from ensembles.rundir import RunDir
from landscape.assets.checkpoint import file_sha256
from landscape.errors import UserError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Run:
    """A finished (or partial) run directory, read back: the members' records in order."""

    path: Path
    config: RunConfig
    members: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dir(self) -> RunDir:
        return RunDir(self.path)

    def checkpoint_path(self, index: int) -> Path:
        return self.dir.checkpoint_path(index)

    def probs_path(self, index: int) -> Path:
        return self.dir.probs_path(index)

    def test_probs(self) -> list[np.ndarray]:
        return [np.load(self.probs_path(m["index"])) for m in self.members]


def read_run(path: str | os.PathLike) -> Run:
    """Read a run directory's manifest (members in order).

    Raises:
        UserError: no manifest, or not a run directory of this toolkit.
    """
    run_dir = RunDir(path)
    config = config_of(run_dir.read_manifest())
    return Run(run_dir.path, config, run_dir.records(config.members))


def config_of(manifest: dict[str, Any]) -> RunConfig:
    """The ``RunConfig`` a manifest records (checkpoints by their recorded paths)."""
    doc = dict(manifest["config"])
    doc["pretrained"] = tuple(p["path"] for p in doc["pretrained"])
    if isinstance(doc.get("init"), dict):
        doc["init"] = doc["init"]["path"]
    return RunConfig.from_flat(**doc)


def identity(config: RunConfig) -> dict[str, Any]:
    """The manifest's ``config``: the flat settings, checkpoints with their sha256.

    Raises:
        UserError: a checkpoint that does not exist.
    """
    doc = config.flat()
    for p in config.pretrained:
        if not Path(p).is_file():
            raise UserError(f"pre-trained checkpoint {p} does not exist")
    doc["pretrained"] = [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)}
                         for p in config.pretrained]
    if config.init is not None:
        if not Path(config.init).is_file():
            raise UserError(f"--init checkpoint {config.init} does not exist")
        doc["init"] = {"path": str(Path(config.init).resolve()), "sha256": file_sha256(config.init)}
    return doc


def open_manifest(run_dir: RunDir, config: RunConfig, overwrite: bool) -> None:
    """Create the run directory's manifest, or check that it matches ``config``."""
    if run_dir.manifest_path.exists() and not overwrite:
        check_manifest(run_dir, config)
        return
    run_dir.path.mkdir(parents=True, exist_ok=True)
    if overwrite:
        run_dir.clear()
    run_dir.write_manifest({"format_version": FORMAT_VERSION, "kind": "ensemble-run",
                            "method": config.method, "config": identity(config), "members": [],
                            "versions": versions()})


def check_manifest(run_dir: RunDir, config: RunConfig) -> None:
    """Refuse a run directory trained with another configuration.

    Raises:
        UserError: the first setting that differs, with both values.
    """
    manifest = run_dir.read_manifest()
    ours = identity(config)
    now = _comparable(ours)
    stored = _comparable({**RunConfig.flat_defaults(config.method), **manifest["config"]})
    if stored != now:
        key = next(k for k in now if stored.get(k) != now[k])
        raise UserError(f"{run_dir.path} holds a run with another configuration ({key}: "
                        f"{manifest['config'].get(key)!r} there, {ours[key]!r} now); "
                        "pass --overwrite to replace it, or choose another --out")


def collect(run_dir: RunDir) -> None:
    """Gather the finished members' records into the manifest, in member order."""
    manifest = run_dir.read_manifest()
    manifest["members"] = run_dir.records(manifest["config"]["members"])
    run_dir.write_manifest(manifest)


def versions() -> dict[str, str]:
    import landscape

    return {"landscape": landscape.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _comparable(identity: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints are matched by content, not by the path they were given with."""
    doc = dict(identity)
    doc["pretrained"] = [p["sha256"] for p in identity["pretrained"]]
    if isinstance(doc.get("init"), dict):
        doc["init"] = doc["init"]["sha256"]
    return doc
