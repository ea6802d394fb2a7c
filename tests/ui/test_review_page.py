"""AppTest of the Reading page (ui/views/review.py) on a seeded review workspace: the picture,
rating with the buttons the keys press, changing a rating, a click in image pixels, user errors,
submitting the study, and the note admins and the single-user dashboard see."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.review_seed import ADMIN, METHODS, PASSWORD, run_view, seed_review_workspace
from xai_core.review import accounts, display, reading, studies
from xai_core.review.accounts import LOCAL, Actor

STUDY = "s1"


@pytest.fixture
def rex(workspace: Path) -> Actor:
    """A study of 10 cases (2 samples × 2 checkpoints × 2 methods + 2 catch trials) read by rex and rae."""
    ws = seed_review_workspace()
    admin = accounts.session_actor(accounts.authenticate(ADMIN, PASSWORD))
    studies.create_study(studies.StudySpec(name=STUDY, checkpoints=ws.checkpoints, methods=METHODS,
                                           reviewers=("rex", "rae"), samples=tuple(int(p) for p in ws.test_pks[2:4]),
                                           catch_trials=2, show_contour=True), actor=admin)
    return accounts.session_actor(accounts.authenticate("rex", PASSWORD))


def _page(actor: Actor) -> AppTest:
    return run_view("review", actor)


def _case(at: AppTest) -> str:
    return at.subheader[0].value


def _picture(at: AppTest) -> np.ndarray:
    """The picture the image component shows (decoded from its PNG)."""
    import json

    component = next(e for e in at.main if type(e).__name__ == "UnknownElement" and hasattr(e.proto, "json_args"))
    src = json.loads(component.proto.json_args)["src"]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))


def _rate(at: AppTest, score: int, plausible: str, note: str | None = None) -> AppTest:
    at.button(key=f"rv-score-{score}").click().run()
    at.button(key=f"rv-plausible-{plausible}").click().run()
    if note is not None:
        at.text_area[0].input(note).run()
    return at.button(key="rv-save-button").click().run()


@pytest.mark.parametrize("actor", [LOCAL, Actor("ada", "admin", 1)], ids=["single-user", "admin"])
def test_admins_and_the_single_user_get_a_pointer(workspace: Path, actor: Actor) -> None:
    at = _page(actor)
    assert not at.exception
    assert len(at.info) == 1 and "Admin page" in at.info[0].value and "Results page" in at.info[0].value
    assert not at.button


def test_rating_with_the_key_buttons_moves_on_and_stores_the_rating(rex: Actor) -> None:
    at = _page(rex)
    assert not at.exception and _case(at) == "Case 1 of 10"
    queue = reading.queue(STUDY, "rex")
    first = reading.case_view(STUDY, "rex", queue[0][1])
    np.testing.assert_array_equal(_picture(at), display.compose(first.image, first.heatmap, first.lesion).rgb)
    assert [b.proto.shortcut for b in at.button if b.key.startswith("rv-score")] == ["1", "2", "3", "4", "5"]
    assert at.button(key="rv-save-button").proto.shortcut == "enter"
    at = _rate(at, 4, "Yes", "<b>edge</b> '); DROP TABLE users; --")
    assert not at.exception and not at.error
    assert _case(at) == "Case 2 of 10" and at.get("progress")[0].proto.text == "1 of 10 rated"
    [row] = reading.my_ratings(STUDY, "rex", owner="rex")
    assert (row["case_key"], row["evidence_match"], row["plausible"], row["point_x"]) == (queue[0][1], 4, True, None)
    assert row["note"] == "<b>edge</b> '); DROP TABLE users; --"  # stored verbatim


def test_view_controls_reach_the_picture(rex: Actor) -> None:
    at = _page(rex)
    at.toggle(key="rv-heat").set_value(False).run()
    at.slider(key="rv-level").set_value(0.4).run()
    at.slider(key="rv-window").set_value(0.5).run()
    at.select_slider(key="rv-zoom").set_value(2.0).run()
    at.slider(key="rv-cx").set_value(10).run()
    assert not at.exception
    cv = reading.case_view(STUDY, "rex", reading.queue(STUDY, "rex")[0][1])
    expected = display.compose(cv.image, cv.heatmap, cv.lesion, level=0.4, width=0.5, show_heatmap=False,
                               opacity=0.5, zoom=2.0, center=(10, 16))
    assert expected.box == display.Box(2, 8, 18, 24) and expected.scale == 40
    np.testing.assert_array_equal(_picture(at), expected.rgb)


def test_missing_answers_are_user_errors_and_the_note_has_the_limit(rex: Actor) -> None:
    at = _page(rex)
    at.button(key="rv-save-button").click().run()
    assert "rate how well" in at.error[0].value and _case(at) == "Case 1 of 10"
    at.button(key="rv-score-2").click().run()
    at.button(key="rv-save-button").click().run()
    assert "clinically plausible" in at.error[0].value
    assert reading.my_ratings(STUDY, "rex", owner="rex") == []
    assert at.text_area[0].proto.max_chars == reading.MAX_NOTE  # the browser stops typing at the limit


def test_changing_a_rating_through_previous_and_a_click_in_image_pixels(rex: Actor) -> None:
    at = _rate(_page(rex), 5, "Yes")
    at = _rate(at, 3, "No")
    assert _case(at) == "Case 3 of 10"
    at.button(key="rv-prev").click().run()  # the P key
    assert _case(at) == "Case 2 of 10" and at.button(key="rv-score-3").proto.type == "primary"
    assert at.button(key="rv-plausible-No").proto.type == "primary"
    # a click at (160, 480) of the picture shown 640 × 640 wide: image pixel (8, 24) of the 32 × 32 image
    at.session_state["rv-image-0"] = {"x": 160, "y": 480, "width": 640, "height": 640, "unix_time": 1}
    at.run()
    assert "x 8.0, y 24.0" in " ".join(c.value for c in at.caption)
    at = _rate(at, 1, "Yes")
    assert _case(at) == "Case 3 of 10"  # back to the first case not rated
    ratings = {r["case_key"]: r for r in reading.my_ratings(STUDY, "rex", owner="rex")}
    second = reading.queue(STUDY, "rex")[1][1]
    assert len(ratings) == 2 and ratings[second]["evidence_match"] == 1 and ratings[second]["plausible"] is True
    assert (ratings[second]["point_x"], ratings[second]["point_y"]) == (8.0, 24.0)


def test_submitting_the_study_makes_the_ratings_final(rex: Actor) -> None:
    at = _page(rex)
    for i in range(10):
        at = _rate(at, 1 + i % 5, "Yes")
    assert not at.error and "All 10 cases are rated" in at.success[0].value
    assert at.get("progress")[0].proto.text == "10 of 10 rated"
    at.button(key="rv-submit").click().run()
    assert not at.exception and "ratings are final" in at.success[0].value
    assert studies.study_status(STUDY).set_index("reviewer").loc["rex", "submitted_at"] is not None
