"""The real-world path in miniature: a timm model from a plain .pt state dict on an ImageFolder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cli.main import main
from landscape import dataset_info, load_dataset, read_surface


def _imagefolder(root, n_per_class=3):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n_per_class):
                pixels = rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_imagefolder_dataset(tmp_path):
    root = _imagefolder(tmp_path / "imgs")
    name = f"imagefolder:{root}"
    assert dataset_info(name).num_classes == 2
    x, y = load_dataset(name, "test")[0]
    assert x.shape == (3, 224, 224) and y == 0
    assert len(load_dataset(name, "train")) == 6


@pytest.mark.slow
def test_plane_of_timm_pt_checkpoints_on_imagefolder(tmp_path, capsys):
    import timm

    root = _imagefolder(tmp_path / "imgs", n_per_class=2)
    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = timm.create_model("resnet18", pretrained=False, num_classes=2)
        paths.append(tmp_path / f"r{seed}.pt")
        torch.save(model.state_dict(), paths[-1])
    out = tmp_path / "plane"
    code = main(["plane", *map(str, paths), "--arch", "timm:resnet18", "--num-classes", "2",
                 "--data", f"imagefolder:{root}", "--grid", "2", "--bn-batch-size", "2",
                 "--out", str(out), "--quiet", "--engine", "loop"])
    assert code == 0, capsys.readouterr().err
    s = read_surface(out / "plane.h5")
    assert s.complete and s.config["identity"]["arch"] == "timm:resnet18"
    assert np.isfinite(s.loss("test")).all()
