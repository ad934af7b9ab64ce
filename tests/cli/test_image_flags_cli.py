"""``--img-size``, ``--img-resize``, ``--mean``, ``--std``, ``--img-channels`` on ``plane`` and
``interp`` (issue #17, item 3): a model trained on 8 x 8 greyscale images, evaluated through the
CLI on the same transform, scores what its own evaluation loop scores."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from conftest import gray_by_hand, gray_imagefolder, tiny8

from cli.grid_flags import grid_settings
from cli.main import build_parser, main
from landscape import CheckpointMeta, load_dataset, read_paths, read_surface, register_model, save_checkpoint
from landscape.assets.resident import as_tensors

FLAGS = ["--img-size", "8", "--img-channels", "1", "--mean", "0.5", "--std", "0.25"]
RECORDED = {"size": 8, "resize": 8, "mean": [0.5], "std": [0.25], "channels": 1, "interpolation": "bilinear"}


def _own_accuracy(model, x, y) -> float:
    with torch.no_grad():
        return 100.0 * int((model(x).argmax(-1) == y).sum()) / len(y)


@pytest.fixture
def trained(tmp_path):
    """The image tree and three models trained on it (registered as ``tiny8``)."""
    register_model("tiny8", tiny8)
    root = gray_imagefolder(tmp_path / "imgs")
    x, y = gray_by_hand(root, "train")
    paths, models = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        model = tiny8()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(40 + 10 * seed):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        model.eval()
        paths.append(tmp_path / f"m{seed}.safetensors")
        save_checkpoint(model, paths[-1], CheckpointMeta("tiny8", 3, {}, f"imagefolder:{root}"))
        models.append(model)
    return root, paths, models


def test_the_flags_give_the_hand_written_transform(tmp_path):
    root = gray_imagefolder(tmp_path / "imgs", n=3)
    args = build_parser().parse_args(["interp", "a", "b", *FLAGS])
    image = grid_settings(args)["image"]
    x, y = as_tensors(load_dataset(f"imagefolder:{root}", "test", image=image))
    hx, hy = gray_by_hand(root, "test")
    assert torch.equal(x, hx) and torch.equal(y, hy)
    assert grid_settings(build_parser().parse_args(["interp", "a", "b"]))["image"] is None


def test_interp_endpoints_score_what_the_models_own_loop_scores(trained, tmp_path, capsys):
    root, paths, models = trained
    out = tmp_path / "paths"
    code = main(["interp", *map(str, paths[:2]), "--points", "3", *FLAGS, "--out", str(out), "--quiet",
                 "--engine", "loop", "--no-plots", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    ps = read_paths(out / "paths.h5")
    assert ps.config["identity"]["image"] == RECORDED
    for split in ("train", "test"):
        x, y = gray_by_hand(root, split)
        for end, model in ((0, models[0]), (-1, models[1])):
            own = _own_accuracy(model, x, y)
            assert own > 90  # the models learnt the task: the comparison means something
            assert ps.curve(0, split, "acc")[end] == own


def test_plane_records_the_transform_and_refuses_another(trained, tmp_path, capsys):
    _, paths, _ = trained
    out = tmp_path / "plane"
    base = ["plane", *map(str, paths), "--grid", "3", "--out", str(out), "--quiet", "--engine", "loop",
            "--no-plots", "--device", "cpu"]
    assert main([*base, *FLAGS]) == 0, capsys.readouterr().err
    identity = read_surface(out / "plane.h5").config["identity"]
    assert identity["image"] == RECORDED
    capsys.readouterr()
    other = [*FLAGS[:1], "0", *FLAGS[2:]]  # --img-size 0
    assert main([*base, *other]) == 2
    err = capsys.readouterr().err
    assert "image" in err and len(err.strip().splitlines()) == 1
    assert main([*base, *FLAGS]) == 0  # the same transform: the finished file is returned


def test_a_timm_model_is_evaluated_at_its_pretrained_size(tmp_path, capsys):
    timm = pytest.importorskip("timm")
    from timm.data import resolve_data_config

    root = gray_imagefolder(tmp_path / "imgs", n=2)
    paths = []
    for seed in range(2):
        torch.manual_seed(seed)
        model = timm.create_model("resnet10t", pretrained=False, num_classes=3)
        paths.append(tmp_path / f"t{seed}.pt")
        torch.save(model.state_dict(), paths[-1])
    cfg = resolve_data_config({}, model=model)
    out = tmp_path / "timm"
    code = main(["interp", *map(str, paths), "--arch", "timm:resnet10t", "--num-classes", "3",
                 "--data", f"imagefolder:{root}", "--points", "2", "--splits", "test", "--bn", "keep",
                 "--out", str(out), "--quiet", "--engine", "loop", "--no-plots", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    image = read_paths(out / "paths.h5").config["identity"]["image"]
    assert (image["channels"], image["size"], image["size"]) == cfg["input_size"] == (3, 176, 176)
    assert image["interpolation"] == cfg["interpolation"] and image["mean"] == list(cfg["mean"])


@pytest.mark.parametrize("flags, match", [
    (["--img-size", "8", "--mean", "0.5", "--std", "0.25"], "1 value.*3 channel"),
    (["--img-size", "8", "--mean", "0.5,0.5"], "1 or 3 finite numbers"),
    (["--img-size", "-8"], "integer >= 0"),
    (["--img-size", "8", "--img-channels", "1", "--std", "0"], "std must be positive"),
    (["--img-size", "8", "--img-channels", "2"], "invalid choice"),
    (["--mean", "a,b,c"], "comma-separated numbers"),
])
def test_bad_image_flags_are_one_line_errors(trained, tmp_path, capsys, flags, match):
    _, paths, _ = trained
    try:
        code = main(["interp", *map(str, paths[:2]), *flags, "--out", str(tmp_path / "bad"), "--quiet",
                     "--device", "cpu"])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(match, err), err
    assert not (tmp_path / "bad" / "paths.h5").exists()


def test_image_flags_on_mnist1d_are_refused(three_ckpts, tmp_path, capsys):
    code = main(["plane", *map(str, three_ckpts), "--img-size", "8", "--out", str(tmp_path / "p"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "not an image dataset" in err and len(err.strip().splitlines()) == 1
