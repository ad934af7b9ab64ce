"""The demo's HTML report: one self-contained page (plotly.js inlined, no network) with the task
and its criteria, the paper's claims as measured effects with intervals and verdicts, the sweep
of cycle rates, the paper's figures with error bars, and tables of the numbers.

Pure rendering: everything arrives as result types (``Surface``, ``PathSet``) or plain
dictionaries of numbers; the caller writes the page and the PNGs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
from matplotlib.figure import Figure
from plotly.offline import get_plotlyjs

from landscape.results import PathSet, Surface
from viz.ensembles import plot_size_curves, plot_sweep_curves
from viz.paths import plot_line_and_curve, plot_paths
from viz.plane import plot_plane, plot_surface_3d
from viz.plane_html import plane_figure
from viz.basin import plot_block_distances, plot_sharpness
from viz.report_parts import (barriers_html, claims_html, curve_html, e, geometry_html, pairs_html, roles_html,
                              run_tables_html, sweep_html, task_html)
from viz.simplex import plot_simplex, simplex_figure
from viz.views import View, log_levels

_SIZE_METRICS = (("accuracy", "Ensemble accuracy (%)"), ("soup_accuracy", "Soup accuracy (%)"),
                 ("ood_accuracy", "OOD ensemble accuracy (%)"),
                 ("ood_soup_accuracy", "OOD soup accuracy (%)"))


@dataclass(frozen=True)
class ReportInput:
    """What the report shows.

    Attributes:
        summary: the records of ``ensembles.demo.summary.summarize``: ``task`` (the target, its
            sizes and criteria), ``claims`` (each with ``verdict`` and ``effects``), ``sweep``
            (per method, rows per cycle rate), ``roles`` (per role, rows per ensemble size of
            ``{value, low, high}`` records) and ``barriers`` (per role).
        ensembles: one dict per run: ``name``, ``method`` and ``table`` (records per ensemble
            size with accuracy, nll, ece, ...), shown folded.
        paths: run name -> (PathSet, list of pair records with barriers and labels).
        planes: name -> Surface (``curve``: the plane through a fitted curve's ends and bend).
        curve: a fitted curve: ``report`` (``CurveReport`` fields), ``curve`` and ``line``
            (``PathSet`` over t), ``xy`` ((K, 2) points of the curve in the curve plane).
        simplex: the simplex of three members (a ``simplex`` mode Surface).
        title, subtitle: page heading.
    """

    summary: Mapping[str, Any]
    ensembles: Sequence[Mapping[str, Any]] = ()
    paths: Mapping[str, tuple[PathSet, Sequence[Mapping[str, Any]]]] = field(default_factory=dict)
    planes: Mapping[str, Surface] = field(default_factory=dict)
    title: str = "Loss landscapes of ensembles in transfer learning"
    subtitle: str = ""
    validation: str = ""
    curve: Mapping[str, Any] | None = None  # report, curve and line (PathSets), xy (its plane coordinates)
    simplex: Surface | None = None


# ----------------------------------------------------------------------------- plotly figures


def size_figure(roles: Mapping[str, Sequence[Mapping[str, Any]]], metric: str, title: str) -> go.Figure:
    """One line per role against ensemble size, with its interval as error bars."""
    fig = go.Figure()
    for role, rows in roles.items():
        ivs = [r.get(metric) for r in rows]
        if all(isinstance(iv, Mapping) for iv in ivs) and ivs:
            v = [iv["value"] for iv in ivs]
            fig.add_trace(go.Scatter(
                x=[r["size"] for r in rows], y=v, mode="lines+markers", name=role,
                error_y=dict(type="data", symmetric=False, array=[_gap(iv["high"], iv["value"]) for iv in ivs],
                             arrayminus=[_gap(iv["value"], iv["low"]) for iv in ivs])))
    fig.update_layout(title=title, xaxis_title="ensemble size", template="plotly_white", height=380)
    return fig


def sweep_figure(sweep: Mapping[str, Sequence[Mapping[str, Any]]]) -> go.Figure:
    """Validation accuracy against the cycle rate, per method, with error bars."""
    fig = go.Figure()
    for method, rows in sweep.items():
        acc = [r["accuracy"] for r in rows]
        fig.add_trace(go.Scatter(
            x=[r["cycle_lr"] for r in rows], y=[a["value"] for a in acc], mode="lines+markers", name=method,
            text=[r["regime"] for r in rows],
            error_y=dict(type="data", symmetric=False, array=[_gap(a["high"], a["value"]) for a in acc],
                         arrayminus=[_gap(a["value"], a["low"]) for a in acc])))
    fig.update_layout(title="validation ensemble accuracy (%) by cycle learning rate", xaxis_type="log",
                      xaxis_title="cycle learning rate", template="plotly_white", height=380)
    return fig


def _gap(a: float | None, b: float | None) -> float:
    return 0.0 if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)) else float(a - b)


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
    figs = {}
    series = {}
    for role, rows in data.summary.get("roles", {}).items():
        series[role] = {}
        for m, _ in _SIZE_METRICS:
            ivs = [r.get(m) for r in rows]
            if ivs and all(isinstance(iv, Mapping) for iv in ivs):
                series[role].update({m: [iv["value"] for iv in ivs], f"{m}_low": [iv["low"] for iv in ivs],
                                     f"{m}_high": [iv["high"] for iv in ivs]})
    if series:
        figs["ensembles"] = plot_size_curves(series, [m for m, _ in _SIZE_METRICS])
    if data.summary.get("sweep"):
        figs["sweep"] = plot_sweep_curves(data.summary["sweep"])
    for name, (ps, _) in data.paths.items():
        figs[f"paths-{name.replace('/', '.')}"] = plot_paths(ps, metrics=("acc",))
    for name, surface in data.planes.items():
        figs[f"plane-{name}"] = plot_plane(surface, curves=_overlay(data, name))
        figs[f"plane3d-{name}"] = plot_surface_3d(surface)
    if data.curve:
        figs["curve"] = plot_line_and_curve(data.curve["line"], data.curve["curve"], metrics=("acc",))
    geometry = data.summary.get("geometry") or {}
    if geometry.get("members"):
        m = geometry["members"]
        figs["sharpness"] = plot_sharpness([f"{r['role']}: {r['name']}" for r in m], [r["top"] for r in m],
                                           [r["trace"] for r in m], [r["trace_stderr"] for r in m], [r["role"] for r in m])
    if geometry.get("distances"):
        dist = geometry["distances"]
        blocks = list(dict.fromkeys(b for v in dist.values() for b in v))
        figs["distances"] = plot_block_distances({"L2 distance from the pre-trained checkpoint (members 2..K)": (
            list(dist), blocks, np.array([[v.get(b, np.nan) for b in blocks] for v in dist.values()]))})
    if data.simplex is not None:
        figs["simplex"] = plot_simplex(data.simplex)
    return figs


def sharpness_figure(members: Sequence[Mapping[str, Any]]) -> go.Figure:
    """The top eigenvalue and the trace of every member, coloured by role."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("top Hessian eigenvalue", "Hessian trace (+-2 s.e.)"))
    for role in dict.fromkeys(r["role"] for r in members):
        rows = [r for r in members if r["role"] == role]
        names = [f"{role}: {r['name']}" for r in rows]
        fig.add_trace(go.Bar(x=names, y=[r["top"] for r in rows], name=role, legendgroup=role), row=1, col=1)
        fig.add_trace(go.Bar(x=names, y=[r["trace"] for r in rows], name=role, legendgroup=role, showlegend=False,
                             error_y=dict(type="data", array=[2 * (r["trace_stderr"] or 0) for r in rows])), row=1, col=2)
    fig.update_layout(template="plotly_white", height=420, title="Sharpness of the members")
    return fig


def _overlay(data: ReportInput, plane: str) -> dict[str, Any] | None:
    """The fitted curve's points, on the plane through its ends and its bend."""
    return {"bezier curve": data.curve["xy"]} if plane == "curve" and data.curve else None


def curve_figure(curve: Mapping[str, Any]) -> go.Figure:
    """Accuracy along t of the curve and of the straight line, per split."""
    fig = go.Figure()
    for ps, label, dash in ((curve["line"], "straight line", "dash"), (curve["curve"], "curve", "solid")):
        for split in ps.splits:
            if ps.has_acc:
                fig.add_trace(go.Scatter(x=ps.alpha, y=ps.curve(0, split, "acc"), mode="lines+markers",
                                         name=f"{label}, {split}", line=dict(dash=dash)))
    fig.update_layout(title="accuracy along the straight line and along the curve", xaxis_title="t",
                      yaxis_title="accuracy (%)", template="plotly_white", height=400)
    return fig


# ----------------------------------------------------------------------------- page


def render_report(data: ReportInput) -> str:
    """The whole page as one HTML string (works offline: plotly.js is inlined)."""
    summary = data.summary
    roles = summary.get("roles", {})
    body = [f"<h1>{e(data.title)}</h1>", f"<p class='sub'>{e(data.subtitle)}</p>"]
    if "task" in summary:
        body.append(task_html(summary["task"]))
    body.append(claims_html(summary.get("claims", [])))
    if summary.get("sweep"):
        body += [sweep_html(summary["sweep"], data.validation), _figure_div(sweep_figure(summary["sweep"]), "sweep")]
    if roles:
        body.append("<h2>Ensembles and soups by ensemble size</h2><div class='grid'>")
        shown = [(m, title) for m, title in _SIZE_METRICS if any(m in r for rows in roles.values() for r in rows)]
        body += [_figure_div(size_figure(roles, m, title), f"size-{i}") for i, (m, title) in enumerate(shown)]
        body += ["</div>", roles_html(roles)]
    body.append(run_tables_html(data.ensembles, _TABLE_COLS) if data.ensembles else "")
    body.append(barriers_html(summary.get("barriers", [])))
    if data.paths:
        body.append("<h2>Linear paths between members (source 0)</h2>")
        for i, (name, (ps, pairs)) in enumerate(data.paths.items()):
            body.append(_figure_div(paths_figure(name, ps), f"paths-{i}"))
            body.append(pairs_html(name, pairs))
    if data.curve:
        body += [curve_html(data.curve["report"]), _figure_div(curve_figure(data.curve), "curve")]
    geometry = summary.get("geometry") or {}
    if geometry.get("sharpness") or geometry.get("distances") or data.simplex is not None:
        body.append(geometry_html(geometry))
        if geometry.get("members"):
            body.append(_figure_div(sharpness_figure(geometry["members"]), "sharpness"))
        if data.simplex is not None:
            body.append(_figure_div(simplex_figure(data.simplex), "simplex"))
    if data.planes:
        body.append("<h2>Planes through three members (source 0), and through the curve's ends and bend</h2>")
        for i, (name, surface) in enumerate(data.planes.items()):
            body.append(_figure_div(plane_figure(surface, curves=_overlay(data, name)), f"plane-{i}"))
            body.append(_figure_div(surface_3d_figure(name, surface), f"plane3d-{i}"))
    return _PAGE.format(title=e(data.title), plotlyjs=get_plotlyjs(), body="\n".join(body))


def _figure_div(fig: go.Figure, div_id: str) -> str:
    return ("<div class='figure'>" + fig.to_html(full_html=False, include_plotlyjs=False,
                                                 div_id=div_id) + "</div>")


_TABLE_COLS = ("size", "accuracy", "nll", "ece", "brier", "member_accuracy", "diversity",
               "soup_accuracy", "ood_accuracy", "ood_soup_accuracy")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
.grid {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }}
td.l {{ text-align: left; }}
.sub {{ color: #666; }} .claims li {{ margin: 0.3em 0; }} .ev {{ color: #555; }}
li.holds > b, td.holds {{ color: #1a7f37; }} li.fails > b, td.fails {{ color: #b42318; }}
li.open > b {{ color: #9a6700; }}
</style>
<script type="text/javascript">{plotlyjs}</script>
</head><body>
{body}
</body></html>
"""
