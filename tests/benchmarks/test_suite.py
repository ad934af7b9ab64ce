"""The benchmark suite: its FLOP count against an analytic one, and a smoke run of every case
whose figures must be self-consistent and whose values must equal the references'."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from bench_lib import (  # noqa: E402
    PerSample,
    PlaneCase,
    flops_per_point,
    image_transform,
    measure,
    resident,
    vector_transform,
)

from landscape.engine.evaluator import EvalData, GridEvaluator  # noqa: E402
from landscape.engine.layout import ParamLayout  # noqa: E402


def test_flops_per_point_counts_every_pass_analytically():
    """A BN MLP: Linear(8, 16) -> BN -> Linear(16, 3). Per sample 2*8*16 + 2*16*3 FLOPs; one
    point runs the BN pass over the train inputs, then the train and test splits."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 3)).eval()
    train = PerSample(torch.randn(40, 8).numpy(), torch.randint(0, 3, (40,)).numpy(), vector_transform())
    test = PerSample(torch.randn(25, 8).numpy(), torch.randint(0, 3, (25,)).numpy(), vector_transform())
    tr, te = resident(train, torch.device("cpu")), resident(test, torch.device("cpu"))
    layout = ParamLayout.of(model)
    ev = GridEvaluator(model, layout, EvalData({"train": tr, "test": te}, tr[0]), bn_policy="recompute",
                       bn_batch_size=16, batch_size=7)
    w = layout.flatten(model.state_dict())[None]
    per_sample = 2 * 8 * 16 + 2 * 16 * 3
    assert flops_per_point(ev, w) == per_sample * (40 + 40 + 25)


def test_a_case_reports_its_headline_figures_before_the_extras():
    """A GPU run has minutes: what a time limit cuts short must not take the ratio with it."""
    torch.manual_seed(0)
    models = tuple(nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)).eval()
                   for _ in range(3))

    def split(n):
        return PerSample(torch.randn(n, 8).numpy(), torch.randint(0, 3, (n,)).numpy(), vector_transform())

    reported = []
    case = PlaneCase("tiny", models, split(48), split(24), grid=3, naive_points=1, engine_points=2,
                     bn_batch_size=16, naive_batch_size=16, batch_size=16, group_size=2, options=("bf16",),
                     other_path=True, report=lambda r: reported.append(dict(r)))
    final = measure(case)
    assert len(reported) == 1 and "partial" in reported[0]
    assert not {"options", "other_path", "engine_seconds_per_point_without_bn"} & set(reported[0])
    assert reported[0]["ratio"] == final["ratio"] and final["max_abs_diff"]["loss"] < 1e-5
    assert "partial" not in final and set(final["options"]) == {"bf16"} and final["other_path"]["points"] == 2


def test_per_sample_dataset_transforms_like_torchvision():
    raw = (torch.arange(2 * 4 * 4 * 3) % 256).to(torch.uint8).reshape(2, 4, 4, 3).numpy()
    ds = PerSample(raw, [1, 0], image_transform((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    x, y = ds[1]
    expected = (torch.from_numpy(raw[1]).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert y == 0 and x.shape == (3, 4, 4)
    torch.testing.assert_close(x, expected)


@pytest.mark.slow
def test_suite_smoke_run(tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "scaling.png"
    cmd = [sys.executable, str(BENCH / "suite.py"), "--smoke", "--threads", "1", "--json", str(out),
           "--plot", str(png)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert [c["case"] for c in r["cases"]] == ["demo", "peer", "resnet20", "resnet50", "scaling"]
    assert r["environment"]["torch_threads"] == 1 and r["matmul_flops_per_s"] > 1e8
    for case in r["cases"][:4]:
        assert case["case"] in proc.stdout
        assert case["tuning"]["path"] in ("loop", "vmap")
        assert case["max_abs_diff"]["loss"] < 1e-5 and case["max_abs_diff"]["acc"] < 1e-5
        assert case["ratio"] == pytest.approx(
            case["engine"]["points_per_s"] / case["naive"]["points_per_s"], rel=1e-6)
        if case["case"] != "peer":
            assert case["flops_per_point"] > 0
            assert case["engine_flops_per_s"] == pytest.approx(
                case["flops_per_point"] * case["engine"]["points_per_s"])
    assert set(r["cases"][0]["options"]) == {"bf16"}  # MNIST-1D is not an image model
    assert set(r["cases"][2]["options"]) == {"channels_last"}  # bf16 on a CPU is slow: the demo shows it
    for case in r["cases"][:1]:
        bf16 = case["options"]["bf16"]
        assert 0 < bf16["max_abs_diff"]["loss"] < 0.05  # measured and shown: small, not zero
        assert bf16["speedup"] == pytest.approx(bf16["points_per_s"] / case["engine"]["points_per_s"])
    assert r["cases"][2]["options"]["channels_last"]["max_abs_diff"]["loss"] < 1e-5
    demo = r["cases"][0]  # the breakdown: evaluation passes alone, and the path not chosen
    assert 0 < demo["engine_seconds_per_point_without_bn"]
    assert demo["other_path"]["path"] in ("loop", "vmap") and demo["other_path"]["path"] != demo["tuning"]["path"]
    assert r["cases"][3]["other_path"] is None  # switched off for that case
    assert "channels_last" in proc.stdout
    assert r["cases"][3]["notes"][0].startswith("timm:resnet10t")  # the smoke's stand-in
    peer = r["cases"][1]
    assert peer["peer_visited_b_steps"][0] == [1.0, 2.0, 3.0]  # its documented grid offset
    scaling = r["cases"][4]
    assert [row["grid"] for row in scaling["grid_rows"]] == [3]  # one grid, torchrun with 2 processes
    assert [row["processes"] for row in scaling["process_rows"]] == [2]
    assert all(row["seconds"] > 0 for row in scaling["grid_rows"] + scaling["process_rows"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
