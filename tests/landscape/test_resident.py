"""Images stay uint8 on the device and are decoded batch by batch, bit-identically."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from landscape import PlaneConfig, create_model, plane, save_checkpoint
from landscape.checkpoint import CheckpointMeta
from landscape.data import as_resident, as_tensors, load_dataset


def _folder(root, n=6, px=40):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (px, px + 7, 3), dtype=np.uint8)).save(
                    root / split / cls / f"{i}.png")


def test_uint8_resident_images_decode_to_exactly_the_datasets_tensors(tmp_path):
    _folder(tmp_path)
    ds = load_dataset(f"imagefolder:{tmp_path}", "train")
    res = as_resident(ds)
    x, y = as_tensors(ds)
    assert res.inputs.dtype == torch.uint8 and res.inputs.shape == (12, 3, 224, 224)
    assert res.inputs.element_size() * res.inputs.nelement() * 4 == x.element_size() * x.nelement()
    assert torch.equal(res.decode(res.inputs), x)  # bit for bit
    assert torch.equal(res.labels, y)
    assert ds.transform.transforms[-1].__class__.__name__ == "Normalize"  # the dataset is unchanged


def test_float_datasets_stay_as_they_are():
    ds = load_dataset("mnist1d", "test")
    res = as_resident(ds, np.arange(10))
    assert res.decode is None and torch.equal(res.inputs, ds.inputs[:10])


def test_plane_on_uint8_images_equals_the_float_path(tmp_path, monkeypatch):
    _folder(tmp_path / "data", n=4, px=24)
    torch.manual_seed(0)
    meta = CheckpointMeta("resnet20", 2, {"width": 4}, f"imagefolder:{tmp_path / 'data'}")
    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        path = tmp_path / f"m{seed}.safetensors"
        save_checkpoint(create_model("resnet20", 2, width=4).eval(), path, meta)
        paths.append(path)
    cfg = PlaneConfig(grid=2, engine="loop", bn_batch_size=4)
    fast = plane(paths, out=tmp_path / "u8.h5", config=cfg)
    from landscape import data as data_mod

    monkeypatch.setattr(data_mod, "_uint8_transform", lambda ds: None)  # the float path
    slow = plane(paths, out=tmp_path / "f32.h5", config=cfg)
    for split in ("train", "test"):
        np.testing.assert_array_equal(fast.loss(split), slow.loss(split))
