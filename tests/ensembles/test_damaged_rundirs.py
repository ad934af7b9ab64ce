"""Damaged run and demo directories: every reader (``read_run``, ``Run.test_probs``,
``Run.checkpoint_path``, ``evaluate``, ``landscape ensemble``, ``train`` resuming,
``read_demo``) gives one ``UserError`` line naming the file and the field, or exactly the data
the files hold; a member's checkpoint is used only when it is the file its record's sha256 names.

The run directory is written by the functions ``train`` writes with (``open_manifest``,
``RunDir.write_member``, ``collect``), without training: two perturbed copies of one model.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_model, meta, perturbed
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cli.main import main
from ensembles.config import RunConfig
from ensembles.demo import read_demo, read_ensembles, read_pairs
from ensembles.judged import save_samples
from ensembles.evaluate import evaluate
from ensembles.manifest import collect, open_manifest, read_run
from ensembles.metrics import accuracy
from ensembles.run import train
from ensembles.rundir import RunDir
from ensembles.training import predict_probs
from landscape import UserError, load_dataset, save_checkpoint
from landscape.atomic import write_json

MEMBERS = 2


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    pre = root / "pre.safetensors"
    save_checkpoint(make_model(0), pre, meta())
    config = RunConfig("local-de", (str(pre),), data="mnist1d", members=MEMBERS, epochs=1, lr=0.05,
                       batch_size=256)
    run_dir = RunDir(root / "run")
    open_manifest(run_dir, config, overwrite=False)
    test = load_dataset("mnist1d", "test")
    for i in range(1, MEMBERS + 1):
        model = perturbed(make_model(0), i)
        probs = predict_probs(model, test, "cpu")
        run_dir.write_member(i, model, meta(member=i, seed=i - 1), probs,
                             {"start": "pretrained:0", "epochs": 1, "lr": 0.05, "lrs": [0.05],
                              "test_acc": accuracy(probs, test.labels.numpy())})
    collect(run_dir)
    return run_dir.path


@pytest.fixture
def run(clean, tmp_path) -> Path:
    """A fresh copy of the clean run directory, to damage."""
    return Path(shutil.copytree(clean, tmp_path / "run"))


def _edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _one_line(exc: BaseException, *names: str) -> None:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    for name in names:
        assert name in text, f"{name!r} not in {text!r}"


def _probs(run: Path, i: int) -> np.ndarray:
    return np.load(run / f"member-{i}.test-probs.npy")


def test_a_clean_run_reads_back_exactly_as_written(clean):
    run = read_run(clean)
    manifest = json.loads((clean / "manifest.json").read_text())
    assert run.members == [json.loads((clean / f"member-{i}.json").read_text()) for i in (1, 2)]
    assert manifest["members"] == run.members
    flat = run.config.flat()
    for key, value in manifest["config"].items():
        if key == "pretrained":
            value = tuple(p["path"] for p in value)
        assert flat[key] == value, key
    probs = run.test_probs(rows=1000, classes=10)
    for i, p in enumerate(probs, 1):
        assert p.dtype == np.float32 and np.array_equal(p, _probs(clean, i))
    assert run.checkpoint_path(2) == clean / "member-2.safetensors"


# ---------------------------------------------------------------------------- damage, file by file

class Payload:
    """Unpickling it would leave a marker file: it must never happen."""

    marker: Path | None = None

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def _object_array(run: Path) -> None:
    Payload.marker = run / "payload-ran"
    np.save(run / "member-1.test-probs.npy", np.array([Payload(), 1], dtype=object), allow_pickle=True)


def _npz(run: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, probs=_probs(run, 1))
    (run / "member-1.test-probs.npy").write_bytes(buf.getvalue())


def _resave(i: int, change):
    def damage(run: Path) -> None:
        np.save(run / f"member-{i}.test-probs.npy", change(_probs(run, i)))
    return damage


def _nan(p):
    p[3, 2] = np.nan
    return p


def _swap(run: Path) -> None:
    a, b = run / "member-1.safetensors", run / "member-2.safetensors"
    a.rename(run / "x")
    b.rename(a)
    (run / "x").rename(b)


def _record(change):
    return lambda run: _edit(run / "member-1.json", change)


def _manifest(change):
    return lambda run: _edit(run / "manifest.json", change)


def _config(change):
    return _manifest(lambda m: change(m["config"]))


CASES = {  # damage, the reader that meets it, what the message names
    "manifest: an extra field": (_manifest(lambda m: m.update(notes="mine")), "read", ["manifest.json", "notes"]),
    "manifest: a missing field": (_manifest(lambda m: m.pop("versions")), "read", ["manifest.json", "'versions'"]),
    "manifest: a field of another type": (_manifest(lambda m: m.update(format_version="1")), "read",
                                          ["manifest.json", "'format_version'"]),
    "manifest: members not a list": (_manifest(lambda m: m.update(members={})), "read", ["manifest.json", "'members'"]),
    "manifest: not JSON": (lambda r: (r / "manifest.json").write_text('{"kind": '), "read",
                           ["manifest.json", "not a readable run manifest"]),
    "manifest: nested past the parser's limit": (lambda r: (r / "manifest.json").write_text("[" * 200000), "read",
                                                 ["manifest.json"]),
    "config: an unknown setting": (_config(lambda c: c.update(bogus=1)), "read", ["manifest.json", "bogus"]),
    "config: a missing setting": (_config(lambda c: c.pop("lr")), "read", ["manifest.json", "'lr'"]),
    "config: a string for a number": (_config(lambda c: c.update(lr="fast")), "read",
                                      ["manifest.json", "lr must be a finite number"]),
    "config: a float for an integer": (_config(lambda c: c.update(epochs=1.5)), "read",
                                       ["manifest.json", "epochs must be an integer"]),
    "config: a negative seed": (_config(lambda c: c.update(seed=-1)), "read", ["manifest.json", "seed", "2**63"]),
    "config: a seed past torch's range": (_config(lambda c: c.update(seed=2**64)), "read", ["manifest.json", "seed"]),
    "config: pretrained as plain paths": (_config(lambda c: c.update(pretrained=["pre.safetensors"])), "read",
                                          ["manifest.json", "pretrained"]),
    "config: another method than the manifest's": (_config(lambda c: c.update(method="sse")), "read",
                                                   ["manifest.json", "method"]),
    "config: unknown image settings": (_config(lambda c: c.update(image={"zoom": 2})), "read",
                                       ["manifest.json", "image", "zoom"]),
    "record: not JSON": (lambda r: (r / "member-1.json").write_text("{"), "read", ["member-1.json"]),
    "record: not UTF-8": (lambda r: (r / "member-1.json").write_bytes(b"\xff\xfe{}"), "read", ["member-1.json"]),
    "record: not an object": (lambda r: (r / "member-1.json").write_text("[1]"), "read", ["member-1.json"]),
    "record: a missing field": (_record(lambda d: d.pop("sha256")), "read", ["member-1.json", "'sha256'"]),
    "record: a field of another type": (_record(lambda d: d.update(epochs="1")), "read", ["member-1.json", "'epochs'"]),
    "record: another member's number": (_record(lambda d: d.update(index=2)), "read", ["member-1.json", "'index'"]),
    "record: a NaN accuracy": (lambda r: (r / "member-1.json").write_text(
        (r / "member-1.json").read_text().replace('"test_acc": ', '"test_acc": NaN, "x": ')), "read",
        ["member-1.json", "'test_acc'"]),
    "probs: an object array": (_object_array, "probs", ["member-1.test-probs.npy", "not a readable probability array"]),
    "probs: an .npz archive": (_npz, "probs", ["member-1.test-probs.npy", ".npz"]),
    "probs: truncated": (lambda r: (r / "member-1.test-probs.npy").write_bytes(
        (r / "member-1.test-probs.npy").read_bytes()[:500]), "probs", ["member-1.test-probs.npy"]),
    "probs: integers": (_resave(1, lambda p: (p * 100).astype(np.int64)), "probs",
                        ["member-1.test-probs.npy", "int64"]),
    "probs: float64": (_resave(1, lambda p: p.astype(np.float64)), "probs", ["member-1.test-probs.npy", "float64"]),
    "probs: one dimension": (_resave(1, lambda p: p[:, 0]), "probs", ["member-1.test-probs.npy", "shape"]),
    "probs: NaN": (_resave(1, _nan), "probs", ["member-1.test-probs.npy", "NaN"]),
    "probs: negative": (_resave(1, lambda p: -p), "probs", ["member-1.test-probs.npy", "[0, 1]"]),
    "probs: rows not summing to 1": (_resave(1, lambda p: p / 2), "probs", ["member-1.test-probs.npy", "sum to 1"]),
    "probs: ragged (fewer rows)": (_resave(2, lambda p: p[:999]), "probs", ["member-2.test-probs.npy", "(999, 10)"]),
    "probs: ragged (fewer classes)": (_resave(2, lambda p: p[:, :9] / p[:, :9].sum(1, keepdims=True)), "probs",
                                      ["member-2.test-probs.npy", "(1000, 9)"]),
    "checkpoints swapped": (_swap, "checkpoint", ["member-1.safetensors", "member-1.json", "member-2.json",
                                                  "swapped"]),
    "checkpoint replaced": (lambda r: save_checkpoint(make_model(7), r / "member-1.safetensors", meta()), "checkpoint",
                            ["member-1.safetensors", "member-1.json"]),
    "checkpoint deleted": (lambda r: (r / "member-1.safetensors").unlink(), "checkpoint", []),
}

READERS = {
    "read": read_run,
    "probs": lambda path: read_run(path).test_probs(),
    "checkpoint": lambda path: read_run(path).checkpoint_path(1),
}


@pytest.mark.parametrize("case", CASES)
def test_damage_is_one_line_naming_the_file_and_the_field(run, case):
    damage, reader, names = CASES[case]
    damage(run)
    if case == "checkpoint deleted":  # no longer a finished member: the run has member 2 only
        assert [m["index"] for m in read_run(run).members] == [2]
        with pytest.raises(UserError, match="no finished member 1"):
            read_run(run).checkpoint_path(1)
        return
    for earlier in list(READERS)[: list(READERS).index(reader)]:
        READERS[earlier](run)  # the readers before it are not concerned
    with pytest.raises(UserError) as info:
        READERS[reader](run)
    _one_line(info.value, *names)
    assert not (run / "payload-ran").exists()


def test_the_test_sets_shape_is_checked_when_given(run):
    probs = read_run(run).test_probs(rows=1000, classes=10)
    assert [p.shape for p in probs] == [(1000, 10)] * 2
    with pytest.raises(UserError) as info:
        read_run(run).test_probs(rows=999, classes=10)
    _one_line(info.value, "member-1.test-probs.npy", "(999, 10)", "mnist1d")


def test_a_huge_member_count_reads_the_members_there_without_looping(run):
    _edit(run / "manifest.json", lambda m: m["config"].update(members=10**15))
    assert [m["index"] for m in read_run(run).members] == [1, 2]


@pytest.mark.parametrize("case", ["config: an unknown setting", "record: not JSON", "probs: an object array",
                                  "probs: ragged (fewer rows)", "checkpoints swapped"])
def test_evaluate_and_the_ensemble_command_refuse_in_one_line(run, tmp_path, capsys, case):
    CASES[case][0](run)
    with pytest.raises(UserError) as info:
        evaluate(run)  # with soups: the members' checkpoints are loaded too
    _one_line(info.value, *CASES[case][2])
    code = main(["ensemble", str(run), "--out", str(tmp_path / "report"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and CASES[case][2][0] in err[0], err
    assert not (tmp_path / "report" / "ensemble.json").exists()


def test_resuming_training_on_a_damaged_directory_stops_and_keeps_every_file(run):
    manifest = json.loads((run / "manifest.json").read_text())
    config = read_run(run).config
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    (run / "member-2.json").write_text('{"index": 2')
    with pytest.raises(UserError) as info:
        train(config, run)
    _one_line(info.value, "member-2.json")
    after = {p.name: p.read_bytes() for p in run.iterdir()}
    assert after.pop("member-2.json") == b'{"index": 2'
    before.pop("member-2.json")
    assert after == before and json.loads(after["manifest.json"]) == manifest


# ---------------------------------------------------------------------------- fuzzing the readers

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**64) | st.floats() | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children,
                                                                     max_size=3),
    max_leaves=8)


def _mutations(keys: list[str]):
    """A change to a JSON object: drop a key, set one (known or new) to any value, or replace
    the whole text."""
    key = st.sampled_from(keys) | st.text(max_size=6)
    return st.one_of(
        st.tuples(st.just("drop"), key, st.none()),
        st.tuples(st.just("set"), key, json_values),
        st.tuples(st.just("text"), st.none(), st.text(max_size=30)),
    )


def _mutated(doc: dict, mutation) -> str:
    kind, key, value = mutation
    if kind == "text":
        return value
    doc = json.loads(json.dumps(doc))
    if kind == "drop":
        doc.pop(key, None)
    else:
        doc[key] = value
    return json.dumps(doc)


@pytest.fixture(scope="module")
def fuzz_run(clean, tmp_path_factory) -> Path:
    return Path(shutil.copytree(clean, tmp_path_factory.mktemp("fuzz") / "run"))


def _as_recorded(config: RunConfig) -> dict:
    """``config`` as a manifest records it, checkpoints by their paths."""
    flat = config.flat()
    flat["pretrained"] = list(flat["pretrained"])
    return flat


def _assert_as_written(run, manifest_text: str, record_text: str) -> None:
    """The run read back is what the texts hold: every setting written, the defaults for those
    left out, and the records as they are."""
    manifest = json.loads(manifest_text)
    written = dict(manifest["config"])
    written["pretrained"] = [p["path"] for p in written["pretrained"]]
    if isinstance(written.get("init"), dict):
        written["init"] = written["init"]["path"]
    flat = _as_recorded(run.config)
    defaults = RunConfig.flat_defaults(run.config.method)
    for key in flat:
        expected = written[key] if key in written else defaults[key]
        assert json.dumps(flat[key]) == json.dumps(expected), key  # types too: 1 is not 1.0
    records = [json.loads(record_text), json.loads((run.path / "member-2.json").read_text())]
    records = [r for r in records if r["index"] <= run.config.members]
    assert json.dumps(run.members) == json.dumps(records)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _valid_record(text: str) -> bool:
    """Whether ``text`` is a record of member 1 as ``write_member`` writes it, from its definition."""
    try:
        r = json.loads(text)
    except ValueError:
        return False
    fields = ("index", "file", "probs", "sha256", "seed", "start", "epochs", "lr", "lrs", "test_acc")
    return (isinstance(r, dict) and all(k in r for k in fields)
            and type(r["index"]) is int and r["index"] == 1
            and r["file"] == "member-1.safetensors" and r["probs"] == "member-1.test-probs.npy"
            and isinstance(r["sha256"], str) and re.fullmatch("[0-9a-f]{64}", r["sha256"]) is not None
            and (r["seed"] is None or type(r["seed"]) is int) and isinstance(r["start"], str)
            and type(r["epochs"]) is int and r["epochs"] >= 0 and (r["lr"] is None or _num(r["lr"]))
            and isinstance(r["lrs"], list) and all(map(_num, r["lrs"]))
            and (r["test_acc"] is None or (_num(r["test_acc"]) and 0 <= r["test_acc"] <= 100)))


def _valid_manifest(text: str) -> bool:
    """Whether ``text`` is a manifest's outer layer as ``open_manifest`` writes it (its config
    untouched here)."""
    try:
        m = json.loads(text)
    except ValueError:
        return False
    return (isinstance(m, dict) and set(m) == {"format_version", "kind", "method", "config", "members", "versions"}
            and type(m["format_version"]) is int and m["format_version"] == 1 and m["kind"] == "ensemble-run"
            and isinstance(m["config"], dict) and isinstance(m["method"], str)
            and m["method"] == m["config"]["method"] and isinstance(m["members"], list)
            and all(isinstance(x, dict) for x in m["members"]) and isinstance(m["versions"], dict)
            and all(isinstance(x, str) for x in m["versions"].values()))


@FUZZ
@given(target=st.sampled_from(["manifest", "config", "record"]), data=st.data())
def test_fuzzed_manifests_and_records_read_back_as_written_or_fail_in_one_line(fuzz_run, clean, target, data):
    manifest = json.loads((clean / "manifest.json").read_text())
    record = json.loads((clean / "member-1.json").read_text())
    if target == "manifest":
        mutation = data.draw(_mutations(list(manifest)))
        manifest_text, record_text = _mutated(manifest, mutation), json.dumps(record)
    elif target == "config":
        mutation = data.draw(_mutations(list(manifest["config"])))
        config_text = _mutated(manifest["config"], mutation)  # spliced in as it is, JSON or not
        manifest_text = json.dumps({**manifest, "config": "@@"}).replace('"@@"', config_text)
        record_text = json.dumps(record)
    else:
        mutation = data.draw(_mutations(list(record)))
        manifest_text, record_text = json.dumps(manifest), _mutated(record, mutation)
    (fuzz_run / "manifest.json").write_text(manifest_text)
    (fuzz_run / "member-1.json").write_text(record_text)
    damaged = "member-1.json" if target == "record" else "manifest.json"
    # the manifest's outer layer and the record have oracles; a config is left to the property
    valid = {"manifest": _valid_manifest, "record": _valid_record}.get(target, lambda text: None)(
        manifest_text if target == "manifest" else record_text)
    try:
        run = read_run(fuzz_run)
    except UserError as exc:
        event(f"{target}: refused")
        _one_line(exc, damaged)
        assert valid in (None, False), "a valid file was refused"
        return
    event(f"{target}: read back")
    assert valid in (None, True), "a damaged file was read"
    _assert_as_written(run, manifest_text, record_text)


probs_arrays = st.one_of(
    st.sampled_from([np.float32, np.float64, np.int32, np.bool_, np.complex64, np.float16]).flatmap(
        lambda dtype: st.tuples(st.integers(0, 3), st.integers(1, 3)).map(
            lambda shape: np.full(shape, 0.5, dtype=dtype))),
    st.lists(st.floats(width=32), min_size=2, max_size=4).map(lambda v: np.array([v], dtype=np.float32)),
    st.lists(st.floats(0, 1, width=32), min_size=2, max_size=4).map(lambda v: np.array([v], dtype=np.float32)),
    st.just(np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)),
    st.just(np.array([[0.5, 0.5]], dtype=">f4")),
    st.just(np.array([[0.5, 0.5]], dtype=object)),
    st.just(np.zeros((1, 2, 1), dtype=np.float32)),
)


valid_probs = st.integers(2, 4).flatmap(
    lambda classes: st.lists(st.lists(st.floats(0.01, 1), min_size=classes, max_size=classes), min_size=1,
                             max_size=3)).map(
    lambda rows: (np.array(rows) / np.sum(rows, axis=1, keepdims=True)).astype(np.float32))


@FUZZ
@given(arrays=st.lists(probs_arrays, min_size=2, max_size=2) | valid_probs.map(lambda a: [a, a[::-1].copy()]))
def test_fuzzed_probability_arrays_read_back_exactly_or_fail_in_one_line(fuzz_run, clean, arrays):
    shutil.copyfile(clean / "manifest.json", fuzz_run / "manifest.json")
    shutil.copyfile(clean / "member-1.json", fuzz_run / "member-1.json")
    for i, a in enumerate(arrays, 1):
        np.save(fuzz_run / f"member-{i}.test-probs.npy", a, allow_pickle=True)
    try:
        probs = read_run(fuzz_run).test_probs()
    except UserError as exc:
        event("refused")
        _one_line(exc, ".test-probs.npy")
        return
    event("read back")
    for p, a in zip(probs, arrays):
        assert p.dtype == a.dtype and np.array_equal(p, a)
        assert p.ndim == 2 and np.isfinite(p).all() and (p >= 0).all() and np.allclose(p.sum(1), 1, atol=1e-3)
    assert probs[0].shape == probs[1].shape


# ---------------------------------------------------------------------------- demo directories

ROLES = {"local-de": ["run"]}


def _demo(root: Path, clean: Path) -> Path:
    """A demo directory holding what the report reads: ensembles.json and the run's arrays."""
    report = evaluate(clean, soups=False)
    save_samples(report, root / "judged" / "run.npz")
    write_json(root / "ensembles.json", {"ood": None, "roles": ROLES, "runs": [report.to_dict()]}, indent=2,
               strict=True)
    return root


def test_a_demo_directory_reads_back_as_written(clean, tmp_path):
    root = _demo(tmp_path / "demo", clean)
    results = read_demo(root)
    doc = json.loads((root / "ensembles.json").read_text())
    assert results.ensembles == [{"name": "run", "method": "local-de", "table": doc["runs"][0]["table"]}]
    assert results.ood is None and results.paths == {} and results.planes == {} and results.roles == ROLES
    report = evaluate(clean, soups=False)
    assert [a.tolist() for a in results.samples["run"]["correct"]] == [c.tolist() for c in report.correct]
    assert [a.tolist() for a in results.samples["run"]["member_correct"]] == [
        c.astype(np.float32).tolist() for c in report.member_correct]


@pytest.mark.parametrize("damage, names", [
    (lambda doc: "", ["ensembles.json", "not a readable demo result"]),
    (lambda doc: json.dumps({"runs": {}}), ["ensembles.json", "'runs'"]),
    (lambda doc: json.dumps({**doc, "runs": [{**doc["runs"][0], "name": 3}]}), ["ensembles.json", "'name'"]),
    (lambda doc: json.dumps({**doc, "runs": [{**doc["runs"][0], "table": []}]}), ["ensembles.json", "'table'"]),
    (lambda doc: json.dumps({**doc, "runs": [{**doc["runs"][0], "table": doc["runs"][0]["table"][1:]}]}),
     ["ensembles.json", "size 1"]),
    (lambda doc: json.dumps({**doc, "runs": [{**doc["runs"][0], "table": [
        {**doc["runs"][0]["table"][0], "accuracy": "high"}, *doc["runs"][0]["table"][1:]]}]}),
     ["ensembles.json", "accuracy"]),
    (lambda doc: json.dumps({**doc, "roles": {"local-de": ["other"]}}), ["ensembles.json", "'roles'"]),
    (lambda doc: json.dumps({**doc, "roles": {"best-de": ["run"]}}), ["ensembles.json", "'roles'"]),
])
def test_a_damaged_demo_result_is_one_line(clean, tmp_path, damage, names):
    root = _demo(tmp_path / "demo", clean)
    doc = json.loads((root / "ensembles.json").read_text())
    (root / "ensembles.json").write_text(damage(doc))
    with pytest.raises(UserError) as info:
        read_demo(root)
    _one_line(info.value, *names)


@pytest.mark.parametrize("damage, names", [
    (lambda path: path.write_bytes(b"PK\x03\x04 torn"), ["run.npz", "not a readable per-sample file"]),
    (lambda path: np.savez(path, correct=np.zeros((1, 5), np.float32)), ["run.npz", "'correct'", "shape (2, N)"]),
    (lambda path: np.savez(path, correct=np.full((2, 5), 2, np.float32)), ["run.npz", "'correct'", "[0, 1]"]),
    (lambda path: np.savez(path, soup_correct=np.zeros((2, 5), np.float32)), ["run.npz", "'correct' is missing"]),
    (lambda path: np.savez(path, correct=np.zeros((2, 5), np.float32), member_correct=np.zeros((2, 4), np.float32)),
     ["run.npz", "different sample counts"]),
    (lambda path: np.savez(path, correct=np.zeros((2, 5), np.float32), pickled=np.zeros((2, 5), np.float32)),
     ["run.npz", "'pickled'"]),
])
def test_damaged_per_sample_arrays_are_one_line(clean, tmp_path, damage, names):
    root = _demo(tmp_path / "demo", clean)
    path = root / "judged" / "run.npz"
    path.unlink()
    damage(path)
    with pytest.raises(UserError) as info:
        read_demo(root)
    _one_line(info.value, *names)


def test_a_demo_of_other_settings_is_refused_before_training(tmp_path):
    from ensembles.demo import DemoConfig, run_demo

    root = tmp_path / "demo"
    root.mkdir()
    write_json(root / "demo.json", {"config": DemoConfig(members=3).to_dict()}, indent=2, strict=True)
    with pytest.raises(UserError) as info:
        run_demo(root, DemoConfig(members=4))
    _one_line(info.value, str(root), "other settings (members)", "another --out")
    assert sorted(p.name for p in root.iterdir()) == ["demo.json"]
    (root / "demo.json").write_text(json.dumps({"config": {"cycle_lrs": [0.5, 0.1]}}))
    with pytest.raises(UserError) as info:
        run_demo(root, DemoConfig())
    _one_line(info.value, "demo.json", "'config'")


def test_a_damaged_paths_report_is_one_line(clean, tmp_path):
    pairs = tmp_path / "demo" / "paths" / "sse-local" / "report.json"
    pairs.parent.mkdir(parents=True)
    pairs.write_text(json.dumps({"pairs": [{"a": "member-1", "b": "member-2"}]}))
    with pytest.raises(UserError) as info:
        read_pairs(pairs)
    _one_line(info.value, "report.json", "pairs[0]", "loss_barrier_train")


def test_the_demo_judges_into_files_written_atomically(clean, tmp_path, monkeypatch):
    """A kill while a judged run is written (here: the flush before the rename fails) leaves no
    file, never an empty or torn one, and the rerun judges again."""
    from ensembles.demo import steps
    from ensembles.demo.config import DemoConfig

    root = tmp_path / "demo"
    shutil.copytree(clean, root / "runs" / "run")
    import landscape.atomic as atomic

    def killed(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "_fsync_file", killed)
    monkeypatch.setattr(steps, "evaluate", lambda run, **kw: evaluate(run, soups=False))
    with pytest.raises(KeyboardInterrupt):
        steps._judge(root, DemoConfig(ood=None), ROLES, "cpu", print)
    assert not (root / "judged").exists() or not any((root / "judged").iterdir())
    monkeypatch.undo()
    monkeypatch.setattr(steps, "evaluate", lambda run, **kw: evaluate(run, soups=False))
    steps._judge(root, DemoConfig(ood=None), ROLES, "cpu", print)
    ensembles, ood, roles = read_ensembles(root / "ensembles.json")
    assert [e["name"] for e in ensembles] == ["run"] and ood is None and roles == ROLES


@pytest.mark.parametrize("name, text, field", [
    ("report.json", json.dumps({"label": 3}), "'label'"),
    ("projection.json", json.dumps({"xy": [[0, 1, 2]]}), "'xy'"),
    ("projection.json", "{", "not a readable"),
])
def test_a_damaged_curve_step_is_one_line(clean, tmp_path, name, text, field):
    root = _demo(tmp_path / "demo", clean)
    folder = root / "curve"
    folder.mkdir()
    good = {"report.json": json.dumps({"label": "not connected", "line": {}, "curve": {}}),
            "projection.json": json.dumps({"xy": [[0.0, 0.0], [1.0, 0.5]]})}
    for n, t in good.items():
        (folder / n).write_text(t)
    for n in ("curve.h5", "line.h5"):
        (folder / n).write_bytes(b"")
    (folder / name).write_text(text)
    with pytest.raises(UserError) as info:
        read_demo(root)
    _one_line(info.value, name, field)


@pytest.mark.parametrize("name, doc", [
    ("sharpness-x.json", {"run": "x", "role": "sse-local", "members": {"m": {"eigenvalues": "big", "trace": 1.0}}}),
    ("sharpness-x.json", {"run": "x", "role": "best", "members": {}}),
    ("distances-x.json", {"run": "x", "role": "sse-local", "from_pretrained": [{"block": 3}]}),
])
def test_a_damaged_geometry_step_is_one_line(clean, tmp_path, name, doc):
    root = _demo(tmp_path / "demo", clean)
    (root / "geometry").mkdir()
    (root / "geometry" / name).write_text(json.dumps(doc))
    with pytest.raises(UserError) as info:
        read_demo(root)
    _one_line(info.value, name, "'run', 'role'")
