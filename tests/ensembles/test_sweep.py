"""The cycle-settings sweep: cells, shared member 1, skipping finished cells, the table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_model, meta

from cli.main import main
from ensembles import run as run_mod
from ensembles.evaluate import evaluate
from ensembles.run import read_run
from landscape import save_checkpoint


def test_sweep_cells_share_member_one_and_skip_when_finished(tmp_path, capsys, monkeypatch):
    pre = tmp_path / "pre.safetensors"
    save_checkpoint(make_model(0), pre, meta())
    argv = ["sweep", "--method", "starsse", "--pretrained", str(pre), "--members", "2",
            "--epochs", "2", "--lr", "0.05", "--batch-size", "256", "--cycle-lr-ratios", "0.5,2",
            "--cycle-epoch-ratios", "0.5,1", "--out", str(tmp_path / "sw"), "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    cells = json.loads((tmp_path / "sw" / "sweep.json").read_text())["cells"]
    assert len(cells) == 4
    shas = set()
    for cell in cells:
        run = read_run(tmp_path / "sw" / cell["cell"])
        assert run.config.cycle_lr == pytest.approx(cell["cycle_lr_ratio"] * 0.05)
        assert run.config.cycle_epochs == max(1, round(cell["cycle_epoch_ratio"] * 2))
        shas.add(run.members[0]["sha256"])
        assert cell["accuracy"] == pytest.approx(evaluate(run, soups=False).rows[-1].accuracy)
    assert len(shas) == 1  # member 1 trained once, shared by every cell
    assert (tmp_path / "sw" / "sweep.png").stat().st_size > 0
    trained = []
    real = run_mod.fit
    monkeypatch.setattr(run_mod, "fit", lambda *a, **k: trained.append(1) or real(*a, **k))
    assert main(argv) == 0
    assert trained == []  # every cell was finished: nothing retrained
    again = json.loads((tmp_path / "sw" / "sweep.json").read_text())["cells"]
    assert [c["accuracy"] for c in again] == [c["accuracy"] for c in cells]
    assert np.isfinite([c["accuracy"] for c in cells]).all()
