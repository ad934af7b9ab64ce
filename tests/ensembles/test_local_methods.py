"""The other local methods (FGE, cSGLD, SWAG, KFAC-Laplace, SPRO): each one's defining property,
resume, and bad input."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_model, meta
from scipy import stats
from torch import nn

from ensembles.methods import common, csgld, fge, laplace, spro, swag, trajectory
from ensembles.methods.common import weight_vector
from ensembles.run import RunConfig, read_run, train
from ensembles.rundir import RunDir
from landscape import UserError, load_checkpoint, save_checkpoint
from landscape.grid.distributed import Group
from landscape.engine.layout import ParamLayout

TINY = dict(data="mnist1d", members=3, epochs=1, lr=0.05, batch_size=256)
STEPS = 16  # batches per epoch of MNIST-1D's 4000 train examples at batch size 256


@pytest.fixture(scope="module")
def pre(tmp_path_factory):
    path = tmp_path_factory.mktemp("pre") / "pre.safetensors"
    save_checkpoint(make_model(0), path, meta())
    return str(path)


# ----------------------------------------------------------------------------- FGE


def test_fge_learning_rate_is_the_papers_triangle():
    c, a1, a2 = 8, 0.1, 0.001
    lrs = [fge.fge_lr(i, c, a1, a2) for i in range(1, 2 * c + 1)]
    assert lrs[c // 2 - 1] == pytest.approx(a2) and lrs[c - 1] == pytest.approx(a1)  # t = 1/2, 1
    assert lrs[0] == pytest.approx(a1 + (a2 - a1) * 2 / c)  # t = 1/c on the way down
    assert np.all(np.diff(lrs[: c // 2]) < 0) and np.all(np.diff(lrs[c // 2 - 1 : c]) > 0)
    assert lrs[c:] == pytest.approx(lrs[:c])  # periodic
    segs = fge.fge_segments(4, c)
    assert [s.first + s.steps - 1 for s in segs] == [4, 12, 20]  # the minima
    assert [s.index for s in segs] == [2, 3, 4] and segs[1].first == 5


def test_fge_snapshots_fall_at_the_minima_and_resume_bit_identically(pre, tmp_path, monkeypatch):
    cfg = RunConfig.from_flat("fge", (pre,), cycle_epochs=1, cycle_lr=0.05, fge_min_lr=0.001, **TINY)
    full = train(cfg, tmp_path / "full")
    lrs = [lr for m in full.members[1:] for lr in m["lrs"]]
    assert lrs == pytest.approx([fge.fge_lr(i, STEPS, 0.05, 0.001) for i in range(1, len(lrs) + 1)])
    assert [len(m["lrs"]) for m in full.members[1:]] == [STEPS // 2, STEPS]
    for m in full.members[1:]:  # every snapshot is taken right after the step at alpha_2
        assert m["lrs"][-1] == pytest.approx(0.001) and min(m["lrs"]) == pytest.approx(0.001)
    assert [m["start"] for m in full.members] == ["pretrained:0", "member:1", "member:2"]
    m3 = load_checkpoint(full.checkpoint_path(3))
    assert m3.meta.method == "fge" and m3.meta.member == 3 and m3.meta.seed == 2
    assert m3.meta.parent == full.members[1]["sha256"]  # a trajectory: from the previous snapshot
    assert not (tmp_path / "full" / "fge-state-3.safetensors").exists()

    real_save = common.save_state

    def dies_at_member_3(path, tensors, doc):
        if doc.get("member") == 3:
            raise KeyboardInterrupt
        real_save(path, tensors, doc)

    monkeypatch.setattr(trajectory, "save_state", dies_at_member_3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "part")
    assert len(read_run(tmp_path / "part").members) == 2
    assert (tmp_path / "part" / "fge-state-2.safetensors").exists()  # momentum kept for the rerun
    monkeypatch.setattr(trajectory, "save_state", real_save)
    resumed = train(cfg, tmp_path / "part")
    assert [m["sha256"] for m in resumed.members] == [m["sha256"] for m in full.members]

    for f in (tmp_path / "part").glob("member-2.*"):  # a gap: member 3 continued from member 2
        f.unlink()
    with pytest.raises(UserError, match="lacks member 2 but holds member 3.*--overwrite"):
        train(cfg, tmp_path / "part")


# ----------------------------------------------------------------------------- cSGLD


def test_csgld_noise_has_the_scale_of_its_formula():
    lr, temp, n = 0.04, 2.0, 4000
    p = torch.zeros(200_000)
    grads = [torch.zeros_like(p)]
    gen = torch.Generator().manual_seed(0)
    csgld.csgld_update_([p], grads, lr=lr, wd=0.0, sampling=True, temperature=temp, n_data=n,
                        generator=gen)
    expected = math.sqrt(2 * lr * temp / n)
    assert float(p.std()) == pytest.approx(expected, rel=0.01)
    assert abs(float(p.mean())) < 4 * expected / math.sqrt(len(p))
    q = torch.ones(10)  # exploration: a plain SGD step, no noise; wd is the prior's drift
    csgld.csgld_update_([q], [torch.full((10,), 0.5)], lr=0.1, wd=0.1, sampling=False,
                        temperature=temp, n_data=n, generator=gen)
    assert torch.allclose(q, torch.full((10,), 1 - 0.1 * (0.5 + 0.1)))


def test_csgld_leaves_frozen_parameters_alone():
    net = _tiny_net()
    net[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = csgld.CSGLDConfig(cycle_epochs=1, lr=0.1, exploration=0.0)  # every step samples
    traj = csgld._CSGLDTrajectory(net, SimpleNamespace(wd=0.1), cfg, cycle=10, n_data=100)
    gen = torch.Generator().manual_seed(0)
    traj.segment(0)(torch.randn(8, 3, generator=gen), torch.randint(0, 2, (8,), generator=gen), 2)
    assert torch.equal(net[0].weight, before["0.weight"])  # no weight decay, no noise
    for k in ("0.bias", "2.weight", "2.bias"):
        assert not torch.equal(net.state_dict()[k], before[k]), k


def test_csgld_step_size_is_a_cosine_per_cycle_with_a_sampling_tail():
    cycle, a0 = 10, 0.2
    lrs = [csgld.csgld_lr(k, cycle, a0) for k in range(1, 2 * cycle + 1)]
    assert lrs[0] == pytest.approx(a0) and lrs[cycle] == pytest.approx(a0)  # restarts
    assert lrs[5] == pytest.approx(a0 / 2)
    assert np.all(np.diff(lrs[:cycle]) < 0)
    stage = [csgld.is_sampling(k, cycle, 0.8) for k in range(1, cycle + 1)]
    assert stage == [False] * 8 + [True] * 2


# ----------------------------------------------------------------------------- SWAG


def test_swag_moments_mean_variance_and_zero_scale_sample():
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(7, generator=gen, dtype=torch.float64) for _ in range(5)]
    ws[2][3] = ws[0][3] = ws[1][3] = ws[3][3] = ws[4][3] = 1.5  # a constant coordinate
    m = swag.SwagMoments(7, rank=3)
    for w in ws:
        m.collect(w)
    stack = torch.stack(ws)
    torch.testing.assert_close(m.mean, stack.mean(0))
    expected_var = torch.clamp((stack ** 2).mean(0) - stack.mean(0) ** 2, min=1e-30)
    torch.testing.assert_close(m.variance(), expected_var)
    assert m.variance()[3] >= 0  # rounding cannot make it negative
    running = [stack[: i + 1].mean(0) for i in range(5)]
    torch.testing.assert_close(m.deviations.double(), torch.stack([ws[i] - running[i] for i in (2, 3, 4)]),
                               rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(m.sample(0.0, generator=gen), m.mean)
    assert not torch.equal(m.sample(0.5, generator=gen), m.mean)


def test_swag_samples_have_the_implemented_covariance():
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    var = torch.tensor([0.04, 0.09, 0.01], dtype=torch.float64)
    dev = torch.tensor([[0.3, -0.1, 0.2], [-0.2, 0.4, 0.1], [0.1, 0.1, -0.3]])  # (R' = 3, P = 3)
    m = swag.SwagMoments.from_tensors({"mean": mean, "sq_mean": var + mean ** 2, "deviations": dev},
                                      rank=3, count=10)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([m.sample(0.5, generator=gen) for _ in range(20_000)])
    d = dev.double()
    expected = 0.5 * (torch.diag(var) + d.T @ d / (3 - 1))  # s (diag + D D^T / (R' - 1)), s = 0.5
    empirical = torch.cov(draws.T)
    tol = 0.04 * float(expected.diagonal().max())
    assert torch.allclose(empirical, expected, atol=tol), (empirical, expected)
    assert not torch.allclose(empirical, 0.5 * (torch.diag(var) + d.T @ d / 3), atol=tol)  # R', not R' - 1
    assert torch.allclose(draws.mean(0), mean, atol=0.01)
    twice = torch.stack([m.sample(1.0, generator=gen) for _ in range(20_000)])
    assert torch.allclose(torch.cov(twice.T), 2 * expected, atol=2 * tol)  # s scales the covariance


def test_swag_collects_exactly_c_times_per_epoch():
    assert swag.collection_steps(16, 3) == [5, 11, 16]  # round(16/3), round(32/3), 16
    assert swag.collection_steps(5, 2) == [3, 5] and swag.collection_steps(16, 16) == list(range(1, 17))
    assert swag.collection_steps(16, 1) == [16]
    with pytest.raises(UserError, match="--swag-collect 17 exceeds the 16 batches"):
        swag.collection_steps(16, 17)
    cfg = swag.SWAGConfig(epochs=1, lr=0.1, collect_per_epoch=3, schedule="cyclic", min_lr=0.001)
    with pytest.raises(UserError, match="collects 1 weight vector .* needs at least 2"):
        swag.SWAGConfig(epochs=1, lr=0.1)  # one model has no spread: every sample would be it
    points = [5, 11, 16]
    assert [swag.swa_lr(s, points, cfg) for s in points] == pytest.approx([0.001] * 3)  # low at collection
    assert swag.swa_lr(6, points, cfg) == pytest.approx(0.1 - (0.1 - 0.001) / 6)  # restarts after it


def test_swag_run_reuses_its_saved_moments(pre, tmp_path, monkeypatch):
    cfg = RunConfig.from_flat("swag", (pre,), cycle_epochs=5, cycle_lr=0.02, swag_collect=3, swag_rank=3, **TINY)
    run = train(cfg, tmp_path / "r")
    state = RunDir(tmp_path / "r").state_path("swag")
    assert state.exists()
    first = load_checkpoint(run.checkpoint_path(1)).model
    second = load_checkpoint(run.checkpoint_path(2)).model
    assert not torch.equal(first.features[0][1].running_mean, second.features[0][1].running_mean)
    assert run.members[1]["collected"] == 5 * 3 and run.members[1]["rank"] == 3  # 3 per epoch of 16
    for f in (tmp_path / "r").glob("member-3*"):
        f.unlink()
    monkeypatch.setattr(swag, "collect", lambda *a, **k: pytest.fail("moments collected again"))
    again = train(cfg, tmp_path / "r")
    assert again.members[2]["sha256"] == run.members[2]["sha256"]

    too_many = RunConfig.from_flat("swag", (pre,), cycle_epochs=1, cycle_lr=0.02, swag_collect=STEPS + 1, **TINY)
    with pytest.raises(UserError, match="exceeds the 16 batches"):  # refused before member 1
        train(too_many, tmp_path / "many")
    assert not (tmp_path / "many" / "member-1.safetensors").exists()


# ----------------------------------------------------------------------------- KFAC-Laplace


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def test_kfac_factors_are_the_input_and_gradient_second_moments():
    net, x = _tiny_net(), torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    factors = laplace.kfac_factors(net, x, batch_size=16, generator=torch.Generator().manual_seed(2))
    assert [f.name for f in factors] == ["0", "2"]
    x_aug = torch.cat([x, torch.ones(64, 1)], 1).double()
    torch.testing.assert_close(factors[0].A, x_aug.T @ x_aug / 64)
    assert factors[1].A.shape == (5, 5) and factors[1].G.shape == (2, 2)
    # G of the last layer: E[(p - onehot(y)) (p - onehot(y))^T] with y sampled from p
    assert torch.allclose(factors[1].G.sum(0), torch.zeros(2, dtype=torch.float64), atol=1e-6)


def test_kfac_G_is_the_second_moment_of_hand_computed_output_gradients():
    net, x = _tiny_net(), torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    factors = laplace.kfac_factors(net, x, batch_size=16, generator=torch.Generator().manual_seed(2))
    gen, labels = torch.Generator().manual_seed(2), []
    with torch.no_grad():  # the labels, drawn batch by batch from the model's own predictions
        for start in range(0, 64, 16):
            probs = torch.softmax(net(x[start:start + 16]).double(), -1)
            labels.append(torch.multinomial(probs, 1, generator=gen)[:, 0])
        y = torch.cat(labels)
        h = torch.tanh(net[0](x)).double()
        logits = net[2](h.float()).double()
    g2 = torch.softmax(logits, -1) - F.one_hot(y, 2).double()  # dCE/dlogits of every example
    g1 = (g2 @ net[2].weight.double()) * (1 - h ** 2)  # back through the head and the tanh
    torch.testing.assert_close(factors[1].G, g2.T @ g2 / 64, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(factors[0].G, g1.T @ g1 / 64, rtol=1e-5, atol=1e-8)
    h_aug = torch.cat([h, torch.ones(64, 1, dtype=torch.float64)], 1)
    torch.testing.assert_close(factors[1].A, h_aug.T @ h_aug / 64, rtol=1e-5, atol=1e-8)


def test_kfac_posterior_factors_on_known_numbers():
    f = laplace.KronFactors("x", torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64),
                            torch.tensor([[4.0, 0.5], [0.5, 1.0]], dtype=torch.float64))
    g_t, a_t = laplace.posterior_factors(f, n_data=9, prior_precision=4.0)  # sqrt(N) = 3, sqrt(tau) = 2
    torch.testing.assert_close(g_t, torch.tensor([[14.0, 1.5], [1.5, 5.0]], dtype=torch.float64))
    torch.testing.assert_close(a_t, torch.tensor([[8.0, 3.0], [3.0, 11.0]], dtype=torch.float64))


class _TokenNet(nn.Module):
    """A Linear on (B, T, C) tokens, then the head: the function of ``Conv1d(k=1)`` on (B, C, T)."""

    def __init__(self, lin: nn.Linear, head: nn.Linear) -> None:
        super().__init__()
        self.lin, self.head = lin, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.lin(x.transpose(1, 2))).transpose(1, 2).flatten(1))


def test_kfac_linear_on_tokens_has_the_factors_of_the_same_conv1d():
    torch.manual_seed(0)
    conv, lin, head = nn.Conv1d(3, 4, kernel_size=1), nn.Linear(3, 4), nn.Linear(4 * 5, 2)
    with torch.no_grad():
        lin.weight.copy_(conv.weight[:, :, 0])
        lin.bias.copy_(conv.bias)
    conv_net, token_net = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), head), _TokenNet(lin, head)
    x = torch.randn(64, 3, 5, generator=torch.Generator().manual_seed(1))  # (B, C, T = 5)
    torch.testing.assert_close(conv_net(x), token_net(x))
    by_conv = laplace.kfac_factors(conv_net, x, generator=torch.Generator().manual_seed(2))
    by_tokens = laplace.kfac_factors(token_net, x, generator=torch.Generator().manual_seed(2))
    assert [f.name for f in by_tokens] == ["lin", "head"]
    for a, b in zip(by_conv, by_tokens):
        torch.testing.assert_close(a.A, b.A, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(a.G, b.G, rtol=1e-5, atol=1e-9)  # G averaged over the T tokens


def test_kfac_conv1d_factor_uses_the_unfolded_patches():
    conv = nn.Conv1d(2, 3, kernel_size=3, padding=1, bias=False)
    x = torch.randn(5, 2, 6, generator=torch.Generator().manual_seed(0))
    net = nn.Sequential(conv, nn.Flatten(), nn.Linear(18, 2))
    f = laplace.kfac_factors(net, x, generator=torch.Generator().manual_seed(0))[0]
    padded = nn.functional.pad(x, (1, 1))
    patches = torch.stack([padded[:, :, t : t + 3].reshape(5, -1) for t in range(6)], 1)  # (B, T, C*k)
    expected = torch.einsum("bti,btj->ij", patches, patches).double() / 5
    # float32 sums in another order (im2col vs einsum): relative 1e-5, not float64 exactness
    torch.testing.assert_close(f.A, expected, rtol=1e-5, atol=1e-6)


def test_kfac_laplace_samples_have_the_kronecker_covariance():
    net = _tiny_net()
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    f = laplace.kfac_factors(net, x, generator=torch.Generator().manual_seed(2))[1]
    n, tau, scale = 64, 3.0, 0.7
    gen = torch.Generator().manual_seed(3)
    draws = torch.stack([laplace.sample_layer(f, n, tau, scale, generator=gen).reshape(-1)
                         for _ in range(20_000)])  # (S, out * in') in row-major order
    g_t, a_t = laplace.posterior_factors(f, n, tau)
    expected = scale * torch.kron(torch.linalg.inv(g_t), torch.linalg.inv(a_t))  # s scales the covariance
    empirical = draws.T @ draws / len(draws)
    assert torch.allclose(empirical, expected, atol=0.05 * float(expected.diagonal().max()))
    assert torch.allclose(draws.mean(0), torch.zeros(10, dtype=torch.float64),
                          atol=0.05 * float(expected.diagonal().max().sqrt()))
    # and sample_model moves weight and bias by exactly such a deviation
    model = laplace.sample_model(net, [f], n, tau, scale, generator=torch.Generator().manual_seed(4))
    delta = laplace.sample_layer(f, n, tau, scale, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(model[2].weight - net[2].weight, delta[:, :4].float())
    torch.testing.assert_close(model[2].bias - net[2].bias, delta[:, 4].float())
    torch.testing.assert_close(model[0].weight, net[0].weight)  # only the factored layer moved


# ----------------------------------------------------------------------------- SPRO


def test_spro_simplex_has_volume_and_samples_lie_inside(pre, tmp_path):
    cfg = RunConfig.from_flat("spro", (pre,), cycle_epochs=1, cycle_lr=0.02, spro_vertices=3, **TINY)
    run = train(cfg, tmp_path / "r")
    tensors, doc = common.load_state(RunDir(tmp_path / "r").state_path("spro"))
    assert doc["vertices"] == 3
    vertices = [tensors[f"vertex-{j}"] for j in range(3)]
    first = load_checkpoint(run.checkpoint_path(1)).model
    torch.testing.assert_close(vertices[0].double(), weight_vector(first))  # vertex 0 = member 1
    assert spro.simplex_volume(vertices) > 1e-4
    for m in run.members[1:]:
        w = weight_vector(load_checkpoint(run.checkpoint_path(m["index"])).model)
        coords, residual = spro.barycentric(w, vertices)
        assert residual < 1e-4 * float(w.norm())
        assert float(coords.min()) >= -1e-5 and float(coords.sum()) == pytest.approx(1.0)
        np.testing.assert_allclose(coords.numpy(), m["barycentric"], atol=1e-4)
    assert run.members[1]["barycentric"] != run.members[2]["barycentric"]


def test_spro_volume_term_pushes_the_new_vertex_to_a_larger_simplex():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    layout = ParamLayout.of(net)
    v0 = weight_vector(net).float()
    v1, new = v0 + 0.1 * torch.randn(8), v0 + 0.1 * torch.randn(8)
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))

    def grad(volume_reg: float) -> torch.Tensor:
        point = new.clone().requires_grad_(True)
        spro._spro_loss(net, layout, {}, [v0, v1, point], volume_reg, x, y,
                        torch.Generator().manual_seed(1)).backward()  # the same alpha for both
        return point.grad.double()

    with_reg, without = grad(0.5), grad(0.0)
    edges = torch.stack([v1 - v0, new - v0], 1).double()  # d/dv2 of 0.5 logdet(E^T E): E (E^T E)^-1 e2
    torch.testing.assert_close(with_reg - without, -0.5 * (edges @ torch.linalg.inv(edges.T @ edges))[:, 1],
                               rtol=1e-4, atol=1e-6)
    log_v = [float(spro.log_volume([v0, v1, new.double() - 0.05 * g])) for g in (with_reg, without)]
    assert log_v[0] > log_v[1] + 1e-3  # the same step with the regulariser grows the simplex


def test_spro_samples_are_uniform_on_the_simplex():
    n, gen = 4, torch.Generator().manual_seed(0)
    alphas = torch.stack([spro.uniform_weights(n, generator=gen) for _ in range(20_000)]).numpy()
    assert np.all(alphas >= 0) and np.allclose(alphas.sum(1), 1)
    sd = math.sqrt((n - 1) / (n ** 2 * (n + 1)))  # of Beta(1, n - 1)
    np.testing.assert_allclose(alphas.mean(0), 1 / n, atol=4 * sd / math.sqrt(len(alphas)))
    for i in range(n):  # Dirichlet(1, ..., 1) marginals are Beta(1, n - 1)
        assert stats.kstest(alphas[:, i], stats.beta(1, n - 1).cdf).pvalue > 1e-3, i
    assert stats.kstest(alphas[:, 0], stats.uniform(0, 1).cdf).pvalue < 1e-6  # the test has power


def test_simplex_volume_and_barycentric_coordinates_on_a_known_triangle():
    v = [torch.zeros(4, dtype=torch.float64), torch.tensor([2.0, 0, 0, 0], dtype=torch.float64),
         torch.tensor([0, 3.0, 0, 0], dtype=torch.float64)]
    assert spro.simplex_volume(v) == pytest.approx(3.0)  # 2 * 3 / 2
    assert spro.simplex_volume([v[0], v[1], 2 * v[1]]) == 0.0  # degenerate
    coords, residual = spro.barycentric(0.2 * v[0] + 0.5 * v[1] + 0.3 * v[2], v)
    torch.testing.assert_close(coords, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64))
    assert residual < 1e-12
    alpha = spro.uniform_weights(3, generator=torch.Generator().manual_seed(0))
    assert float(alpha.min()) >= 0 and float(alpha.sum()) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- configuration


def test_init_checkpoint_becomes_member_one_and_bad_settings_are_refused(pre, tmp_path):
    ft = tmp_path / "ft.safetensors"
    sha_pre = load_checkpoint(pre).sha256
    save_checkpoint(make_model(1), ft, meta(method="finetune", epochs=4, parent=sha_pre))
    cfg = RunConfig.from_flat("kfac-laplace", (), init=str(ft), laplace_prior_precision=200.0,
                              **{**TINY, "members": 2})
    run = train(cfg, tmp_path / "r")
    m1 = load_checkpoint(run.checkpoint_path(1))
    for k, v in load_checkpoint(ft).model.state_dict().items():
        assert torch.equal(m1.model.state_dict()[k], v), k
    assert m1.meta.method == "kfac-laplace" and m1.meta.parent == sha_pre and m1.meta.epochs == 4
    assert run.members[0]["start"] == "init" and run.members[1]["prior_precision"] == 200.0
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["config"]["init"]["sha256"] == load_checkpoint(ft).sha256
    assert read_run(tmp_path / "r").config.init == str(ft.resolve())

    with pytest.raises(UserError, match="spro needs --cycle-epochs"):
        RunConfig.from_flat("spro", (pre,), **TINY)
    with pytest.raises(UserError, match="--swag-rank applies to --method swag"):
        RunConfig.from_flat("fge", (pre,), cycle_epochs=1, cycle_lr=0.1, swag_rank=5, **TINY)
    with pytest.raises(UserError, match="--init applies"):
        RunConfig.from_flat("sse", (pre,), cycle_epochs=1, cycle_lr=0.1, init=str(ft), **TINY)
    with pytest.raises(UserError, match="--pretrained CHECKPOINT \\(or --init"):
        RunConfig.from_flat("swag", (), cycle_epochs=1, cycle_lr=0.1, **TINY)
    with pytest.raises(UserError, match="unknown --swag-schedule"):
        RunConfig.from_flat("swag", (pre,), cycle_epochs=1, cycle_lr=0.1, swag_schedule="step", **TINY)
    with pytest.raises(UserError, match="unknown method"):
        RunConfig.from_flat("laplace", (pre,), **TINY)
    with pytest.raises(UserError, match="csgld does not apply --optimizer, --amp"):
        RunConfig.from_flat("csgld", (pre,), cycle_epochs=1, cycle_lr=0.1, optimizer="adamw", amp=True, **TINY)
    with pytest.raises(UserError, match="spro does not apply --label-smoothing, --mixup, --cutmix, "
                                        "--grad-clip"):
        RunConfig.from_flat("spro", (pre,), cycle_epochs=1, cycle_lr=0.1, label_smoothing=0.1, mixup=0.2,
                            cutmix=1.0, grad_clip=5.0, **TINY)
    RunConfig.from_flat("fge", (pre,), cycle_epochs=1, cycle_lr=0.1, optimizer="adamw", label_smoothing=0.1,
                        grad_clip=5.0, **TINY)  # FGE's (and SWAG's) steps apply the recipe


def test_local_methods_refuse_more_than_one_process(pre, tmp_path):
    cfg = RunConfig.from_flat("swag", (pre,), cycle_epochs=2, cycle_lr=0.02, **TINY)
    group = Group(1, 2, lambda: pytest.fail("waited in a barrier"))
    with pytest.raises(UserError, match="swag trains on one process.*without torchrun"):
        train(cfg, tmp_path / "r", group=group)
    assert not (tmp_path / "r").exists()
