"""Renderers of ensemble quality against size and of sweep heatmaps."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from viz import plot_size_curves, plot_sweep_heatmap


def test_size_curves_one_line_per_run_and_panel_per_metric():
    before = plt.get_fignums()
    series = {"local-de": {"accuracy": [90, 91, 92], "soup_accuracy": [90, 90.5, 91]},
              "starsse": {"accuracy": [90, 92, 93]}}
    fig = plot_size_curves(series, ("accuracy", "soup_accuracy", "ood_accuracy"))
    assert len(fig.axes) == 2  # no run has OOD numbers: no third panel
    acc_ax, soup_ax = fig.axes
    assert len(acc_ax.lines) == 2 and len(soup_ax.lines) == 1
    np.testing.assert_array_equal(acc_ax.lines[1].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(acc_ax.lines[1].get_ydata(), [90, 92, 93])
    assert plt.get_fignums() == before
    with pytest.raises(ValueError, match="none of the runs"):
        plot_size_curves(series, ("nll",))


def test_sweep_heatmap_annotates_values():
    values = np.array([[99.1, np.nan], [98.0, 97.5]])
    fig = plot_sweep_heatmap(values, [0.5, 2], [1, 4])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["99.10", "98.00", "97.50"]
    with pytest.raises(ValueError, match="shape"):
        plot_sweep_heatmap(values, [0.5], [1, 4])


def test_paths_and_barrier_matrix_renderers():
    from landscape.results import PathSet
    from viz import plot_barrier_matrix, plot_paths

    alpha = np.linspace(0, 1, 5)
    metrics = {s: {"loss": np.vstack([alpha, 1 - alpha]), "acc": np.vstack([90 + alpha, 95 - alpha])}
               for s in ("train", "test")}
    done = np.ones((2, 5), bool)
    done[1, 2] = False
    ps = PathSet(alpha, [(0, 1), (1, 2)], ["a", "b", "c"], metrics, done)
    fig = plot_paths(ps)
    assert len(fig.axes) == 4
    line = fig.axes[3].lines[1]  # test accuracy, pair b -> c
    assert line.get_label() == "b -> c"
    assert np.isnan(line.get_ydata()[2]) and line.get_ydata()[0] == 95
    m = np.array([[np.nan, 1.0, 2.0], [1.0, np.nan, 0.5], [2.0, 0.5, np.nan]])
    texts = [t.get_text() for t in plot_barrier_matrix(["a", "b", "c"], m).axes[0].texts]
    assert texts == ["1", "2", "1", "0.5", "2", "0.5"]


def test_diverged_points_are_flagged_and_still_render(tmp_path):
    from landscape.results import PointInfo, Surface
    from viz import plane_figure, plot_plane, save_figure, write_html

    g = np.linspace(-1, 1, 5)
    loss = np.ones((5, 5))
    loss[0, 0], loss[4, 4] = np.inf, np.nan
    done = np.ones((5, 5), bool)
    done[2, 2] = False
    loss[2, 2] = np.nan  # not computed: not a divergence
    s = Surface(g, g, {"train": {"loss": loss, "acc": np.full((5, 5), 50.0)},
                       "test": {"loss": loss, "acc": np.full((5, 5), 50.0)}}, done,
                {"A": PointInfo(0, 0, 0)}, {"identity": {"mode": "random"}})
    assert s.diverged.sum() == 2 and s.diverged[0, 0] and not s.diverged[2, 2]
    assert save_figure(plot_plane(s), tmp_path / "p.png").stat().st_size > 0
    assert write_html(plane_figure(s), tmp_path / "p.html").stat().st_size > 0
