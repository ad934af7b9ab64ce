"""`--arch path/to/file.py:factory` and `--arch package.module:factory` through the CLI: the same
plane as the same model through a registry entry, and one-line errors with exit code 2."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, perturbed

from cli.main import main
from landscape import CheckpointMeta, create_model, register_model, save_checkpoint
from landscape.assets import checkpoint as files

TINY = TINY_MODEL + '''
def not_a_model(num_classes=10):
    return "no"

def broken(num_classes=10):
    raise RuntimeError("cannot build")
'''
FAST = ["--grid", "3", "--train-subset", "256", "--test-subset", "128", "--engine", "loop", "--no-plots",
        "--quiet", "--data", "mnist1d"]


@pytest.fixture
def work(tmp_path, monkeypatch):
    """tmp/mymodel.py and tmp/userpkg_cli/nets.py (on sys.path); the current directory is tmp."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodel.py").write_text(TINY)
    (tmp_path / "userpkg_cli").mkdir()
    (tmp_path / "userpkg_cli" / "__init__.py").write_text("")
    (tmp_path / "userpkg_cli" / "nets.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _models(arch: str) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    base = create_model(arch, 10, trust_arch=True).eval()
    return [base, perturbed(base, 1), perturbed(base, 2)]


def _plane(capsys, *argv) -> tuple[int, str, dict[str, np.ndarray]]:
    code = main(["plane", *argv, *FAST])
    err = capsys.readouterr().err
    if code != 0:
        return code, err, {}
    out = argv[argv.index("--out") + 1]
    with h5py.File(f"{out}/plane.h5") as f:
        return code, err, {s: f[f"metrics/{s}/loss"][...] for s in ("train", "test")}


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("arch", ["mymodel.py:TinyCNN", "userpkg_cli.nets:TinyCNN"])
def test_user_arch_gives_the_registry_plane(capsys, work, arch):
    models = _models(arch)
    register_model(f"tiny_cli_{arch[:5]}", type(models[0]), overwrite=True)  # the same class, by name
    reg_paths, pt_paths, st_paths = [], [], []
    for i, m in enumerate(models):
        reg_paths.append(work / f"r{i}.safetensors")
        save_checkpoint(m, reg_paths[-1], CheckpointMeta(f"tiny_cli_{arch[:5]}", 10, {}, "mnist1d"))
        pt_paths.append(work / f"p{i}.pt")
        torch.save(m.state_dict(), pt_paths[-1])
        st_paths.append(work / f"s{i}.safetensors")
        save_checkpoint(m, st_paths[-1], CheckpointMeta(arch, 10, {}, "mnist1d"))
    code, err, registry = _plane(capsys, *map(str, reg_paths), "--out", "reg")
    assert code == 0, err
    code, err, pt = _plane(capsys, *map(str, pt_paths), "--arch", arch, "--num-classes", "10", "--out", "pt")
    assert code == 0, err
    _same(registry, pt)
    code, err, st = _plane(capsys, *map(str, st_paths), "--arch", arch, "--out", "st")
    assert code == 0, err
    _same(registry, st)


def test_recorded_import_path_is_not_imported_without_arch(capsys, work):
    (work / "evil.py").write_text(TINY.replace("class TinyCNN", "class Net"))
    paths = []
    for i in range(3):  # written without importing evil.py
        paths.append(work / f"e{i}.safetensors")
        files.save_checkpoint(torch.nn.Module(), paths[-1], CheckpointMeta("evil.py:Net", 10, {}, "mnist1d"))
    for command in (["plane", *map(str, paths)], ["interp", *map(str, paths[:2])], ["info", str(paths[0])]):
        code = main([*command, "--quiet"] if command[0] != "info" else command)
        err = capsys.readouterr().err
        assert code == 2 and "refusing to import arch 'evil.py:Net'" in err and "--arch evil.py:Net" in err
        assert err.count("\n") == 1, err
    assert not (work / "evil.imported").exists()


@pytest.mark.parametrize("arch, message", [
    ("missing.py:TinyCNN", "model file missing.py does not exist"),
    ("mymodel.py:Nope", "has no 'Nope'"),
    ("mymodel.py:not_a_model", "returned str, not a torch nn.Module"),
    ("mymodel.py:broken", "failed: RuntimeError: cannot build"),
    ("no_such_package_cli.nets:f", "No module named 'no_such_package_cli'"),
    ("syntax_error.py:f", "importing .*syntax_error.py failed: SyntaxError"),
    ("timm:landscape_cli_no_cfg", "pretrained_cfg"),
])
def test_errors_are_one_line_exit_2(capsys, work, arch, message):
    import re

    from timm.models import register_model as timm_register

    if arch.startswith("timm:"):
        def landscape_cli_no_cfg(pretrained=False, num_classes=10):
            return torch.nn.Linear(40, num_classes)
        timm_register(landscape_cli_no_cfg)
    (work / "syntax_error.py").write_text("def f(:\n")
    paths = []
    for i in range(3):
        paths.append(work / f"m{i}.pt")
        torch.save({"w": torch.zeros(1)}, paths[-1])
    code = main(["plane", *map(str, paths), "--arch", arch, "--num-classes", "10", *FAST, "--out", "x"])
    err = capsys.readouterr().err
    assert code == 2 and re.search(message, err), err
    assert err.count("\n") == 1, err
