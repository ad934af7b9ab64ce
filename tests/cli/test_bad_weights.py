"""Non-finite weights in a checkpoint: one line naming the checkpoint, exit 2, no output file."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model, meta

from cli.main import main
from landscape import save_checkpoint


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("command", ["plane", "interp"])
def test_non_finite_weights_are_refused(three_ckpts, tmp_path, capsys, bad, command):
    model = make_model(5)
    with torch.no_grad():
        model.head.weight[0, 0] = bad
    broken = tmp_path / "broken.safetensors"
    save_checkpoint(model, broken, meta())
    out = tmp_path / "out"
    code = main([command, str(three_ckpts[0]), str(broken), str(three_ckpts[2]), "--out", str(out),
                 "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "broken has non-finite weights (NaN or inf)" in err[0]
    assert not (out / f"{command if command == 'plane' else 'paths'}.h5").exists()
