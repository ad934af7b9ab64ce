"""One smoke test per subcommand, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import make_model, meta, perturbed

from cli.main import main
from landscape import save_checkpoint


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["pretrain", "finetune", "train", "ensemble", "plane", "info"])
def test_help_has_examples(capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_pretrain_finetune_info_smoke(capsys, tmp_path):
    pre = tmp_path / "pre.safetensors"
    code, out, _ = _run(capsys, "pretrain", "--data", "mnist1d", "--arch-kwargs", '{"width": 4}',
                        "--epochs", "1", "--out", str(pre), "--device", "cpu", "--quiet")
    assert code == 0 and pre.exists() and "test acc" in out
    m1 = tmp_path / "m1.safetensors"
    code, out, _ = _run(capsys, "finetune", str(pre), "--epochs", "1", "--seed", "5",
                        "--out", str(m1), "--quiet")
    assert code == 0 and m1.exists()
    code, out, _ = _run(capsys, "info", str(m1), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["metadata"]["seed"] == 5 and doc["metadata"]["method"] == "finetune"
    assert doc["metadata"]["dataset"] == "mnist1d" and doc["metadata"]["parent"]


def test_plane_smoke_writes_h5_png_html(capsys, three_ckpts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "plane", *map(str, three_ckpts), "--grid", "3",
                          "--train-subset", "200", "--test-subset", "100", "--quiet")
    assert code == 0, err
    out_dir = tmp_path / "plane-A-B-C"  # the default output directory is named after them
    for name in ("plane.h5", "plane.png", "plane.html"):
        assert (out_dir / name).stat().st_size > 0, name
    with h5py.File(out_dir / "plane.h5") as f:
        assert f["done"][...].all() and np.isfinite(f["metrics/test/loss"][...]).all()
    code, out, _ = _run(capsys, "info", str(out_dir / "plane.h5"))
    assert code == 0 and "done: 9/9" in out
    code, out, _ = _run(capsys, "plane", str(three_ckpts[0]), "--grid", "3", "--no-plots",
                        "--train-subset", "100", "--test-subset", "100", "--quiet", "--seed", "2")
    assert code == 0 and (tmp_path / "plane-A-random-s2" / "plane.h5").exists()


def _bad_inputs(three_ckpts, tmp_path):
    wide = tmp_path / "wide.safetensors"
    save_checkpoint(make_model(0, width=8), wide, meta(width=8))
    a = make_model(0)
    save_checkpoint(perturbed(a, 1, scale=0.0), tmp_path / "same.safetensors", meta())
    A, B, C = map(str, three_ckpts)
    return {
        "missing file": (["plane", A, B, str(tmp_path / "nope.safetensors")], "does not exist"),
        "different architectures": (["plane", A, B, str(wide)], "differ"),
        "identical checkpoints": (["plane", A, A, B], "identical"),
        "unknown dataset": (["plane", A, B, C, "--data", "mnist2d"], "unknown dataset"),
        "unknown model": (["pretrain", "--arch", "resnet_twenty", "--out",
                           str(tmp_path / "x.safetensors")], "unknown model"),
        "bad grid": (["plane", A, B, C, "--grid", "0"], "positive integer"),
        "bad workers": (["interp", A, B, "--workers", "0"], "positive integer"),
        "huge grid": (["plane", A, B, C, "--grid", "100000"], "between 2 and"),
        "bad bn": (["plane", A, B, C, "--bn", "sometimes"], "unknown BN policy"),
        "two checkpoints": (["plane", A, B], "interp"),
        # `info` lists a plain state dict's tensors without --arch (#17); evaluating it needs one
        "pt without arch": (["plane", *[str(_pt(tmp_path))] * 3], "--arch"),
        "class count not the data's": (["plane", A, B, C, "--data", "cifar100"],
                                       "has 10 classes but dataset cifar100 has 100"),
        "missing dataset root": (["plane", A, B, C, "--data", "cifar10", "--grid", "2"], "--data-root"),
        "out is a file": (["plane", A, B, C, "--grid", "2", "--out", str(_pt(tmp_path))],
                          "exists"),
    }


def _pt(tmp_path):
    import torch

    path = tmp_path / "plain.pt"
    torch.save(make_model(0).state_dict(), path)
    return path


def test_bad_input_gives_one_line_and_exit_code_2(capsys, three_ckpts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for case, (argv, expected) in _bad_inputs(three_ckpts, tmp_path).items():
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2, (case, err)
        assert len(lines) == 1 and expected in lines[0], (case, err)


def test_bad_input_from_the_shell_has_no_traceback(three_ckpts, tmp_path):
    A, B = map(str, three_ckpts[:2])
    proc = subprocess.run([sys.executable, "-m", "cli", "plane", A, B, str(tmp_path / "no.pt")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "does not exist" in proc.stderr


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("landscape") or str(__import__("pathlib").Path(sys.executable).parent / "landscape")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("landscape ")


@pytest.mark.parametrize("raised", [ValueError, RuntimeError, OSError])
def test_an_error_raised_by_an_interrupt_exits_as_interrupted(capsys, three_ckpts, tmp_path,
                                                              monkeypatch, raised):
    """Ctrl-C inside native code (safetensors, torch, h5py) can surface as another exception; once
    an interrupt was requested the CLI still reports it as one (exit 3), not as bad input."""
    from landscape.progress import request_interrupt

    def interrupted_load(*args, **kwargs):
        request_interrupt()  # what the CLI's SIGINT handler does before Python sees the error
        raise raised("could not determine the shape of object type 'torch.storage.UntypedStorage'")

    monkeypatch.setattr("safetensors.torch.load_file", interrupted_load)
    A, B = map(str, three_ckpts[:2])
    code = main(["interp", A, B, "--out", str(tmp_path / "i"), "--quiet"])
    err = capsys.readouterr().err
    request_interrupt(False)
    assert code == 3, err
    assert err.strip().splitlines()[-1].endswith("rerun the same command to resume")


def test_interp_with_worker_threads_gives_one_threads_numbers_and_records_them(capsys, three_ckpts,
                                                                              tmp_path):
    from landscape import read_paths

    common = [*map(str, three_ckpts), "--pairs", "all", "--points", "4", "--train-subset", "150",
              "--test-subset", "100", "--engine", "loop", "--no-plots", "--quiet"]
    runs = {}
    for workers in ("1", "3"):
        code, _, err = _run(capsys, "interp", *common, "--workers", workers, "--data-on", "host",
                            "--out", str(tmp_path / workers))
        assert code == 0, err
        runs[workers] = read_paths(tmp_path / workers / "paths.h5")
    for split in ("train", "test"):
        np.testing.assert_allclose(runs["3"].metrics[split]["loss"], runs["1"].metrics[split]["loss"],
                                   atol=1e-6, rtol=1e-5)  # threads split the float32 sums another way
        np.testing.assert_array_equal(runs["3"].metrics[split]["acc"], runs["1"].metrics[split]["acc"])
    assert runs["3"].config["runtime"]["engine"]["workers"] == 3
    assert runs["3"].config["runtime"]["engine"]["tuned_for"]["workers"] == 3
    assert runs["3"].config["runtime"]["data_on"] == "host"  # asked for; on a CPU the host is the device
    assert runs["3"].config["runtime"]["engine"]["data"] == "on the device"
