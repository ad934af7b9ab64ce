"""Names are drawn as written: a checkpoint, run or dataset name with ``$``, ``^``, ``_`` or ``\\``
is not read as mathtext (which fails the whole figure on ``$x^^2$`` and turns ``$x^2$`` into
maths), nor sent to LaTeX, and a legend label starting with ``_`` is not dropped."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from landscape.results import PathSet, PointInfo, Surface
from viz import (
    plot_barrier_matrix,
    plot_paths,
    plot_plane,
    plot_size_curves,
    plot_surface_3d,
    plot_sweep_heatmap,
    save_figure,
)

NAMES = ["a$b", "$x^2$", "c_d\\e", "$x^^2$", "_lead"]  # "$x^^2$" is not valid mathtext


def _texts(fig: Figure) -> list[Text]:
    """Every text of the figure as drawn (tick labels and legends are made at draw time)."""
    fig.savefig(io.BytesIO(), format="png")  # fails on a name parsed as broken mathtext
    return [t for t in fig.findobj(Text) if t.get_text()]


def _assert_literal(fig: Figure, shown: list[str]) -> None:
    """Each string in ``shown`` is the text of a drawn text object, which is not parsed."""
    texts = _texts(fig)
    for s in shown:
        found = [t for t in texts if t.get_text() == s]
        assert found, f"{s!r} is not drawn; texts: {[t.get_text() for t in texts]}"
        for t in found:
            assert t.get_parse_math() is False and t.get_usetex() is False, s


def _surface() -> Surface:
    x = y = np.linspace(-1.0, 1.0, 5)
    xx, yy = np.meshgrid(x, y)
    metrics = {s: {"loss": 0.1 + xx**2 + yy**2, "acc": 90 - xx**2} for s in ("train", "test")}
    points = {name: PointInfo(0.5 * np.cos(k), 0.5 * np.sin(k), 0.0) for k, name in enumerate(NAMES)}
    config = {"identity": {"mode": "three_point", "bn": "recompute", "dataset": "data$set_x^"}}
    return Surface(x=x, y=y, metrics=metrics, done=np.ones((5, 5), bool), points=points, config=config)


def _paths() -> PathSet:
    alpha = np.linspace(0, 1, 3)
    pairs = [(k, k + 1) for k in range(len(NAMES) - 1)]
    curves = np.vstack([alpha + k for k in range(len(pairs))])
    metrics = {s: {"loss": curves, "acc": 90 - curves} for s in ("train", "test")}
    return PathSet(alpha, pairs, list(NAMES), metrics, np.ones((len(pairs), 3), bool))


def test_plane_figures_show_checkpoint_and_dataset_names_as_written(tmp_path):
    fig = plot_plane(_surface())
    _assert_literal(fig, NAMES + ["data$set_x^, BN recompute, three-point"])  # the suptitle
    assert save_figure(fig, tmp_path / "plane.png").stat().st_size > 0
    fig3d = plot_surface_3d(_surface())
    _assert_literal(fig3d, [f" {n}" for n in NAMES])


def test_paths_figures_show_pair_names_as_written():
    ps = _paths()
    # "a$b -> $x^2$" and "$x^2$ -> c_d\e" would pair their dollars into maths
    _assert_literal(plot_paths(ps), [ps.pair_name(p) for p in range(len(ps.pairs))])
    matrix = np.arange(len(NAMES) ** 2, dtype=float).reshape(len(NAMES), len(NAMES))
    _assert_literal(plot_barrier_matrix(NAMES, matrix, title="barriers of $x^^2$"),
                    NAMES + ["barriers of $x^^2$"])


def test_ensemble_figures_show_run_names_as_written():
    series = {name: {"accuracy": [90.0 + k, 91.0 + k]} for k, name in enumerate(NAMES)}
    fig = plot_size_curves(series, ("accuracy",))
    _assert_literal(fig, NAMES)  # "_lead" too: an explicit legend keeps it
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == NAMES
    heat = plot_sweep_heatmap(np.ones((1, 1)), [1.0], [1.0], title="$x^^2$: accuracy",
                              row_label="a_b$", col_label="\\c$")
    _assert_literal(heat, ["$x^^2$: accuracy", "a_b$", "\\c$"])


@pytest.mark.parametrize("name", NAMES)
def test_a_name_takes_the_width_of_its_characters_as_written(name):
    """Ground truth for 'as written': the annotation is as wide as a plain text artist holding
    the same characters with mathtext off (mathtext would draw "$x^2$" as a narrower x²)."""
    surface = _surface()
    surface = Surface(x=surface.x, y=surface.y, metrics=surface.metrics, done=surface.done,
                      points={name: PointInfo(0.0, 0.0, 0.0)}, config=surface.config)
    fig = plot_plane(surface)
    drawn = next(t for t in _texts(fig) if t.get_text() == name)
    renderer = FigureCanvasAgg(fig).get_renderer()
    reference = Text(0, 0, name, fontsize=drawn.get_fontsize(), fontweight=drawn.get_fontweight(),
                     parse_math=False, figure=fig)
    width = reference.get_window_extent(renderer).width
    assert drawn.get_window_extent(renderer).width == pytest.approx(width, abs=1.5)
