"""The registry of ensemble methods: names, flat settings and a method of one's own."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from conftest import make_model, meta

from ensembles import RunConfig, read_run, train
from ensembles.methods import (
    METHODS,
    EnsembleMethod,
    MemberPlan,
    get_method,
    method_names,
    option_defaults,
    register_method,
)
from landscape import UserError, save_checkpoint

BASE = dict(data="mnist1d", members=2, epochs=1, lr=0.05, batch_size=256)
FORMAT_1_OPTIONS = {"init", "fge_min_lr", "csgld_temperature", "csgld_exploration", "swag_rank",
                    "swag_collect", "swag_schedule", "sample_scale", "laplace_prior_precision",
                    "spro_vertices", "spro_volume_reg"}


def test_an_unknown_method_lists_the_registered_names():
    assert METHODS == ("local-de", "global-de", "sse", "starsse", "fge", "csgld", "swag",
                       "kfac-laplace", "spro")
    with pytest.raises(UserError, match="unknown method 'snapshot'; expected one of local-de, "
                                        "global-de, sse, starsse, fge, csgld, swag, kfac-laplace, spro"):
        get_method("snapshot")


@pytest.mark.parametrize("method", METHODS)
def test_every_method_reads_back_from_its_flat_settings(method):
    pretrained = ("a.safetensors", "b.safetensors") if method == "global-de" else ("a.safetensors",)
    cfg = RunConfig.from_flat(method, pretrained, cycle_epochs=2, cycle_lr=0.1, **BASE)
    flat = cfg.flat()
    assert FORMAT_1_OPTIONS <= set(flat) and flat["method"] == method
    assert RunConfig.from_flat(**flat) == cfg
    assert set(RunConfig.flat_defaults(method)) == set(flat) - {"method", "pretrained", "data",
                                                                "members", "epochs", "lr"}


def test_options_of_another_method_are_refused_unless_at_their_default():
    RunConfig.from_flat("local-de", ("a.safetensors",), swag_rank=20, **BASE)  # the default
    with pytest.raises(UserError, match="--spro-vertices applies to --method spro, not local-de"):
        RunConfig.from_flat("local-de", ("a.safetensors",), spro_vertices=4, **BASE)
    with pytest.raises(UserError, match="--sample-scale applies to --method swag or kfac-laplace"):
        RunConfig.from_flat("fge", ("a.safetensors",), sample_scale=0.5, **BASE)
    with pytest.raises(TypeError, match="no_such_flag"):
        RunConfig.from_flat("local-de", ("a.safetensors",), no_such_flag=1, **BASE)
    with pytest.raises(UserError, match="swag takes options SWAGOptions, got NoOptions"):
        RunConfig("swag", ("a.safetensors",), cycle_epochs=1, cycle_lr=0.1,
                  options=get_method("local-de").options(), **BASE)


@dataclass(frozen=True)
class LadderOptions:
    ladder_factor: float = 2.0

    def __post_init__(self) -> None:
        if not self.ladder_factor > 0:
            raise UserError(f"ladder_factor must be positive, got {self.ladder_factor!r}")


@register_method("test-lr-ladder")
class LRLadder(EnsembleMethod):
    """The registry's docstring example: independent fine-tunes at growing learning rates."""

    options = LadderOptions

    def member_plan(self, config, index):
        lr = config.lr * config.options.ladder_factor ** (index - 1)
        return MemberPlan(index, "pretrained:0", config.epochs, lr, config.seed + index - 1,
                          new_head=True)


def test_a_registered_method_trains_a_run_and_records_its_options(tmp_path):
    pre = tmp_path / "pre.safetensors"
    save_checkpoint(make_model(0), pre, meta())
    assert "test-lr-ladder" in method_names()
    cfg = RunConfig.from_flat("test-lr-ladder", (str(pre),), ladder_factor=3.0, **BASE)
    run = train(cfg, tmp_path / "r")
    assert [m["lr"] for m in run.members] == [0.05, pytest.approx(0.15)]
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["method"] == "test-lr-ladder" and manifest["config"]["ladder_factor"] == 3.0
    assert read_run(tmp_path / "r").config == cfg
    assert "ladder_factor" not in option_defaults(METHODS)  # built-in manifests stay as they are
    with pytest.raises(UserError, match="ladder_factor must be positive"):
        RunConfig.from_flat("test-lr-ladder", (str(pre),), ladder_factor=0.0, **BASE)


def test_register_method_refuses_a_taken_name_and_loose_options():
    with pytest.raises(ValueError, match="already registered"):
        register_method("sse")(EnsembleMethod)

    @dataclass
    class Mutable:
        x: int = 1

    class Loose(EnsembleMethod):
        options = Mutable

    with pytest.raises(ValueError, match="frozen dataclass"):
        register_method("test-loose")(Loose)
    assert "test-loose" not in method_names()
