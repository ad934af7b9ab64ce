"""Checkpoint format round trips, safe loading, registries and compatibility checks."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from conftest import make_model, meta

from landscape import (
    CheckpointMeta,
    UserError,
    create_model,
    dataset_info,
    load_checkpoint,
    load_dataset,
    save_checkpoint,
)
from landscape.assets.checkpoint import file_sha256
from landscape.grid.prepare import check_compatible


def test_safetensors_round_trip(tmp_path):
    model = make_model(0)
    m = meta(method="finetune", member=2, seed=7, epochs=3, parent="ab" * 32,
             extra={"lr": 0.02})
    sha = save_checkpoint(model, tmp_path / "m.safetensors", m)
    ckpt = load_checkpoint(tmp_path / "m.safetensors")
    assert ckpt.meta == m and ckpt.sha256 == sha == file_sha256(tmp_path / "m.safetensors")
    assert not ckpt.model.training
    for (k, a), b in zip(model.state_dict().items(), ckpt.model.state_dict().values()):
        assert torch.equal(a, b), k
    # the metadata is plain JSON under the key "landscape", readable without our code
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), "pt") as f:
        doc = json.loads(f.metadata()["landscape"])
    assert doc["arch"] == "mnist1d_cnn" and doc["parent"] == "ab" * 32


def test_pt_state_dict_needs_arch_and_loads_with_it(tmp_path):
    model = make_model(1)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               tmp_path / "m.pt")
    with pytest.raises(UserError, match="--arch"):
        load_checkpoint(tmp_path / "m.pt")
    ckpt = load_checkpoint(tmp_path / "m.pt", arch="mnist1d_cnn", num_classes=10,
                           arch_kwargs={"width": 4})
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[k], v)
    with pytest.raises(UserError, match="does not fit|shape"):
        load_checkpoint(tmp_path / "m.pt", arch="mnist1d_cnn", num_classes=10)  # width 16


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = str(marker)
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"weight": payload}, f)
    with pytest.raises(UserError, match="refusing"):
        load_checkpoint(tmp_path / "evil.pt", arch="mnist1d_cnn", num_classes=10)
    assert not marker.exists()


def test_bad_files_give_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(UserError, match="not a readable safetensors"):
        load_checkpoint(tmp_path / "junk.safetensors")
    (tmp_path / "m.npz").write_bytes(b"")
    with pytest.raises(UserError, match="unsupported"):
        load_checkpoint(tmp_path / "m.npz")


def test_registries_list_valid_names():
    with pytest.raises(UserError, match="mnist1d_cnn.*resnet20"):
        create_model("resnet_twenty", 10)
    with pytest.raises(UserError, match="timm:resnet18"):
        create_model("timm:resnet_18", 10)
    with pytest.raises(UserError, match="cifar10.*mnist1d"):
        dataset_info("mnist2d")
    with pytest.raises(UserError, match="--data-root"):
        load_dataset("cifar10", "test")
    with pytest.raises(UserError, match="train, test"):
        load_dataset("mnist1d", "validation")


def test_builtin_and_timm_models_follow_the_head_contract():
    for arch, x in (("mnist1d_cnn", torch.randn(2, 40)), ("resnet20", torch.randn(2, 3, 32, 32)),
                    ("timm:resnet18", torch.randn(2, 3, 32, 32))):
        model = create_model(arch, 7).eval()
        assert model(x).shape == (2, 7)
        model.reset_classifier(3)
        assert model(x).shape == (2, 3), arch


def test_mnist1d_is_generated_offline_and_deterministic():
    train, test = load_dataset("mnist1d", "train"), load_dataset("mnist1d", "test")
    assert len(train) == 4000 and len(test) == 1000
    x, y = test[0]
    assert x.shape == (40,) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(train.labels.tolist()) == set(range(10))
    again = load_dataset("mnist1d", "test")
    assert torch.equal(again.inputs, test.inputs)


def test_mismatched_architectures_name_the_first_differing_tensor(tmp_path):
    save_checkpoint(make_model(0), tmp_path / "a.safetensors", meta())
    save_checkpoint(make_model(0, width=8), tmp_path / "b.safetensors", meta(width=8))
    a, b = load_checkpoint(tmp_path / "a.safetensors"), load_checkpoint(tmp_path / "b.safetensors")
    with pytest.raises(UserError, match="arch_kwargs"):
        check_compatible([a, b])
    other = CheckpointMeta("mnist1d_cnn", 10, {"width": 4}, "mnist1d")
    b2 = type(b)(b.model, other, b.path, b.sha256)  # same metadata, different shapes
    with pytest.raises(UserError, match="tensor features.0.0.weight"):
        check_compatible([a, b2])
