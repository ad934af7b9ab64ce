"""Presets and run configurations with values of the wrong type or out of range: one line naming
the file (for a preset), the setting and what it must be; seeds are kept to what torch and numpy
take for every member."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import make_model, meta

from cli.main import main
from ensembles.config import SEED_LIMIT, RunConfig
from ensembles.presets import FIELDS, load_preset, preset_names
from landscape import UserError, save_checkpoint

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BASE = dict(data="mnist1d", members=3, epochs=2, lr=0.05)


def test_the_built_in_presets_load_as_written():
    from ensembles import presets

    for name in preset_names():
        doc = tomllib.loads((presets._DIR / f"{name}.toml").read_text())
        assert load_preset(name) == {k: v for k, v in doc.items() if k in FIELDS}
        RunConfig.from_flat("starsse", ("pre.safetensors",), **{**BASE, **load_preset(name)})  # valid


@pytest.mark.parametrize("line, message", [
    ('lr = "fast"', "lr must be a finite number, got 'fast'"),
    ("lr = nan", "lr must be a finite number, got nan"),
    ("members = 2.5", "members must be an integer, got 2.5"),
    ("epochs = true", "epochs must be an integer, got True"),
    ('amp = "yes"', "amp must be true or false, got 'yes'"),
    ("data = 3", "data must be a string, got 3"),
    ("cycle_epochs = [1, 2]", "cycle_epochs must be an integer or null, got [1, 2]"),
    ("optimizer = {name = 'sgd'}", "optimizer must be a string, got {'name': 'sgd'}"),
    ("grad_clip = 1979-05-27", "grad_clip must be a finite number or null, got datetime.date(1979, 5, 27)"),
    ("description = 1", "description must be a string, got 1"),
])
def test_a_preset_value_of_the_wrong_type_is_one_line_naming_file_key_and_type(tmp_path, line, message):
    path = tmp_path / "mine.toml"
    path.write_text(f"wd = 0.001\n{line}\n")
    with pytest.raises(UserError) as info:
        load_preset(str(path))
    assert str(info.value) == f"preset mine.toml: {message}"


def test_train_with_a_bad_preset_or_seed_stops_before_touching_the_output(tmp_path, capsys):
    pre = tmp_path / "pre.safetensors"
    save_checkpoint(make_model(0), pre, meta())
    (tmp_path / "bad.toml").write_text('lr = "fast"\n')
    # the flag takes any seed below 2**63; the last member's seed (seed + 1) would not be one
    for extra, expected in ((["--preset", str(tmp_path / "bad.toml")], "bad.toml: lr must be a finite number"),
                            (["--seed", str(SEED_LIMIT - 1)], "seed must be in 0..2**63 - members")):
        code = main(["train", "--method", "local-de", "--pretrained", str(pre), "--members", "2",
                     "--out", str(tmp_path / "r"), "--quiet", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], err
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("settings, message", [
    (dict(lr="fast"), "lr must be a finite number, got 'fast'"),
    (dict(wd=float("inf")), "wd must be a finite number, got inf"),
    (dict(members=True), "members must be an integer, got True"),
    (dict(warmup_epochs=1.0), "warmup_epochs must be an integer, got 1.0"),
    (dict(amp=1), "amp must be true or false, got 1"),
    (dict(optimizer=None), "optimizer must be a string, got None"),
    (dict(pretrained_num_classes=0), "pretrained_num_classes must be positive, got 0"),
    (dict(image={"zoom": 2}), "image has unknown settings ['zoom']"),
    (dict(seed=-1), "seed must be in 0..2**63 - members"),
    (dict(seed=SEED_LIMIT - 2), "seed must be in 0..2**63 - members"),  # member 3 would be 2**63
    (dict(seed=1.0), "seed must be an integer, got 1.0"),
])
def test_run_config_values_are_checked(settings, message):
    with pytest.raises(UserError) as info:
        RunConfig("local-de", ("pre.safetensors",), **{**BASE, **settings})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_method_options_are_checked_by_their_annotations():
    with pytest.raises(UserError, match=r"^fge_min_lr must be a finite number or null, got 'x'$"):
        RunConfig.from_flat("fge", ("pre.safetensors",), cycle_epochs=1, cycle_lr=0.1, fge_min_lr="x", **BASE)
    with pytest.raises(UserError, match=r"^init must be a string or null, got 3$"):
        RunConfig.from_flat("fge", (), cycle_epochs=1, cycle_lr=0.1, init=3, **BASE)


def test_every_seed_in_the_range_is_one_torch_and_numpy_take():
    """The range's ends, with the largest offset a method adds (spro: seed + 7919 for its noise,
    + 1000 + vertices for a vertex), are seeds torch's generators and numpy accept."""
    for seed in (0, SEED_LIMIT - BASE["members"]):
        config = RunConfig("local-de", ("pre.safetensors",), **{**BASE, "seed": seed})
        last = config.seed + config.members - 1
        for s in (config.seed, last, last + 7919, last + 1000 + 64):
            torch.Generator().manual_seed(s)
            with torch.random.fork_rng(devices=[]):  # the global generator, left as it was
                torch.manual_seed(s)
            np.random.default_rng(s)
