"""A run's ``manifest.json``: the configuration it was trained with, its finished members, the
versions; and a run directory read back (``read_run``).

The manifest's ``config`` is ``RunConfig.flat()`` (format 1: every built-in method's options,
other methods' at their defaults) with each checkpoint given by its resolved path and sha256. A
rerun must match it: checkpoints are matched by content, not by the path they were given with,
and keys missing from an older manifest take their defaults. A manifest is checked when it is
read (``load_manifest``): a damaged one is one ``UserError`` naming the file and the field.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ensembles.config import RunConfig
from ensembles.methods import method_names, option_defaults
from ensembles.rundir import FORMAT_VERSION, RunDir, short_repr
from landscape.assets.checkpoint import file_sha256
from landscape.assets.resolve import user_data_identity
from landscape.errors import UserError

MODULE_LABEL = "module:"  # a pre-trained model given as an object: module:<hex of its weights' sha256>


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
        """The checkpoint of the finished member ``index``, checked against the sha256 its record
        holds (``RunDir.member_checkpoint``).

        Raises:
            UserError: no such finished member, or its checkpoint is another file.
        """
        record = next((m for m in self.members if m["index"] == index), None)
        if record is None:
            raise UserError(f"{self.path} has no finished member {index} (finished: "
                            f"{[m['index'] for m in self.members]})")
        return self.dir.member_checkpoint(index, record)

    def probs_path(self, index: int) -> Path:
        return self.dir.probs_path(index)

    def test_probs(self, *, rows: int | None = None, classes: int | None = None) -> list[np.ndarray]:
        """The members' test probabilities, each checked (``RunDir.read_probs``) and all of one
        shape: ``(rows, classes)`` where given (the test set's), else the first member's.

        Raises:
            UserError: a damaged array, or one of another shape (the file named).
        """
        probs = [self.dir.read_probs(m["index"]) for m in self.members]
        if not probs:
            return probs
        want = (probs[0].shape[0] if rows is None else rows,
                probs[0].shape[1] if classes is None else classes)
        for m, p in zip(self.members, probs):
            if p.shape != want:
                raise UserError(f"{self.probs_path(m['index'])} has shape {p.shape}, expected {want} "
                                f"(one row per test sample, one column per class of {self.config.data}); "
                                f"{self.dir.retrain(m['index'])}")
        return probs


def read_run(path: str | os.PathLike) -> Run:
    """Read a run directory back: its configuration and its finished members' records in order,
    each checked.

    Raises:
        UserError: no manifest, not a run directory of this toolkit, or a damaged manifest or
            member record (the file and the field named).
    """
    run_dir = RunDir(path)
    _, config = load_manifest(run_dir)
    return Run(run_dir.path, config, run_dir.records(config.members))


def load_manifest(run_dir: RunDir) -> tuple[dict[str, Any], RunConfig]:
    """The run directory's manifest and the configuration it records, both checked.

    Raises:
        UserError: see ``RunDir.read_manifest`` and ``config_of``.
    """
    manifest = run_dir.read_manifest()
    return manifest, config_of(manifest, run_dir.manifest_path)


def config_of(manifest: dict[str, Any], source: str | os.PathLike = "the manifest") -> RunConfig:
    """The ``RunConfig`` a manifest records (checkpoints by their recorded paths).

    Raises:
        UserError: a setting unknown, missing or of the wrong type, or a method that differs
            from the manifest's; the message names ``source`` and the setting.
    """
    doc = dict(manifest["config"])
    problem = _config_problem(doc, manifest.get("method"))
    if problem is not None:
        raise UserError(f"{source}: config: {problem}")
    doc.pop("data_content", None)  # your own data's hashes: checked by check_manifest
    doc["pretrained"] = tuple(p["path"] for p in doc["pretrained"])
    if isinstance(doc.get("init"), dict):
        doc["init"] = doc["init"]["path"]
    try:
        return RunConfig.from_flat(**doc)
    except UserError as exc:
        raise UserError(f"{source}: config: {exc}") from None


def _config_problem(doc: dict[str, Any], method: Any) -> str | None:
    """What is wrong with a manifest's ``config`` before ``RunConfig`` checks its values."""
    settings = {f.name for f in fields(RunConfig)} - {"options"}
    unknown = sorted(set(doc) - settings - set(option_defaults(method_names())) - {"data_content"})
    if unknown:
        return f"unknown settings {unknown}"
    required = [f.name for f in fields(RunConfig) if f.default is MISSING and f.name != "options"]
    missing = [k for k in required if k not in doc]
    if missing:
        return f"no setting {missing[0]!r}"
    if doc["method"] != method:
        return f"method {short_repr(doc['method'])} is not the manifest's method {short_repr(method)}"
    if not isinstance(doc["pretrained"], list) or not all(map(_is_file_record, doc["pretrained"])):
        return f"pretrained must be a list of {{path, sha256}} records, got {short_repr(doc['pretrained'])}"
    if not (doc.get("init") is None or _is_file_record(doc["init"])):
        return f"init must be null or a {{path, sha256}} record, got {short_repr(doc['init'])}"
    return None


def _is_file_record(v: Any) -> bool:
    return isinstance(v, dict) and set(v) == {"path", "sha256"} and \
        all(isinstance(x, str) for x in v.values())


def identity(config: RunConfig) -> dict[str, Any]:
    """The manifest's ``config``: the flat settings, checkpoints with their sha256.

    Raises:
        UserError: a checkpoint that does not exist.
    """
    doc = config.flat()
    doc["pretrained"] = [pretrained_record(p) for p in config.pretrained]
    content = user_data_identity(config.data)
    if content is not None:  # your own data: its splits' sizes and hashes
        doc["data_content"] = content
    if config.init is not None:
        if not Path(config.init).is_file():
            raise UserError(f"--init checkpoint {config.init} does not exist")
        doc["init"] = {"path": str(Path(config.init).resolve()), "sha256": file_sha256(config.init)}
    return doc


def pretrained_record(p: str) -> dict[str, str]:
    """A pre-trained checkpoint as the manifest records it: its path and sha256, or for an object
    given from Python (``module:<hex>``, see ``ensembles.run``) the hash of its weights."""
    if p.startswith(MODULE_LABEL):
        return {"path": p, "sha256": "weights:" + p[len(MODULE_LABEL):]}
    if not Path(p).is_file():
        raise UserError(f"pre-trained checkpoint {p} does not exist")
    return {"path": str(Path(p).resolve()), "sha256": file_sha256(p)}


def open_manifest(run_dir: RunDir, config: RunConfig, overwrite: bool) -> None:
    """Create the run directory's manifest, or check that it matches ``config``.

    A run without a finished member (a start that failed) holds nothing to lose: it is replaced
    without ``overwrite``. Members without a manifest are kept and adopted (``ensembles.sweep``
    seeds its cells with member 1 so; each is checked against its record when used). With ``overwrite``, the old run's files are first moved aside and
    removed only once the new manifest is written; if that fails, they are put back."""
    finished = any(run_dir.path.glob("member-*.json"))
    if finished and not overwrite and run_dir.manifest_path.exists():
        check_manifest(run_dir, config)
        return
    run_dir.path.mkdir(parents=True, exist_ok=True)
    doc = {"format_version": FORMAT_VERSION, "kind": "ensemble-run", "method": config.method,
           "config": identity(config), "members": [], "versions": versions()}
    if not overwrite and not run_dir.manifest_path.exists():
        run_dir.write_manifest(doc)  # members already there are kept (a sweep seeds member 1 so)
        return
    aside = _set_aside(run_dir)
    try:
        run_dir.write_manifest(doc)
    except BaseException:
        _put_back(run_dir, aside)
        raise
    shutil.rmtree(aside)


def _set_aside(run_dir: RunDir) -> Path:
    """Move the manifest, the members' files and the methods' states into a hidden folder."""
    aside = run_dir.path / f".replaced-{os.getpid()}"
    aside.mkdir(exist_ok=True)
    old = [run_dir.manifest_path, *run_dir.path.glob("member-*"), *run_dir.path.glob("*-state*.safetensors")]
    for f in old:
        if f.exists():
            f.rename(aside / f.name)
    return aside


def _put_back(run_dir: RunDir, aside: Path) -> None:
    for f in aside.iterdir():
        f.rename(run_dir.path / f.name)
    aside.rmdir()


def check_manifest(run_dir: RunDir, config: RunConfig) -> None:
    """Refuse a run directory trained with another configuration.

    Raises:
        UserError: the first setting that differs, with both values.
    """
    manifest, _ = load_manifest(run_dir)
    ours = identity(config)
    now = _comparable(ours)
    stored = _comparable({**RunConfig.flat_defaults(config.method), **manifest["config"]})
    if stored != now:
        key = next(k for k in sorted(set(stored) | set(now)) if stored.get(k) != now.get(k))
        raise UserError(f"{run_dir.path} holds a run with another configuration ({key}: "
                        f"{manifest['config'].get(key)!r} there, {ours.get(key)!r} now); "
                        "pass --overwrite to replace it, or choose another --out")


def collect(run_dir: RunDir) -> None:
    """Gather the finished members' records into the manifest, in member order."""
    manifest, config = load_manifest(run_dir)
    manifest["members"] = run_dir.records(config.members)
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
