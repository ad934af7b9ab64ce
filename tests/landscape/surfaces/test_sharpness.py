"""Sharpness (#21): on an exact quadratic the Lanczos eigenvalues are the Hessian's and the
Hutchinson trace is within its stated error; on a small real model (BatchNorm, eval mode) the
top eigenvalues match a dense eigendecomposition; the command resumes and compares runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cli.main import main
from landscape import UserError, create_model, load_dataset
from landscape.surfaces import sharpness as sharp
from landscape.surfaces.sharpness import HessianOperator, SharpnessConfig, dense_hessian, sharpness


def _mse(out, y):
    return ((out - y) ** 2).mean(1)


def test_on_a_quadratic_the_eigenvalues_and_trace_are_the_hessians():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=g), torch.randn(300, 1, generator=g)
    model = nn.Linear(8, 1, bias=False)
    h = (2 * x.double().T @ x.double() / 300).numpy()  # the loss is exactly quadratic in the weights
    true = np.sort(np.linalg.eigvalsh(h))[::-1]
    s = sharpness(model, x, y, _mse, SharpnessConfig(top=3, iterations=8, trace_samples=400, batch_size=64))
    assert s.eigenvalues == pytest.approx(true[:3], rel=1e-5)
    assert max(s.residuals) < 1e-4 * true[0]
    assert abs(s.trace - np.trace(h)) < 4 * s.trace_stderr and 0 < s.trace_stderr < 0.1 * np.trace(h)
    assert s.parameters == 8 and s.samples == 300
    assert s.loss == pytest.approx(float(((x @ model.weight.detach().T - y) ** 2).mean()), rel=1e-6)


def test_on_a_small_real_model_lanczos_matches_the_dense_hessian():
    torch.manual_seed(0)
    model = create_model("mnist1d_cnn", 10, width=2).eval()
    ds = load_dataset("mnist1d", "train")
    x, y = ds.inputs[:128], ds.labels[:128]
    ce = lambda out, t: nn.functional.cross_entropy(out, t, reduction="none")  # noqa: E731
    op = HessianOperator(model, x, y, ce, batch_size=64)
    dense = dense_hessian(op)
    assert torch.allclose(dense, dense.T, atol=1e-4)  # a Hessian is symmetric: the products are right
    eig = np.sort(np.linalg.eigvalsh(dense.numpy()))[::-1]
    s = sharpness(model, x, y, ce, SharpnessConfig(top=2, iterations=min(60, op.size), trace_samples=2))
    assert s.eigenvalues == pytest.approx(eig[:2], rel=1e-3)
    assert all(r < 1e-2 * eig[0] for r in s.residuals)


def test_bad_settings_are_refused():
    with pytest.raises(UserError, match="iterations"):
        SharpnessConfig(top=5, iterations=3)
    with pytest.raises(UserError, match="trace_samples"):
        SharpnessConfig(trace_samples=0)
    with pytest.raises(UserError, match="subset"):
        SharpnessConfig(subset=0)


def test_the_command_measures_resumes_and_compares(three_ckpts, tmp_path, monkeypatch, capsys):
    args = ["sharpness", *map(str, three_ckpts[:2]), "--subset", "64", "--iterations", "4", "--top", "2",
            "--trace-samples", "3", "--quiet", "--out", str(tmp_path / "s")]
    assert main(args) == 0
    doc = json.loads((tmp_path / "s" / "sharpness.json").read_text())
    assert len(doc["results"]) == 2 and doc["settings"]["top"] == 2
    first = {r["name"]: r for r in doc["results"].values()}
    assert set(first) == {"A", "B"} and all(len(r["eigenvalues"]) == 2 for r in first.values())
    csv = (tmp_path / "s" / "sharpness.csv").read_text().splitlines()
    assert csv[0].startswith("name,group,eig1,eig2,residual1") and len(csv) == 3
    assert (tmp_path / "s" / "sharpness.png").stat().st_size > 0
    monkeypatch.setattr(sharp, "sharpness", lambda *a, **k: pytest.fail("measured again"))
    assert main(args) == 0  # every checkpoint done with these settings: read back
    assert json.loads((tmp_path / "s" / "sharpness.json").read_text()) == doc
    capsys.readouterr()
    other = [*args[:-2], "--top", "1", "--out", str(tmp_path / "s")]
    assert main(other) == 2 and "other settings; pass --overwrite" in capsys.readouterr().err
    monkeypatch.undo()
    one_probe = ["sharpness", *map(str, three_ckpts[:2]), "--subset", "64", "--iterations", "4", "--top", "2",
                 "--trace-samples", "1", "--quiet", "--out", str(tmp_path / "n")]
    assert main(one_probe) == 0 and main(one_probe) == 0  # a NaN standard error (one probe) stored as null reads back
    assert "nan" in (tmp_path / "n" / "sharpness.csv").read_text()
    capsys.readouterr()
    (tmp_path / "s" / "sharpness.json").write_text("{")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sharpness.json is not a readable sharpness result" in err
