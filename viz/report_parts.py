"""The HTML pieces of the demo's report: the task and its criteria, the claims with their
effects, the sweep, and tables whose numbers are rounded to what their intervals support."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from landscape.rounding import interval_digits as digits
from landscape.rounding import rounded as number

VERDICT_CLASS = {"supported": "holds", "contradicted": "fails", "inconclusive": "open"}


def e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def interval(iv: Mapping[str, float] | None, signed: bool = False, unit: str = "") -> str:
    """``87.3 [86.9, 87.7]`` from a ``{value, low, high}`` record; NaN bounds: the value alone."""
    if iv is None:
        return ""
    low, high = iv["low"], iv["high"]
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return number(iv["value"], 2, signed) + unit
    d = digits(low, high)
    return f"{number(iv['value'], d, signed)}{unit} [{number(low, d, signed)}, {number(high, d, signed)}]"


def task_html(task: Mapping[str, Any]) -> str:
    sizes = task["sizes"]
    rows = "".join(f"<tr><td class='l'>{e(c['criterion'])}</td><td class='l'>{e(c['measured'])}</td>"
                   f"<td class='{'holds' if c['met'] else 'fails'}'>{'met' if c['met'] else 'not met'}</td></tr>"
                   for c in task["criteria"])
    ood = f"; out of distribution: <b>{e(task['ood'])}</b>" if task.get("ood") else ""
    return (f"<h2>The task</h2><p>Target <b>{e(task['data'])}</b>: {sizes['train']} train, "
            f"{sizes['validation']} validation and {sizes['test']} test samples{ood}. "
            f"Every comparison is made from {task['sources']} independent pre-trained sources (replicates). "
            "The target was chosen by these criteria, fixed before any claim was looked at:</p>"
            f"<table><tr><th>criterion</th><th>measured here</th><th></th></tr>{rows}</table>")


def claims_html(claims: Sequence[Mapping[str, Any]]) -> str:
    if not claims:
        return ""
    items = []
    for c in claims:
        effects = "".join(f"<li class='{VERDICT_CLASS[x['verdict']]}'>{e(x['label'])}: <b>{e(_effect_text(x))}</b> <span class='ev'>"
                          f"({e(x['verdict'])}{e(_parts(x))})</span></li>" for x in c["effects"])
        items.append(f"<li class='{VERDICT_CLASS[c['verdict']]}'><b>{e(c['verdict'])}</b>: {e(c['claim'])}"
                     f"<ul>{effects}</ul></li>")
    return ("<h2>The paper's claims at this scale</h2><p class='sub'>Each claim is a measured effect with its "
            "95% interval: <i>supported</i> when the interval lies on the claimed side of zero, "
            "<i>contradicted</i> when it lies on the other, else <i>inconclusive</i>. Accuracy differences are "
            "paired (the same resampled test samples for both sides and every source); their interval is the "
            "union of the bootstrap over test samples and Student's t across the sources. Barrier differences "
            f"use the spread across pairs (Welch's t).</p><ul class='claims'>{''.join(items)}</ul>")


def _effect_text(x: Mapping[str, Any]) -> str:
    return interval(x, signed=True, unit=" pp")


def _parts(x: Mapping[str, Any]) -> str:
    d = digits(x["low"], x["high"])
    parts = [f"{name} [{number(b[0], d, True)}, {number(b[1], d, True)}]"
             for name, b in (("test-sample bootstrap", x.get("bootstrap")), ("across sources", x.get("replicates")))
             if b is not None]
    return "; " + "; ".join(parts) if parts else ""


def sweep_html(sweep: Mapping[str, Sequence[Mapping[str, Any]]], validation: str) -> str:
    if not sweep:
        return ""
    parts = [f"<h2>Cycle learning rates chosen on the validation split ({e(validation)})</h2>"
             "<p class='sub'>Full-size ensemble accuracy on the validation split, mean over the sources with "
             "Student's t interval; the optimal rate of each method is the most accurate one (ties: the smaller).</p>"]
    for method, rows in sweep.items():
        body = "".join(f"<tr><td>{r['cycle_lr']:g}</td><td class='l'>{e(r['regime'])}</td>"
                       f"<td>{interval(r['accuracy'])}</td><td>{r['member_accuracy']:.2f}</td></tr>" for r in rows)
        parts.append(f"<h3>{e(method)}</h3><table><tr><th>cycle LR</th><th>regime</th>"
                     f"<th>validation accuracy (%)</th><th>member accuracy (%)</th></tr>{body}</table>")
    return "".join(parts)


ROLE_COLS = ("accuracy", "soup_accuracy", "member_accuracy", "ood_accuracy", "ood_soup_accuracy", "nll", "ece",
             "diversity")


def roles_html(roles: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    parts = ["<p class='sub'>Each role: the mean over its sources, with the union of the test-sample bootstrap "
             "and Student's t across the sources (95%); NLL, ECE and diversity are plain means.</p>"]
    for role, rows in roles.items():
        cols = [c for c in ROLE_COLS if c in rows[0]]
        head = "".join(f"<th>{e(c)}</th>" for c in ("size", *cols))
        body = "".join("<tr>" + f"<td>{r['size']}</td>" + "".join(
            f"<td>{interval(r[c]) if isinstance(r[c], Mapping) else f'{r[c]:.4g}'}</td>" for c in cols) + "</tr>"
            for r in rows)
        parts.append(f"<h3>{e(role)}</h3><table><tr>{head}</tr>{body}</table>")
    return "\n".join(parts)


def barriers_html(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><td class='l'>{e(r['role'])}</td><td class='l'>{e(r['kind'])}</td><td>{r['pairs']}</td>"
                   f"<td>{interval(r['acc_barrier_test'])}</td><td>{r['different_basin']}</td></tr>" for r in rows)
    return ("<h3>Test accuracy barriers by role (pp, mean over pairs with Student's t)</h3><table><tr><th>role</th>"
            f"<th>pairs</th><th>n</th><th>barrier</th><th>in different basins</th></tr>{body}</table>")


PAIR_COLS = ("a", "b", "acc_barrier_test", "acc_barrier_train", "loss_barrier_test", "loss_barrier_train", "label",
             "distance", "a_from_pretrained", "b_from_pretrained")


def pairs_html(name: str, pairs: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{e(c)}</th>" for c in PAIR_COLS)
    rows = "".join("<tr>" + "".join(f"<td>{cell(c, p[c])}</td>" for c in PAIR_COLS) + "</tr>" for p in pairs)
    return f"<h3>{e(name)}: barriers</h3><table><tr>{head}</tr>{rows}</table>"


def cell(column: str, v: Any) -> str:
    """A table cell: barriers and accuracies in pp to 2 decimals (below 0.005: 0.00), other numbers
    to 4 significant digits."""
    if isinstance(v, float) and ("barrier" in column or "accuracy" in column):
        return number(v, 2)
    return f"{v:.4g}" if isinstance(v, float) else e(v)


def run_tables_html(ensembles: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    parts = []
    for run in ensembles:
        cols = [c for c in columns if c in run["table"][0]]
        head = "".join(f"<th>{e(c)}</th>" for c in cols)
        rows = "".join("<tr>" + "".join(f"<td>{cell(c, r[c])}</td>" for c in cols) + "</tr>" for r in run["table"])
        parts.append(f"<h4>{e(run['name'])} ({e(run['method'])})</h4><table><tr>{head}</tr>{rows}</table>")
    return "<details><summary>Every run's numbers</summary>" + "\n".join(parts) + "</details>"


def curve_html(report: Mapping[str, Any]) -> str:
    """The curve's barriers beside the straight line's, and what they say."""
    keys = sorted(set(report["line"]) | set(report["curve"]))
    rows = "".join(f"<tr><td class='l'>{e(k)}</td><td>{cell(k, report['line'].get(k))}</td>"
                   f"<td>{cell(k, report['curve'].get(k))}</td></tr>" for k in keys)
    run = f" of {e(report['run'])}" if report.get("run") else ""
    return (f"<h2>Mode connectivity: a curve between the two most distant members{run}</h2>"
            f"<p>A Bezier curve with {report.get('bends', 1)} bend, fitted with the endpoints fixed "
            f"(Garipov et al. 2018), against the straight line: <b>{e(report['label'])}</b> "
            f"(threshold {report['threshold']:g} pp of test accuracy).</p>"
            f"<table><tr><th>barrier</th><th>straight line</th><th>curve</th></tr>{rows}</table>")


def geometry_html(geometry: Mapping[str, Any]) -> str:
    """The sharpness table of each role and its per-block distances from pre-training."""
    rows = "".join(f"<tr><td class='l'>{e(g['role'])}</td><td>{g['members']}</td><td>{interval(g['top'])}</td>"
                   f"<td>{interval(g['trace'])}</td><td>{g['member_1_top']:.4g}</td></tr>" for g in geometry.get("sharpness", []))
    parts = ["<h2>Basin geometry (source 0)</h2>"]
    if rows:
        parts.append("<p class='sub'>Sharpness of the training loss (500 samples, BN in eval mode): the top Hessian "
                     "eigenvalue (Lanczos) and the trace (Hutchinson), mean over members 2..K with Student's t "
                     "across them; member 1, the shared fine-tune, beside.</p><table><tr><th>role</th><th>members</th>"
                     f"<th>top eigenvalue</th><th>trace</th><th>member 1's top eigenvalue</th></tr>{rows}</table>")
    dist = geometry.get("distances", {})
    if dist:
        blocks = list(dict.fromkeys(b for v in dist.values() for b in v))
        head = "".join(f"<th>{e(b)}</th>" for b in blocks)
        body = "".join(f"<tr><td class='l'>{e(role)}</td>" + "".join(f"<td>{v.get(b, float('nan')):.3g}</td>" for b in blocks)
                       + "</tr>" for role, v in dist.items())
        parts.append("<h3>L2 distance from the pre-trained checkpoint by block (mean over members 2..K)</h3>"
                     f"<table><tr><th>role</th>{head}</tr>{body}</table>")
    return "".join(parts)
