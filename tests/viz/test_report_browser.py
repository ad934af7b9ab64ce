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
    claims = [{"claim": "StarSSE beats SSE", "holds": True, "evidence": "93% vs 92%"}]
    return ReportInput(ensembles, {"sse-semilocal": (paths, pairs)}, {"plane": surface}, claims)


def test_report_escapes_user_controlled_names():
    page = render_report(_fixture())
    assert "starsse-&lt;i&gt;x&lt;/i&gt;" in page and "<i>x</i>" not in page.split("<script")[0]


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
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length == 7")
        # every figure drew its plot: an SVG for 2-D figures, a WebGL scene for the 3-D one
        drawn = page.evaluate("""[...document.querySelectorAll('.js-plotly-plot')].map(
            d => d.querySelectorAll('.main-svg').length > 0 && d._fullData.length > 0)""")
        assert drawn == [True] * 7
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
