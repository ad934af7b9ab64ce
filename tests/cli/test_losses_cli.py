"""`--loss path/to/file.py:name`: a per-sample loss of one's own from the command line, on a
regression model and data of one's own; the files hold the loss only, the report is valid JSON."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cli.main import main
from landscape import read_paths

D = 5

LINEAR = '''
import torch
from torch import nn

D = 5


class Lin(nn.Module):
    def __init__(self, num_classes=1):
        super().__init__()
        self.fc = nn.Linear(D, num_classes, bias=False)

    def forward(self, x):
        return self.fc(x)


def make():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, D, generator=g)
    return {"train": (x, x.sum(1)), "test": (x[:50], x[:50].sum(1))}


def absolute(outputs, targets):
    return (outputs - targets).abs()
'''


def test_the_cli_takes_a_loss_of_ones_own(tmp_path, capsys):
    (tmp_path / "lin.py").write_text(LINEAR)
    files = []
    for s in range(2):
        torch.manual_seed(s)
        m = nn.Module()
        m.fc = nn.Linear(D, 1, bias=False)
        files.append(tmp_path / f"m{s}.pt")
        torch.save(m.state_dict(), files[-1])
    code = main(["interp", *map(str, files), "--arch", f"{tmp_path / 'lin.py'}:Lin", "--num-classes", "1",
                 "--data", f"{tmp_path / 'lin.py'}:make", "--loss", f"{tmp_path / 'lin.py'}:absolute",
                 "--points", "5", "--bn", "keep", "--out", str(tmp_path / "out"), "--no-plots", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads((tmp_path / "out" / "report.json").read_text(), parse_constant=pytest.fail)
    assert doc["pairs"][0]["label"] in ("same basin", "different basin")
    paths = read_paths(tmp_path / "out" / "paths.h5")
    assert list(paths.metrics["test"]) == ["loss"] and paths.config["identity"]["loss"].endswith(":absolute")
