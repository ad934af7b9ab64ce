"""The README's `make demo`, end to end with tiny settings (slow: pre-trains on the source set),
and the report's numbers against the files it was built from, recomputed another way."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from landscape import load_checkpoint, load_dataset, read_paths, read_surface

ROOT = Path(__file__).resolve().parents[1]


def _ensemble_correct(run_dir: Path, data: str) -> np.ndarray:
    """A naive loop: every member's softmax on ``data``'s test split, averaged, compared with the labels."""
    import torch

    test = load_dataset(data, "test")
    probs = []
    for path in sorted(run_dir.glob("member-*.safetensors")):
        model = load_checkpoint(path).model.eval()
        with torch.no_grad():
            probs.append(torch.softmax(model(test.inputs), -1).numpy())
    return (np.mean(probs, axis=0).argmax(1) == test.labels.numpy()).astype(float)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_pipeline_with_tiny_settings(tmp_path):
    demo = tmp_path / "demo"
    args = ["make", "-C", str(ROOT), "demo", f"DEMO={demo}", "DEMO_ARGS=--tiny --quiet"]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sources = [load_checkpoint(demo / "sources" / f"source-{i}.safetensors") for i in (0, 1)]
    assert all(s.meta.dataset == "mnist1d-source" and s.meta.method == "pretrain" for s in sources)
    # the sweep: the chosen rate is the most accurate on the validation split, recomputed naively
    sweep = json.loads((demo / "sweep.json").read_text())
    assert sweep["cycle_lrs"] == [0.02, 0.7]
    for method in ("sse", "starsse"):
        accs = [[100 * _ensemble_correct(demo / "runs" / f"source-{r}" / f"{method}-lr{lr:g}",
                                         "mnist1d-transfer-val").mean() for r in (0, 1)] for lr in (0.02, 0.7)]
        # to a sample: another batching may flip a near tie
        assert np.allclose(accs, sweep["accuracy"][method], atol=0.11)
        assert sweep["chosen"][method] == (0.02, 0.7)[int(np.argmax(np.mean(sweep["accuracy"][method], axis=1)))]
    doc = json.loads((demo / "ensembles.json").read_text())
    roles = doc["roles"]
    assert roles["global-de"] == ["global-de"] and roles["local-de"] == ["source-0/local-de", "source-1/local-de"]
    assert roles["sse-local"] == ["source-0/sse-lr0.02", "source-1/sse-lr0.02"]
    assert roles["sse-optimal"] == [f"source-{r}/sse-lr{sweep['chosen']['sse']:g}" for r in (0, 1)]
    for run in doc["runs"]:  # every table's ensemble equals the naive loop over its members
        assert [r["size"] for r in run["table"]] == list(range(1, len(run["table"]) + 1))
        assert all(0 <= r["ood_accuracy"] <= 100 for r in run["table"])
        naive = _ensemble_correct(demo / "runs" / run["name"], "mnist1d-transfer")
        assert run["table"][-1]["accuracy"] == pytest.approx(100 * naive.mean(), abs=0.021)
    # a claim's effect, recomputed from the members: optimal StarSSE minus Local DE, mean over sources
    page = (demo / "report.html").read_text()
    gain = np.mean([100 * (_ensemble_correct(demo / "runs" / star, "mnist1d-transfer")
                           - _ensemble_correct(demo / "runs" / lde, "mnist1d-transfer")).mean()
                    for star, lde in zip(roles["starsse-optimal"], roles["local-de"])])
    from ensembles.demo import read_demo
    from ensembles.demo.summary import summarize

    claims = summarize(read_demo(demo))["claims"]
    effect = next(e for c in claims for e in c["effects"]
                  if e["label"].startswith("starsse-optimal minus local-de, ensemble accuracy"))
    assert effect["value"] == pytest.approx(gain, abs=0.021) and effect["low"] <= effect["value"] <= effect["high"]
    assert effect["text"] in page.replace("&#x27;", "'") and all(c["verdict"] in page for c in claims)
    assert "The task" in page and "mnist1d-transfer-val" in page
    ps = read_paths(demo / "paths" / "source-0.sse-lr0.7" / "paths.h5")
    assert ps.complete and ps.pairs == [(0, 1), (1, 2)]
    star = read_paths(demo / "paths" / "source-1.starsse-lr0.02" / "paths.h5")
    assert star.pairs == [(0, 1), (0, 2)]
    s = read_surface(demo / "planes" / "starsse-semilocal" / "plane.h5")
    assert s.complete and s.config["identity"]["bn"] == "recompute"
    pairs = json.loads((demo / "paths" / "source-0.sse-lr0.7" / "report.json").read_text())["pairs"]
    from landscape.surfaces.barriers import barrier

    for p, rec in enumerate(pairs):
        assert rec["acc_barrier_test"] == barrier(ps.alpha, ps.curve(p, "test", "acc"), kind="acc").height
        assert f"<td>{rec['acc_barrier_test']:.2f}</td>" in page
    # the curve between the two most distant semi-local SSE members of source 0
    import torch

    from landscape import load_curve

    curve_doc = json.loads((demo / "curve" / "report.json").read_text())
    members = [load_checkpoint(p) for p in sorted((demo / "runs" / "source-0" / "sse-lr0.7").glob("member-*.safetensors"))]
    vec = [torch.cat([p.detach().reshape(-1) for p in m.model.parameters()]) for m in members]
    far = max(((i, j) for i in range(len(vec)) for j in range(i + 1, len(vec))),
              key=lambda ij: float((vec[ij[0]] - vec[ij[1]]).norm()))
    assert (curve_doc["a"], curve_doc["b"]) == tuple(members[k].name for k in far)
    curve = load_curve(demo / "curve" / "curve.safetensors")
    assert curve.kind == "bezier" and len(curve.bends) == 1
    bent = read_paths(demo / "curve" / "curve.h5")
    assert curve_doc["curve"]["acc_barrier_test"] == barrier(bent.alpha, bent.curve(0, "test", "acc"), kind="acc").height
    assert curve_doc["label"] in page and read_surface(demo / "planes" / "curve" / "plane.h5").complete
    # basin geometry: the sharpness and distances of source 0's SSE and StarSSE runs, a simplex, a PCA plane
    for run in ("sse-lr0.02", "sse-lr0.7", "starsse-lr0.02", "starsse-lr0.7"):
        sharp = json.loads((demo / "geometry" / f"sharpness-source-0.{run}.json").read_text())
        assert len(sharp["members"]) == 3 and all(m["eigenvalues"][0] >= m["eigenvalues"][1] for m in sharp["members"].values())
        dist = json.loads((demo / "geometry" / f"distances-source-0.{run}.json").read_text())
        assert set(dist["pretrained"].values()) == {"source-0"}  # found through the lineage
        totals = {d["a"]: d for d in dist["from_pretrained"] if d["block"] == "total"}
        for name, total in totals.items():
            parts = [d["l2"] ** 2 for d in dist["from_pretrained"] if d["a"] == name and d["block"] != "total"]
            assert sum(parts) == pytest.approx(total["l2"] ** 2, rel=1e-9)
    assert read_surface(demo / "geometry" / "simplex.h5").complete
    pca = read_surface(demo / "planes" / "pca" / "plane.h5")
    assert pca.config["identity"]["mode"] == "pca" and sum(pca.config["pca"]["explained_variance_ratio"]) <= 1 + 1e-9
    assert "Basin geometry" in page
    # sizes, sweep, 4 paths, 4 planes in 2 views, curve, sharpness, distances, simplex
    assert len(list((demo / "figures").glob("*.png"))) == 18
    assert not re.search(r"<script[^>]+src=", page)  # nothing loaded from elsewhere
    assert np.isfinite(s.loss("test")).all()
    # a second `make demo` has every step finished: no checkpoint or result is written again
    stamps = {p: p.stat().st_mtime_ns for p in demo.rglob("*") if p.suffix in (".safetensors", ".h5", ".npy", ".npz")}
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
