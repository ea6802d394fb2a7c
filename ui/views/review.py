"""Review: a reviewer reads their queue of a blinded study and rates each case.

The image large, with window/level, zoom, the heat map on/off and its opacity, and the lesion
outline when the study shows it (the picture is made by :mod:`xai_core.review.display`). Ratings:
evidence match 1–5, clinically plausible yes/no, a note, optionally one click on the region the
reviewer would rely on (stored in image pixels). Keys: 1–5 rate, Y / N plausible, Enter saves
and shows the next case, P the previous one. A rating can be changed (the case navigator or P)
until the reviewer submits the study.

Buttons only record what was asked (callbacks); the save runs at the top of the next run, so the
next case is the first thing drawn after the key press.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from ui.auth import acting
from ui.common import user_errors
from xai_core.errors import InvalidValueError
from xai_core.review import display, reading

KEYS_HELP = ("Keys: **1–5** evidence match · **Y** / **N** clinically plausible · **Enter** save and next · "
             "**P** previous case (in the note, Ctrl+Enter applies the text)")
EVIDENCE_HELP = "How well the highlighted evidence matches the lesion: 1 not at all … 5 exactly"


def _case_state(study: str) -> str:
    return f"rv-case:{study}"


def _draft_key(study: str, case_key: str) -> str:
    return f"rv-draft:{study}:{case_key}"


def _note_key(study: str, case_key: str) -> str:
    return f"rv-note:{study}:{case_key}"


def _draft(cv: reading.CaseView) -> dict[str, Any]:
    """The reviewer's unsaved answers for the case shown, started from their stored rating; the
    case becomes the one the answer buttons and keys act on."""
    key = _draft_key(cv.study, cv.case_key)
    if key not in st.session_state:
        r = cv.rating
        st.session_state[key] = {"score": r and r.evidence_match, "plausible": None if r is None else r.plausible,
                                 "point": r and r.point}
    st.session_state["rv-shown"] = (cv.study, cv.case_key)
    return st.session_state[key]


def _set(field: str, value: Any) -> None:
    """Button callback: record one answer for the case shown. The case is looked up when the key
    is pressed, not bound when the button was drawn: a key pressed just after the next case
    appeared (its buttons still being redrawn) counts for that case."""
    draft = st.session_state.get(_draft_key(*st.session_state.get("rv-shown", ("", ""))))
    if draft is not None:
        draft[field] = value


def _go(study: str, case_key: str | None) -> None:
    """Show ``case_key`` next (None: the first case not rated yet)."""
    st.session_state[_case_state(study)] = case_key


def _ask_save() -> None:
    """Save and next's callback: the save runs at the top of the next run."""
    if "rv-shown" in st.session_state:
        st.session_state["rv-save"] = st.session_state["rv-shown"]


def _save(reviewer: str) -> None:
    """The save the last run's "Save and next" asked for: store the rating, then move on to the
    first case not rated yet. Runs before anything of the case is drawn."""
    study, case_key = st.session_state.pop("rv-save")
    draft = st.session_state.get(_draft_key(study, case_key))
    if draft is None:  # a repeated key press after the save went through
        return
    if draft["score"] is None:
        raise InvalidValueError("rate how well the highlighted evidence matches the lesion first (keys 1–5)")
    if draft["plausible"] is None:
        raise InvalidValueError("say whether the map is clinically plausible first (Y or N)")
    note = st.session_state.get(_note_key(study, case_key)) or ""
    reading.submit_rating(study, reviewer, case_key, draft["score"], draft["plausible"], note, draft["point"])
    del st.session_state[_draft_key(study, case_key)]
    _go(study, None)


def _picked(study: str, queue: list[tuple[int, str, bool]]) -> None:
    """The case navigator's callback: show the picked case."""
    position = st.session_state["rv-nav"]
    if position is not None:
        _go(study, queue[position][1])


def _navigator(study: str, queue: list[tuple[int, str, bool]], position: int | None) -> None:
    """The case list (any case of the queue, rated or not) and the Previous button."""
    labels = {p: f"Case {p + 1} of {len(queue)} · {'rated' if rated else 'not rated'}" for p, _, rated in queue}
    st.session_state["rv-nav"] = position  # follows the case shown (save-and-next moves it)
    st.selectbox("Go to case", list(labels), format_func=labels.get, key="rv-nav",
                 placeholder="Pick a case of your queue", on_change=_picked, args=(study, queue))
    back = len(queue) - 1 if position is None else position - 1
    st.button("Previous case", shortcut="P", key="rv-prev", disabled=back < 0, icon=":material/arrow_back:",
              on_click=_go, args=(study, queue[back][1] if back >= 0 else None))


def _view_controls(shape: tuple[int, int]) -> dict[str, Any]:
    """Window/level, heat map and zoom: kept from case to case."""
    c1, c2 = st.columns(2)
    level = c1.slider("Level", 0.0, 1.0, 0.5, 0.01, key="rv-level", help="Centre of the grey window")
    width = c2.slider("Window", 0.05, 1.0, 1.0, 0.01, key="rv-window", help="Width of the grey window (contrast)")
    c3, c4 = st.columns(2)
    show = c3.toggle("Heat map", True, key="rv-heat")
    opacity = c4.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="rv-opacity", disabled=not show)
    zoom = st.select_slider("Zoom", display.ZOOMS, value=1.0, key="rv-zoom", format_func=lambda z: f"{z:g}×")
    center = None
    if zoom > 1.0:
        c5, c6 = st.columns(2)
        center = (c5.slider("Centre x", 0, shape[1], shape[1] // 2, key="rv-cx", help="Image column the zoom shows"),
                  c6.slider("Centre y", 0, shape[0], shape[0] // 2, key="rv-cy", help="Image row the zoom shows"))
    return {"level": level, "width": width, "show_heatmap": show, "opacity": opacity, "zoom": zoom, "center": center}


REFOCUS = """<script>
// the image component's frame holds the keyboard after a click: give it back to the page (click {n})
const frame = window.document.activeElement;
if (frame && frame.tagName === "IFRAME") {{ frame.blur(); window.focus(); }}
</script>"""


def _picture(cv: reading.CaseView, view: dict[str, Any], draft: dict[str, Any]) -> None:
    """The image large; a click on it records the point (in image pixels) the reviewer relies on.

    The image component keeps its last click as its value: after taking a click the page draws a
    fresh one (a new key), and hands the keyboard back from the component's frame to the page."""
    shown = display.compose(cv.image, cv.heatmap, cv.lesion, **view)
    clicks = st.session_state.setdefault("rv-clicks", 0)
    click = st.session_state.get(f"rv-image-{clicks}")
    if click is not None:
        draft["point"] = display.to_image_pixels(click["x"], click["y"], click["width"], click["height"], shown.box)
        clicks = st.session_state["rv-clicks"] = clicks + 1
    if draft["point"] is not None:
        shown = display.Composed(display.mark(shown.rgb, draft["point"], shown.box, shown.scale), shown.box,
                                 shown.scale)
    streamlit_image_coordinates(shown.rgb, key=f"rv-image-{clicks}", width="stretch", png_compression_level=1,
                                cursor="crosshair")
    if click is not None:
        st.html(REFOCUS.format(n=clicks), unsafe_allow_javascript=True)  # fixed code, no user text
    legend = "heat map: black → red → yellow → white = more evidence"
    if cv.lesion is not None:
        legend += " · cyan outline: the lesion"
    st.caption(legend + " · click the image to mark the region you would rely on (green cross)")


def _rating(cv: reading.CaseView, draft: dict[str, Any]) -> None:
    """Evidence match, plausibility, note, the clicked point and Save and next."""
    study, key = cv.study, cv.case_key
    st.markdown("**The highlighted evidence matches the lesion**", help=EVIDENCE_HELP)
    row = st.container(horizontal=True)
    for score in range(1, 6):
        row.button(str(score), key=f"rv-score-{score}", shortcut=str(score), on_click=_set, args=("score", score),
                   type="primary" if draft["score"] == score else "secondary")
    st.markdown("**Clinically plausible**")
    row = st.container(horizontal=True)
    for label, value, shortcut in (("Yes", True, "Y"), ("No", False, "N")):
        row.button(label, key=f"rv-plausible-{label}", shortcut=shortcut, on_click=_set, args=("plausible", value),
                   type="primary" if draft["plausible"] is value else "secondary")
    st.text_area("Note (optional)", value=cv.rating.note if cv.rating else "", key=_note_key(study, key),
                 max_chars=reading.MAX_NOTE, height=80)
    row = st.container(horizontal=True, vertical_alignment="center")
    if draft["point"] is None:
        row.caption("No point marked (optional): click the image.")
    else:
        x, y = draft["point"]
        row.caption(f"Point you rely on: x {x:.1f}, y {y:.1f} (image pixels)")
    row.button("Clear the point", key="rv-clear-point", on_click=_set, args=("point", None),
               disabled=draft["point"] is None, type="tertiary")
    st.button("Save and next", key="rv-save-button", shortcut="Enter", type="primary", icon=":material/check:",
              on_click=_ask_save)


def _submit_panel(study: str, reviewer: str, total: int) -> None:
    """Submitting the study (asks first): the ratings become final."""
    with st.popover("Submit the study", icon=":material/send:"):
        st.write(f"Your {total} ratings become final: you cannot change them afterwards.")
        if st.button("Submit my ratings", key="rv-submit", type="primary"):
            with user_errors():
                reading.submit_study(study, reviewer)
                st.rerun()


def reading_page() -> None:
    """The reviewer's study, progress, case navigator, the case and its rating."""
    actor = acting()
    if not actor.name or actor.is_admin:
        st.info("Reading studies are rated by reviewer accounts; as an admin, set them up on the Admin page "
                "and read their outcome on the Results page.")
        return
    reviewer = actor.name
    studies = reading.reviewer_studies(reviewer)
    if not studies:
        st.info("No open reading study has cases for you yet; your study lead will tell you when one does.")
        return
    study = st.selectbox("Study", studies, key="rv-study") if len(studies) > 1 else studies[0]
    notice = st.empty()  # a save's error; always there, so the elements below keep their places
    if "rv-save" in st.session_state:
        with notice.container(), user_errors():
            _save(reviewer)
    queue = reading.queue(study, reviewer)
    total, rated = len(queue), sum(r for _, _, r in queue)
    chosen = st.session_state.get(_case_state(study))
    cv = reading.case_view(study, reviewer, chosen) if chosen else reading.next_case(study, reviewer)
    if (cv or reading.case_view(study, reviewer, queue[0][1])).submitted:
        st.success(f"You submitted this study: your {rated} ratings are final. Thank you.")
        return
    draft = None if cv is None else _draft(cv)  # before anything of the case is drawn
    left, right = st.columns([3, 2], gap="medium")
    with right:
        st.progress(rated / total, text=f"{rated} of {total} rated")
        _navigator(study, queue, None if cv is None else cv.position)
        with st.container():  # always there (see notice)
            if rated == total:
                _submit_panel(study, reviewer, total)
    if cv is None:
        left.success(f"All {total} cases are rated. Change any of them through **Go to case** or "
                     f"**Previous case**, then submit the study.")
        return
    with right:
        st.subheader(f"Case {cv.position + 1} of {cv.total}")
        st.caption("Not rated yet." if cv.rating is None else
                   "Rated: change the answers and press Save to update the rating.")
        # filled after the picture took a click. Every case draws the same elements in the same
        # places: the buttons of the case before stay (and take keys, for the case now shown)
        # until this case's are drawn, instead of being replaced by new ones a moment later
        answers = st.container()
        st.caption(KEYS_HELP)
    with left:
        picture = st.container()  # above its controls, drawn once they are read
        with st.expander("View: window/level, heat map, zoom", expanded=True):
            view = _view_controls(cv.image.shape)
    with picture:
        _picture(cv, view, draft)
    with answers:
        _rating(cv, draft)


st.title("Review")
with user_errors():
    reading_page()
