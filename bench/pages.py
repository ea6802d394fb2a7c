"""Benchmark: dashboard page loads in a real browser (issue 6: < 1 s each on the full demo workspace).

Serves ``app.py`` for a workspace (``--home``, default ``$XAUDIT_HOME``), opens every page in
Debian's Chromium through Playwright and times, per page, from navigation to "content drawn and
the script finished" (its title and table cells or figure present, nothing stale, Streamlit's
running widget gone).
First a full browser load of each page (Streamlit's frontend bundle included, the server's
caches cold; a workspace with accounts, like the demo's, asks for a sign-in on every full load, and
the load is timed through signing in as the demo admin), then rounds of clicks through the sidebar,
which is what a user moving between pages sees (one session: no sign-in). Baseline in the same run: the same clicks between two pages of a minimal Streamlit
app (a title and a 10-row table), i.e. what Streamlit and the browser cost on this machine.
With ``--settle`` each click is also timed until the page stopped changing (its figures drawn,
no DOM change for 300 ms), and the next click waits for that: a page's late drawing then counts
for that page, not for the next one.

    python bench/pages.py [--home DIR] [--rounds 3] [--pages data,drift] [--settle]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.walk import demo_admin, goto  # noqa: E402
from ui.server import CHROMIUM, CHROMIUM_ARGS, free_port, start_dashboard, stop, wait_healthy  # noqa: E402

GRID = '[data-testid="stDataFrame"] [role="gridcell"]'
PLOT = ".js-plotly-plot"
TABLE = '[data-testid="stTable"] td'  # a static table's cells (st.table)
# page path -> (start of its title, selector present once the page has drawn its main content)
PAGES: dict[str, tuple[str, str]] = {
    "": ("xaudit", TABLE), "data": ("Data", PLOT), "models": ("Models", TABLE),
    "explain": ("Explain", PLOT), "benchmark": ("Benchmark", TABLE), "drift": ("Drift", TABLE),
}
# drawn = the page's title and content are there, no element is stale and the script is not running
DRAWN = """([title, ready]) => {
  const h1 = document.querySelector('h1');
  return !!h1 && h1.innerText.startsWith(title) && !!document.querySelector(ready)
    && !document.querySelector('[data-stale="true"]')
    && !document.querySelector('[data-testid="stStatusWidget"]');
}"""


# settled (--settle) = the page stopped changing: its last DOM change before SETTLE_MS without one.
# A page's later figures finish drawing after "drawn" fired; without waiting for that, their cost
# lands on the next click's time.
SETTLE_MS = 300
OBSERVE = """() => {
  if (window.__lastChange === undefined) {
    window.__lastChange = performance.now();
    new MutationObserver(() => { window.__lastChange = performance.now(); }).observe(
      document.documentElement, {subtree: true, childList: true, attributes: true, characterData: true});
  }
  return performance.now();
}"""
QUIET = "(ms) => performance.now() - window.__lastChange >= ms"


def settled_since(page, t_click: float) -> float:  # type: ignore[no-untyped-def]
    """Seconds from ``t_click`` (the browser's clock, ms, from ``OBSERVE``) to the page's last DOM
    change, once none came for ``SETTLE_MS``."""
    page.wait_for_function(QUIET, arg=SETTLE_MS, timeout=60_000, polling=25)
    return (page.evaluate("() => window.__lastChange") - t_click) / 1000


def drawn_after(page, action, title: str, ready: str) -> float:  # type: ignore[no-untyped-def]
    """Seconds from ``action()`` (a navigation) until the page is drawn (see ``DRAWN``)."""
    t0 = time.perf_counter()
    action()
    page.wait_for_function(DRAWN, arg=[title, ready], timeout=60_000, polling=25)
    return time.perf_counter() - t0


FLOOR_APP = """import pandas as pd
import streamlit as st

def page(name):
    def draw():
        st.title(name)
        st.dataframe(pd.DataFrame({"a": range(10), "b": range(10)}))
    return draw

st.navigation([st.Page(page("Floor A"), title="a", url_path="a", default=True),
               st.Page(page("Floor B"), title="b", url_path="b")]).run()
"""


Times = dict[str, list[float]]


def sidebar_rounds(page, url: str, pages: dict[str, tuple[str, str]], rounds: int,  # type: ignore[no-untyped-def]
                   settle: bool = False) -> tuple[Times, Times]:
    """``rounds`` passes of sidebar clicks through ``pages``: seconds per click until drawn and,
    with ``settle``, until settled (the next click waits for that)."""
    times: Times = {k: [] for k in pages}
    settled: Times = {k: [] for k in pages}
    for _ in range(rounds):
        for path, (title, ready) in pages.items():
            link = page.locator(f'[data-testid="stSidebarNavLink"][href="{url}/{path}"]')
            t_click = page.evaluate(OBSERVE) if settle else 0.0
            times[path].append(drawn_after(page, link.click, title, ready))
            if settle:
                settled[path].append(settled_since(page, t_click))
    return times, settled


def floor_seconds(browser, rounds: int, settle: bool = False) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median sidebar click between two Streamlit pages holding only a title and a 10-row table:
    until drawn, and until settled (``settle``; else nan)."""
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "floor.py"
        app.write_text(FLOOR_APP)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
                                 "--server.address", "127.0.0.1", "--server.headless", "true"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_healthy(url, proc)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            pages = {"": ("Floor A", GRID), "b": ("Floor B", GRID)}
            drawn_after(page, lambda: page.goto(url), *pages[""])
            times, settled = sidebar_rounds(page, url, pages, rounds, settle)
        finally:
            stop(proc)
    return (statistics.median(times[""] + times["b"]),
            statistics.median(settled[""] + settled["b"]) if settle else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=os.environ.get("XAUDIT_HOME", "workspace"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pages", default=",".join(p or "overview" for p in PAGES),
                        help="comma-separated pages to time (default: all)")
    parser.add_argument("--settle", action="store_true",
                        help=f"also time each click until the page settled (no DOM change for {SETTLE_MS} ms)")
    args = parser.parse_args()
    chosen = {"" if name == "overview" else name for name in args.pages.split(",")}
    unknown = chosen - set(PAGES)
    if unknown:
        parser.error(f"unknown page {sorted(unknown)[0]!r}; pages: {args.pages}")
    pages = {path: spec for path, spec in PAGES.items() if path in chosen}
    if len(pages) < 2:
        parser.error("--pages needs at least two pages (a sidebar click onto the page already shown does nothing)")
    load_before = os.getloadavg()
    home = Path(args.home).resolve()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_dashboard(home, port, address="127.0.0.1", quiet=True)
    try:
        wait_healthy(url, proc)
        t0 = time.perf_counter()
        for _ in range(10):
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=5).read()
        health = (time.perf_counter() - t0) / 10
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            load: dict[str, float] = {}
            admin = demo_admin(home)  # None: a single-user workspace, no sign-in asked
            for path, (title, ready) in pages.items():  # full browser loads, first visit: cold caches
                load[path] = drawn_after(page, lambda: goto(page, url, path, admin), title, ready)
            nav, settled = sidebar_rounds(page, url, pages, args.rounds, args.settle)  # what a user sees
            floor, floor_settled = floor_seconds(browser, args.rounds, args.settle)
            browser.close()
    finally:
        stop(proc)

    print(f"workspace {home}; Chromium {CHROMIUM}; {os.cpu_count()} CPU cores; {args.rounds} rounds of "
          f"sidebar navigation; /_stcore/health round trip {health * 1000:.1f} ms; load average (1 min) "
          f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("full browser loads " + (f"include the sign-in as {admin.name} (the workspace has accounts)" if admin
                                   else "need no sign-in (single-user workspace)"))
    print(f"baseline (Streamlit's floor): sidebar click between two pages holding a title and a 10-row "
          f"table: median {floor:.2f} s" + (f", settled {floor_settled:.2f} s" if args.settle else "") + "\n")
    extra = " settled median s | settled vs floor settled |" if args.settle else ""
    print("| page | full browser load, first visit s | sidebar navigation median s | max s | < 1 s | vs floor |" + extra)
    print("|---|---:|---:|---:|---|---:|" + ("---:|---:|" if args.settle else ""))
    for path, values in nav.items():
        med = statistics.median(values)
        row = (f"| {path or 'overview'} | {load[path]:.2f} | {med:.2f} | {max(values):.2f} | "
               f"{'yes' if max(values) < 1 else 'no'} | {med / floor:.2f}x |")
        if args.settle:
            calm = statistics.median(settled[path])
            row += f" {calm:.2f} | {calm / floor_settled:.2f}x |"
        print(row)

if __name__ == "__main__":
    main()
