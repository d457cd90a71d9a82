"""The dashboard in a real headless browser (Debian's chromium driven by Playwright), against a
real API with one finished study and one failed study, no network beyond 127.0.0.1.

Screenshots go to ``$SRU_HPO_SCREENSHOTS`` (the README's come from there) or the test's folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import proc_env, wait_for
from tests.service.conftest import make_api, stop
from tests.service.test_e2e import wait_state

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SPACE = {"model": "sru", "params": {
    "phi_size": {"type": "quniform", "low": 16, "high": 32, "q": 16},
    "r_size": {"type": "quniform", "low": 0, "high": 8, "q": 8}, "out_size": 32,
    "alphas": {"type": "choice", "options": [[0.0, 0.5, 0.9], [0.0, 0.9, 0.99]]},
    "lr": {"type": "loguniform", "low": 3e-3, "high": 3e-2}, "batch_size": 64}}
FINISHED = {"name": "sru-digits", "model": "sru", "dataset": "digits", "space": SPACE,
            "n_trials": 12, "budget": {"epochs": 72}, "parallelism": 2, "trial_epochs": 6,
            "retrain_epochs": 8, "seed": 2,
            "scheduler": {"rule": "median", "warmup": 2, "min_trials": 3}}
COMPARISON = {"name": "families", "dataset": "digits", "variants": ["sru", "gru", "sru-iid"],
              "budget": {"epochs": 6}, "trial_epochs": 2, "retrain_epochs": 2,
              "retrain_seeds": 2, "parallelism": 2, "seed": 1}
FAILED = {"name": "paper-sru", "model": "sru", "dataset": "mnist", "space": "sru_mnist",
          "n_trials": 30, "parallelism": 2, "trial_epochs": 50, "retrain_epochs": 200}


@pytest.fixture(scope="module")
def site(mongo_url, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does)")
    tmp = tmp_path_factory.mktemp("dash")
    api = make_api(mongo_url, tmp)
    env = proc_env(api.env["SRU_HPO_MONGO_URL"], api.db_name, SRU_HPO_DOWNLOAD="0",
                   SRU_HPO_DATA_DIR=str(tmp / "no-mnist"))
    import subprocess
    import sys

    from tests.conftest import ROOT

    workers = [subprocess.Popen([sys.executable, "-m", "sru_hpo", "worker", "--device", "cpu",
                                 "--poll", "0.2"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        c = api.client()
        ok = c.post("/studies", json=FINISHED).json()["id"]
        bad = c.post("/studies", json=FAILED).json()["id"]
        cid = c.post("/comparisons", json=COMPARISON).json()["id"]
        assert wait_state(c, ok, ("completed", "failed"), 600)["state"] == "completed"
        assert wait_state(c, bad, ("completed", "failed"), 300)["state"] == "failed"
        wait_for(lambda: c.get(f"/studies/{bad}").json()["error_groups"], 60, "error groups")
        assert wait_for(lambda: (x := c.get(f"/comparisons/{cid}").json())["state"] != "running"
                        and x, 600, "the comparison ends")["state"] == "completed"
        yield {"api": api, "ok": ok, "bad": bad, "cid": cid, "shots": Path(os.environ.get(
            "SRU_HPO_SCREENSHOTS") or tmp)}
    finally:
        for w in workers:
            w.terminate()
            w.wait(60)
        stop(api.proc)


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, site):
    """A page that records console errors and every request, and refuses any request that
    would leave 127.0.0.1."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.errors, pg.hosts = [], set()
    pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))

    def guard(route):
        host = urlsplit(route.request.url).hostname
        pg.hosts.add(host)
        if host == "127.0.0.1":
            route.continue_()
        else:
            route.abort()

    pg.route("**/*", guard)
    yield pg
    assert pg.errors == []
    assert pg.hosts <= {"127.0.0.1"}, pg.hosts
    ctx.close()


def test_the_studies_page_lists_both(page, site):
    page.goto(site["api"].url + "/")
    page.wait_for_selector("#studies tbody tr")
    text = page.inner_text("#studies")
    assert site["ok"] in text and site["bad"] in text
    assert "completed" in text and "failed" in text
    page.screenshot(path=str(site["shots"] / "studies.png"), full_page=False)


def test_the_study_page_draws_every_trial_and_the_analysis(page, site):
    page.goto(f"{site['api'].url}/?study={site['ok']}")
    page.wait_for_selector("#chart-val .scatterlayer")
    n_traces = page.eval_on_selector("#chart-val", "el => el.data.length")
    assert n_traces == FINISHED["n_trials"]  # one validation curve per trial
    assert page.eval_on_selector_all("#trials tbody tr", "rows => rows.length") == FINISHED["n_trials"]
    page.wait_for_selector("#chart-importance .barlayer")  # importance (>= 10 finished trials)
    assert page.eval_on_selector("#chart-importance", "el => el.data[0].type") == "bar"
    page.wait_for_selector("#chart-parcoords .parcoords")
    assert page.eval_on_selector("#chart-parcoords", "el => el.data[0].type") == "parcoords"
    assert page.inner_text("#test-acc") not in ("", "–")  # the retrain's one test accuracy
    bar = page.locator("#budget-bar")  # a budgeted study shows its progress
    assert bar.get_attribute("max") == "72" and int(bar.get_attribute("value")) <= 72
    page.click("#trials tbody tr")  # a row opens the trial's curve and JSON
    page.wait_for_selector("#chart-trial .scatterlayer")
    page.screenshot(path=str(site["shots"] / "study.png"), full_page=True)


def test_a_failed_study_shows_why(page, site):
    page.goto(f"{site['api'].url}/?study={site['bad']}")
    page.wait_for_selector("#study-error")
    assert "MNIST is not in" in page.inner_text("#study-error")
    # the missing dataset is the host's fault: retried, and counted as infrastructure
    classes = page.inner_text("#failure-classes")
    assert "infrastructure" in classes and "host" in classes, classes


def test_the_compare_page_shows_both(page, site):
    page.goto(f"{site['api'].url}/?view=compare&ids={site['ok']},{site['bad']}")
    page.wait_for_selector("#compare tbody tr")
    text = page.inner_text("#compare")
    assert site["ok"] in text and site["bad"] in text
    page.wait_for_selector("#cmp-best .scatterlayer")
    page.screenshot(path=str(site["shots"] / "compare.png"), full_page=True)


def test_the_comparison_page_draws_every_variant(page, site):
    page.goto(f"{site['api'].url}/?view=comparisons")
    page.wait_for_selector("#comparisons tbody tr")
    assert "sru, gru, sru-iid" in page.inner_text("#comparisons")
    page.click(f"#comparisons a[href='/?comparison={site['cid']}']")
    page.wait_for_selector("#cmpx-anytime .scatterlayer")
    names = page.eval_on_selector("#cmpx-anytime", "el => el.data.map((t) => t.name)")
    assert names == COMPARISON["variants"]  # one anytime curve per variant
    assert page.eval_on_selector("#cmpx-anytime", "el => el._fullLayout.xaxis.title.text") == \
        "cumulative epochs"
    page.wait_for_selector("#cmpx-test .barlayer")
    bars = page.eval_on_selector("#cmpx-test", "el => ({x: el.data[0].x, e: el.data[0].error_y})")
    assert sorted(bars["x"]) == sorted(COMPARISON["variants"]) and bars["e"]["visible"]
    assert len(bars["e"]["array"]) == 3  # error bars: the sd over the two seeds
    rows = page.eval_on_selector_all("#comparison tbody tr", "rows => rows.map((r) => r.innerText)")
    assert len(rows) == 3 and all(" ± " in r for r in rows), rows
    assert "each seed tested once" in page.inner_text("#comparison-protocol")
    page.screenshot(path=str(site["shots"] / "comparison.png"), full_page=True)
    page.click("#comparison tbody a")  # a variant opens its study, which links back
    page.wait_for_selector("#seed-evals")
    assert page.inner_text("#seed-evals").count("checkpoint") == 2
    assert page.locator(f"a[href='/?comparison={site['cid']}']").count() == 1


def test_the_workers_page_and_offline_docs(page, site):
    page.goto(f"{site['api'].url}/?view=workers")
    page.wait_for_selector("#workers")
    page.goto(f"{site['api'].url}/docs")
    page.wait_for_selector(".swagger-ui .opblock")  # rendered with local assets only
    html = httpx.get(f"{site['api'].url}/docs").text + httpx.get(f"{site['api'].url}/redoc").text
    assert "http://" not in html.replace("http://127.0.0.1", "") and "https://" not in html


# -- files and terminal -----------------------------------------------------------------------
def test_report_writes_readable_files(site, tmp_path):
    import csv

    from PIL import Image

    from tests.service.test_cli_client import cli

    api = site["api"]
    out = tmp_path / "report"
    r = cli("report", site["ok"], "--out", str(out), "--api", api.url)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == FINISHED["n_trials"]
    assert {"phi_size", "r_size", "alphas", "lr", "best_val_acc", "error"} <= set(rows[0])
    long = list(csv.DictReader((out / "curves.csv").open()))
    assert {"tid", "kind", "epoch", "val_acc"} <= set(long[0]) and len(long) > FINISHED["n_trials"]
    import json

    assert json.loads((out / "study.json").read_text())["study"]["id"] == site["ok"]
    for png in ("curves.png", "best_so_far.png", "params.png", "importance.png"):
        w, h = Image.open(out / png).size
        assert w >= 600 and h >= 300, png
    assert httpx.get(f"{api.url}/studies/{site['ok']}/trials.csv").text.count("\n") == \
        FINISHED["n_trials"] + 1


def test_status_fits_80_columns_and_short_ids_work(site):
    from tests.service.test_cli_client import cli

    url = site["api"].url
    r = cli("status", "--api", url, env={**os.environ, "COLUMNS": "80"})
    assert r.returncode == 0
    assert all(len(line) <= 80 for line in r.stdout.splitlines()), r.stdout
    assert site["ok"] in r.stdout and site["bad"] in r.stdout  # whole ids
    r = cli("status", site["bad"][:5], "--api", url, env={**os.environ, "COLUMNS": "80"})
    assert r.returncode == 0 and "MNIST is not in" in r.stdout
    png = Path(site["shots"]) / "curves-cli.png"
    r = cli("curves", site["ok"][:6], "--png", str(png), "--api", url)
    assert r.returncode == 0 and png.stat().st_size > 10_000


# -- geometry: nothing overlaps, nothing is cut, no stray text (issue 21) ---------------------------
GEOMETRY = r"""() => {
  const out = [];
  const box = (n) => n.getBoundingClientRect();
  const inside = (a, b) => a.left >= b.left - 1 && a.right <= b.right + 1 &&
                           a.top >= b.top - 1 && a.bottom <= b.bottom + 1;
  const meet = (a, b) => a.width > 0 && b.width > 0 &&
    a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  for (const chart of document.querySelectorAll(".card .js-plotly-plot")) {
    const card = chart.closest(".card"), name = chart.id;
    for (const svg of chart.querySelectorAll(".main-svg")) {
      const s = box(svg), c = box(card);
      if (!inside(s, c)) out.push(`${name}: chart [${Math.round(s.left)}, ${Math.round(s.right)}] ` +
                                  `past its card [${Math.round(c.left)}, ${Math.round(c.right)}]`);
    }
    const titles = [...chart.querySelectorAll(".infolayer text[class$='title']")];
    const bar = chart.querySelector(".modebar");
    for (const t of titles) {
      if (bar && meet(box(bar), box(t))) out.push(`${name}: the toolbar covers "${t.textContent}"`);
      if (!inside(box(t), box(card))) out.push(`${name}: axis title "${t.textContent}" is cut`);
    }
    const labels = [...chart.querySelectorAll(".parcoords text.axis-title")];
    labels.forEach((a, i) => labels.slice(i + 1).forEach((b) => {
      if (meet(box(a), box(b))) out.push(`${name}: labels "${a.textContent}" and "${b.textContent}" overlap`);
    }));
    const layout = chart._fullLayout || {};
    for (const [key, axis] of Object.entries(layout)) {
      if (!/^[xy]axis\d*$/.test(key) || !axis || !axis.title) continue;
      const title = String(axis.title.text || "");
      if (/acc/.test(title) && (axis.range[0] < 0 || axis.range[1] > 1))
        out.push(`${name}: accuracy axis "${title}" spans ${axis.range}`);
      if (title === "epoch") {
        const top = Math.max(...(chart.data || []).flatMap((t) => t.x || []));
        const ticks = chart.querySelectorAll(".xaxislayer-above .xtick").length;
        if (ticks < Math.min(top, 5)) out.push(`${name}: ${ticks} epoch tick(s) for ${top} epochs`);
      }
    }
    for (const t of chart.data || [])
      if (t.type === "scatter" && t.x && t.x.length <= 5 && !String(t.mode || "markers").includes("markers"))
        out.push(`${name}: a curve of ${t.x.length} point(s) has no markers`);
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.textContent.trim();
    if (["null", "undefined", "NaN"].includes(text)) out.push(`text "${text}"`);
  }
  return out;
}"""


def _settled(pg) -> list[str]:
    """The geometry problems once the page has settled (charts resize after layout): polled
    until none are left or 20 s pass, then the last list."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        pg.wait_for_function(f"() => ({GEOMETRY})().length === 0", timeout=20_000)
    except PlaywrightTimeout:
        pass
    return pg.evaluate(GEOMETRY)


@pytest.mark.parametrize("width", [1400, 1024])
def test_the_study_page_geometry(browser, site, width):
    ctx = browser.new_context(viewport={"width": width, "height": 1800})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        pg.goto(f"{site['api'].url}/?study={site['ok']}")
        for sel in ("#chart-val .scatterlayer", "#chart-best .scatterlayer",
                    "#chart-parcoords .parcoords", "#chart-importance .barlayer",
                    "#chart-retrain .scatterlayer", "#slices .scatterlayer"):
            pg.wait_for_selector(sel)
        assert _settled(pg) == []
        pg.click("#trials tbody tr")
        pg.wait_for_selector("#chart-trial .scatterlayer")
        assert _settled(pg) == []
        pg.goto(f"{site['api'].url}/")
        pg.wait_for_selector("#studies tbody tr")
        assert _settled(pg) == []
        pg.goto(f"{site['api'].url}/?view=compare&ids={site['ok']},{site['bad']}")
        pg.wait_for_selector("#cmp-best .scatterlayer")
        assert _settled(pg) == []
        pg.goto(f"{site['api'].url}/?comparison={site['cid']}")
        pg.wait_for_selector("#cmpx-test .barlayer")
        assert _settled(pg) == []
        assert errors == []
    finally:
        ctx.close()


def test_delete_is_offered_without_a_token(page, site):
    """The buttons do not wait for a token: a server without one takes the write as it is (this
    one has a token, so the write itself would be refused with 401 and say so)."""
    page.goto(site["api"].url + "/")
    page.wait_for_selector("#studies tbody tr")
    assert page.locator("#studies button.danger").count() >= 2
