"""The dataset and model registries: your own entries resolve like the built-ins, bad ones fail loudly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape import (
    UserError,
    create_model,
    dataset_info,
    dataset_names,
    load_dataset,
    model_names,
    register_dataset,
    register_model,
)
from landscape.assets import datasets as datasets_mod
from landscape.assets import models as models_mod
from landscape.assets.registry import Registry
from landscape.assets.resident import ArrayDataset


@pytest.fixture
def clean_registries(monkeypatch):
    """Entries registered by a test vanish after it."""
    for mod, attr in ((datasets_mod, "_DATASETS"), (models_mod, "_MODELS")):
        reg = getattr(mod, attr)
        fresh = Registry(reg.kind)
        fresh._entries, fresh._usages = dict(reg._entries), dict(reg._usages)
        monkeypatch.setattr(mod, attr, fresh)


def test_the_builtins_are_registered():
    assert dataset_names() == ["cifar10", "cifar100", "mnist1d", "mnist1d-source", "mnist1d-transfer",
                               "mnist1d-transfer-val"]
    assert model_names() == ["mnist1d_cnn", "resnet20", "resnet32", "resnet56"]
    info = dataset_info("mnist1d")
    assert (info.num_classes, info.default_arch, info.input_shape) == (10, "mnist1d_cnn", (40,))
    assert dataset_info("cifar100").input_shape == (3, 32, 32)
    x, _ = load_dataset("mnist1d", "test")[0]
    assert tuple(x.shape) == info.input_shape


def test_a_dataset_of_ones_own_loads_by_name(clean_registries):
    calls = []

    @register_dataset("blobs", num_classes=3, input_shape=(8,), default_arch="blob_mlp",
                      description="three blobs")
    def blobs(split, *, root=None, **options):
        calls.append((split, root, options))
        labels = torch.arange(12) % 3
        return ArrayDataset(torch.randn(12, 8) + labels[:, None], labels)

    assert blobs.__name__ == "blobs"  # the decorator returns the loader
    assert "blobs" in dataset_names()
    assert dataset_info("blobs").num_classes == 3 and dataset_info("blobs").description == "three blobs"
    assert len(load_dataset("blobs", "train", "/data")) == 12
    assert calls == [("train", "/data", {"download": False, "train_transform": False})]
    with pytest.raises(UserError, match="blobs, cifar10.*or imagefolder:PATH"):
        dataset_info("blob")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("blobs", blobs, num_classes=3)
    register_dataset("blobs", blobs, num_classes=4, overwrite=True)
    assert dataset_info("blobs").num_classes == 4


def test_a_family_of_parametrised_dataset_names(clean_registries):
    def info(arg):
        return datasets_mod.DatasetInfo(f"shards:{arg}", int(arg), None, "shards")

    register_dataset("shards:", lambda arg, split, **o: ArrayDataset(torch.zeros(int(arg), 2),
                                                                       torch.arange(int(arg))), info=info)
    assert dataset_info("shards:5").num_classes == 5 and len(load_dataset("shards:7", "test")) == 7
    assert "shards:" not in dataset_names()
    with pytest.raises(UserError, match="imagefolder:PATH or shards:PATH"):
        dataset_info("shard:5")


def test_bad_dataset_registrations_and_loaders_fail_loudly(clean_registries):
    with pytest.raises(ValueError, match="num_classes"):
        register_dataset("nolabels", lambda split, **o: None)
    with pytest.raises(ValueError, match="needs info="):
        register_dataset("fam:", lambda arg, split, **o: None, num_classes=3)
    with pytest.raises(ValueError, match="without ':'"):
        register_dataset("a:b", lambda split, **o: None, num_classes=3)
    with pytest.raises(TypeError, match="callable"):
        register_dataset("x", 3, num_classes=3)
    register_dataset("broken", lambda split, **o: 42, num_classes=2)
    with pytest.raises(TypeError, match="returned int"):
        load_dataset("broken", "test")
    with pytest.raises(UserError, match="train, test"):
        load_dataset("broken", "validation")


def test_a_model_of_ones_own_builds_by_name(clean_registries):
    @register_model
    def tiny_mlp(num_classes: int = 10, width: int = 4) -> nn.Module:
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, num_classes))

    @register_model("tiny-linear")
    def linear(num_classes: int = 10) -> nn.Module:
        return nn.Linear(8, num_classes)

    register_model("tiny_cnn", models_mod.Mnist1dCNN)
    assert {"tiny_mlp", "tiny-linear", "tiny_cnn"} <= set(model_names())
    assert create_model("tiny_mlp", 3, width=5)(torch.randn(2, 8)).shape == (2, 3)
    assert create_model("tiny-linear", 2).out_features == 2
    with pytest.raises(UserError, match="bad arguments"):
        create_model("tiny_mlp", 3, depth=2)
    with pytest.raises(UserError, match="tiny-linear, tiny_cnn, tiny_mlp or timm:<name>"):
        create_model("tiny", 3)
    with pytest.raises(ValueError, match="already registered"):
        register_model(tiny_mlp)
    with pytest.raises(ValueError, match="timm:<name>"):
        register_model("timm:mine", linear)
