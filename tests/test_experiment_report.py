"""`kubevibe report` and `kubevibe compare`: generated from real run directories, checked in Debian's headless
Chromium (pages load without console errors, plots and graphs render, every local link resolves), screenshots
kept (set KUBEVIBE_SCREENSHOTS=DIR to keep them somewhere to look at)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest
from exp_helpers import chromium_path, headless_chromium, screenshot_dir, static_server, synthetic_run

from kubevibe.experiments.compare import compare_data, write_compare
from kubevibe.experiments.matrix import expand
from kubevibe.experiments.plan import validate_plan
from kubevibe.experiments.report import write_report
from kubevibe.experiments.store import DB_NAME, Store
from kubevibe.pipeline.fsm import State

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
SCENARIO_CYCLE = ("first-attempt", "fix-loop", "oscillation", "fix-loop")


def make_experiment(root: Path, name: str, labels: list[str], scenarios: dict[str, tuple[str, ...]]) -> Path:
    """An experiment directory whose cells hold synthetic runs (real run directories from the real Runner)."""
    plan = validate_plan({"name": name, "models": [{"llm": "openai://127.0.0.1:9/v1", "model": label, "label": label}
                                                   for label in labels],
                          "strategies": ["full"], "prompts": ["Develop an echo service", "Develop a todo service"],
                          "repetitions": 2}, base_dir=root, source="plan")
    exp = root / name
    exp.mkdir(parents=True)
    (exp / "plan.yaml").write_text(plan.to_yaml())
    store = Store(exp / DB_NAME, base_dir=exp)
    store.set_meta("name", name)
    cells = expand(plan)
    store.sync_cells(cells)
    counters: dict[str, int] = {}
    for cell in cells:
        cycle = scenarios[cell.model_label]
        i = counters.get(cell.model_label, 0)
        counters[cell.model_label] = i + 1
        path = synthetic_run(exp / "runs" / cell.key, cycle[i % len(cycle)], prompt=cell.prompt, model=cell.model)
        store.ingest_run(path, cell, attempts=1, exit_code=0)
    store.close()
    return exp


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    a = make_experiment(root, "small-models", ["scripted-7b", "tiny-1b"],
                        {"scripted-7b": SCENARIO_CYCLE, "tiny-1b": ("oscillation", "oscillation", "fix-loop")})
    b = make_experiment(root, "bigger-model", ["scripted-7b"], {"scripted-7b": ("first-attempt",)})
    return root, a, b


def test_report_files_and_content(experiments):
    root, a, _ = experiments
    index = write_report(a)
    out = a / "report"
    assert index == out / "index.html"
    html = index.read_text()
    assert "Summary per model" in html and "scripted-7b" in html and "tiny-1b" in html
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="plot"') == 4
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")  # offline, no JS
    pages = sorted((out / "runs").glob("*.html"))
    assert len(pages) == 8
    assert sorted(p.name for p in (out / "data").iterdir()) == ["llm_calls.csv", "plan.yaml", "revisions.csv",
                                                                 "runs.csv", "stage_executions.csv"]
    assert len(list((out / "graphs").glob("*.svg"))) == 8 and len(list((out / "graphs").glob("*.dot"))) == 8
    # scripted-7b: first-attempt, fix-loop, oscillation, fix-loop -> 3 of 4 succeed (75%, Wilson 30%-95%).
    assert '<b>75%</b> <span class="muted">3/4</span>' in html and "[30%, 95%]" in html
    # tiny-1b: oscillation, oscillation, fix-loop, oscillation -> 1 of 4.
    assert '<b>25%</b> <span class="muted">1/4</span>' in html
    loop_page = next(p.read_text() for p in pages if "Deployment echo has no spec" in p.read_text())
    assert "Triggered by" in loop_page and "ModuleNotFoundError" in loop_page
    assert '<span class="add">+flask==3.0.3</span>' in loop_page and '<span class="del">-requests</span>' in loop_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in loop_page  # evidence is escaped
    osc_page = next(p.read_text() for p in pages if "oscillation</span>" in p.read_text())
    assert "same files as revision 0: oscillation" in osc_page and "same files as revision 1" in osc_page
    # The graph is drawn from the transition table: bold transitions taken with their step numbers.
    dot = next((out / "graphs").glob("*.dot")).read_text()
    assert "penwidth=2.2" in dot and "gray70" in dot and "peripheries=2" in dot


@pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (scripts/bootstrap.sh "
                                                    "installs it): the report cannot be checked in a browser")
def test_report_and_compare_in_headless_chromium(experiments, tmp_path):
    root, a, b = experiments
    write_report(a)
    compare_page = write_compare(a, b, root / "compare" / "index.html")
    shots = screenshot_dir(tmp_path)
    with static_server(root) as base, headless_chromium() as new_page:
        page = new_page()
        start = [base + "small-models/report/index.html", base + "compare/index.html"]
        seen: set[str] = set()
        queue = list(start)
        checked_links = 0
        while queue:
            url = queue.pop(0)
            if url in seen:
                continue
            seen.add(url)
            page.goto(url)
            assert page.errors == [], (url, page.errors)
            assert page.evaluate("document.querySelectorAll('script').length") == 0
            sizes = page.evaluate("Array.from(document.querySelectorAll('svg')).filter(s => !s.parentElement.closest('svg'))"
                                  ".map(s => { const r = s.getBoundingClientRect(); return [r.width, r.height]; })")
            assert sizes and all(w > 50 and h > 30 for w, h in sizes), (url, sizes)
            if url.endswith("report/index.html"):
                assert len(sizes) == 4  # success, passItr@k, failures by stage, time by stage
                marks = page.evaluate("document.querySelectorAll('#plot-success circle').length")
                assert marks == 2
            elif "/runs/" in url:
                assert page.evaluate("document.querySelectorAll('.graph svg g.node').length") == len(State)  # every state
            for link in page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"):
                target, fragment = urldefrag(link)
                assert target.startswith(base), f"{url} links outside the report: {link}"
                with urllib.request.urlopen(target, timeout=10) as resp:
                    assert resp.status == 200, link
                    body = resp.read().decode("utf-8", "replace")
                if fragment:
                    assert re.search(rf'id="{re.escape(fragment)}"', body), f"{url}: no #{fragment} in {target}"
                checked_links += 1
                if target.endswith(".html") and target not in seen:
                    queue.append(target)
        assert len(seen) == 1 + 8 + 1 and checked_links > 60
        # Screenshots to look at: the index, a run with a fix loop, an oscillating run, the comparison.
        page.goto(start[0])
        page.screenshot(shots / "report-index.png")
        runs = page.evaluate("Array.from(document.querySelectorAll('#runs ~ table a')).map(a => a.href)")
        texts = {}
        for link in runs:
            page.goto(link)
            texts[link] = page.evaluate("document.body.innerText")
        loop = next(u for u, t in texts.items() if "Deployment echo has no spec" in t)
        osc = next(u for u, t in texts.items() if "oscillation" in t and "fail" in t)
        page.goto(loop)
        assert "<script>alert(1)</script>" in page.evaluate("document.body.innerText")  # shown, not run
        page.screenshot(shots / "report-run-fix-loop.png", max_height=4000)
        page.goto(osc)
        page.screenshot(shots / "report-run-oscillation.png", max_height=2400)
        page.goto(start[1])
        page.screenshot(shots / "compare.png")
        # Offline as a file too: no server, no errors.
        page.goto(index_as_file(a))
        assert page.errors == []
    for name in ("report-index.png", "report-run-fix-loop.png", "report-run-oscillation.png", "compare.png"):
        assert (shots / name).stat().st_size > 10_000
    assert compare_page.exists()


def index_as_file(exp: Path) -> str:
    return (exp / "report" / "index.html").resolve().as_uri()


def test_compare_side_by_side(experiments):
    root, a, b = experiments
    data = compare_data(a, b)
    assert data["by_model"]  # both have scripted-7b: groups matched by model, method and strategy
    labels = [row["label"] for row in data["rows"]]
    assert labels == ["scripted-7b · none · full", "tiny-1b · none · full"]
    shared = data["rows"][0]
    assert (shared["a"]["success"], shared["a"]["n"], shared["b"]["success"], shared["b"]["n"]) == (3, 4, 4, 4)
    d, low, high = shared["diff"]
    assert round(d, 2) == 0.25 and low < 0 < high and not shared["significant"]
    assert data["rows"][1]["b"] is None
    overall = data["overall"]
    assert (overall["a"]["success"], overall["a"]["n"], overall["b"]["success"], overall["b"]["n"]) == (4, 8, 4, 4)
    assert [p["a"] for p in data["per_prompt"]] == [{"s": 2, "n": 4}, {"s": 2, "n": 4}]

    result = subprocess.run([*KUBEVIBE, "compare", str(a), str(b), "--html", str(root / "cmp.html")],
                            capture_output=True, text=True, timeout=60,
                            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin",  # this checkout's kubevibe, if chosen so
                                 **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})
    assert result.returncode == 0, result.stderr
    assert "small-models" in result.stdout and "bigger-model" in result.stdout
    assert "3/4 75%" in result.stdout and "4/4 100%" in result.stdout and "+25 pts" in result.stdout
    html = (root / "cmp.html").read_text()
    assert 'href="cmp.html"' in html and "Side by side" in html
    report = subprocess.run([*KUBEVIBE, "report", str(b), "--out", str(root / "b-report")], capture_output=True,
                            text=True, timeout=60)
    assert report.returncode == 0 and (root / "b-report" / "index.html").exists(), report.stderr
    assert urlparse(index_as_file(b)).scheme == "file"
