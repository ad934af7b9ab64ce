"""The HTML report in a real headless browser: no console errors, every figure rendered, the
train/test switch works, nothing is requested outside file://. Needs Debian's chromium and the
playwright package (.ci/run installs both; playwright never downloads a browser here)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from landscape.results import PathSet, PointInfo, Surface
from viz.report import ReportInput, render_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-unsafe-swiftshader"]


def _fixture() -> ReportInput:
    g = np.linspace(-1, 1, 9)
    X, Y = np.meshgrid(g, g)
    loss = 0.05 + X**2 + 0.5 * Y**2
    metrics = {"train": {"loss": loss, "acc": 100 - 10 * loss},
               "test": {"loss": 1.2 * loss, "acc": 95 - 10 * loss}}
    surface = Surface(g, g, metrics, np.ones((9, 9), bool),
                      {"<b>m1</b>": PointInfo(0, 0, 0), "m2": PointInfo(0.5, 0, 0)},
                      {"identity": {"mode": "three_point", "bn": "recompute",
                                    "dataset": "mnist1d", "splits": ["train", "test"]}})
    alpha = np.linspace(0, 1, 5)
    pm = {s: {"loss": np.vstack([alpha * (1 - alpha)] * 2), "acc": np.vstack([99 - alpha] * 2)}
          for s in ("train", "test")}
    paths = PathSet(alpha, [(0, 1), (1, 2)], ["member-1", "member-2", "member-3"], pm,
                    np.ones((2, 5), bool), {"identity": {"splits": ["train", "test"]}})
    pairs = [dict(a="member-1", b="member-2", acc_barrier_test=0.1, acc_barrier_train=0.0,
                  loss_barrier_test=0.2, loss_barrier_train=0.1, label="same basin",
                  distance=1.5, a_from_pretrained=1.0, b_from_pretrained=1.2)] * 2
    table = [dict(size=k, accuracy=90.0 + k, soup_accuracy=90.5, ood_accuracy=60.0 + k,
                  ood_soup_accuracy=61.0, nll=0.3, ece=2.0, brier=0.1, member_accuracy=90.0,
                  diversity=10.0 * k) for k in (1, 2, 3)]
    ensembles = [{"name": "starsse-<i>x</i>", "method": "starsse", "table": table},
                 {"name": "local-de", "method": "local-de", "table": table}]
    iv = {"value": 91.0, "low": 90.4, "high": 91.6}
    effect = {"label": "starsse minus sse", "value": 0.6, "low": 0.2, "high": 1.0, "verdict": "supported",
              "text": "+0.6 pp [+0.2, +1.0]", "bootstrap": [0.3, 0.9], "replicates": [0.2, 1.0]}
    summary = {
        "task": {"data": "mnist1d-transfer", "sizes": {"train": 1000, "validation": 1000, "test": 10000},
                 "ood": "mnist1d-transfer-c", "sources": 3,
                 "criteria": [{"criterion": "at least 10 000 test samples", "measured": "10000", "met": True}]},
        "claims": [{"claim": "StarSSE beats SSE", "verdict": "supported", "effects": [effect],
                    "evidence": "starsse minus sse: +0.6 pp [+0.2, +1.0]"}],
        "sweep": {"sse": [{"cycle_lr": lr, "regime": r, "accuracy": iv, "member_accuracy": 90.0}
                          for lr, r in ((0.02, "local, optimal"), (0.7, "semi-local"))]},
        "roles": {"<b>sse-local</b>": [{"size": k, "accuracy": iv, "soup_accuracy": iv, "ood_accuracy": iv,
                                          "ood_soup_accuracy": iv, "nll": 0.3} for k in (1, 2)]},
        "barriers": [{"role": "sse-local", "kind": "consecutive", "pairs": 2, "different_basin": 0,
                      "acc_barrier_test": {"value": 0.004, "low": -0.001, "high": 0.009}}],
    }
    curve = {"report": {"run": "source-0/sse-lr0.7", "label": "connected by a curve", "threshold": 0.5, "bends": 1,
                        "line": {"acc_barrier_test": 12.3}, "curve": {"acc_barrier_test": 0.004}},
             "curve": paths, "line": paths, "xy": np.array([[0.0, 0.0], [0.2, 0.3], [0.5, 0.0]])}
    return ReportInput(summary, ensembles, {"sse-semilocal": (paths, pairs)}, {"curve": surface}, curve=curve)


def test_report_escapes_user_controlled_names():
    page = render_report(_fixture())
    assert "starsse-&lt;i&gt;x&lt;/i&gt;" in page and "<i>x</i>" not in page.split("<script")[0]
    assert "&lt;b&gt;sse-local&lt;/b&gt;" in page


def test_report_rounds_to_the_precision_of_each_interval():
    page = render_report(_fixture())
    assert "<td>91.0 [90.4, 91.6]</td>" in page  # +-0.6: one decimal
    assert "<td>0.004 [-0.001, 0.009]</td>" in page  # +-0.005: three
    assert "<td>0.10</td>" in page  # a pair's barrier: two decimals
    assert "<b>supported</b>: StarSSE beats SSE" in page and "+0.6 pp [+0.2, +1.0]" in page
    assert "<b>connected by a curve</b>" in page and "<td>12.30</td><td>0.00</td>" in page.replace("<td class='l'>", "")
    assert '"name":"bezier curve"' in page  # the curve drawn onto its plane


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                    reason="needs Debian's chromium (apt-get install chromium)")
def test_report_in_a_headless_browser(tmp_path):
    from playwright import sync_api  # in the test extra; CI must have it
    page_file = tmp_path / "report.html"
    page_file.write_text(render_report(_fixture()), encoding="utf-8")
    errors, requests = [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS,
                                     headless=True)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length == 9")
        # every figure drew its plot: an SVG for 2-D figures, a WebGL scene for the 3-D one
        drawn = page.evaluate("""[...document.querySelectorAll('.js-plotly-plot')].map(
            d => d.querySelectorAll('.main-svg').length > 0 && d._fullData.length > 0)""")
        assert drawn == [True] * 9
        page.screenshot(path=str(tmp_path / "top.png"), full_page=True)
        # the plane's switch: train loss is shown first; the "test error" button shows it
        visible = "document.getElementById('plane-0').data.map(t => t.visible)"
        before = page.evaluate(visible)
        assert before[0] is True and before[3] is False
        page.locator("#plane-0 .updatemenu-button", has_text="test error").click()
        page.wait_for_function("document.getElementById('plane-0').data[3].visible === true")
        after = page.evaluate(visible)
        assert after[0] is False and after[3] is True and after[-1] is True  # markers stay
        page.locator("#plane-0").screenshot(path=str(tmp_path / "plane-test-error.png"))
        browser.close()
    assert not errors, errors
    assert requests and all(u.startswith(("file://", "data:", "blob:")) for u in requests), \
        [u for u in requests if not u.startswith(("file://", "data:", "blob:"))]
    assert (tmp_path / "plane-test-error.png").stat().st_size > 0
