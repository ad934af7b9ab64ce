"""Training an ensemble into a run directory (docs/architecture.md).

The method (``ensembles.methods``, found by name in its registry) says which members the driver
trains and from where; members of one phase are independent, and under torchrun they are
shared among the processes. A local method (fge ... spro) then makes members 2..K itself from
member 1, on one process. Members are written as they finish (``ensembles.rundir``: checkpoint,
test probabilities, record) and gathered into ``manifest.json`` (``ensembles.manifest``);
rerunning the same configuration continues where it stopped and never retrains a finished
member.
"""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ensembles.config import RunConfig
from ensembles.inputs import check_fits, image_record, training_transform
from ensembles.manifest import MODULE_LABEL, Run, check_manifest, collect, open_manifest, read_run
from ensembles.methods import METHODS, Context, MemberPlan, get_method
from ensembles.rundir import RunDir
from ensembles.training import fit, predict_probs
from landscape.assets.checkpoint import Checkpoint, CheckpointMeta
from landscape.assets.datasets import dataset_info, load_dataset
from landscape.assets.heads import reset_head
from landscape.assets.images import ImageTransform
from landscape.assets.modules import allowing_archs, as_checkpoint, check_readable, load_checkpoint, save_checkpoint
from landscape.assets.resident import as_tensors
from landscape.assets.resolve import dataset_name
from landscape.atomic import rescue
from landscape.errors import UserError
from landscape.grid.distributed import Group
from landscape.grid.lock import WriterLock

__all__ = ["METHODS", "MemberPlan", "Run", "RunConfig", "read_run", "train"]


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
        config: method and hyperparameters. Its ``pretrained`` entries may also be
            ``Checkpoint`` or ``nn.Module`` objects (your own pre-trained model; the manifest
            records them as ``module:<sha256>``), and its ``data`` a ``landscape.Data``
            (registered under its name, ``landscape.assets.resolve.dataset_name``).
        out: the run directory; an existing one with the same configuration is resumed.
        data_root: where the dataset lives.
        device: where training runs.
        overwrite: discard an existing run with another configuration.
        group: under torchrun, this process's place among the workers
            (``landscape.grid.distributed.init_from_env()``); independent members are shared
            round-robin, each trained exactly as one process would. The local methods
            (fge ... spro) refuse a group of more than one process.

    Returns:
        The run, read back from ``out``.

    Example:
        >>> cfg = RunConfig("starsse", ("pre.safetensors",), "mnist1d", members=5, epochs=10,
        ...                 lr=0.02, cycle_epochs=5, cycle_lr=0.04)
        >>> run = train(cfg, "runs/starsse")
    """
    run_dir = RunDir(out)
    config, given = _objects_named(config)
    if get_method(config.method).one_process and group.world_size > 1:
        raise UserError(f"{config.method} trains on one process (members 2..K are made one after "
                        f"another); run it without torchrun")
    lock = None
    if group.is_main:
        run_dir.path.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(run_dir.manifest_path).acquire()  # one run (or torchrun job) per folder
    try:
        # named by the caller, or the class of a model object it gave: its members load too
        with allowing_archs(config.pretrained_arch, *(c.meta.arch for c in given.values())):
            return _train(config, given, run_dir, data_root, device, overwrite, group)
    finally:
        if lock is not None:
            lock.release()


def _objects_named(config: RunConfig) -> tuple[RunConfig, dict[str, Checkpoint]]:
    """``config`` with a ``Data`` replaced by its registered name and pre-trained objects
    (``Checkpoint``s without a file, ``nn.Module``s) by ``module:<sha256>``; and those objects by
    that label."""
    given: dict[str, Checkpoint] = {}
    labels = []
    for item in config.pretrained:
        if isinstance(item, (str, os.PathLike)):
            labels.append(str(item))
            continue
        ckpt = as_checkpoint(item)
        check_readable(ckpt.model, ckpt.meta, "the members of a run from it")  # before any training
        label = MODULE_LABEL + ckpt.sha256.rpartition(":")[2]
        given[label] = ckpt
        labels.append(label)
    return replace(config, pretrained=tuple(labels), data=dataset_name(config.data)), given


def _pretrained(config: RunConfig, given: dict[str, Checkpoint]) -> list[Checkpoint]:
    """The pre-trained checkpoints (objects as given, files read with the config's loading
    options), then the ``init`` checkpoint if there is one."""
    load = dict(arch=config.pretrained_arch, num_classes=config.pretrained_num_classes,
                arch_kwargs=config.pretrained_arch_kwargs, state_dict_key=config.pretrained_state_dict_key,
                strip_prefix=config.pretrained_strip_prefix)
    if all(v is None for v in load.values()):
        load = {}
    pretrained = [given[p] if p in given else load_checkpoint(p, **load) for p in config.pretrained]
    if config.init is not None:
        pretrained.append(_load_init(config))
    return pretrained


def _train(config: RunConfig, given: dict[str, Checkpoint], run_dir: RunDir, data_root, device,
           overwrite: bool, group: Group) -> Run:
    method = get_method(config.method)
    # every input is checked before the run directory is touched: a failing --overwrite leaves
    # the old run as it was, and a failed start leaves no manifest that refuses the corrected rerun
    pretrained = _pretrained(config, given)
    start = pretrained[-1] if config.init is not None else pretrained[0]  # member 1's start
    image = training_transform(start, config.data, _image(config))
    test_set = load_dataset(config.data, "test", data_root, image=image)
    train_set = load_dataset(config.data, "train", data_root, train_transform=True, image=image)
    for split in (test_set, train_set):  # the head is replaced later: no label check here
        check_fits(start.model, split, config.data, "cpu", labels=False)
    method.before_training(config, data_root)  # before member 1 is trained
    if group.is_main:
        open_manifest(run_dir, config, overwrite)
    group.barrier()
    check_manifest(run_dir, config)
    phases = method.phases(config)
    for phase in phases:
        for index in group.share(phase):
            if not run_dir.finished(index):
                _member(config, method.member_plan(config, index), pretrained, test_set, run_dir,
                        data_root, device, image)
                if group.world_size == 1:
                    collect(run_dir)
        group.barrier()
        if group.is_main:
            collect(run_dir)
    if group.is_main and sum(map(len, phases)) < config.members:
        _further_members(config, run_dir, test_set, data_root, device, image)
    group.barrier()
    return read_run(run_dir.path)


def _image(config: RunConfig) -> ImageTransform | None:
    return None if config.image is None else ImageTransform(**config.image)


def _load_init(config: RunConfig) -> Checkpoint:
    init = load_checkpoint(config.init)
    num_classes = dataset_info(config.data).num_classes
    if init.meta.num_classes != num_classes:
        raise UserError(f"--init {config.init} has {init.meta.num_classes} classes but {config.data} "
                        f"has {num_classes}; give a model fine-tuned on {config.data}")
    return init


def _further_members(config: RunConfig, run_dir: RunDir, test_set, data_root, device,
                     image: ImageTransform | None) -> None:
    """The members a method makes itself from member 1 (members 2..K of a local method)."""
    first = load_checkpoint(run_dir.member_checkpoint(1), device=device)  # checked against its record
    num_classes = dataset_info(config.data).num_classes

    def write(index, model, *, parent, epochs, lrs, lr, extra) -> str:
        meta = CheckpointMeta(first.meta.arch, num_classes, dict(first.meta.arch_kwargs),
                              config.data, method=config.method, member=index,
                              seed=config.seed + index - 1, epochs=epochs, parent=parent,
                              extra={"lr": lr, "start": "member:1", **extra, **image_record(image)})
        sha = _write_member(run_dir, index, model, meta, test_set, device,
                            {"start": "member:1", "epochs": epochs, "lr": lr, "lrs": lrs, **extra})
        collect(run_dir)
        return sha

    get_method(config.method).make_members(Context(config, run_dir, first, write, data_root, device, image))


def _member(config: RunConfig, plan: MemberPlan, pretrained, test_set, run_dir: RunDir,
            data_root, device, image: ImageTransform | None) -> None:
    """Train one member (or copy ``init``) and write its checkpoint, test probabilities and record."""
    num_classes = dataset_info(config.data).num_classes
    start = _start_checkpoint(plan, pretrained, run_dir)
    extra = {"lr": plan.lr, "start": plan.start}
    epochs = plan.epochs
    if plan.start == "init":  # member 1 is the given fine-tune: its lineage is its own parent's
        model, lrs, parent = start.model, [], start.meta.parent
        epochs = start.meta.epochs or 0
        extra["init_sha256"] = start.sha256
    else:
        fitted = _train_member(plan, start, config, num_classes, data_root, device, image)
        model, lrs, parent = fitted.model, list(fitted.lrs), start.sha256
    meta = CheckpointMeta(
        start.meta.arch, num_classes, dict(start.meta.arch_kwargs), config.data,
        method=config.method, member=plan.index, seed=plan.seed, epochs=epochs,
        parent=parent, extra={**extra, **image_record(image)},
    )
    _write_member(run_dir, plan.index, model, meta, test_set, device,
                  {"start": plan.start, "epochs": epochs, "lr": plan.lr, "lrs": lrs})


def _write_member(run_dir: RunDir, index: int, model: nn.Module, meta: CheckpointMeta, test_set,
                  device, record: dict[str, Any]) -> str:
    """Write member ``index`` with its test probabilities and accuracy; returns its sha256."""
    probs = predict_probs(model.to(device), test_set, device)
    try:
        return run_dir.write_member(index, model, meta, probs, {**record, "test_acc": _acc(probs, test_set)})
    except OSError as exc:  # the disk filled during training: keep the member where the user finds it
        rescue(save_checkpoint, model.cpu(), run_dir.checkpoint_path(index), exc, meta)


def _train_member(plan: MemberPlan, start: Checkpoint, config: RunConfig, num_classes: int,
                  data_root, device, image: ImageTransform | None):
    model = start.model
    if plan.new_head:
        model = copy.deepcopy(model)
        reset_head(model, num_classes, seed=plan.seed)
    return fit(model, config.data, config.train_config(plan), data_root=data_root, device=device,
               desc=f"{config.method} member {plan.index}/{config.members}", image=image)


def _start_checkpoint(plan: MemberPlan, pretrained: list[Checkpoint], run_dir: RunDir) -> Checkpoint:
    kind, _, ref = plan.start.partition(":")
    if kind == "init":
        return pretrained[-1]
    if kind == "pretrained":
        return pretrained[int(ref)]
    if kind != "member":
        raise ValueError(f"member {plan.index} starts from {plan.start!r}; expected init, "
                         "pretrained:<i> or member:<j>")
    if not run_dir.checkpoint_path(int(ref)).exists():
        raise UserError(f"member {plan.index} starts from member {ref}, which is not trained "
                        f"yet in {run_dir.path}; train it first")
    return load_checkpoint(run_dir.member_checkpoint(int(ref)))  # checked against its record


def _acc(probs: np.ndarray, dataset) -> float:
    _, labels = as_tensors(dataset)
    return 100.0 * float(np.mean(probs.argmax(1) == labels.numpy()))
