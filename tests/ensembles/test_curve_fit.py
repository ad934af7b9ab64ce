"""Fitting curves between checkpoints (#20): on a loss known in closed form the fitted curve
avoids the straight line's barrier; a killed fit resumes to bends bit-identical to an
uninterrupted one; a finished fit is read back, one of other settings refused."""

from __future__ import annotations

import pytest
import torch
from curve_models import LINE_PEAK, LOWEST_PEAK, Point, ring

import landscape
from ensembles.curves import CURVE_FILE, STATE_FILE, _Trainer, fit_curve
from ensembles.training import TrainConfig
from landscape import UserError, load_checkpoint
from landscape.assets.modules import as_checkpoint
from landscape.surfaces.curve_files import load_curve
from landscape.surfaces.curves import evaluate_curve
from landscape.surfaces.paths import PathConfig, interpolate

RING = landscape.Data(train=(torch.zeros(256, 1), torch.zeros(256, dtype=torch.long)),
                      test=(torch.zeros(8, 1), torch.zeros(8, dtype=torch.long)), name="ring", num_classes=2)


@pytest.mark.parametrize("kind, bends, most", [("bezier", 1, 0.03), ("polychain", 3, 0.05)])
def test_on_a_ring_the_curve_avoids_the_lines_barrier(tmp_path, kind, bends, most):
    a = as_checkpoint(Point(-1, 0), num_classes=2, name="A")
    b = as_checkpoint(Point(1, 0), num_classes=2, name="B")
    fit = fit_curve(a, b, tmp_path / kind, kind=kind, bends=bends, data=RING, loss=ring,
                    config=TrainConfig(epochs=30, lr=0.02, wd=0.0, batch_size=32, seed=0))
    cfg = PathConfig(points=101, loss=ring, splits=("train",))
    curve = evaluate_curve(fit.curve, out=tmp_path / kind / "curve.h5", config=cfg, data=RING)
    line = interpolate([a, b], out=tmp_path / kind / "line.h5", config=cfg, data=RING)
    assert line.curve(0, "train", "loss").max() == pytest.approx(LINE_PEAK, abs=1e-6)  # at the origin
    peak = curve.curve(0, "train", "loss").max()
    assert LOWEST_PEAK <= peak < most, peak  # close to the zero-loss arc, far below the line's 1
    assert curve.curve(0, "train", "loss")[[0, -1]] == pytest.approx([0.0, 0.0], abs=1e-9)  # the ends are fixed
    assert fit.losses[-1] < fit.losses[0]


def _pair(three_ckpts):
    return load_checkpoint(three_ckpts[0]), load_checkpoint(three_ckpts[2])


CONFIG = TrainConfig(epochs=3, lr=0.05, batch_size=256, seed=4)


def test_a_killed_fit_resumes_to_bit_identical_bends(three_ckpts, tmp_path, monkeypatch):
    a, b = _pair(three_ckpts)
    whole = fit_curve(a, b, tmp_path / "whole", config=CONFIG, kind="polychain", bends=2)
    save = _Trainer.save

    def killed_after_two(self, path, settings, epoch, losses):
        save(self, path, settings, epoch, losses)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(_Trainer, "save", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        fit_curve(a, b, tmp_path / "killed", config=CONFIG, kind="polychain", bends=2)
    assert (tmp_path / "killed" / STATE_FILE).exists() and not (tmp_path / "killed" / CURVE_FILE).exists()
    monkeypatch.undo()
    epochs = []
    monkeypatch.setattr(_Trainer, "epoch", lambda self, e, batches, f=_Trainer.epoch: epochs.append(e) or f(self, e, batches))
    resumed = fit_curve(a, b, tmp_path / "killed", config=CONFIG, kind="polychain", bends=2)
    assert epochs == [3]  # only the epoch that was left
    assert resumed.losses == pytest.approx(whole.losses, abs=0)
    for x, y in zip(whole.curve.bends, resumed.curve.bends):
        sx, sy = x.model.state_dict(), y.model.state_dict()
        assert all(torch.equal(sx[k], sy[k]) for k in sx)
    assert (tmp_path / "killed" / "bend-1.safetensors").exists()
    # a kill after the curve file but before a bend file: the bend file is written on the next call
    (tmp_path / "killed" / "bend-2.safetensors").unlink()
    fit_curve(a, b, tmp_path / "killed", config=CONFIG, kind="polychain", bends=2)
    assert load_checkpoint(tmp_path / "killed" / "bend-2.safetensors").meta.method == "curve-bend"


def test_a_finished_fit_is_read_back_and_other_settings_refused(three_ckpts, tmp_path, monkeypatch):
    a, b = _pair(three_ckpts)
    first = fit_curve(a, b, tmp_path / "c", config=TrainConfig(epochs=1, lr=0.05, batch_size=256))
    monkeypatch.setattr(_Trainer, "epoch", lambda *args: pytest.fail("a finished fit trained again"))
    again = fit_curve(a, b, tmp_path / "c", config=TrainConfig(epochs=1, lr=0.05, batch_size=256))
    assert again.losses == first.losses and again.curve.kind == "bezier"
    with pytest.raises(UserError, match="other settings; pass --overwrite"):
        fit_curve(a, b, tmp_path / "c", config=TrainConfig(epochs=1, lr=0.1, batch_size=256))
    monkeypatch.undo()
    redone = fit_curve(a, b, tmp_path / "c", config=TrainConfig(epochs=1, lr=0.1, batch_size=256), overwrite=True)
    assert load_curve(redone.path).record["lr"] == 0.1


def test_a_curve_is_fitted_with_the_plain_recipe_and_checked_inputs(three_ckpts, tmp_path):
    a, b = _pair(three_ckpts)
    with pytest.raises(UserError, match="plain recipe"):
        fit_curve(a, b, tmp_path / "m", config=TrainConfig(epochs=1, lr=0.1, mixup=0.2))
    with pytest.raises(UserError, match="bends must be"):
        fit_curve(a, b, tmp_path / "m", config=CONFIG, bends=0)
    with pytest.raises(UserError, match="unknown curve kind"):
        fit_curve(a, b, tmp_path / "m", config=CONFIG, kind="spline")
    from landscape import create_model

    with pytest.raises(UserError, match="width|shape|arch"):
        fit_curve(a, as_checkpoint(create_model("mnist1d_cnn", 10, width=8), dataset="mnist1d"), tmp_path / "m", config=CONFIG)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / STATE_FILE).write_bytes(b"not a state")
    with pytest.raises(UserError, match="not a readable curve training state"):
        fit_curve(a, b, tmp_path / "d", config=CONFIG)
    assert not (tmp_path / "m").exists()
