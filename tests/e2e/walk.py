"""Open every dashboard page in Debian's Chromium and check that it drew: its title, the script
finished, no traceback and no error box; on the Benchmark page, the CI cells show stored means.

Shared by the installed-wheel test and ``scripts/docker_check.sh``:

    python tests/e2e/walk.py URL [--benchmark-csv reports/demo/benchmark.csv]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ui.server import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

# page path -> start of its title (the h1)
PAGES: dict[str, str] = {"": "xaudit", "data": "Data", "models": "Models", "explain": "Explain",
                         "benchmark": "Benchmark", "drift": "Drift"}
DRAWN = """(title) => {
  const h1 = document.querySelector('h1');
  return !!h1 && h1.innerText.startsWith(title)
    && !document.querySelector('[data-stale="true"]')
    && !document.querySelector('[data-testid="stStatusWidget"]');
}"""
CI_CELL = re.compile(r"(-?\d\.\d{3}) \[-?\d\.\d{3}, -?\d\.\d{3}\]")
GRIDCELL = '[data-testid="stDataFrame"] [role="gridcell"]'
CELLS = f'{GRIDCELL}, [data-testid="stTable"] td'  # data-grid and static-table cells


def open_page(page, url: str, path: str) -> str:  # type: ignore[no-untyped-def]
    """Go to ``url/path`` and return its title once drawn; AssertionError on a traceback or error box."""
    page.goto(f"{url}/{path}")
    page.wait_for_function(DRAWN, arg=PAGES[path], timeout=120_000, polling=100)
    name = path or "overview"
    assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: a traceback is shown"
    errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    assert not errors, f"{name}: error shown: {errors}"
    return page.locator("h1").first.inner_text().strip()


def benchmark_means(page, timeout_ms: int = 60_000) -> list[str]:  # type: ignore[no-untyped-def]
    """The means of the CI cells (``0.245 [0.237, 0.252]``) the Benchmark page shows (grids draw late)."""
    page.wait_for_function(
        "(sel) => [...document.querySelectorAll(sel)].some(c => / \\[/.test(c.innerText))",
        arg=CELLS, timeout=timeout_ms)
    texts = page.locator(GRIDCELL).all_inner_texts() + page.locator('[data-testid="stTable"]').all_inner_texts()
    return [m.group(1) for t in texts for m in CI_CELL.finditer(t)]


def walk(page, url: str, stored_means: set[str] | None = None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Every page's title, opened in ``page``; with ``stored_means`` (``"%.3f"`` texts), also assert
    that the Benchmark page shows CI cells and that each shown mean is one of them."""
    titles: dict[str, str] = {}
    for path in PAGES:
        titles[path] = open_page(page, url, path)
        if path == "benchmark" and stored_means is not None:
            shown = benchmark_means(page)
            assert shown, "benchmark: no CI cells shown"
            assert set(shown) <= stored_means, f"benchmark: {set(shown) - stored_means} not stored"
    return titles


def stored_precision_means(benchmark_csv: Path) -> set[str]:
    """``"%.3f"`` of every stored mean precision in a report's ``benchmark.csv``."""
    table = pd.read_csv(benchmark_csv)
    return {f"{m:.3f}" for m in table.loc[table["metric"] == "precision", "mean"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--benchmark-csv", type=Path, help="a report's benchmark.csv: check the Benchmark page shows its means")
    args = parser.parse_args()
    stored = stored_precision_means(args.benchmark_csv) if args.benchmark_csv else None

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            titles = walk(page, args.url.rstrip("/"), stored)
        finally:
            browser.close()
    for path, title in titles.items():
        print(f"/{path:<10} {title}")
    if stored is not None:
        print(f"benchmark: its CI cells show stored means ({len(stored)} stored)")

if __name__ == "__main__":
    main()
