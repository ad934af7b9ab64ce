"""A journal line that does not fit its results file (issue #18, family 6): `landscape recover`
stops with one line naming the journal and the line, and changes nothing, instead of an
IndexError (an index off the grid) or a silently truncated write (too few numbers)."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from landscape import PlaneConfig, plane
from landscape.grid import store as store_mod
from landscape.grid.journal import journal_path, read_journal

CFG = dict(grid=4, train_subset=200, test_subset=100, engine="loop", group_size=3)


@pytest.fixture
def damaged(three_ckpts, tmp_path, monkeypatch):
    """An unfinished plane (two groups of three written) whose file is damaged: the journal is
    all that recover has."""
    out = tmp_path / "plane.h5"
    original, calls = store_mod.GridStore.write, {"n": 0}

    def write_then_stop(self, index, metrics):
        original(self, index, metrics)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(store_mod.GridStore, "write", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        plane(three_ckpts, out=out, config=PlaneConfig(**CFG))
    monkeypatch.setattr(store_mod.GridStore, "write", original)
    with open(out, "r+b") as fh:  # a torn superblock
        fh.write(b"\0" * 4096)
    return out


def _edit(record: dict, case: str) -> dict:
    if case == "index off the grid":
        record["index"][1] = [3, 4]
    elif case == "negative index":
        record["index"][0] = [-1, 0]
    elif case == "index of the wrong rank":
        record["index"][0] = [1]
    elif case == "index not an integer":
        record["index"][0] = [1.5, 0]
    elif case == "unknown metric":
        record["metrics"]["test"]["top5"] = record["metrics"]["test"]["acc"]
    elif case == "too few numbers":
        record["metrics"]["train"]["loss"] = record["metrics"]["train"]["loss"][:2]
    elif case == "a number that is not one":
        record["metrics"]["test"]["acc"][0] = "50"
    elif case == "metrics not a mapping":
        record["metrics"] = [1, 2]
    return record


CASES = ["index off the grid", "negative index", "index of the wrong rank", "index not an integer",
         "unknown metric", "too few numbers", "a number that is not one", "metrics not a mapping"]


@pytest.mark.parametrize("case", CASES)
def test_a_journal_line_that_does_not_fit_is_one_line_naming_it(damaged, capsys, case):
    journal = journal_path(damaged)
    records = read_journal(journal)
    assert len(records) == 2
    records[1] = _edit(records[1], case)
    journal.write_text("".join("\n" + json.dumps(r) + "\n" for r in records))  # as append_journal writes
    before = {p.name: p.read_bytes() for p in damaged.parent.iterdir()}
    capsys.readouterr()
    assert main(["recover", str(damaged)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"landscape recover: error: {journal}, line 4: "), err
    assert "remove that line" in err[0]
    assert {p.name: p.read_bytes() for p in damaged.parent.iterdir()} == before  # nothing changed


def test_the_same_journal_unedited_recovers(damaged, capsys):
    assert main(["recover", str(damaged)]) == 0
    assert "with 6 finished points" in capsys.readouterr().out
