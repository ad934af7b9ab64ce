"""Training an ensemble into a run directory (design.md, "Training" and the run contract).

A run directory holds ``manifest.json`` (method, hyperparameters, members in order, seeds,
versions), one checkpoint per member (``member-<i>.safetensors``) and each member's test-set
probabilities (``member-<i>.test-probs.npy``, float32, rows in test-set order). Members are
written as they finish; rerunning the same configuration continues where it stopped and never
retrains a finished member.

Methods (members numbered from 1; member i uses seed ``seed + i - 1``):

- ``local-de``: K fine-tunes of one pre-trained checkpoint.
- ``global-de``: K fine-tunes, member i from the i-th pre-trained checkpoint.
- ``sse``: member 1 fine-tuned for E epochs at ``lr``; member i >= 2 continues from member i-1
  for F epochs, the cosine restarting at ``cycle_lr``, with a fresh optimizer.
- ``starsse``: member 1 as in SSE; every member i >= 2 starts from member 1 (weights and BN
  buffers) with a fresh optimizer and runs one cycle of F epochs at ``cycle_lr``.
- ``fge``, ``csgld``, ``swag``, ``kfac-laplace``, ``spro`` (``ensembles.methods``): member 1 as in
  SSE (or a copy of the fine-tuned ``init`` checkpoint); members 2..K are FGE's or cSGLD's
  snapshots along one trajectory from member 1, or samples of SWAG, KFAC-Laplace or SPRO around
  it (BN statistics recomputed). Their expensive state (a trajectory's optimizer buffers, SWAG's
  moments, the Kronecker factors, the simplex) is kept in ``<method>-state*.safetensors``. They
  train on one process: under torchrun (world size > 1) they are refused, since members 2..K are
  sequential and the other processes would wait in a collective with a timeout.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ensembles.methods import (
    LOCAL_METHODS,
    OWNED_FIELDS,
    Context,
    check_method,
    method_config,
    run_method,
)
from ensembles.training import TrainConfig, fit, predict_probs
from landscape.assets.checkpoint import (
    Checkpoint,
    CheckpointMeta,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from landscape.assets.datasets import dataset_info, load_dataset
from landscape.grid.distributed import Group
from landscape.errors import UserError
from landscape.grid.lock import WriterLock
from landscape.assets.models import reset_head

METHODS = ("local-de", "global-de", "sse", "starsse") + LOCAL_METHODS
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides an ensemble run's members.

    ``pretrained_arch`` and ``pretrained_num_classes`` describe plain ``.pt`` state dicts given
    as pre-trained checkpoints (``.safetensors`` files describe themselves). The recipe fields
    (optimizer ... amp) are those of ``TrainConfig``.

    The local methods (``ensembles.methods``) read ``cycle_epochs`` and ``cycle_lr`` (FGE: cycle
    length and peak rate; cSGLD: cycle length and alpha_0; SWAG: collection epochs and SWA rate;
    SPRO: epochs and rate per vertex) and the fields below ``init``, each documented in its
    module; ``init`` is a fine-tuned checkpoint used as member 1 instead of training it.
    """

    method: str
    pretrained: tuple[str, ...]
    data: str
    members: int
    epochs: int
    lr: float
    wd: float = 5e-4
    cycle_epochs: int | None = None
    cycle_lr: float | None = None
    seed: int = 0
    batch_size: int = 128
    momentum: float = 0.9
    optimizer: str = "sgd"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    grad_clip: float | None = None
    amp: bool = False
    pretrained_arch: str | None = None
    pretrained_num_classes: int | None = None
    init: str | None = None
    fge_min_lr: float | None = None
    csgld_temperature: float = 1.0
    csgld_exploration: float = 0.8
    swag_rank: int = 20
    swag_collect: int = 1
    swag_schedule: str = "constant"
    sample_scale: float | None = None
    laplace_prior_precision: float | None = None
    spro_vertices: int = 3
    spro_volume_reg: float = 0.01

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        if not isinstance(self.members, int) or self.members < 1:
            raise UserError(f"members must be a positive integer, got {self.members!r}")
        self._check_owned_fields()
        if not self.pretrained and self.init is None:
            raise UserError("a run needs --pretrained CHECKPOINT"
                            + (" (or --init FINETUNED)" if self.method in LOCAL_METHODS else ""))
        if self.method == "global-de" and len(self.pretrained) != self.members:
            raise UserError(f"global-de trains one member per pre-trained checkpoint: got "
                            f"{len(self.pretrained)} checkpoints for {self.members} members")
        if self.method != "global-de" and len(self.pretrained) != 1 and self.init is None:
            raise UserError(f"{self.method} starts from one pre-trained checkpoint, got "
                            f"{len(self.pretrained)}")
        if self.method in ("sse", "starsse"):
            if self.cycle_epochs is None or self.cycle_lr is None:
                raise UserError(f"{self.method} needs --cycle-epochs F and --cycle-lr LR")
            TrainConfig(epochs=self.cycle_epochs, lr=self.cycle_lr, wd=self.wd)  # validates
        if self.method in LOCAL_METHODS:
            method_config(self)  # validates the method's own settings
            if len(self.pretrained) > 1:
                raise UserError(f"{self.method} starts from one pre-trained checkpoint, got "
                                f"{len(self.pretrained)}")
        # validates the recipe (as member 1 would be trained without --init)
        self.train_config(MemberPlan(1, "pretrained:0", self.epochs, self.lr, self.seed, True))

    def _check_owned_fields(self) -> None:
        defaults = {f.name: f.default for f in fields(self)}
        for name, owners in OWNED_FIELDS.items():
            if getattr(self, name) != defaults[name] and self.method not in owners:
                flag = "--" + name.replace("_", "-")
                raise UserError(f"{flag} applies to --method {' or '.join(owners)}, not "
                                f"{self.method}")

    def train_config(self, plan: "MemberPlan") -> TrainConfig:
        """The optimisation settings of one member. Warm-up applies to the E-epoch fine-tunes
        only; later SSE/StarSSE cycles restart the cosine directly at ``cycle_lr``."""
        return TrainConfig(
            epochs=plan.epochs, lr=plan.lr, wd=self.wd, momentum=self.momentum,
            batch_size=self.batch_size, seed=plan.seed, optimizer=self.optimizer,
            warmup_epochs=self.warmup_epochs if plan.new_head else 0,
            label_smoothing=self.label_smoothing, mixup=self.mixup, cutmix=self.cutmix,
            grad_clip=self.grad_clip, amp=self.amp,
        )

    def phases(self) -> list[list[int]]:
        """Members in dependency order: members of one phase are independent of each other."""
        k = self.members
        if self.method in ("local-de", "global-de"):
            return [list(range(1, k + 1))]
        if self.method == "starsse":
            return [[1], list(range(2, k + 1))] if k > 1 else [[1]]
        if self.method in LOCAL_METHODS:
            return [[1]]  # members 2..K come from ensembles.methods, on one process
        return [[i] for i in range(1, k + 1)]  # sse: each cycle needs the previous snapshot

    def member_plan(self, index: int) -> "MemberPlan":
        """Where member ``index`` (1-based) starts and how it trains."""
        seed = self.seed + index - 1
        if self.method == "global-de":
            return MemberPlan(index, f"pretrained:{index - 1}", self.epochs, self.lr, seed, True)
        if index == 1 and self.init is not None:
            return MemberPlan(1, "init", 0, 0.0, seed, False)
        if self.method == "local-de" or index == 1:
            return MemberPlan(index, "pretrained:0", self.epochs, self.lr, seed, True)
        if self.method in LOCAL_METHODS:
            raise ValueError(f"{self.method} members >= 2 are made by ensembles.methods")
        start = index - 1 if self.method == "sse" else 1
        return MemberPlan(index, f"member:{start}", self.cycle_epochs, self.cycle_lr, seed, False)


@dataclass(frozen=True)
class MemberPlan:
    """Member ``index`` starts from ``start`` (``pretrained:<i>`` or ``member:<j>``) and trains
    ``epochs`` epochs of cosine from ``lr``; fine-tunes from a pre-trained model get a new head."""

    index: int
    start: str
    epochs: int
    lr: float
    seed: int
    new_head: bool


@dataclass(frozen=True)
class Run:
    """A finished (or partial) run directory, read back."""

    path: Path
    config: RunConfig
    members: list[dict[str, Any]] = field(default_factory=list)

    def checkpoint_path(self, index: int) -> Path:
        return self.path / f"member-{index}.safetensors"

    def probs_path(self, index: int) -> Path:
        return self.path / f"member-{index}.test-probs.npy"

    def test_probs(self) -> list[np.ndarray]:
        return [np.load(self.probs_path(m["index"])) for m in self.members]


def train(
    config: RunConfig,
    out: str | os.PathLike,
    *,
    data_root: str | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    group: Group = Group(),
) -> Run:
    """Train (or finish) the ensemble described by ``config`` into the run directory ``out``.

    Args:
        config: method and hyperparameters.
        out: the run directory; an existing one with the same configuration is resumed.
        data_root: where the dataset lives.
        device: where training runs.
        overwrite: discard an existing run with another configuration.
        group: under torchrun, this process's place among the workers
            (``landscape.distributed.init_from_env()``); independent members are shared
            round-robin, each trained exactly as one process would. The local methods
            (fge ... spro) refuse a group of more than one process.

    Returns:
        The run, read back from ``out``.

    Example:
        >>> cfg = RunConfig("starsse", ("pre.safetensors",), "mnist1d", members=5, epochs=10,
        ...                 lr=0.02, cycle_epochs=5, cycle_lr=0.04)
        >>> run = train(cfg, "runs/starsse")
    """
    out = Path(out)
    if config.method in LOCAL_METHODS and group.world_size > 1:
        raise UserError(f"{config.method} trains on one process (members 2..K are made one after "
                        f"another); run it without torchrun")
    lock = None
    if group.is_main:
        out.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(out / MANIFEST).acquire()  # one run (or torchrun job) per directory
    try:
        return _train(config, out, data_root, device, overwrite, group)
    finally:
        if lock is not None:
            lock.release()


def _train(config: RunConfig, out: Path, data_root, device, overwrite: bool, group: Group) -> Run:
    if group.is_main:
        _open_manifest(out, config, overwrite)
    group.barrier()
    _check_manifest(out, config)
    pretrained = [load_checkpoint(p, arch=config.pretrained_arch,
                                  num_classes=config.pretrained_num_classes)
                  for p in config.pretrained]
    if config.init is not None:
        pretrained.append(_load_init(config))
    test_set = load_dataset(config.data, "test", data_root)
    if config.method in LOCAL_METHODS:  # before member 1 is trained
        check_method(config, load_dataset(config.data, "train", data_root, train_transform=True))
    for phase in config.phases():
        for index in group.share(phase):
            if not _finished(out, index):
                _member(config, config.member_plan(index), pretrained, test_set, out,
                        data_root, device)
                if group.world_size == 1:
                    _collect(out)
        group.barrier()
        if group.is_main:
            _collect(out)
    if config.method in LOCAL_METHODS and group.is_main:
        _local_members(config, out, test_set, data_root, device)
    group.barrier()
    return read_run(out)


def _load_init(config: RunConfig) -> Checkpoint:
    init = load_checkpoint(config.init)
    num_classes = dataset_info(config.data).num_classes
    if init.meta.num_classes != num_classes:
        raise UserError(f"--init {config.init} has {init.meta.num_classes} classes but {config.data} "
                        f"has {num_classes}; give a model fine-tuned on {config.data}")
    return init


def _local_members(config: RunConfig, out: Path, test_set, data_root, device) -> None:
    """Members 2..K of a local method (ensembles.methods), written through ``_write_member``."""
    first = load_checkpoint(out / "member-1.safetensors", device=device)
    num_classes = dataset_info(config.data).num_classes

    def write(index, model, *, parent, epochs, lrs, lr, extra) -> str:
        meta = CheckpointMeta(first.meta.arch, num_classes, dict(first.meta.arch_kwargs),
                              config.data, method=config.method, member=index,
                              seed=config.seed + index - 1, epochs=epochs, parent=parent,
                              extra={"lr": lr, "start": "member:1", **extra})
        sha = _write_member(out, index, model, meta, test_set, device,
                            {"start": "member:1", "epochs": epochs, "lr": lr, "lrs": lrs, **extra})
        _collect(out)
        return sha

    run_method(Context(config, out, first, write, lambda i: _finished(out, i), data_root, device))


def _member(config: RunConfig, plan: "MemberPlan", pretrained, test_set, out: Path, data_root,
            device) -> None:
    """Train one member (or copy ``init``) and write its checkpoint, test probabilities and record."""
    num_classes = dataset_info(config.data).num_classes
    start = _start_checkpoint(plan, pretrained, out, config)
    extra = {"lr": plan.lr, "start": plan.start}
    epochs = plan.epochs
    if plan.start == "init":  # member 1 is the given fine-tune: its lineage is its own parent's
        model, lrs, parent = start.model, [], start.meta.parent
        epochs = start.meta.epochs or 0
        extra["init_sha256"] = start.sha256
    else:
        fitted = _train_member(plan, start, config, num_classes, data_root, device)
        model, lrs, parent = fitted.model, list(fitted.lrs), start.sha256
    meta = CheckpointMeta(
        start.meta.arch, num_classes, dict(start.meta.arch_kwargs), config.data,
        method=config.method, member=plan.index, seed=plan.seed, epochs=epochs,
        parent=parent, extra=extra,
    )
    _write_member(out, plan.index, model, meta, test_set, device,
                  {"start": plan.start, "epochs": epochs, "lr": plan.lr, "lrs": lrs})


def _write_member(out: Path, i: int, model, meta: CheckpointMeta, test_set, device,
                  record: dict[str, Any]) -> str:
    """Write member ``i``: checkpoint, test probabilities, then its record (which marks it
    finished). Returns the checkpoint's sha256."""
    probs = predict_probs(model.to(device), test_set, device)
    sha = save_checkpoint(model.cpu(), out / f"member-{i}.safetensors", meta)
    _save_npy(out / f"member-{i}.test-probs.npy", probs)
    record = {"index": i, "file": f"member-{i}.safetensors", "sha256": sha,
              "probs": f"member-{i}.test-probs.npy", "seed": meta.seed, **record,
              "test_acc": _acc(probs, test_set)}
    _write_json(out / f"member-{i}.json", record)  # last: marks the member finished
    return sha


def _train_member(plan: MemberPlan, start: Checkpoint, config: RunConfig, num_classes: int,
                  data_root, device):
    model = start.model
    if plan.new_head:
        import copy

        model = copy.deepcopy(model)
        reset_head(model, num_classes, seed=plan.seed)
    return fit(model, config.data, config.train_config(plan), data_root=data_root, device=device,
               desc=f"{config.method} member {plan.index}/{config.members}")


def _start_checkpoint(plan: MemberPlan, pretrained: list[Checkpoint], out: Path,
                      config: RunConfig) -> Checkpoint:
    kind, _, ref = plan.start.partition(":")
    if kind == "init":
        return pretrained[-1]
    if kind == "pretrained":
        return pretrained[int(ref)]
    path = out / f"member-{ref}.safetensors"
    if not path.exists():
        raise UserError(f"member {plan.index} starts from member {ref}, which is not trained "
                        f"yet in {out}; train it first")
    return load_checkpoint(path)


def _acc(probs: np.ndarray, dataset) -> float:
    from landscape.assets.datasets import as_tensors

    _, labels = as_tensors(dataset)
    return 100.0 * float(np.mean(probs.argmax(1) == labels.numpy()))


# ----------------------------------------------------------------------------- manifest


def _identity(config: RunConfig) -> dict[str, Any]:
    doc = asdict(config)
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


def _open_manifest(out: Path, config: RunConfig, overwrite: bool) -> None:
    """Create the run directory's manifest, or check that it matches ``config``."""
    path = out / MANIFEST
    if path.exists() and not overwrite:
        _check_manifest(out, config)
        return
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for f in [*out.glob("member-*"), *out.glob("*-state*.safetensors")]:
            f.unlink()
    _write_json(path, {"format_version": FORMAT_VERSION, "kind": "ensemble-run",
                       "method": config.method, "config": _identity(config), "members": [],
                       "versions": _versions()})


def _check_manifest(out: Path, config: RunConfig) -> None:
    manifest = _read_manifest_file(out / MANIFEST)
    identity = _identity(config)
    stored = {**_field_defaults(), **manifest["config"]}  # runs written before a field existed
    if _comparable(stored) != _comparable(identity):
        key = next(k for k in identity
                   if _comparable(stored).get(k) != _comparable(identity)[k])
        raise UserError(f"{out} holds a run with another configuration ({key}: "
                        f"{manifest['config'].get(key)!r} there, {identity[key]!r} now); "
                        "pass --overwrite to replace it, or choose another --out")


def _collect(out: Path) -> None:
    """Gather the finished members' records into the manifest, in member order."""
    manifest = _read_manifest_file(out / MANIFEST)
    manifest["members"] = read_run(out).members
    _write_json(out / MANIFEST, manifest)


def _comparable(identity: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints are matched by content, not by the path they were given with."""
    doc = dict(identity)
    doc["pretrained"] = [p["sha256"] for p in identity["pretrained"]]
    if isinstance(doc.get("init"), dict):
        doc["init"] = doc["init"]["sha256"]
    return doc


def _field_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(RunConfig) if f.default is not MISSING}


def _finished(out: Path, index: int) -> bool:
    return all((out / f"member-{index}{suffix}").exists()
               for suffix in (".json", ".safetensors", ".test-probs.npy"))


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _read_manifest_file(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a readable run manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "ensemble-run":
        raise UserError(f"{path} is not an ensemble run manifest")
    return manifest


def _versions() -> dict[str, str]:
    import landscape

    return {"landscape": landscape.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def read_run(path: str | os.PathLike) -> Run:
    """Read a run directory's manifest (members in order).

    Raises:
        UserError: no manifest, or not a run directory of this toolkit.
    """
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise UserError(f"{path} is not a run directory (no {MANIFEST}); train one with "
                        "`landscape train`")
    manifest = _read_manifest_file(path / MANIFEST)
    cfg = dict(manifest["config"])
    cfg["pretrained"] = tuple(p["path"] for p in cfg["pretrained"])
    if isinstance(cfg.get("init"), dict):
        cfg["init"] = cfg["init"]["path"]
    finished = [i for i in range(1, cfg["members"] + 1) if _finished(path, i)]
    members = [json.loads((path / f"member-{i}.json").read_text()) for i in finished]
    return Run(path, RunConfig(**cfg), members)
