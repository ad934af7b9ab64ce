"""Layer-wise distances (#21): squared block distances add up to the whole-model distance over
the same parameters, blocks follow the model, the pre-trained checkpoint is found through the
lineage, and the command writes its table and heatmap."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from cli.main import main
from landscape import UserError, create_model, load_checkpoint, save_checkpoint
from landscape.surfaces.distances import HEAD, TOTAL, layer_distances, model_blocks


def _perturbed(model, seed, scale=0.1):
    import copy

    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return out


def test_blocks_follow_the_model_and_the_head_comes_last():
    cnn = create_model("mnist1d_cnn", 10, width=4)
    blocks = model_blocks(cnn)
    assert list(blocks) == ["features.0", "features.1", "features.3", "features.4", "features.6", HEAD]
    assert sorted(n for ns in blocks.values() for n in ns) == sorted(n for n, _ in cnn.named_parameters())
    resnet = create_model("resnet20", 10)
    assert list(model_blocks(resnet))[-1] == HEAD and len(model_blocks(resnet)) >= 4
    assert list(model_blocks(cnn, depth=1)) == ["features", HEAD]


def test_squared_block_distances_add_up_to_the_whole(tmp_path):
    from landscape import CheckpointMeta

    torch.manual_seed(0)
    pre = create_model("mnist1d_cnn", 10, width=4)
    meta = CheckpointMeta("mnist1d_cnn", 10, {"width": 4}, "mnist1d", method="pretrain")
    sha = save_checkpoint(pre, tmp_path / "pre.safetensors", meta)
    files = []
    for i in (1, 2, 3):
        m = _perturbed(pre, i)
        save_checkpoint(m, tmp_path / f"m{i}.safetensors", CheckpointMeta("mnist1d_cnn", 10, {"width": 4}, "mnist1d",
                                                                        method="finetune", parent=sha))
        files.append(tmp_path / f"m{i}.safetensors")
    report = layer_distances(files, pretrained=[tmp_path / "pre.safetensors"])
    assert report.pretrained == {"m1": "pre", "m2": "pre", "m3": "pre"}
    ckpts = [load_checkpoint(f) for f in files]
    whole = {(a, b): math.sqrt(sum(float(((p.detach().double() - q.detach().double()) ** 2).sum())
                                   for p, q in zip(x.model.parameters(), y.model.parameters())))
             for a, x in zip("123", ckpts) for b, y in zip("123", ckpts) if a < b}
    for group in (report.pairs, report.from_pretrained):
        by = {}
        for d in group:
            by.setdefault((d.a, d.b), {})[d.block] = d
        for key, blocks in by.items():
            parts = [d.l2**2 for name, d in blocks.items() if name != TOTAL]
            assert sum(parts) == pytest.approx(blocks[TOTAL].l2**2, rel=1e-12)
            assert sum(d.parameters for n, d in blocks.items() if n != TOTAL) == blocks[TOTAL].parameters
            assert all(-1 <= d.cosine <= 1 for d in blocks.values())
    assert {(d.a, d.b): d.l2 for d in report.pairs if d.block == TOTAL} == pytest.approx(
        {(f"m{a}", f"m{b}"): v for (a, b), v in whole.items()}, rel=1e-9)
    same = layer_distances([files[0], files[0]])
    assert all(d.l2 == 0 and d.cosine == pytest.approx(1.0) for d in same.pairs)


def test_members_of_another_architecture_are_refused(tmp_path):
    a, b = create_model("mnist1d_cnn", 10, width=4), create_model("resnet20", 10)
    with pytest.raises(UserError, match="does not have the blocks"):
        layer_distances([a, b])


def test_the_command_writes_the_table_and_the_heatmap(three_ckpts, tmp_path):
    assert main(["distances", *map(str, three_ckpts), "--out", str(tmp_path / "d")]) == 0
    rows = list(csv.DictReader((tmp_path / "d" / "distances.csv").open()))
    assert {r["kind"] for r in rows} == {"pair"} and {(r["a"], r["b"]) for r in rows} == {("A", "B"), ("A", "C"), ("B", "C")}
    assert {r["block"] for r in rows} >= {HEAD, TOTAL}
    assert (tmp_path / "d" / "distances.png").stat().st_size > 0 and (tmp_path / "d" / "distances.json").exists()


def test_interp_reports_block_distances_through_the_whole_lineage(tmp_path):
    """SSE-like lineage pre -> m1 -> m2 -> m3: the pair (m2, m3) reaches pre through m1."""
    import json

    from landscape import CheckpointMeta

    torch.manual_seed(0)
    model = create_model("mnist1d_cnn", 10, width=4)
    sha = save_checkpoint(model, tmp_path / "pre.safetensors",
                          CheckpointMeta("mnist1d_cnn", 10, {"width": 4}, "mnist1d", method="pretrain"))
    for i in (1, 2, 3):
        model = _perturbed(model, i, 0.02)
        sha = save_checkpoint(model, tmp_path / f"m{i}.safetensors", CheckpointMeta(
            "mnist1d_cnn", 10, {"width": 4}, "mnist1d", method="sse", member=i, parent=sha))
    files = [str(tmp_path / f"m{i}.safetensors") for i in (1, 2, 3)]
    assert main(["interp", *files, "--pretrained", str(tmp_path / "pre.safetensors"), "--points", "3",
                 "--train-subset", "100", "--test-subset", "100", "--no-plots", "--quiet", "--out", str(tmp_path / "i")]) == 0
    doc = json.loads((tmp_path / "i" / "report.json").read_text())
    pair = doc["block_distances"]["m2 -> m3"]
    assert {d["a"] for d in pair["from_pretrained"]} == {"m2", "m3"}
    assert {(d["a"], d["b"]) for d in pair["between"]} == {("m2", "m3")}
