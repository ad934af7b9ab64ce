"""The demo's HTML report: one self-contained page (plotly.js inlined, no network) with the
paper's figures, tables of the numbers, and the paper's claims checked against them.

Pure rendering: everything arrives as result types (``Surface``, ``PathSet``) or plain
dictionaries of numbers; the caller writes the page and the PNGs.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
from matplotlib.figure import Figure
from plotly.offline import get_plotlyjs

from landscape.results import PathSet, Surface
from viz.ensembles import plot_size_curves
from viz.paths import plot_paths
from viz.plane import plot_plane, plot_surface_3d
from viz.plane_html import plane_figure
from viz.views import View, log_levels

_SIZE_METRICS = (("accuracy", "Ensemble accuracy (%)"), ("soup_accuracy", "Soup accuracy (%)"),
                 ("ood_accuracy", "OOD ensemble accuracy (%)"),
                 ("ood_soup_accuracy", "OOD soup accuracy (%)"))


@dataclass(frozen=True)
class ReportInput:
    """What the report shows.

    Attributes:
        ensembles: one dict per run: ``name``, ``method`` and ``table`` (records per ensemble
            size with accuracy, nll, ece, brier, member_accuracy, diversity, soup_accuracy,
            ood_* ...).
        paths: run name -> (PathSet, list of pair records with barriers and labels).
        planes: name -> Surface.
        claims: dicts with ``claim``, ``holds`` (bool) and ``evidence`` (text with numbers).
        title, subtitle: page heading.
    """

    ensembles: Sequence[Mapping[str, Any]]
    paths: Mapping[str, tuple[PathSet, Sequence[Mapping[str, Any]]]] = field(default_factory=dict)
    planes: Mapping[str, Surface] = field(default_factory=dict)
    claims: Sequence[Mapping[str, Any]] = field(default_factory=list)
    title: str = "Loss landscapes of ensembles in transfer learning"
    subtitle: str = ""


# ----------------------------------------------------------------------------- plotly figures


def size_figure(ensembles: Sequence[Mapping[str, Any]], metric: str, title: str) -> go.Figure:
    fig = go.Figure()
    for run in ensembles:
        values = [r.get(metric) for r in run["table"]]
        if any(v is not None for v in values):
            fig.add_trace(go.Scatter(x=[r["size"] for r in run["table"]], y=values,
                                     mode="lines+markers", name=run["name"]))
    fig.update_layout(title=title, xaxis_title="ensemble size", template="plotly_white",
                      height=380)
    return fig


def paths_figure(name: str, paths: PathSet) -> go.Figure:
    """Accuracy along alpha for every pair, with a train/test switch."""
    splits = paths.splits
    fig = go.Figure()
    for s, split in enumerate(splits):
        for p in range(len(paths.pairs)):
            fig.add_trace(go.Scatter(x=paths.alpha, y=paths.curve(p, split, "acc"),
                                     mode="lines+markers", name=paths.pair_name(p),
                                     visible=s == 0, legendgroup=paths.pair_name(p)))
    n = len(paths.pairs)
    buttons = [dict(label=f"{split} accuracy", method="update",
                    args=[{"visible": [k // n == s for k in range(n * len(splits))]}])
               for s, split in enumerate(splits)]
    fig.update_layout(title=f"{name}: accuracy along the linear path", xaxis_title="alpha",
                      yaxis_title="accuracy (%)", template="plotly_white", height=400,
                      updatemenus=[dict(type="buttons", direction="right", x=0, y=1.15,
                                        xanchor="left", buttons=buttons)])
    return fig


def surface_3d_figure(name: str, surface: Surface) -> go.Figure:
    """3-D surfaces of train loss and test error (log10 heights), with a switch."""
    views = [View(s, m) for s in surface.splits for m in ("loss", "error")]
    fig = go.Figure()
    for i, view in enumerate(views):
        z = view.values(surface)
        lv = log_levels(z, 2)
        fig.add_trace(go.Surface(x=surface.x, y=surface.y,
                                 z=np.log10(np.clip(z, lv[0], lv[-1])), name=view.name,
                                 visible=i == 0, colorscale="Viridis", showscale=False,
                                 text=np.vectorize(lambda v: f"{v:.4g}")(z),
                                 hovertemplate="x=%{x:.3g}<br>y=%{y:.3g}<br>"
                                 + view.title + "=%{text}<extra></extra>"))
    buttons = [dict(label=v.name, method="update",
                    args=[{"visible": [k == i for k in range(len(views))]}])
               for i, v in enumerate(views)]
    fig.update_layout(title=f"{name}: 3-D view (height: log10 of the value)", height=520,
                      scene=dict(xaxis_title="x", yaxis_title="y", zaxis_title="log10"),
                      updatemenus=[dict(type="buttons", direction="right", x=0, y=1.1,
                                        xanchor="left", buttons=buttons)])
    return fig


# ----------------------------------------------------------------------------- static figures


def static_figures(data: ReportInput) -> dict[str, Figure]:
    """A PNG-ready matplotlib figure for every figure of the page, by file stem."""
    series = {r["name"]: {m: [row.get(m) for row in r["table"] if row.get(m) is not None]
                          for m, _ in _SIZE_METRICS} for r in data.ensembles}
    figs = {"ensembles": plot_size_curves(series, [m for m, _ in _SIZE_METRICS])}
    for name, (ps, _) in data.paths.items():
        figs[f"paths-{name}"] = plot_paths(ps, metrics=("acc",))
    for name, surface in data.planes.items():
        figs[f"plane-{name}"] = plot_plane(surface)
        figs[f"plane3d-{name}"] = plot_surface_3d(surface)
    return figs


# ----------------------------------------------------------------------------- page


def render_report(data: ReportInput) -> str:
    """The whole page as one HTML string (works offline: plotly.js is inlined)."""
    figures: list[tuple[str, go.Figure]] = [
        (title, size_figure(data.ensembles, m, title)) for m, title in _SIZE_METRICS]
    body = [f"<h1>{_e(data.title)}</h1>", f"<p class='sub'>{_e(data.subtitle)}</p>",
            _claims_html(data.claims), "<h2>Ensembles and soups by ensemble size</h2>",
            "<div class='grid'>"]
    body += [_figure_div(fig, f"size-{i}") for i, (_, fig) in enumerate(figures)]
    body.append("</div>")
    body.append(_ensemble_tables(data.ensembles))
    if data.paths:
        body.append("<h2>Linear paths between members</h2>")
        for i, (name, (ps, pairs)) in enumerate(data.paths.items()):
            body.append(_figure_div(paths_figure(name, ps), f"paths-{i}"))
            body.append(_pairs_table(name, pairs))
    if data.planes:
        body.append("<h2>Planes through three members</h2>")
        for i, (name, surface) in enumerate(data.planes.items()):
            body.append(_figure_div(plane_figure(surface), f"plane-{i}"))
            body.append(_figure_div(surface_3d_figure(name, surface), f"plane3d-{i}"))
    return _PAGE.format(title=_e(data.title), plotlyjs=get_plotlyjs(), body="\n".join(body))


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _figure_div(fig: go.Figure, div_id: str) -> str:
    return ("<div class='figure'>" + fig.to_html(full_html=False, include_plotlyjs=False,
                                                 div_id=div_id) + "</div>")


def _claims_html(claims: Sequence[Mapping[str, Any]]) -> str:
    if not claims:
        return ""
    rows = "".join(
        f"<li class='{'holds' if c['holds'] else 'fails'}'><b>{'holds' if c['holds'] else 'does not hold'}"
        f"</b>: {_e(c['claim'])} <span class='ev'>({_e(c['evidence'])})</span></li>"
        for c in claims)
    return f"<h2>The paper's claims at this scale</h2><ul class='claims'>{rows}</ul>"


_TABLE_COLS = ("size", "accuracy", "nll", "ece", "brier", "member_accuracy", "diversity",
               "soup_accuracy", "ood_accuracy", "ood_soup_accuracy")


def _ensemble_tables(ensembles: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for run in ensembles:
        cols = [c for c in _TABLE_COLS if c in run["table"][0]]
        head = "".join(f"<th>{_e(c)}</th>" for c in cols)
        rows = "".join("<tr>" + "".join(f"<td>{_num(r[c])}</td>" for c in cols) + "</tr>"
                       for r in run["table"])
        parts.append(f"<h3>{_e(run['name'])} ({_e(run['method'])})</h3>"
                     f"<table><tr>{head}</tr>{rows}</table>")
    return "\n".join(parts)


_PAIR_COLS = ("a", "b", "acc_barrier_test", "acc_barrier_train", "loss_barrier_test",
              "loss_barrier_train", "label", "distance", "a_from_pretrained", "b_from_pretrained")


def _pairs_table(name: str, pairs: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in _PAIR_COLS)
    rows = "".join("<tr>" + "".join(f"<td>{_num(p[c])}</td>" for c in _PAIR_COLS) + "</tr>"
                   for p in pairs)
    return f"<h3>{_e(name)}: barriers</h3><table><tr>{head}</tr>{rows}</table>"


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else _e(v)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
.grid {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }}
.sub {{ color: #666; }} .claims li {{ margin: 0.3em 0; }} .ev {{ color: #555; }}
.holds b {{ color: #1a7f37; }} .fails b {{ color: #b42318; }}
</style>
<script type="text/javascript">{plotlyjs}</script>
</head><body>
{body}
</body></html>
"""
