"""Open every dashboard page in Debian's Chromium and check that it drew: its title, the script
finished, no traceback and no error box; on the Benchmark page, the CI cells show stored means.

A workspace with an admin account (the demo's) shows a sign-in form first, on every full page load
(a new browser session): :func:`goto` signs in as the demo admin, whose password
:func:`demo_admin` reads from the workspace's ``review/demo-accounts.json``. Shared by the e2e
tests, ``bench/pages.py`` and ``scripts/docker_check.sh``:

    python tests/e2e/walk.py URL [--home WORKSPACE] [--benchmark-csv reports/demo/benchmark.csv]
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
from xai_core.review.demo_accounts import DemoAccount, read_demo_accounts  # noqa: E402

# page path -> start of its title (the h1)
PAGES: dict[str, str] = {"": "xaudit", "data": "Data", "models": "Models", "explain": "Explain",
                         "benchmark": "Benchmark", "drift": "Drift", "review": "Review",
                         "results": "Reading-study results", "admin": "Admin"}
DRAWN = """(title) => {
  const h1 = document.querySelector('h1');
  return !!h1 && h1.innerText.startsWith(title)
    && !document.querySelector('[data-stale="true"]')
    && !document.querySelector('[data-testid="stStatusWidget"]');
}"""
CI_CELL = re.compile(r"(-?\d\.\d{3}) \[-?\d\.\d{3}, -?\d\.\d{3}\]")
GRIDCELL = '[data-testid="stDataFrame"] [role="gridcell"]'
CELLS = f'{GRIDCELL}, [data-testid="stTable"] td'  # data-grid and static-table cells


SIGN_IN = "Sign in to xaudit"  # the sign-in form's title
# the first title a full page load draws (the page's own, or the sign-in form's)
TITLED = "() => !!document.querySelector('h1') && document.querySelector('h1').innerText.trim().length > 0"


def demo_admin(home: Path) -> DemoAccount | None:
    """The demo admin of workspace ``home`` (name and password kept by the demo build), or None
    when it keeps none (a single-user workspace, or the password was changed)."""
    return next((a for a in read_demo_accounts(Path(home)) if a.role == "admin"), None)


def sign_in(page, account: DemoAccount) -> None:  # type: ignore[no-untyped-def]
    """Fill and submit the sign-in form ``page`` shows; return once another title replaced it."""
    page.get_by_label("Name").fill(account.name)
    page.get_by_label("Password", exact=True).fill(account.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_function(f"() => !document.querySelector('h1')?.innerText.startsWith({SIGN_IN!r})",
                           timeout=120_000, polling=100)


def goto(page, url: str, path: str, admin: DemoAccount | None) -> None:  # type: ignore[no-untyped-def]
    """A full load of ``url/path``; when the dashboard asks for a sign-in, sign in as ``admin`` (the
    dashboard then opens ``path``, query included). The caller waits for the page's own content."""
    page.goto(f"{url}/{path}")
    page.wait_for_function(TITLED, timeout=120_000, polling=100)
    if page.locator("h1").first.inner_text().strip().startswith(SIGN_IN):
        assert admin is not None, f"/{path} asks for a sign-in but the workspace keeps no demo admin password"
        sign_in(page, admin)


def open_page(page, url: str, path: str, admin: DemoAccount | None = None) -> str:  # type: ignore[no-untyped-def]
    """Go to ``url/path`` (signed in as ``admin`` when asked) and return its title once drawn;
    AssertionError on a traceback or error box."""
    goto(page, url, path, admin)
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


def walk(page, url: str, stored_means: set[str] | None = None,  # type: ignore[no-untyped-def]
         admin: DemoAccount | None = None) -> dict[str, str]:
    """Every page's title, opened in ``page`` (signed in as ``admin`` when asked); with
    ``stored_means`` (``"%.3f"`` texts), also assert that the Benchmark page shows CI cells and that
    each shown mean is one of them."""
    titles: dict[str, str] = {}
    for path in PAGES:
        titles[path] = open_page(page, url, path, admin)
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
    parser.add_argument("--home", type=Path, help="the served workspace: sign in as its demo admin when asked")
    args = parser.parse_args()
    stored = stored_precision_means(args.benchmark_csv) if args.benchmark_csv else None
    admin = demo_admin(args.home) if args.home else None

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            titles = walk(page, args.url.rstrip("/"), stored, admin)
        finally:
            browser.close()
    for path, title in titles.items():
        print(f"/{path:<10} {title}")
    if stored is not None:
        print(f"benchmark: its CI cells show stored means ({len(stored)} stored)")

if __name__ == "__main__":
    main()
