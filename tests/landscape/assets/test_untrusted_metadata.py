"""What a checkpoint file says is checked before it is used: metadata fields and the keyword
arguments of its architecture give one line naming the file and the field, never reach another
parameter of the model factory (``trust_arch``), never make timm read a file or the network, and
weights that are not finite or not dense are refused. The same checks hold for ``--arch-kwargs``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import WIDTH, make_model, meta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from cli.main import main
from landscape import UserError, as_checkpoint, create_model, load_checkpoint, save_checkpoint
from landscape.assets import checkpoint as files
from landscape.assets.checkpoint import CheckpointMeta, read_state_dicts
from landscape.assets.models import MAX_CLASSES, MAX_TIMM_INT, MAX_WIDTH, build_model
from landscape.assets.state_dicts import STATE_DICT_KEYS

# A model file beside the checkpoint: importing it leaves a marker, so a test sees whether it ran.
EVIL = """
from pathlib import Path
Path(__file__).with_name("RAN").write_text("imported")
from torch import nn
def make(num_classes=10, **kwargs):
    return nn.Linear(40, num_classes)
"""
GOOD = {"arch": "mnist1d_cnn", "num_classes": 10, "arch_kwargs": {"width": WIDTH}, "dataset": "mnist1d"}
FITTING = [{"width": WIDTH}, {"width": WIDTH, "in_channels": 1}]  # the arch_kwargs that fit _state()


def _state() -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in make_model(0).state_dict().items()}


def _write(path, doc, state=None) -> None:
    """A safetensors file of ``state`` whose metadata is ``doc`` (JSON, or raw text)."""
    text = doc if isinstance(doc, str) else json.dumps(doc)
    save_file(_state() if state is None else state, str(path), metadata={"landscape": text})


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


@pytest.fixture
def evil_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.py").write_text(EVIL)
    return tmp_path


# ------------------------------------------------------------------ nothing reaches trust_arch

@pytest.mark.parametrize("kwargs", [{"trust_arch": True}, {"trust_arch": True, "num_classes": 10},
                                    {"arch": "mnist1d_cnn", "trust_arch": True}])
def test_metadata_keyword_arguments_never_allow_an_import(evil_dir, kwargs):
    path = evil_dir / "ckpt.safetensors"
    state = {k: v.contiguous() for k, v in torch.nn.Linear(40, 10).state_dict().items()}
    _write(path, {"arch": "evil.py:make", "num_classes": 10, "arch_kwargs": kwargs}, state)
    for load in (load_checkpoint, files.load_checkpoint):
        with pytest.raises(UserError) as info:
            load(path)
        text = _one_line(info.value)
        assert str(path) in text and "arch, num_classes, arch_kwargs" in text
    assert not (evil_dir / "RAN").exists()  # evil.py was never imported


def test_create_model_takes_num_classes_only_once_and_trust_only_from_its_caller():
    with pytest.raises(UserError, match="'num_classes' is not accepted"):
        create_model("mnist1d_cnn", 10, **{"num_classes": 3})
    with pytest.raises(UserError, match="'num_classes' is not accepted"):
        build_model("mnist1d_cnn", 10, {"num_classes": 3})
    with pytest.raises(UserError, match="unexpected keyword argument 'trust_arch'"):
        build_model("mnist1d_cnn", 10, {"trust_arch": True})


# ------------------------------------------------------------------ crafted metadata, one line each

TIMM_FILE_OPTIONS = ["checkpoint_path", "pretrained_cfg_overlay", "pretrained_cfg", "cache_dir", "pretrained",
                     "pretrained_model_args", "features_only", "pruned", "device"]


def _crafted(tmp_path) -> dict[str, tuple[object, str]]:
    """name -> (the metadata, what the one line must say about the field)."""
    other = str(tmp_path / "other.pt")
    timm = {"arch": "timm:resnet18", "num_classes": 10}
    cases = {
        "negative classes": ({**GOOD, "num_classes": -3}, "'num_classes' must be a positive integer"),
        "bool classes": ({**GOOD, "num_classes": True}, "'num_classes' must be a positive integer"),
        "huge classes": ({**GOOD, "num_classes": 10**12}, f"num_classes must be an integer from 1 to {MAX_CLASSES}"),
        "endless classes": ('{"arch": "mnist1d_cnn", "num_classes": ' + "9" * 5000 + "}", "not valid JSON"),
        "deep nesting": ('{"arch": "mnist1d_cnn", "num_classes": 10, "extra": ' + "[" * 100_000 + "]" * 100_000 + "}",
                         "not valid JSON"),
        "no arch": ({"num_classes": 10}, "lacks the field 'arch'"),
        "arch of a number": ({**GOOD, "arch": 7}, "'arch' must be a non-empty string"),
        "kwargs a list": ({**GOOD, "arch_kwargs": [1]}, "'arch_kwargs' must be a JSON object"),
        "kwargs not an identifier": ({**GOOD, "arch_kwargs": {"0 width": 4}}, "names must be identifiers"),
        "kwargs classes twice": ({**GOOD, "arch_kwargs": {"num_classes": 3}}, "'num_classes' is not accepted"),
        "kwargs unknown": ({**GOOD, "arch_kwargs": {"depth": 3}}, "unexpected keyword argument 'depth'"),
        "kwargs NaN": ({**GOOD, "arch_kwargs": {"width": float("nan")}}, "width must hold finite numbers"),
        "timm unknown": ({**timm, "arch_kwargs": {"no_such_option": 1}}, "unexpected keyword argument"),
        "timm hub name": ({**timm, "arch": "timm:hf-hub:timm/resnet18"}, "unknown timm model"),
        "timm local dir": ({**timm, "arch": f"timm:local-dir:{tmp_path}"}, "unknown timm model"),
        "timm huge": ({**timm, "arch_kwargs": {"in_chans": 10**9}}, f"integers up to {MAX_TIMM_INT}"),
        "timm negative": ({**timm, "arch_kwargs": {"in_chans": -3}}, "timm could not build 'resnet18' with "
                           "num_classes=10 and {'in_chans': -3}"),
    }
    for width in (-1, 0, MAX_WIDTH + 1, 10**15, "8", True, 2.5):
        cases[f"width {width!r}"] = ({**GOOD, "arch_kwargs": {"width": width}},
                                     f"width must be an integer from 1 to {MAX_WIDTH}")
    cases["resnet width"] = ({**GOOD, "arch": "resnet20", "arch_kwargs": {"width": -16}}, "width must be an integer")
    for name in TIMM_FILE_OPTIONS:
        value = {"file": other} if name.startswith("pretrained_cfg") else True if name in (
            "pretrained", "features_only", "pruned") else other
        cases[f"timm {name}"] = ({**timm, "arch_kwargs": {name: value}}, f"'{name}' is not accepted")
    return cases


CASES = sorted(_crafted(Path("/x")))


@pytest.mark.parametrize("case", CASES)
def test_crafted_metadata_is_one_line_naming_the_file_and_the_field(tmp_path, monkeypatch, case):
    import timm

    doc, says = _crafted(tmp_path)[case]
    (tmp_path / "other.pt").write_bytes(b"never read")
    calls = []
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: calls.append(k) or real(*a, **k))
    path = tmp_path / "crafted.safetensors"
    _write(path, doc)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    text = _one_line(info.value)
    assert str(path) in text and says in text, text
    # timm never saw an option that loads weights or files
    assert not any(set(k) & set(TIMM_FILE_OPTIONS) - {"pretrained"} or k.get("pretrained") for k in calls)


@pytest.mark.parametrize("case", ["huge classes", "width -1", "kwargs classes twice", "timm checkpoint_path"])
def test_crafted_metadata_through_the_cli_is_exit_2_and_one_line(tmp_path, capsys, case):
    path = tmp_path / "crafted.safetensors"
    _write(path, _crafted(tmp_path)[case][0])
    code = main(["info", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(path) in err[0], err


@pytest.mark.parametrize("kwargs, says", [('{"width": -1}', "width must be an integer from 1"),
                                          ('{"width": 0}', "width must be an integer from 1"),
                                          ('{"width": 4, "trust_arch": true}', "unexpected keyword argument"),
                                          ('{"num_classes": 3}', "'num_classes' is not accepted")])
def test_arch_kwargs_flag_gets_the_same_checks(tmp_path, capsys, kwargs, says):
    pt = tmp_path / "w.pt"
    torch.save(make_model(0).state_dict(), pt)
    code = main(["info", str(pt), "--arch", "mnist1d_cnn", "--num-classes", "10", "--arch-kwargs", kwargs])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--arch-kwargs" in err[0] and says in err[0], err


@pytest.mark.parametrize("kwargs", ['{"width": 0}', '{"width": -1}', '{"width": 100000000}'])
def test_pretrain_with_a_bad_width_is_one_line_before_training(tmp_path, capsys, kwargs):
    out = tmp_path / "pre.safetensors"
    code = main(["pretrain", "--arch-kwargs", kwargs, "--epochs", "1", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "width must be an integer from 1" in err[0], err
    assert not out.exists()


# ------------------------------------------------------------------ weights that are not data

@pytest.mark.parametrize("where", ["features.0.0.weight", "features.0.1.running_var", "head.bias"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_by_every_loader(tmp_path, where, bad):
    model = make_model(0)
    with torch.no_grad():
        model.state_dict()[where].view(-1)[0] = bad
    path = tmp_path / "diverged.safetensors"
    save_checkpoint(model, path, meta())  # the diverged model itself is kept
    torch.save({"state_dict": model.state_dict()}, tmp_path / "diverged.pt")
    for load, f in ((load_checkpoint, path), (files.load_checkpoint, path),
                    (lambda p: load_checkpoint(p, arch="mnist1d_cnn", num_classes=10, arch_kwargs={"width": WIDTH}),
                     tmp_path / "diverged.pt")):
        with pytest.raises(UserError) as info:
            load(f)
        text = _one_line(info.value)
        assert f"diverged has non-finite weights (NaN or inf) in {where}" in text and str(f) in text
    with pytest.raises(UserError, match=f"model has non-finite weights \\(NaN or inf\\) in {where}"):
        as_checkpoint(model)
    assert read_state_dicts(path)[1] == meta()  # what the file holds can still be listed


def test_finetune_from_a_diverged_checkpoint_is_refused_before_training(tmp_path, capsys):
    model = make_model(0)
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    pre, out = tmp_path / "pre.safetensors", tmp_path / "ft.safetensors"
    save_checkpoint(model, pre, meta())
    code = main(["finetune", str(pre), "--data", "mnist1d", "--epochs", "1", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pre has non-finite weights (NaN or inf) in head.weight" in err[0], err
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")
@pytest.mark.parametrize("layout", ["sparse", "meta"])
def test_tensors_that_are_not_dense_values_are_refused(tmp_path, layout):
    state = make_model(0).state_dict()
    state["head.weight"] = state["head.weight"].to_sparse() if layout == "sparse" else torch.empty(
        state["head.weight"].shape, device="meta")
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(UserError) as info:
        load_checkpoint(tmp_path / "odd.pt", arch="mnist1d_cnn", num_classes=10, arch_kwargs={"width": WIDTH})
    assert "odd.pt: tensor head.weight is stored" in _one_line(info.value)


# ------------------------------------------------------------------ property: every reader, any metadata

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
DELETE = object()
scalars = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70) | st.floats()
           | st.text(max_size=8) | st.sampled_from([WIDTH, 10, 0, -1, 10**9, 4.0, "4"]))
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.text(max_size=6), children, max_size=3), max_leaves=10)
kwarg_names = st.sampled_from(["width", "in_channels", "depth", "num_classes", "trust_arch", "arch",
                               "checkpoint_path", "pretrained", "1x", ""]) | st.text(max_size=6)
arch_kwargs = st.sampled_from(FITTING) | st.dictionaries(kwarg_names, json_values, max_size=3) | json_values
archs = st.just("mnist1d_cnn") | st.sampled_from(["resnet20", "evil.py:make", "module:Net", "timm:no_such_model", ""]) \
    | json_values
FIELDS = [f.name for f in dataclasses.fields(CheckpointMeta)]
# other fields: left out, of their type (what a file may hold) or anything
field_values = (st.just(DELETE) | st.none() | st.integers() | st.text(max_size=8)
                | st.dictionaries(st.text(max_size=6), json_values, max_size=3) | json_values)


@st.composite
def documents(draw) -> dict:
    """GOOD with each of arch, num_classes, arch_kwargs kept (three times in four), damaged or left
    out, and the other fields set to anything (or left alone)."""
    doc = dict(GOOD, arch_kwargs=draw(st.sampled_from(FITTING)))
    for key, values in (("arch", archs), ("num_classes", json_values), ("arch_kwargs", arch_kwargs)):
        if draw(st.integers(0, 3)) == 3:
            doc[key] = draw(st.just(DELETE) | values)
    doc.update(draw(st.just({}) | st.dictionaries(st.sampled_from([*FIELDS, "x"]), field_values, max_size=3)))
    return {k: v for k, v in doc.items() if v is not DELETE}


def _same(a, b) -> bool:
    """Equal as JSON (4 is not 4.0 and 1 is not true)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _expected(doc) -> dict | None:
    """The metadata the file must load with (``dataclasses.asdict``), or None where it must be refused:
    only mnist1d_cnn with 10 classes and width 4 fits the file's tensors."""
    if not isinstance(doc, dict):
        return None
    fields = {"arch_kwargs": {}, "dataset": None, "method": None, "member": None, "seed": None, "parent": None,
              "epochs": None, "extra": {}, **{k: v for k, v in doc.items() if k in FIELDS}}
    if not isinstance(fields["extra"], dict):
        return None
    fields["extra"] = {**fields["extra"], **{k: v for k, v in doc.items() if k not in FIELDS}}
    is_int = lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool))  # noqa: E731
    ok = (fields.get("arch") == "mnist1d_cnn" and _same(fields.get("num_classes"), 10)
          and any(_same(fields["arch_kwargs"], k) for k in FITTING)
          and all(fields[k] is None or isinstance(fields[k], str) for k in ("dataset", "method", "parent"))
          and all(is_int(fields[k]) for k in ("member", "seed", "epochs")))
    return fields if ok else None


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("untrusted")
    (root / "evil.py").write_text(EVIL)
    return root


@FUZZ
@given(doc=documents())
def test_any_metadata_gives_the_model_as_written_or_one_line(fuzz_dir, monkeypatch, doc):
    monkeypatch.chdir(fuzz_dir)
    path = fuzz_dir / "m.safetensors"
    _write(path, doc)
    expected, state = _expected(doc), _state()
    for load in (load_checkpoint, files.load_checkpoint):
        try:
            ckpt = load(path)
        except UserError as exc:
            assert expected is None, (doc, exc)
            assert path.name in _one_line(exc)
            continue
        assert expected is not None, doc
        assert _same(dataclasses.asdict(ckpt.meta), expected)
        got = ckpt.model.state_dict()
        assert got.keys() == state.keys()
        assert all(got[k].dtype == v.dtype and torch.equal(got[k], v) for k, v in state.items())
    try:
        _, meta_read = read_state_dicts(path)
    except UserError as exc:
        assert path.name in _one_line(exc)
    else:
        assert expected is None or _same(dataclasses.asdict(meta_read), expected)
    assert not (fuzz_dir / "RAN").exists()  # no arch the metadata names was imported


pickled = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
                       | st.builds(torch.zeros, st.integers(0, 3)),
                       lambda children: st.lists(children, max_size=3) | st.tuples(children, children)
                       | st.dictionaries(st.text(max_size=6) | st.integers(), children, max_size=3), max_leaves=8)


@FUZZ
@given(junk=st.dictionaries(st.text(max_size=8) | st.sampled_from([k for k in STATE_DICT_KEYS if k != "state_dict"]),
                            pickled, max_size=4),
       under=st.sampled_from(["state_dict", "junk", "model/state_dict"]),
       kwargs=st.integers(0, 3).flatmap(lambda i: arch_kwargs if i == 3 else st.sampled_from(FITTING)))
def test_any_pt_checkpoint_gives_its_state_dict_or_one_line(fuzz_dir, junk, under, kwargs):
    """A training script's file: the state dict under some key beside anything else (the arch and
    its keyword arguments from the caller, as --arch-kwargs)."""
    state = _state()
    doc = dict(junk)
    if under == "state_dict":
        doc["state_dict"] = state
    elif under == "model/state_dict":
        doc["model"] = {"state_dict": state, "epoch": 3}
    path = fuzz_dir / "m.pt"
    torch.save(doc, path)
    fits = under != "junk" and any(_same(kwargs, k) for k in FITTING)
    try:
        ckpt = load_checkpoint(path, arch="mnist1d_cnn", num_classes=10, arch_kwargs=kwargs)
    except UserError as exc:
        assert not fits, (doc, exc)
        assert path.name in _one_line(exc)
        return
    # a junk entry under a usual key (model, module, ...) may hold tensors, never ones that fit
    assert fits, doc
    got = ckpt.model.state_dict()
    assert all(got[k].dtype == v.dtype and torch.equal(got[k], v) for k, v in state.items())
