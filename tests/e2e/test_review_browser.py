"""A reading study in a real browser: two reviewers in two browser contexts sign in to the real
dashboard (`python -m ui.launch`, Debian Chromium via Playwright), rate cases with the keyboard and
the mouse (one click on the image), change a rating, sign out; admin pages opened by URL are
refused and logged; the database then holds exactly the ratings given. The admin opens Results.

Prints the time from the save key (Enter) to the next case drawn. Screenshots: tests/e2e/artifacts/.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, _serve
from tests.review_seed import ADMIN, METHODS, PASSWORD, seed_review_workspace

pytestmark = pytest.mark.e2e

STUDY = "first reading"
CASES = 10  # 2 samples × 2 checkpoints × 2 methods + 2 catch trials, each read by both reviewers
SIZE = 32  # the seeded images: 32 × 32 pixels
IMAGE = 'iframe[title="streamlit_image_coordinates.streamlit_image_coordinates"]'
STILL = ("!document.querySelector('[data-testid=\"stStatusWidget\"]') "
         "&& !document.querySelector('[data-stale=\"true\"]')")  # the run is over


@pytest.fixture(scope="module")
def review_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The review fixture (tests/review_seed.py) plus one study read by rex and rae, on SQLite."""
    from db import reset_engines
    from xai_core.review import accounts, studies

    home = tmp_path_factory.mktemp("review-e2e")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XAUDIT_HOME", str(home))
        mp.delenv("DATABASE_URL", raising=False)
        reset_engines()
        ws = seed_review_workspace(size=SIZE)
        admin = accounts.session_actor(accounts.authenticate(ADMIN, PASSWORD))
        studies.create_study(studies.StudySpec(
            name=STUDY, checkpoints=ws.checkpoints, methods=METHODS, reviewers=("rex", "rae"),
            samples=tuple(int(p) for p in ws.test_pks[2:4]), catch_trials=2, show_contour=True), actor=admin)
        yield home
    reset_engines()


@pytest.fixture(scope="module")
def review_server(review_home: Path) -> Iterator[str]:
    yield from _serve(review_home)


def _db(home: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(f"file:{home / 'xaudit.db'}?mode=ro", uri=True) as db:
        return db.execute(sql, args).fetchall()


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"review-{name}.png"), full_page=True)


def _assert_clean(page, name: str) -> None:  # type: ignore[no-untyped-def]
    _shot(page, name)
    assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: a traceback is shown"
    errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    assert not errors, f"{name}: error shown: {errors}"


def _sign_in(page, url: str, name: str, path: str = "") -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/{path}")
    page.get_by_role("heading", name="Sign in to xaudit").wait_for()
    page.get_by_role("textbox", name="Name").fill(name)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {name}").wait_for()


def _case(page, k: int) -> None:  # type: ignore[no-untyped-def]
    """Wait until case ``k`` (1-based) of the queue is shown."""
    page.get_by_role("heading", name=f"Case {k} of {CASES}", exact=True).wait_for()


def _chosen(page, key: str) -> None:  # type: ignore[no-untyped-def]
    """Wait until the button ``key`` shows as chosen (primary) in a finished run; looked at twice,
    0.3 s apart, as the run a key press starts may not have begun at the first look."""
    selector = f'.st-key-{key} [data-testid="stBaseButton-primary"]'
    for _ in range(2):
        page.wait_for_function(f"(sel) => !!document.querySelector(sel) && {STILL}", arg=selector)
        page.wait_for_timeout(300)


def _press(page, key: str, widget: str) -> None:  # type: ignore[no-untyped-def]
    """Press ``key`` and wait until the button ``widget`` shows as chosen."""
    page.keyboard.press(key)
    _chosen(page, widget)


def _settled(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until the run is over (twice, 0.5 s apart: the status widget shows only after a while)."""
    page.wait_for_function(STILL, timeout=120_000)
    page.wait_for_timeout(500)
    page.wait_for_function(STILL, timeout=120_000)


def _image_drawn(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until the run is over and the image component shows its picture."""
    _settled(page)
    frame = page.frame_locator(IMAGE).locator("#image")
    frame.wait_for()
    page.wait_for_function("(sel) => { const f = document.querySelector(sel); "
                           "const i = f && f.contentDocument && f.contentDocument.getElementById('image'); "
                           "return !!i && i.complete && i.naturalWidth > 0; }", arg=IMAGE)


def _image_src(page) -> str:  # type: ignore[no-untyped-def]
    return page.frame_locator(IMAGE).locator("#image").get_attribute("src") or ""


def _click_image(page, fx: float, fy: float) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """Click the shown image at the fraction (fx, fy) of its width and height; the expected image
    pixel coordinates and the size of one screen pixel in image pixels."""
    image = page.frame_locator(IMAGE).locator("#image")
    width, height = image.evaluate("i => [i.width, i.height]")
    x, y = round(fx * width), round(fy * height)
    image.click(position={"x": x, "y": y})
    page.get_by_text("Point you rely on").wait_for()
    _image_drawn(page)  # a fresh image component (the clicked one goes)
    assert page.locator(IMAGE).count() == 1
    return x * SIZE / width, y * SIZE / height, SIZE / width


def _save_and_next(page, k: int) -> float:  # type: ignore[no-untyped-def]
    """Press Enter (save and next); seconds until case ``k`` and its image are drawn."""
    old = _image_src(page)
    start = time.perf_counter()
    page.keyboard.press("Enter")
    _case(page, k)
    frame = next(f for f in page.frames if "streamlit_image_coordinates" in f.url)
    frame.wait_for_function("(old) => document.getElementById('image').src !== old", arg=old, polling=10)
    return time.perf_counter() - start


def _progress(page) -> str:  # type: ignore[no-untyped-def]
    return page.locator('[data-testid="stProgress"]').inner_text().strip()


def test_two_reviewers_rate_change_sign_out_and_are_refused_admin_pages(
        review_server: str, review_home: Path, browser) -> None:  # type: ignore[no-untyped-def]
    from xai_core.review import reading

    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    rex, rae = (c.new_page() for c in contexts)
    for page, name in ((rex, "rex"), (rae, "rae")):
        page.set_default_timeout(60_000)
        _sign_in(page, review_server, name)
        _case(page, 1)
        _image_drawn(page)
        _assert_clean(page, f"{name}-first-case")
    assert rex.locator('[data-testid="stSidebarNavLink"]').count() == 0  # reviewers get no page menu
    times: dict[str, float] = {}

    # rex, case 1, keyboard and one click on the image: 4, plausible, point
    _press(rex, "4", "rv-score-4")
    _press(rex, "y", "rv-plausible-Yes")
    rex_point = _click_image(rex, 0.25, 0.75)
    times["rex 1→2 (after a click)"] = _save_and_next(rex, 2)
    # rae, case 1, keyboard only: 2, not plausible
    _press(rae, "2", "rv-score-2")
    _press(rae, "n", "rv-plausible-No")
    times["rae 1→2"] = _save_and_next(rae, 2)
    # rex, case 2, the mouse: 5, plausible, a note holding HTML, Save and next
    note = "<img src=x onerror=alert(1)> edge & rim"
    rex.locator(".st-key-rv-score-5 button").click()
    _chosen(rex, "rv-score-5")
    rex.locator(".st-key-rv-plausible-Yes button").click()
    _chosen(rex, "rv-plausible-Yes")
    rex.get_by_role("textbox", name="Note (optional)").fill(note)
    rex.locator(".st-key-rv-save-button button").click()
    _case(rex, 3)
    # rae, case 2: 3, plausible, a click near the centre
    _press(rae, "3", "rv-score-3")
    _press(rae, "y", "rv-plausible-Yes")
    rae_point = _click_image(rae, 0.5, 0.4)
    times["rae 2→3 (after a click)"] = _save_and_next(rae, 3)

    # rex goes back (P) and changes case 2 from 5 to 1; the note shows as text, not as HTML
    rex.keyboard.press("p")
    _case(rex, 2)
    _chosen(rex, "rv-score-5")
    assert rex.get_by_role("textbox", name="Note (optional)").input_value() == note
    assert rex.locator('img[src="x"]').count() == 0
    _press(rex, "1", "rv-score-1")
    times["rex 2→3 (changed rating)"] = _save_and_next(rex, 3)  # back to the first case not rated
    _press(rex, "3", "rv-score-3")
    _press(rex, "n", "rv-plausible-No")
    times["rex 3→4"] = _save_and_next(rex, 4)
    _image_drawn(rex)
    assert _progress(rex) == f"3 of {CASES} rated"
    assert rex.get_by_role("combobox", name="Go to case").input_value() == f"Case 4 of {CASES} · not rated"
    _assert_clean(rex, "rex-after-change")

    # rex signs out: the sign-in page, also after a reload; the session is revoked in the database
    rex.get_by_role("button", name="Sign out").click()
    rex.get_by_role("heading", name="Sign in to xaudit").wait_for()
    rex.reload()
    rex.get_by_role("heading", name="Sign in to xaudit").wait_for()
    assert rex.get_by_role("heading", name=f"Case 4 of {CASES}").count() == 0
    first_login = _db(review_home, "SELECT s.revoked_at FROM auth_sessions s JOIN users u ON u.id = s.user_id "
                                   "WHERE u.name = 'rex' ORDER BY s.id LIMIT 1")
    assert first_login[0][0] is not None
    # rae's session is her own: she goes on rating
    _press(rae, "5", "rv-score-5")
    _press(rae, "y", "rv-plausible-Yes")
    times["rae 3→4"] = _save_and_next(rae, 4)
    rae.wait_for_function(STILL)
    assert _progress(rae) == f"3 of {CASES} rated"

    # a reviewer opening an admin page by URL (a full page load: the sign-in form at that URL, then
    # the page), and by changing the URL within the signed-in session (the history, as the back
    # button does): refused, shown and logged
    _sign_in(rex, review_server, "rex", "admin")
    for path, title in (("admin", "Admin"), ("results", "Results")):
        if path != "admin":
            rex.evaluate("(path) => { history.pushState({}, '', path); "
                         "window.dispatchEvent(new PopStateEvent('popstate', {state: {}})); }", f"/{path}")
        rex.get_by_text(f"The {title} page is for admins").wait_for()
        _settled(rex)
        _shot(rex, f"rex-refused-{path}")
        assert rex.url == f"{review_server}/{path}"
        assert rex.locator('[data-testid="stDataFrame"]').count() == 0
        assert rex.locator("h1").count() == 0  # nothing of the page ran
    refused = _db(review_home, "SELECT target FROM audit_log WHERE actor = 'rex' AND action = 'page' "
                               "AND outcome = 'refused' ORDER BY id")
    assert refused == [("Admin",), ("Results",)]
    for context in contexts:
        context.close()

    # the database holds exactly the ratings given
    expected = {
        "rex": {0: (4, True, ""), 1: (1, True, note), 2: (3, False, "")},
        "rae": {0: (2, False, ""), 1: (3, True, ""), 2: (5, True, "")},
    }
    points = {("rex", 0): rex_point, ("rae", 1): rae_point}
    for reviewer, want in expected.items():
        position = {key: pos for pos, key, _ in reading.queue(STUDY, reviewer)}
        got = {position[r["case_key"]]: r for r in reading.my_ratings(STUDY, reviewer, owner=reviewer)}
        assert {p: (r["evidence_match"], r["plausible"], r["note"]) for p, r in got.items()} == want
        for pos, row in got.items():
            if (reviewer, pos) in points:
                x, y, screen_px = points[reviewer, pos]
                assert abs(row["point_x"] - x) <= screen_px and abs(row["point_y"] - y) <= screen_px
                assert int(row["point_x"]) == int(x) and int(row["point_y"]) == int(y)  # the pixel clicked
            else:
                assert row["point_x"] is None and row["point_y"] is None
    assert _db(review_home, "SELECT COUNT(*) FROM review_ratings") == [(6,)]
    print("\nclick-to-next-case (Enter pressed → the next case and its image drawn):")
    for what, seconds in times.items():
        print(f"  {what:<26} {seconds:.3f} s")


def test_admin_sees_the_results_page(review_server: str, review_home: Path,
                                     browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    _sign_in(page, review_server, ADMIN)
    links = page.locator('[data-testid="stSidebarNavLink"]')
    assert [t.strip().splitlines()[-1] for t in links.all_inner_texts()][-3:] == ["Review", "Results", "Admin"]
    links.filter(has_text="Results").click()  # in-app navigation: the session (and the sign-in) stays
    page.wait_for_url(f"{review_server}/results")
    page.get_by_role("heading", name="Reading-study results").wait_for()
    _settled(page)
    _assert_clean(page, "admin-results")
    main = page.locator('[data-testid="stMain"]').inner_text()
    [(rated,)] = _db(review_home, "SELECT COUNT(*) FROM review_ratings")
    assert f"{rated} of {2 * CASES} readings done" in main and "is for admins" not in main
    context.close()
