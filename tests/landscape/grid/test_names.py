"""Checkpoint names: the file stem, lengthened by the shortest distinguishing run of folders when
stems repeat (issue 17, item 6), in the plane's points, the paths file's names and identities."""

from __future__ import annotations

import shutil

import h5py
import pytest
from conftest import make_model, meta

from landscape import PathConfig, PlaneConfig, interpolate, load_checkpoint, plane, read_paths, read_surface
from landscape.assets.checkpoint import Checkpoint
from landscape.grid.identity import display_names, unique_names

SMALL = dict(train_subset=100, test_subset=100)


@pytest.mark.parametrize("paths, names", [
    (["a.safetensors", "b.pt", "c.pth"], ["a", "b", "c"]),                 # distinct stems: as before
    (["x/a.safetensors", "y/b.safetensors"], ["a", "b"]),
    (["run1/model.pt", "run2/model.pt"], ["run1/model", "run2/model"]),
    (["a/x/m.pt", "b/x/m.pt"], ["a/x/m", "b/x/m"]),
    (["a/x/m.pt", "b/x/m.pt", "c/y/m.pt"], ["a/x/m", "b/x/m", "y/m"]),    # each as short as it can be
    (["m.pt", "m.pt"], ["m", "m_"]),                                       # the same file twice
    (["m.pt", "./m.pt"], ["m", "m_"]),                                     # one file, two spellings
    (["/r/m.pt", "/r/run/m.pt"], ["r/m", "run/m"]),
    (["run1.pt", "run1/model.pt", "run2/model.pt"], ["run1_", "run1/model", "run2/model"]),
])
def test_display_names(paths, names):
    assert display_names(paths) == names


def test_objects_without_a_path_keep_their_names():
    a, b = Checkpoint(make_model(0), meta()), Checkpoint(make_model(1), meta())
    assert display_names([a, b]) == unique_names([a, b]) == ["model", "model_"]


def test_distinct_stems_give_todays_names(three_ckpts):
    ckpts = [load_checkpoint(p) for p in three_ckpts]
    assert display_names(ckpts) == [c.name for c in ckpts] == ["A", "B", "C"]


@pytest.fixture()
def same_stems(three_ckpts, tmp_path):
    """A, B and C copied to run1/model, run2/model, run3/model."""
    out = []
    for k, src in enumerate(three_ckpts, 1):
        dst = tmp_path / f"run{k}" / "model.safetensors"
        dst.parent.mkdir()
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def test_plane_points_and_identity_use_the_names(same_stems, three_ckpts, tmp_path):
    names = ["run1/model", "run2/model", "run3/model"]
    s = plane(same_stems, out=tmp_path / "plane.h5", config=PlaneConfig(grid=3, **SMALL))
    assert list(s.points) == names
    assert [c["name"] for c in s.config["identity"]["checkpoints"]] == names
    with h5py.File(tmp_path / "plane.h5") as f:
        assert sorted(f["points"].keys()) == ["run1", "run2", "run3"]
        assert f["points/run2/model"].shape == (2,)
    # unique stems: the identity is today's (the file stems), so earlier files still resume
    u = plane(three_ckpts, out=tmp_path / "abc.h5", config=PlaneConfig(grid=3, **SMALL))
    assert list(u.points) == ["A", "B", "C"]
    assert [c["name"] for c in u.config["identity"]["checkpoints"]] == ["A", "B", "C"]
    assert read_surface(tmp_path / "abc.h5").points.keys() == u.points.keys()


def test_paths_names_use_them(same_stems, tmp_path):
    ps = interpolate(same_stems[:2], out=tmp_path / "paths.h5", config=PathConfig(points=3, **SMALL))
    assert ps.names == ["run1/model", "run2/model"]
    assert read_paths(tmp_path / "paths.h5").names == ps.names
    assert [c["name"] for c in ps.config["identity"]["checkpoints"]] == ps.names
    twice = interpolate([same_stems[0]] * 2, out=tmp_path / "twice.h5", config=PathConfig(points=3, **SMALL))
    assert twice.names == ["model", "model_"]
