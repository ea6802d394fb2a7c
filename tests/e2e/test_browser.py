"""Real-browser end-to-end test: Debian Chromium driven by Playwright against the real dashboard (`python -m ui.launch`)
serving a quick demo workspace. Screenshots go to tests/e2e/artifacts/."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import pytest

from tests.e2e.walk import goto
from xai_core.review.demo_accounts import DemoAccount

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = pytest.mark.e2e

GRIDCELL = '[data-testid="stDataFrame"] [role="gridcell"]'
TABLECELL = '[data-testid="stTable"] td, [data-testid="stTable"] th'  # static tables (st.table)


def _open(page, url: str, path: str, ready_text: str, admin: DemoAccount) -> None:  # type: ignore[no-untyped-def]
    goto(page, url, path, admin)  # a full page load asks for a sign-in: as the demo admin
    page.get_by_text(ready_text, exact=False).first.wait_for()
    # Streamlit shows a "Running" status widget while the script runs; wait for it to finish.
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)


def _assert_clean(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: a traceback is shown"
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0, f"{name}: st.error shown"


def _cells(page) -> list[str]:  # type: ignore[no-untyped-def]
    """The texts of every data-grid cell and static-table cell on the page."""
    cells = page.locator(f"{GRIDCELL}, {TABLECELL}")
    return [cells.nth(i).inner_text().strip() for i in range(cells.count())]


def _cells_when(page, ok, timeout_s: float = 60) -> list[str]:  # type: ignore[no-untyped-def]
    """The table cells once ``ok(cells)`` holds (grids render after the script's first pass)."""
    deadline = time.time() + timeout_s
    while True:
        cells = _cells(page)
        if ok(cells) or time.time() > deadline:
            assert ok(cells), cells[:60]
            return cells
        page.wait_for_timeout(500)


def test_quick_demo_build_is_complete(quick_workspace: Path) -> None:
    status = json.loads((quick_workspace / "build_status.json").read_text())
    assert status["finished"] is True
    assert [s["state"] for s in status["stages"]] == ["done"] * 12  # the MRI study, the drift study, drift, beyond, review, report
    assert [s["name"] for s in status["stages"]][-2:] == ["review", "report"]
    with sqlite3.connect(f"file:{quick_workspace / 'xaudit.db'}?mode=ro", uri=True) as db:
        cases = db.execute("SELECT COUNT(*), SUM(c.is_catch) FROM review_cases c JOIN review_studies s "
                           "ON s.id = c.study_id WHERE s.name = 'demo-study'").fetchone()
        readers = db.execute("SELECT u.name, COUNT(*) FROM review_assignments a JOIN users u ON u.id = a.reviewer_id "
                             "GROUP BY u.name ORDER BY u.name").fetchall()
    assert cases == (26, 2) and readers == [("reader-1", 26), ("reader-2", 26)]  # the demo's ready study
    report = (quick_workspace / "reports" / "demo" / "report.html").read_text()
    assert "Findings on this workspace" in report and "TL→FT drift" in report
    assert "<h3>demo-study</h3><p>Status: open; 26 cases, 2 readers; 0 of 52 readings rated.</p>" in report
    assert "No ratings yet." in report
    assert (quick_workspace / "reports" / "demo" / "benchmark.csv").stat().st_size > 0


def test_every_page_in_a_real_browser(server: str, page, admin: DemoAccount) -> None:  # type: ignore[no-untyped-def]
    # Overview: sign-in mode, build stages and workspace counts
    _open(page, server, "", "This workspace", admin)
    _cells_when(page, lambda c: c.count("done") == 12 and "mri-lesions, five-lesions (260 images)" in c)
    assert page.get_by_text("Sign-in mode with 3 active accounts (1 admin, 2 reviewer).").count() == 1
    assert page.get_by_text("Demo accounts (3) — admins only").count() == 1  # the admin sees the demo passwords
    # findings as cards: claim, evidence and a verdict badge, all without horizontal scrolling
    # the cards arrive one by one: wait for all eight (four per study) before reading them
    page.wait_for_function("(document.querySelector('[data-testid=\"stMain\"]')?.innerText.match(/Claim:/g) || [])"
                           ".length >= 8", timeout=120_000)
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert main.count("Claim:") == 8 and main.count("Evidence:") == 8, main[-3000:]
    verdicts = re.findall(r"not testable here|not reproduced \((?:opposite direction|no clear difference|mixed "
                          r"directions)\)|reproduced", main)
    assert len(verdicts) >= 8 and "None" not in _cells(page)  # build stages without a time show —
    assert page.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth")
    _assert_clean(page, "overview")

    # Data: the sample image with its lesion contour
    _open(page, server, "data", "Data", admin)
    page.locator(".js-plotly-plot").first.wait_for()
    assert page.locator(".js-plotly-plot").count() >= 1
    _assert_clean(page, "data")

    # Models: the checkpoint table lists the grid
    _open(page, server, "models", "Models", admin)
    _cells_when(page, lambda c: any("vgg16" in x for x in c))
    _assert_clean(page, "models")

    # Explain: saliency is drawn on load; tick Integrated Gradients for an on-demand attribution
    _open(page, server, "explain", "Explain", admin)
    page.locator(".js-plotly-plot").first.wait_for()
    assert page.locator(".js-plotly-plot").count() == 1
    page.get_by_text("Integrated Gradients", exact=True).click()
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=120_000)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
    # the chart and its timing caption arrive as separate deltas: wait for the second caption too
    page.get_by_text(re.compile(r"in \d+\.\d+ s .* on cpu")).nth(1).wait_for(timeout=120_000)
    captions = page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
    timing = [c for c in captions if re.search(r"in \d+\.\d+ s .* on cpu", c)]
    assert len(timing) == 2 and all("precision" in c for c in timing), captions
    _assert_clean(page, "explain")

    # Benchmark: the method × pre-training × degree table holds CI cells
    _open(page, server, "benchmark", "Benchmark", admin)
    _cells_when(page, lambda c: any(re.fullmatch(r"0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]", x) for x in c))
    page.get_by_role("tab", name="Inspect a sample").click()  # a lazy tab: drawn once opened
    # the sample link is the app's page link (st.page_link), not the plain-markdown fallback
    link = page.locator('[data-testid="stPageLink"] a', has_text="Open this sample on the Explain page")
    assert re.fullmatch(r"explain\?checkpoint=\d+&sample=\d+&method=\w+", link.get_attribute("href") or "")
    _assert_clean(page, "benchmark")

    # Drift: architecture × method table with values
    _open(page, server, "drift", "Drift", admin)
    ci = r"-?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]"
    _cells_when(page, lambda c: "vgg16" in c and any(re.fullmatch(ci, x) for x in c))
    # the CI table and the ranks (first, open tab); the ranks can arrive after the CI cells (raced under load 12)
    page.wait_for_function("document.querySelectorAll('[data-testid=\"stTable\"]').length >= 2", timeout=60_000)
    page.get_by_role("tab", name="Evidence of one sample").click()  # a lazy tab: drawn once opened
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # TL map, FT map and difference: one figure
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    assert page.locator(".js-plotly-plot").count() == 1
    # the CI table and the sample's drift values; the ranks of the tab left behind fade out after the rerun
    page.wait_for_function("document.querySelectorAll('[data-testid=\"stTable\"]').length === 2", timeout=60_000)
    _assert_clean(page, "drift")


NAVIGATION = ["Overview", "Data", "Models", "Explain", "Benchmark", "Drift", "Review", "Results", "Admin"]


def _deep_link_target(home: Path) -> tuple[int, str, int, str]:
    """A deep link's (checkpoint id, its label on the Explain page, sample pk, its label): the
    first fine-tuned checkpoint (not the page's default, the last one) and its dataset's last test
    sample (not the first, which the page would show anyway)."""
    with sqlite3.connect(f"file:{home / 'xaudit.db'}?mode=ro", uri=True) as db:
        ck_id, name, arch, phase, dataset, ds_id = db.execute(
            "SELECT c.id, c.name, c.arch, c.phase, d.name, d.id FROM checkpoints c JOIN datasets d ON d.id = c.dataset_id "
            "WHERE c.phase = 'ft' ORDER BY c.id LIMIT 1").fetchone()
        last = db.execute("SELECT MAX(id) FROM checkpoints WHERE dataset_id IS NOT NULL").fetchone()[0]
        pk, sid, label, split = db.execute(
            "SELECT id, sample_id, label, split FROM samples WHERE dataset_id = ? AND split = 'test' "
            "ORDER BY id DESC LIMIT 1", (ds_id,)).fetchone()
    assert ck_id != last
    return ck_id, f"{name}  ({arch}, {phase}, {dataset})", pk, f"{sid}  (label {label}, {split})"


def test_deep_link_is_the_first_request_to_a_new_server(fresh_server: str, quick_workspace: Path, page,  # type: ignore[no-untyped-def]
                                                       admin: DemoAccount) -> None:
    ck_id, ck_label, pk, sample_label = _deep_link_target(quick_workspace)
    link = f"explain?checkpoint={ck_id}&sample={pk}&method=saliency"
    # the deep link shows the sign-in form at its own URL; signing in opens the linked page
    _open(page, fresh_server, link, "Explain", admin)
    assert page.url == f"{fresh_server}/{link}"
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
    _assert_clean(page, "deep-link-explain")
    # the app's page config, navigation and sidebar (app.py ran), not Streamlit's automatic ones
    assert page.title() == "xaudit"
    links = page.locator('[data-testid="stSidebarNavLink"]')
    assert [t.strip().splitlines()[-1] for t in links.all_inner_texts()] == NAVIGATION
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    assert "Workspace" in sidebar and str(quick_workspace.resolve()) in sidebar
    assert "Compute device:" in sidebar
    # the deep-linked content: the link's checkpoint, sample and method
    assert page.get_by_role("combobox", name="Checkpoint").input_value() == ck_label
    assert page.get_by_role("combobox", name="Sample").input_value() == sample_label
    assert page.get_by_role("checkbox", name="Saliency").is_checked()
    assert page.locator(".js-plotly-plot").count() == 1
    # toolbarMode=minimal: no Deploy button or developer menu for this audience
    assert page.locator('[data-testid="stAppDeployButton"]').count() == 0
    assert page.locator('[data-testid="stMainMenu"]').count() == 0
    assert page.get_by_role("button", name="Deploy").count() == 0
