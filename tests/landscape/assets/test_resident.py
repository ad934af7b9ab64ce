"""Images stay uint8 on the device and are decoded batch by batch, bit-identically."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from landscape import PlaneConfig, UserError, create_model, plane, save_checkpoint
from landscape.assets.checkpoint import CheckpointMeta
from landscape.assets.datasets import load_dataset
from landscape.assets.resident import as_resident, as_tensors


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
    from landscape.assets import resident as data_mod

    monkeypatch.setattr(data_mod, "_uint8_transform", lambda ds: None)  # the float path
    slow = plane(paths, out=tmp_path / "f32.h5", config=cfg)
    for split in ("train", "test"):
        np.testing.assert_array_equal(fast.loss(split), slow.loss(split))


def _engine_setup():
    from conftest import make_model, perturbed

    from landscape.engine.layout import ParamLayout

    base = make_model(0)
    layout = ParamLayout.of(base)
    weights = torch.stack([layout.flatten(perturbed(base, s, 0.2).state_dict()) for s in range(3)])
    train, test = load_dataset("mnist1d", "train"), load_dataset("mnist1d", "test")
    splits = {"train": (train.inputs[:150], train.labels[:150]), "test": (test.inputs[:70], test.labels[:70])}
    return base, layout, weights, splits


def test_data_left_in_host_memory_reaches_the_model_only_through_the_copy_to_the_device(monkeypatch):
    """Streamed data (too large for the GPU) is copied batch by batch by ``EvalData.move``. Here
    the stored tensors are encoded (inputs doubled, labels shifted by 1000) and only the patched
    copy decodes them, so every pass, path and policy that bypassed it would give other numbers
    or fail: the BN statistics pass (BN's own average and the GPU way), the evaluation passes,
    both paths, worker threads."""
    from landscape.engine.evaluator import EvalData, GridEvaluator

    base, layout, weights, splits = _engine_setup()
    resident = EvalData(splits, splits["train"][0])
    encoded = {s: (2 * x, y + 1000) for s, (x, y) in splits.items()}
    moves = []

    def move(self, t):
        moves.append(t.shape)
        return t / 2 if t.is_floating_point() else t - 1000

    monkeypatch.setattr(EvalData, "move", move)
    streamed = EvalData(encoded, encoded["train"][0], device=torch.device("cpu"))
    assert not streamed.streamed and streamed.compute_device == torch.device("cpu")
    for path, workers, sums in (("loop", 1, False), ("loop", 3, True), ("vmap", 1, False)):
        kw = dict(bn_policy="recompute", bn_batch_size=32, batch_size=64, workers=workers)
        monkeypatch.setattr(EvalData, "move", lambda self, t: t)  # the reference: plain tensors
        expected = GridEvaluator(base, layout, resident, **kw).evaluate(weights, strategy=path).metrics
        monkeypatch.setattr(EvalData, "move", move)
        ev = GridEvaluator(base, layout, streamed, **kw)
        ev.loop.bn.device_sums = sums
        got = ev.evaluate(weights, strategy=path).metrics
        for split in splits:
            # sums on device: float32, another order: relative 1e-5
            np.testing.assert_allclose(got[split]["loss"], expected[split]["loss"], atol=1e-6, rtol=1e-5)
            np.testing.assert_array_equal(got[split]["acc"], expected[split]["acc"])
    assert moves


def test_data_stays_on_the_cpu_and_fits_a_device_with_twice_its_size_free():
    from landscape.assets.resident import fits_on_device, place

    _, _, _, splits = _engine_setup()
    for where in ("auto", "device", "host"):  # on a CPU the host is the device
        placed, on_host = place(splits, torch.device("cpu"), where=where)
        assert not on_host and all(placed[s][0] is splits[s][0] for s in splits)
    assert fits_on_device(100, 200) and not fits_on_device(101, 200)
    with pytest.raises(UserError, match="expected one of auto, device, host"):
        place(splits, torch.device("cpu"), where="gpu")
    with pytest.raises(UserError, match="unknown data_on 'gpu'"):
        PlaneConfig(data_on="gpu")


def test_channels_last_converts_the_train_inputs_once_for_both_of_their_uses():
    from landscape.engine.evaluator import EvalData, GridEvaluator
    from landscape.engine.layout import ParamLayout

    model = create_model("resnet20", 10, width=4).eval()
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))
    ev = GridEvaluator(model, ParamLayout.of(model), EvalData({"train": (x, y), "test": (x[:8], y[:8])}, x),
                       bn_policy="recompute", bn_batch_size=8, channels_last=True)
    train = ev.data.splits["train"][0]
    assert ev.data.bn_inputs is train and train.is_contiguous(memory_format=torch.channels_last)
