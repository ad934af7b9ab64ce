"""Tests for viz.plane on a synthetic paraboloid surface (analytic ground truth)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.contour import QuadContourSet
from matplotlib.figure import Figure

from landscape.results import PointInfo, Surface
from viz import log_levels, plane_figure, plot_plane, save_figure, write_html

G = 11


def make_surface(*, splits=("train", "test"), mode="three_point", nan_at=((0, 0), (3, 7)),
                 loss_fn=None) -> Surface:
    """Paraboloid loss around (1, 0.5); accuracy falls with the radius; a few NaN points."""
    x = np.linspace(-1.0, 3.0, G)
    y = np.linspace(-1.0, 2.0, G)
    xx, yy = np.meshgrid(x, y)  # (G, G), [j, i] = (y_j, x_i)
    r2 = (xx - 1.0) ** 2 + (yy - 0.5) ** 2
    metrics = {}
    for k, split in enumerate(splits):
        loss = 0.05 + (k + 1) * r2 if loss_fn is None else loss_fn(xx, yy)
        acc = 99.0 - 20.0 * np.sqrt(r2) - 2 * k
        metrics[split] = {"loss": loss.astype(np.float64), "acc": acc.astype(np.float64)}
    done = np.ones((G, G), dtype=bool)
    for j, i in nan_at:
        done[j, i] = False
        for m in metrics.values():
            m["loss"][j, i] = np.nan
            m["acc"][j, i] = np.nan
    points = {"A": PointInfo(0.0, 0.0, 0.0), "B": PointInfo(2.0, 0.0, 0.0),
              "C": PointInfo(0.7, 1.5, 0.0)}
    config = {"identity": {"mode": mode, "bn": "recompute", "dataset": "mnist1d"}}
    return Surface(x=x, y=y, metrics=metrics, done=done, points=points, config=config)


def panel_axes(fig: Figure):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def filled_contours(ax):
    return [c for c in ax.collections if isinstance(c, QuadContourSet) and c.filled]


# ----------------------------------------------------------------------------- log_levels


def test_log_levels_span_finite_range_and_are_geometric():
    z = np.array([[0.1, 1.0], [np.nan, np.inf]])
    lv = log_levels(z, 5)
    assert lv[0] == pytest.approx(0.1) and lv[-1] == pytest.approx(1.0)
    ratios = lv[1:] / lv[:-1]
    np.testing.assert_allclose(ratios, ratios[0])


def test_log_levels_constant_zero_and_empty_are_increasing_and_finite():
    for z in (np.full((3, 3), 2.5), np.zeros((3, 3)), np.full((3, 3), np.nan),
              np.array([-1.0, 0.0, 4.0])):
        lv = log_levels(z, 7)
        assert np.all(np.isfinite(lv)) and np.all(lv > 0) and np.all(np.diff(lv) > 0)
    lv = log_levels(np.full((3, 3), 2.5), 7)
    assert lv[0] < 2.5 < lv[-1]


def test_log_levels_rejects_fewer_than_two():
    with pytest.raises(ValueError, match="at least 2"):
        log_levels(np.ones(3), 1)


# ----------------------------------------------------------------------------- plot_plane


def test_plot_plane_two_panels_with_titles_labels_and_colorbars():
    fig = plot_plane(make_surface())
    panels = panel_axes(fig)
    assert [ax.get_title() for ax in panels] == ["train loss", "test error (%)"]
    assert len(panels) == 2
    for ax in panels:
        (cbar,) = [c for c in ax.child_axes if c.get_label() == "<colorbar>"]
        assert cbar.get_ylabel() == ax.get_title()
        assert ax.get_xlabel() == "x (weight-space distance along u)"
        assert ax.get_ylabel() == "y (weight-space distance along v)"
    assert "mnist1d" in fig.get_suptitle() and "recompute" in fig.get_suptitle()


def test_plot_plane_levels_are_log_spaced_over_the_data_range():
    s = make_surface()
    fig = plot_plane(s, levels=12)
    for ax, z in zip(panel_axes(fig), (s.loss("train"), s.error("test"))):
        (cs,) = filled_contours(ax)
        lv = np.asarray(cs.levels)
        assert len(lv) == 12 and np.all(np.diff(lv) > 0)
        ratios = lv[1:] / lv[:-1]
        np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)
        assert lv[0] == pytest.approx(np.nanmin(z)) and lv[-1] == pytest.approx(np.nanmax(z))


def test_plot_plane_marks_every_checkpoint():
    fig = plot_plane(make_surface())
    for ax in panel_axes(fig):
        assert sorted(t.get_text() for t in ax.texts) == ["A", "B", "C"]
        markers = {(float(line.get_xdata()[0]), float(line.get_ydata()[0])) for line in ax.lines}
        assert markers == {(0.0, 0.0), (2.0, 0.0), (0.7, 1.5)}


def test_plot_plane_random_mode_axis_labels():
    ax = panel_axes(plot_plane(make_surface(mode="random")))[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("direction 1", "direction 2")


def test_plot_plane_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="three_point"):
        plot_plane(make_surface(mode="spiral"))


def test_plot_plane_survives_inf_huge_zero_and_nan(tmp_path):
    def wild(xx, yy):
        z = (xx - 1.0) ** 2 + (yy - 0.5) ** 2
        z[5, 5] = 0.0  # a zero must not break the log scale
        z[-1, -1] = np.inf
        z[-1, 0] = 1e300
        return z

    fig = plot_plane(make_surface(loss_fn=wild))
    (cs,) = filled_contours(panel_axes(fig)[0])
    lv = np.asarray(cs.levels)
    assert np.all(np.isfinite(lv)) and np.all(lv > 0) and np.all(np.diff(lv) > 0)
    assert lv[-1] == pytest.approx(1e300)  # the largest finite value, not inf
    assert save_figure(fig, tmp_path / "wild.png").stat().st_size > 0


def test_plot_plane_constant_surface_has_increasing_levels():
    s = make_surface(loss_fn=lambda xx, yy: np.full_like(xx, 0.3), nan_at=())
    (cs,) = filled_contours(panel_axes(plot_plane(s))[0])
    assert np.all(np.diff(cs.levels) > 0)


def test_plot_plane_missing_splits_drop_panels():
    only_test = plot_plane(make_surface(splits=("test",)))
    assert [ax.get_title() for ax in panel_axes(only_test)] == ["test error (%)"]
    only_val = plot_plane(make_surface(splits=("val",)))
    assert [ax.get_title() for ax in panel_axes(only_val)] == ["val loss", "val error (%)"]
    with pytest.raises(ValueError, match="no metrics"):
        plot_plane(make_surface(splits=()))


def test_plot_plane_nothing_computed_yet_draws_empty_panels():
    s = make_surface(nan_at=[(j, i) for j in range(G) for i in range(G)])
    fig = plot_plane(s)
    for ax in panel_axes(fig):
        assert filled_contours(ax) == []
        assert "not computed yet" in [t.get_text() for t in ax.texts]


def test_plot_plane_leaves_pyplot_state_alone(tmp_path):
    before = plt.get_fignums()
    fig = plot_plane(make_surface())
    assert plt.get_fignums() == before
    out = save_figure(fig, tmp_path / "sub" / "plane.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == before


# ----------------------------------------------------------------------------- plotly


def contours(fig):
    return [t for t in fig.data if t.type == "contour"]


def test_plane_figure_views_and_buttons():
    fig = plane_figure(make_surface())
    names = [t.name for t in contours(fig)]
    assert names == ["train loss", "train error", "test loss", "test error"]
    assert [t.visible for t in contours(fig)] == [True, False, False, False]
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == names
    kinds = [t.type for t in fig.data]
    for button in menu.buttons:
        visible = button.args[0]["visible"]
        assert len(visible) == len(fig.data)
        shown = [fig.data[k].name for k, v in enumerate(visible) if v and kinds[k] == "contour"]
        assert shown == [button.label]  # exactly one contour, the button's own
        assert all(v for k, v in enumerate(visible) if kinds[k] == "scatter")


def test_plane_figure_only_present_splits():
    fig = plane_figure(make_surface(splits=("test",)))
    assert [t.name for t in contours(fig)] == ["test loss", "test error"]


def test_plane_figure_hover_shows_real_values_and_colour_is_log10():
    s = make_surface()
    trace = contours(plane_figure(s))[0]  # train loss
    assert "%{text}" in trace.hovertemplate and "%{x" in trace.hovertemplate
    text = np.asarray(trace.text, dtype=object)
    z = np.asarray(trace.z, dtype=float)
    loss = s.loss("train")
    assert text[5, 5] == f"{loss[5, 5]:.4g}"
    assert text[0, 0] == "not computed" and np.isnan(z[0, 0])
    np.testing.assert_allclose(z[5, 5], np.log10(loss[5, 5]))


def test_plane_figure_checkpoints_and_title():
    fig = plane_figure(make_surface())
    (pts,) = [t for t in fig.data if t.type == "scatter"]
    assert list(pts.text) == ["A", "B", "C"] and "text" in pts.mode
    assert list(pts.x) == [0.0, 2.0, 0.7] and list(pts.y) == [0.0, 0.0, 1.5]
    assert "mnist1d" in fig.layout.title.text and "recompute" in fig.layout.title.text


def test_write_html_is_self_contained(tmp_path):
    out = write_html(plane_figure(make_surface()), tmp_path / "plane.html")
    html = out.read_text(encoding="utf-8")
    assert out.stat().st_size > 1_000_000  # the plotly.js bundle is inlined
    assert "plotly.js" in html.lower()
    # The bundle itself mentions CDN URLs (geo topojson defaults); what matters is that no
    # script is fetched from one.
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and not any("src=" in tag for tag in scripts)
    assert '"A"' in html and "train loss" in html


# ----------------------------------------------------------------------------- boundaries


def test_viz_imports_nothing_of_ours_but_result_types_and_rounding():
    ours = {"landscape", "ensembles", "viz", "cli"}
    for path in Path(__file__).resolve().parents[2].joinpath("viz").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for mod in mods:
                if mod.split(".")[0] in ours - {"viz"}:
                    assert mod in ("landscape.results", "landscape.rounding"), f"{path.name} imports {mod}"
                assert mod != "matplotlib.pyplot", f"{path.name} uses pyplot's global state"
