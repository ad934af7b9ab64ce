"""bf16 autocast and channels-last: options whose effect on the numbers is known and recorded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cli.main import main
from landscape import PlaneConfig, UserError, create_model, plane, read_surface
from landscape.engine.evaluator import EvalData, GridEvaluator
from landscape.engine.layout import ParamLayout
from landscape.engine.numerics import numerics

CFG = dict(grid=3, train_subset=200, test_subset=100, engine="loop")


def test_bf16_is_close_to_fp32_but_not_equal_and_part_of_the_identity(three_ckpts, tmp_path):
    fp32 = plane(three_ckpts, out=tmp_path / "a.h5", config=PlaneConfig(**CFG))
    bf16 = plane(three_ckpts, out=tmp_path / "b.h5", config=PlaneConfig(**CFG, precision="bf16"))
    diff = np.abs(bf16.loss("test") - fp32.loss("test"))
    assert 0 < diff.max() < 0.05  # bfloat16 keeps 8 bits of mantissa: visible, small
    assert bf16.config["identity"]["precision"] == "bf16"
    assert "precision" not in fp32.config["identity"]  # files from before the option still resume
    with pytest.raises(UserError, match="precision"):
        plane(three_ckpts, out=tmp_path / "b.h5", config=PlaneConfig(**CFG))


def test_channels_last_changes_nothing_but_the_memory_format():
    torch.manual_seed(0)
    model = create_model("resnet20", 10, width=4).eval()
    layout = ParamLayout.of(model)
    x, y = torch.randn(40, 3, 16, 16), torch.randint(0, 10, (40,))
    data = EvalData({"test": (x, y)}, x)
    w = layout.flatten(model.state_dict()).repeat(2, 1)
    w[1] += 0.01 * torch.randn(w.shape[1], generator=torch.Generator().manual_seed(1)).double()
    results = {}
    for cl in (False, True):
        ev = GridEvaluator(model, layout, data, bn_policy="recompute", bn_batch_size=16, batch_size=16,
                           channels_last=cl)
        if cl:
            assert ev.data.splits["test"][0].is_contiguous(memory_format=torch.channels_last)
        for path in ("loop", "vmap"):
            results[cl, path] = ev.evaluate(w, strategy=path).metrics["test"]
    for key, r in results.items():
        np.testing.assert_allclose(r["loss"], results[False, "loop"]["loss"], atol=1e-5, rtol=0, err_msg=key)


def test_cli_precision_flag_and_bad_values(three_ckpts, tmp_path, capsys):
    args = ["plane", *map(str, three_ckpts), "--grid", "2", "--train-subset", "100", "--test-subset", "50",
            "--no-plots", "--quiet"]
    assert main([*args, "--precision", "bf16", "--out", str(tmp_path / "p")]) == 0
    assert read_surface(tmp_path / "p" / "plane.h5").config["identity"]["precision"] == "bf16"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # argparse's choices: one line, exit code 2
        main([*args, "--precision", "fp16", "--out", str(tmp_path / "q")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fp16" in err[0] and "bf16" in err[0]
    with pytest.raises(UserError, match="unknown precision"):
        PlaneConfig(precision="half")


def test_tf32_is_fp32_arithmetic_on_a_cpu_but_its_own_identity(three_ckpts, tmp_path):
    fp32 = plane(three_ckpts, out=tmp_path / "a.h5", config=PlaneConfig(**CFG))
    tf32 = plane(three_ckpts, out=tmp_path / "t.h5", config=PlaneConfig(**CFG, precision="tf32"))
    np.testing.assert_array_equal(tf32.loss("test"), fp32.loss("test"))  # TF32 exists on GPUs only
    assert tf32.config["identity"]["precision"] == "tf32"


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_numerics_sets_the_cuda_flags_and_restores_them(precision, monkeypatch):
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    new_api = hasattr(getattr(cudnn, "conv", None), "fp32_precision")  # torch 2.9 and later
    objects, name = ((cudnn.conv, matmul), "fp32_precision") if new_api else ((cudnn, matmul), "allow_tf32")
    off, on = ("ieee", "tf32") if new_api else (False, True)
    saved = [getattr(o, name) for o in objects] + [cudnn.benchmark]
    start = ("tf32", "ieee") if new_api else (True, False)  # PyTorch's CUDA defaults, in effect
    try:
        for o, v in zip(objects, start):
            setattr(o, name, v)
        cudnn.benchmark = True
        autocast = torch.autocast
        monkeypatch.setattr(torch, "autocast", lambda *a, **k: autocast("cpu", dtype=torch.bfloat16))
        with numerics(precision, "cuda"):  # flags only: no CUDA device is needed to set them
            assert [getattr(o, name) for o in objects] == [on if precision == "tf32" else off] * 2
            assert cudnn.benchmark is False  # cuDNN's heuristics unless asked
            assert torch.is_autocast_cpu_enabled() is (precision == "bf16")
        assert [getattr(o, name) for o in objects] == list(start) and cudnn.benchmark is True
        cudnn.benchmark = False
        with numerics(precision, "cuda", autotune=True):  # GridEvaluator(cudnn_benchmark=True)
            assert cudnn.benchmark is True
        assert cudnn.benchmark is False
        with numerics(precision, "cpu"):
            assert [getattr(o, name) for o in objects] == list(start) and cudnn.benchmark is False
        with pytest.raises(ValueError, match="unknown precision"):
            with numerics("fp16", "cpu"):
                pass
    finally:
        for o, v in zip(objects, saved):
            setattr(o, name, v)
        cudnn.benchmark = saved[-1]


def test_numerics_leaves_the_global_matmul_precision_readable():
    """Mixing torch's legacy TF32 flags with its fp32_precision settings makes torch raise."""
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        with numerics("fp32", "cuda"):
            pass
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)
