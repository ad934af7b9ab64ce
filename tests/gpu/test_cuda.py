"""Checks that need a CUDA device (skipped without one; CI has none). They run on a lent GPU
with ``benchmarks/gpu_check.sh``, which also runs the benchmark suite at full size there.

What they pin down: the engine on the GPU gives the naive CPU loop's numbers in fp32 (so TF32 is
really off), TF32 and bf16 stay close, uint8 images decode bit for bit, a real CUDA out-of-memory
error makes the engine back off with unchanged numbers, and the CLI runs end to end on the GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cli.main import main
from landscape import create_model, read_paths, read_surface
from landscape.assets.resident import ImageDecode
from landscape.engine.evaluator import EvalData, GridEvaluator
from landscape.engine.layout import ParamLayout
from landscape.engine.numerics import numerics
from landscape.surfaces.reference import naive_point

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _case(width=8, n_train=256, n_test=128, px=16):
    """A ResNet-20 with BN, random data, and three nearby weight vectors."""
    torch.manual_seed(0)
    model = create_model("resnet20", 10, width=width).eval()
    layout = ParamLayout.of(model)
    gen = torch.Generator().manual_seed(1)
    train = (torch.randn(n_train, 3, px, px, generator=gen), torch.randint(0, 10, (n_train,), generator=gen))
    test = (torch.randn(n_test, 3, px, px, generator=gen), torch.randint(0, 10, (n_test,), generator=gen))
    w = layout.flatten(model.state_dict()).repeat(3, 1)
    w[1:] += 0.05 * torch.randn(2, w.shape[1], generator=gen).double()
    return model, layout, {"train": train, "test": test}, w


def _evaluator(model, layout, splits, device=CUDA, **kw):
    on = {s: (x.to(device), y.to(device)) for s, (x, y) in splits.items()}
    kw = {"bn_policy": "recompute", "bn_batch_size": 32, "batch_size": 64, **kw}
    return GridEvaluator(model, layout, EvalData(on, on["train"][0]), **kw)


def _naive(model, splits, w, device):
    data = {s: TensorDataset(*xy) for s, xy in splits.items()}
    return naive_point(model, w, data, bn="recompute", bn_train=data["train"], bn_batch_size=32,
                       batch_size=64, device=device)


def test_fp32_on_the_gpu_gives_the_naive_cpu_loops_numbers():
    model, layout, splits, w = _case()
    ev = _evaluator(model, layout, splits)
    assert ev.folded_layers > 0  # the fold check passes on the GPU (IEEE float32)
    cudnn_default = torch.backends.cudnn.allow_tf32
    for path in ("loop", "vmap"):
        got = ev.evaluate(w, strategy=path).metrics
        for i in range(len(w)):
            ref = _naive(model, splits, w[i], "cpu")
            for split in splits:
                assert abs(got[split]["loss"][i] - ref[split]["loss"]) < 1e-5, (path, i, split)
                assert abs(got[split]["acc"][i] - ref[split]["acc"]) <= 100 / len(splits[split][1])
    assert torch.backends.cudnn.allow_tf32 == cudnn_default  # restored after the evaluation
    ref_gpu = _naive(model, splits, w[1], CUDA)
    ref_cpu = _naive(model, splits, w[1], "cpu")
    assert abs(ref_gpu["test"]["loss"] - ref_cpu["test"]["loss"]) < 1e-5  # the reference too


@pytest.mark.parametrize(("precision", "atol"), [("tf32", 1e-2), ("bf16", 5e-2)])
def test_tf32_and_bf16_are_close_to_fp32(precision, atol):
    model, layout, splits, w = _case(width=16, px=32)
    fp32 = _evaluator(model, layout, splits).evaluate(w, strategy="loop").metrics
    for path in ("loop", "vmap"):
        got = _evaluator(model, layout, splits, precision=precision).evaluate(w, strategy=path).metrics
        diff = np.abs(got["test"]["loss"] - fp32["test"]["loss"]).max()
        print(f"{precision} {path}: max |dloss| = {diff:.2e}")
        assert diff < atol


def test_channels_last_on_the_gpu_changes_nothing_but_speed():
    model, layout, splits, w = _case()
    ref = _evaluator(model, layout, splits).evaluate(w, strategy="loop").metrics
    for path in ("loop", "vmap"):
        got = _evaluator(model, layout, splits, channels_last=True).evaluate(w, strategy=path).metrics
        np.testing.assert_allclose(got["test"]["loss"], ref["test"]["loss"], atol=1e-5, rtol=0)


def test_uint8_images_decode_on_the_gpu_bit_for_bit_as_on_the_cpu():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    decode = ImageDecode((0.507, 0.487, 0.441), (0.267, 0.256, 0.276))
    assert torch.equal(decode(x.to(CUDA)).cpu(), decode(x))


@pytest.mark.parametrize("path", ["loop", "vmap"])
def test_a_real_cuda_out_of_memory_backs_off_with_the_same_numbers(path):
    model, layout, splits, w = _case(width=16, n_train=256, n_test=4096, px=32)
    ref = _evaluator(model, layout, splits, batch_size=128).evaluate(w, strategy=path).metrics
    ev = _evaluator(model, layout, splits, batch_size=4096)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(CUDA).total_memory
    cap = torch.cuda.memory_allocated() + 400 * 2**20  # 400 MiB beyond what is held now
    torch.cuda.set_per_process_memory_fraction(cap / total)
    try:
        got = ev.evaluate(w, strategy=path).metrics
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    print(ev.backoffs)
    assert ev.backoffs and ev.batch_size < 4096  # a real CUDA OOM happened and was handled
    for split in splits:
        np.testing.assert_allclose(got[split]["loss"], ref[split]["loss"], atol=1e-6, rtol=0)
        np.testing.assert_array_equal(got[split]["acc"], ref[split]["acc"])


def test_plane_and_interp_from_the_cli_on_the_gpu_match_the_cpu(three_ckpts, tmp_path, capsys):
    common = [*map(str, three_ckpts), "--train-subset", "500", "--test-subset", "200", "--no-plots",
              "--quiet"]
    for device in ("cpu", "cuda"):
        assert main(["plane", *common, "--grid", "5", "--device", device,
                     "--out", str(tmp_path / f"plane-{device}")]) == 0, capsys.readouterr().err
        assert main(["interp", *common, "--points", "7", "--device", device,
                     "--out", str(tmp_path / f"interp-{device}")]) == 0, capsys.readouterr().err
    cpu, gpu = (read_surface(tmp_path / f"plane-{d}" / "plane.h5") for d in ("cpu", "cuda"))
    assert gpu.config["runtime"]["device"].startswith("cuda")
    for split in ("train", "test"):
        np.testing.assert_allclose(gpu.loss(split), cpu.loss(split), atol=1e-5, rtol=0)
    cpu, gpu = (read_paths(tmp_path / f"interp-{d}" / "paths.h5") for d in ("cpu", "cuda"))
    for split in ("train", "test"):
        np.testing.assert_allclose(gpu.metrics[split]["loss"], cpu.metrics[split]["loss"], atol=1e-5, rtol=0)


def test_the_loop_paths_bn_pass_never_waits_for_the_gpu():
    """BN's own cumulative average reads a counter back to the host in every layer on every
    batch; the engine's BN pass must queue its work without one synchronisation."""
    model, layout, splits, w = _case()
    ev = _evaluator(model, layout, splits)
    ev.loop.replicas[0].load(ev.core.layout, w[0], None, ev.core.device)
    with numerics("fp32", CUDA):
        ev.loop.bn.run_(ev.loop.replicas[0], None)  # the first pass captures the CUDA graph
    assert ev.loop.replicas[0].graph, ev.graph_note
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with numerics("fp32", CUDA):
            ev.loop.bn.run_(ev.loop.replicas[0], None)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    layer = ev.loop.replicas[0].bn_layers[0][1]
    assert int(layer.num_batches_tracked) == len(splits["train"][1]) // 32


@pytest.mark.parametrize("decode", [False, True])
def test_the_cuda_graph_bn_pass_gives_the_eager_numbers(decode):
    model, layout, splits, w = _case(n_train=300)  # 9 full batches of 32 and a short one
    if decode:  # uint8 images decoded inside the graph
        gen = torch.Generator().manual_seed(3)
        splits = {s: (torch.randint(0, 256, x.shape, generator=gen, dtype=torch.uint8), y)
                  for s, (x, y) in splits.items()}
    on = {s: (x.to(CUDA), y.to(CUDA)) for s, (x, y) in splits.items()}
    data = EvalData(on, on["train"][0], ImageDecode((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)) if decode else None)
    results = {}
    for graphs in (False, True):
        ev = GridEvaluator(model, layout, data, bn_policy="recompute", bn_batch_size=32, batch_size=64,
                           cuda_graphs=graphs)
        results[graphs] = ev.evaluate(w, strategy="loop").metrics
        assert bool(ev.loop.replicas[0].graph) is graphs, ev.graph_note
    for split in splits:
        np.testing.assert_allclose(results[True][split]["loss"], results[False][split]["loss"], atol=1e-6, rtol=0)


def test_points_on_several_cuda_streams_give_one_point_at_a_times_numbers():
    """4 workers, each on a stream of its own with its own CUDA graph of the BN pass and its own
    accumulators: the numbers of one point at a time (to float rounding: cuDNN's autotuner can
    pick other kernels in other threads). The tuner times 2, 4 and 8 streams."""
    model, layout, splits, w = _case(n_train=300)
    w = w.repeat(3, 1)  # 9 points: uneven shares
    alone = _evaluator(model, layout, splits, workers=1).evaluate(w, strategy="loop").metrics
    ev = _evaluator(model, layout, splits, workers=4)
    got = ev.evaluate(w, strategy="loop").metrics
    assert len(ev.loop.replicas) == 4 and all(r.graph for r in ev.loop.replicas), ev.graph_note
    assert len({r.stream.cuda_stream for r in ev.loop.replicas}) == 4
    pool = ev.loop.threads[0]  # cuDNN tunes per thread: the workers' threads live on
    again = ev.evaluate(w, strategy="loop").metrics
    assert ev.loop.threads[0] is pool
    np.testing.assert_allclose(again["test"]["loss"], got["test"]["loss"], atol=1e-5, rtol=0)
    for split in splits:
        np.testing.assert_allclose(got[split]["loss"], alone[split]["loss"], atol=1e-5, rtol=0)
    tuning = _evaluator(model, layout, splits).tune(w[:8])
    assert {"loop, 2 streams", "loop, 4 streams", "loop, 8 streams"} <= set(tuning.seconds_per_point)


def test_data_left_in_host_memory_gives_the_resident_numbers(monkeypatch):
    """Data too large for the GPU stays in host memory and is copied batch by batch: the numbers
    of resident data, on both paths, with the BN pass's CUDA graphs and with streams."""
    from landscape.assets.resident import place

    model, layout, splits, w = _case(n_train=300)
    assert place(splits, CUDA, where="host")[1] and not place(splits, CUDA)[1]  # --data-on host; fits
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 10**10))
    assert not place(splits, CUDA, where="device")[1]  # --data-on device: even when it does not fit
    host, on_host = place(splits, CUDA)
    assert on_host and host["train"][0].device.type == "cpu"
    data = EvalData(host, host["train"][0], device=CUDA)
    assert data.streamed
    for path, workers in (("loop", 1), ("loop", 3), ("vmap", 1)):
        ref = _evaluator(model, layout, splits, workers=workers).evaluate(w, strategy=path).metrics
        ev = GridEvaluator(model, layout, data, bn_policy="recompute", bn_batch_size=32, batch_size=64,
                           workers=workers)
        got = ev.evaluate(w, strategy=path).metrics
        assert ev.data_placement.startswith("host memory") and ev.tuning_key()["data"] == "host memory"
        if path == "loop":
            assert all(r.graph for r in ev.loop.replicas), ev.graph_note
        for split in splits:
            np.testing.assert_allclose(got[split]["loss"], ref[split]["loss"], atol=1e-5, rtol=0)


def test_ghost_batches_on_the_gpu_give_one_batch_at_a_times_numbers():
    """4 fixed BN batches a forward, each normalised with its own statistics, replayed as CUDA
    graphs of that size, alone and on 3 streams: the numbers of one batch at a time."""
    model, layout, splits, w = _case(n_train=300)  # 9 fixed batches of 32 and 12 rows
    ref = _evaluator(model, layout, splits).evaluate(w, strategy="loop").metrics
    for workers in (1, 3):
        ev = _evaluator(model, layout, splits, workers=workers, bn_ghosts=4)
        got = ev.evaluate(w, strategy="loop").metrics
        assert ev.ghost_note == "4 fixed batches a forward"
        assert all(r.graph and r.graph.x.shape[0] == 4 * 32 for r in ev.loop.replicas), ev.graph_note
        for split in splits:
            np.testing.assert_allclose(got[split]["loss"], ref[split]["loss"], atol=1e-5, rtol=0)


def test_the_tuner_on_the_gpu_times_ghost_batches_and_keeps_the_numbers():
    """The tuner times one fixed BN batch a forward against an evaluation batch of them (real
    timings, CUDA graphs of both sizes), and whatever it keeps gives the untuned numbers."""
    model, layout, splits, w = _case(n_train=300)
    ref = _evaluator(model, layout, splits, bn_ghosts=1, workers=1).evaluate(w, strategy="loop").metrics
    ev = _evaluator(model, layout, splits, workers=2)
    tuning = ev.tune(w, strategy="loop")
    k = min(max(2, tuning.settings.batch_size // 32), 300 // 32)
    assert {"bn_ghosts=1", f"bn_ghosts={k}"} <= set(tuning.seconds_per_point), tuning
    assert tuning.settings.bn_ghosts == ev.ghosts_in_use in (1, k)
    got = ev.evaluate(w, strategy="loop").metrics
    rows = {r.graph.x.shape[0] for r in ev.loop.replicas if r.graph}
    assert rows == {tuning.settings.bn_ghosts * 32}, (rows, ev.graph_note)  # graphs made again for the choice
    for split in splits:
        np.testing.assert_allclose(got[split]["loss"], ref[split]["loss"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(got[split]["acc"], ref[split]["acc"], atol=1e-6, rtol=0)
