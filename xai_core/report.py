"""``xaudit report``: one self-contained HTML file (plotly figures embedded) plus CSV tables.

It carries the MRI study's comparisons (precision by method × pre-training × degree; accuracy vs
precision with the accuracy-controlled effect), the chest X-ray study's drift tables with the
ranking-reversal check and the drift study at its grain (TL vs FT accuracy, drift with spread per
pair, cross-method agreement, drift along epochs, what the demo's stand-ins limit), beyond the
studies (verdict cards on faithfulness, sanity checks and suppressor/confounder regions, with their
tables), the reader studies' ratings and agreement, and a plain statement of which findings this
workspace reproduces.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import plotly.io as pio

from db import get_engine
from xai_core.attribution import equivalence_column
from xai_core.config import home, workspace_dir
from xai_core.errors import WorkspaceError
from xai_core.findings import CI_RULE, NEAR_CHANCE_RULE, UNTESTABLE, VERDICT_TONES, Finding, headline_findings
from xai_core.metrics import CHANCE_METHODS, ci_table, summarise
from xai_core.metrics.figures import accuracy_scatter, ci_bars, degree_lines, drift_box
from xai_core.metrics.queries import (
    accuracy_frame,
    cross_method_table,
    drift_by_epoch,
    drift_frame,
    drift_study_table,
    gt_frame,
    phase_accuracy_table,
    reversal_table,
    write_frame,
)
from xai_core.metrics.registry import DRIFT_METRICS, GROUND_TRUTH_METRICS, MetricSpec, list_ground_truth_metrics
from xai_core.progress import Progress, silent
from xai_core.registry import Registry


def _table_html(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    if frame.empty:
        return "<p><em>no rows</em></p>"
    return frame.to_html(index=False, float_format=floatfmt.format, border=0, classes="t")


def _figure_html(fig, first: list[bool]) -> str:
    include = "inline" if first[0] else False
    first[0] = False
    return pio.to_html(fig, include_plotlyjs=include, full_html=False)


METHODS_TEXT = (
    "<h2>Methods</h2><p>Explanation precision is the share of a map's top-n pixels inside the lesion mask "
    "(n = lesion size), on correctly classified test images. " + html.escape(CI_RULE) + " The per-cell tables "
    "use the percentile bootstrap of the cell's rows (one row per image in a cell). "
    + html.escape(NEAR_CHANCE_RULE) + " Each finding's card names the rule and thresholds of its verdict.</p>"
)


def finding_card_html(finding: Finding) -> str:
    """One finding as an HTML card (all text escaped): verdict badge, study, claim, evidence, rule."""
    e = html.escape
    badge = VERDICT_TONES.get(finding.verdict, "none")
    summary = "Why it is not testable here" if finding.verdict == UNTESTABLE else "How this verdict is decided"
    rule = (f"<details{' open' if finding.verdict == UNTESTABLE else ''}><summary>{summary}</summary>"
            f"<p>{e(finding.rule)}</p></details>") if finding.rule else ""
    return (f'<div class="card"><span class="badge {badge}">{e(finding.verdict)}</span> '
            f'<span class="study">{e(finding.study)}</span><p><b>Claim:</b> {e(finding.claim)}</p>'
            f"<p><b>Evidence:</b> {e(finding.evidence)}</p>{rule}</div>")


def _with_notes(wide: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """A method-indexed table with a ``note`` column where two methods give the same maps, and the notes."""
    notes, why = equivalence_column(list(wide.index))
    if any(notes):
        wide = wide.copy()
        wide.insert(0, "note", notes)
    return wide, "".join(f"<p><em>{html.escape(text)}</em></p>" for text in why)


def metrics_table(registry: Registry[MetricSpec]) -> pd.DataFrame:
    """The registered metrics as the report lists them: name, label, direction, range, source."""
    return pd.DataFrame([{"metric": m.name, "meaning": m.label, "better": m.direction,
                          "range": f"{m.value_range[0]:g} to {m.value_range[1]:g}", "source": m.paper}
                         for m in registry.entries()], columns=["metric", "meaning", "better", "range", "source"])


def build_sections(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The report's HTML sections; fills ``tables`` with the CSV tables it shows."""
    first = [True]
    parts: list[str] = []
    findings = headline_findings()
    tables["findings"] = pd.DataFrame([f.__dict__ for f in findings])
    parts.append("<h2>Findings on this workspace</h2>" + "".join(finding_card_html(f) for f in findings))
    parts.append(METHODS_TEXT)

    gt = gt_frame("correct")
    parts.append("<h2>Explanation performance (Oliveira et al. 2024)</h2>")
    if gt.empty:
        parts.append("<p>No ground-truth metrics yet: run <code>xaudit explain</code> then "
                     "<code>xaudit evaluate</code>.</p>")
    else:
        summary = summarise(gt, ["method", "pretrain", "degree"], list_ground_truth_metrics(), n_boot=1000)
        tables["benchmark"] = summary
        precision = summary[summary["metric"] == "precision"]
        parts.append("<p>Mean explanation precision on correctly classified test images, 95% "
                     f"bootstrap CI; chance-level maps: {', '.join(CHANCE_METHODS)}.</p>")
        wide, notes = _with_notes(ci_table(precision))
        parts.append(_table_html(wide.reset_index()) + notes)
        parts.append("<h3>Ground-truth metrics</h3>" + _table_html(metrics_table(GROUND_TRUTH_METRICS)))
        lines = degree_lines(precision, "precision")
        lines.update_layout(title="Mean precision against fine-tuning degree, per method (95% CI bands)")
        parts.append(_figure_html(lines, first))
        accuracy = []
        for method in sorted(set(gt["method"]) - set(CHANCE_METHODS)):
            acc = accuracy_frame(method, "precision").dropna(subset=["accuracy"])
            if len(acc) < 2:
                continue
            fig, fit, why = accuracy_scatter(acc, "precision")
            fig.update_layout(title=f"{method}: accuracy vs precision")
            accuracy.append(acc.assign(method=method))
            effect = _table_html(fit["effects"]) if fit is not None else f"<p>no fit: {html.escape(why)}</p>"
            parts.append(f"<h3>{html.escape(method)}</h3>" + _figure_html(fig, first) + effect)
        if accuracy:
            tables["accuracy"] = pd.concat(accuracy, ignore_index=True)

    drift = drift_frame()
    parts.append("<h2>TL→FT drift (Elangovan &amp; Ting 2026)</h2>")
    if drift.empty:
        parts.append("<p>No drift rows yet: run <code>xaudit drift</code>.</p>")
    else:
        dsum = summarise(drift, ["arch", "method"], DRIFT_METRICS.list(), n_boot=1000)
        tables["drift-summary"] = dsum
        parts.append(_table_html(dsum) + "<h3>Drift metrics</h3>" + _table_html(metrics_table(DRIFT_METRICS)))
        iou = dsum[dsum["metric"] == "iou_top20"]
        parts.append(_figure_html(ci_bars(iou, "method", "arch", "top-20% IoU, TL vs FT (95% CI)"), first))
        parts.append(_figure_html(drift_box(drift, "pearson"), first))
        ranking, agreement = reversal_table("iou_top20")
        tables["rankings"], tables["reversals"] = ranking, agreement
        parts.append("<h3>Ranking reversal check (architectures ranked by top-20% IoU)</h3>")
        parts.append(_table_html(ranking) + _table_html(agreement))
    parts += drift_study_sections(tables)
    parts += beyond_sections(tables, first)
    parts += reader_study_sections(tables)
    return parts


def beyond_sections(tables: dict[str, pd.DataFrame], first: list[bool]) -> list[str]:
    """Beyond the studies: the verdict cards of :func:`xai_core.beyond.beyond_findings` (faithfulness,
    sanity checks, suppressor/confounder region), then the tables behind them. Fills ``tables`` with
    ``beyond-findings`` and, where stored, ``faithfulness``, ``sanity-summary``, ``sanity-verdicts``
    and ``region-share``."""
    from xai_core.beyond import beyond_findings  # lazy: read only when a report is written

    findings = beyond_findings()
    tables["beyond-findings"] = pd.DataFrame([f.__dict__ for f in findings])
    return (["<h2>Beyond the studies</h2><p>Is a map faithful to the model, does it depend on the model at all, and "
             "does it put mass where no class information is? Each card states the claim with its direction, what "
             "this workspace shows and the rule of its verdict.</p>"]
            + [finding_card_html(f) for f in findings]
            + faithfulness_sections(tables) + sanity_sections(tables, first) + region_sections(tables))


def faithfulness_sections(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The faithfulness table behind the card: every stored metric (deletion/insertion AUC, ROAD,
    faithfulness correlation, :mod:`xai_core.metrics.faithfulness`) per method; fills
    ``tables['faithfulness']``."""
    from xai_core.metrics.faithfulness_job import faithfulness_table, faithfulness_wide

    parts = ["<h3>Faithfulness</h3>"]
    table = faithfulness_table("correct")
    if table.empty:
        return parts + ["<p>No faithfulness metrics yet: run <code>xaudit faithfulness</code> (it runs each "
                        "checkpoint on its stored maps).</p>"]
    tables["faithfulness"] = table
    parts.append("<p>Removing the pixels a faithful map ranks highest makes the target score fall fast (low deletion "
                 "AUC, negative ROAD MoRF) and restoring them first makes it rise fast (high insertion AUC). Mean on "
                 "correctly classified test images, 95% bootstrap CI; the random map is chance.</p>")
    return parts + [_table_html(faithfulness_wide("correct").reset_index())]


def sanity_sections(tables: dict[str, pd.DataFrame], first: list[bool]) -> list[str]:
    """Adebayo et al.'s sanity checks behind the card: the point verdict per method and test, the
    similarity measures and the similarity curves by randomised layer. Fills ``tables`` with
    ``sanity-summary`` and ``sanity-verdicts``."""
    # lazy: read only when a report is written
    from xai_core.metrics.sanity_results import (
        FAIL_RULE,
        failing_methods,
        sanity_figure,
        sanity_frame,
        sanity_summary,
        sanity_verdicts,
    )
    from xai_core.metrics.sanity_similarity import SANITY_SIMILARITIES

    parts = ["<h3>Sanity checks (Adebayo et al. 2018)</h3>"]
    summary = sanity_summary(sanity_frame())
    if summary.empty:
        return parts + ["<p>No sanity checks yet: run <code>xaudit sanity CHECKPOINT --methods "
                        "saliency,baseline_sobel --mode cascading</code> (or independent, data).</p>"]
    verdicts = sanity_verdicts(summary)
    tables["sanity-summary"], tables["sanity-verdicts"] = summary, verdicts
    failing = failing_methods(verdicts)
    said = (f"Fails: {', '.join(failing)}." if failing else "No checked method fails.")
    parts.append(f"<p><b>{html.escape(said)}</b> {html.escape(FAIL_RULE)} The Sobel edge map (baseline_sobel) never "
                 "looks at the model: it is the control that must fail.</p>")
    shown = verdicts.rename(columns={"mode": "test", "step": "deciding step", "spearman": "median Spearman"})
    parts.append(_table_html(shown) + "<h4>Similarity measures</h4>" + _table_html(metrics_table(SANITY_SIMILARITIES)))
    for mode in dict.fromkeys(summary["mode"]):
        fig = sanity_figure(summary, mode)
        fig.update_layout(title=f"{mode}: median Spearman of |map|, trained vs randomised model")
        parts.append(_figure_html(fig, first))
    return parts


def region_sections(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The share of attribution on the suppressor/confounder region per dataset and method (when a
    variant dataset is evaluated); fills ``tables['region-share']``."""
    from xai_core.metrics.regions import region_frame, region_summary

    summary = region_summary(region_frame("correct"), n_boot=1000)
    if summary.empty:
        return []
    tables["region-share"] = summary
    return ["<h3>Attribution on the suppressor / confounder region</h3><p>Mean share of |attribution| on the second "
            "region with its 95% bootstrap CI, next to a uniform map's share of the same samples.</p>"
            + _table_html(summary)]


STAND_INS = (
    "<h3>What the demo's stand-ins limit</h3><p>The demo replaces the chest X-ray study's data and models with "
    "stand-ins; each drift-study verdict on a demo workspace means less than the study's:</p><ul>"
    "<li><b>Both phases working</b>: accuracy and AUC on synthetic lesions placed on MRI anatomy say that a narrow "
    "network tells those lesion shapes apart, not that it reads chest X-rays. A working TL model rests on the "
    "stand-in pre-training (small natural-image and pretext tasks trained on a CPU), not ImageNet features, so its "
    "frozen features are weaker and the TL→FT step larger than the study's.</li>"
    "<li><b>Displacement small while IoU drift depends on the architecture</b>: the three families are narrow "
    "versions at low input resolution; their last-conv-layer maps have few cells, so top-20% IoU and centre-of-mass "
    "displacement are coarsely quantised, and a difference between architectures may come from their feature-map "
    "size (each family downsamples differently) as much as from how fine-tuning changes the evidence.</li>"
    "<li><b>Ranking reversal</b>: with three architectures τ takes only the values −1, −1/3, 1/3 and 1, so one "
    "swapped pair changes it; a reversal (or none) describes these narrow networks on synthetic lesions, not "
    "DenseNet201, ResNet50V2 and InceptionV3 on chest X-rays.</li>"
    "<li><b>Drift along epochs</b>: a few epochs on a small training set; when the evidence moved is a property of "
    "this schedule.</li>"
    "<li><b>Every CI</b> resamples the test images of one synthetic benchmark and one training run per cell; it "
    "does not cover seed-to-seed variation of training.</li></ul>"
)

STUDY_METRICS = ("iou_top20", "pearson", "com_displacement")


def drift_study_sections(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The drift study at its grain: TL vs FT accuracy per pair, drift per (architecture, method,
    pre-training, pair) with SD and IQR, cross-method agreement, drift along epochs and what the
    demo's stand-ins limit. Fills ``tables`` with ``phase-accuracy``, ``drift-study``,
    ``cross-method`` and ``drift-epochs`` (the full tables; the page shows the study's metrics)."""
    parts = ["<h2>The drift study at its grain (Elangovan &amp; Ting 2026)</h2>"]
    phases = phase_accuracy_table()
    if phases.empty:
        return parts + ["<p>No TL→FT checkpoint pairs yet: train them with <code>xaudit train --protocol tl-ft "
                        "--save-every 1</code>, then <code>xaudit explain</code> and <code>xaudit drift</code>.</p>",
                        STAND_INS]
    tables["phase-accuracy"] = phases
    parts.append("<h3>Both phases: TL vs FT test accuracy and ROC-AUC</h3><p>Macro one-vs-rest AUC with more than "
                 "two classes; a phase works when its accuracy is at least chance 1/K + 0.10.</p>" + _table_html(phases))
    study = drift_study_table(n_boot=1000)
    if study.empty:
        parts.append("<p>No TL→FT drift rows yet: run <code>xaudit drift</code>.</p>")
    else:
        tables["drift-study"] = study
        shown = study[study["metric"].isin(STUDY_METRICS)]
        parts.append("<h3>Drift per architecture × method × pre-training × TL→FT pair</h3><p>Mean with 95% "
                     "bootstrap CI, and the spread between images next to it: SD and interquartile range (q25–q75). "
                     "All registered drift metrics are in drift-study.csv.</p>"
                     + _table_html(shown[["arch", "method", "pretrain", "degree", "pair", "metric", "n", "mean",
                                          "ci_low", "ci_high", "sd", "q25", "q75", "iqr"]]))
    cross = cross_method_table(n_boot=1000)
    if not cross.empty:
        tables["cross-method"] = cross
        parts.append("<h3>Cross-method agreement on the same checkpoint (LayerCAM vs Grad-CAM++)</h3>"
                     + _table_html(cross))
    epochs = drift_by_epoch(n_boot=1000)
    if not epochs.empty:
        tables["drift-epochs"] = epochs
        parts.append("<h3>Drift along fine-tuning: each kept FT epoch against TL (top-20% IoU)</h3>"
                     + _table_html(epochs))
    return parts + [STAND_INS]


# Krippendorff (2004, Content Analysis, 2nd ed., §11.4): alpha ≥ 0.800 to rely on the ratings,
# ≥ 0.667 for tentative conclusions only
ALPHA_RELIABLE, ALPHA_TENTATIVE = 0.800, 0.667


def _ci_cell(value: float, low: float, high: float, fmt: str = "{:.2f}") -> str:
    """``m [lo, hi]``, or ``-`` when there is no value."""
    if value != value:
        return "-"
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


def agreement_verdict(agreement: pd.DataFrame) -> str:
    """What the ordinal alpha of the evidence ratings allows one to say, read with its 95% CI
    against Krippendorff's thresholds (a CI that straddles one says so; nothing is claimed past it)."""
    row = agreement.loc[agreement["measure"] == "krippendorff_alpha_ordinal"]
    if row.empty or row["value"].isna().iloc[0]:
        note = row["note"].iloc[0] if not row.empty else "no agreement row"
        return f"Agreement on the evidence ratings cannot be judged here: {note.removeprefix('not testable: ')}."
    value, low, high = (float(row[c].iloc[0]) for c in ("value", "ci_low", "ci_high"))
    said = f"Krippendorff's alpha (ordinal) of the evidence ratings is {value:.3f} [95% CI {low:.3f}, {high:.3f}]"
    if low >= ALPHA_RELIABLE:
        return f"{said}: the readers agree enough (≥ {ALPHA_RELIABLE:.3f} across the CI) to rely on the mean ratings."
    if low >= ALPHA_TENTATIVE:
        return (f"{said}: enough agreement for tentative conclusions only (≥ {ALPHA_TENTATIVE:.3f} across the CI, "
                f"not ≥ {ALPHA_RELIABLE:.3f}).")
    if high < ALPHA_TENTATIVE:
        return (f"{said}: below {ALPHA_TENTATIVE:.3f} across the CI — the readers disagree too much to draw "
                "conclusions from the mean ratings.")
    return (f"{said}: the CI includes values below {ALPHA_TENTATIVE:.3f}, so it is not shown that the readers agree "
            "enough to draw conclusions; more ratings narrow it.")


def reader_study_sections(tables: dict[str, pd.DataFrame]) -> list[str]:
    """Per reader study: status and ratings; with ratings, the mean ratings per method and the
    inter-reader agreement (from :func:`xai_core.review.results.study_results`). Fills ``tables``
    with ``review-means`` and ``review-agreement``."""
    # lazy: the statistics stack (statsmodels) loads only when a report is written
    from xai_core.review.accounts import LOCAL
    from xai_core.review.results import study_results
    from xai_core.review.studies import list_studies

    e = html.escape
    parts = ["<h2>Reader studies</h2>"]
    studies = list_studies()
    if studies.empty:
        return parts + ["<p>No reader studies yet: create one with <code>xaudit review create</code>.</p>"]
    parts.append("<p>Blinded readers rate how well each map's evidence matches the lesion (1–5) and whether it is "
                 "plausible (yes/no); catch trials (random and edge maps) are left out of the means. Means per "
                 "method with 95% bootstrap CIs over images; agreement over the cases read by two or more "
                 "readers. They describe these readers' judgements; they are not a test of one method against another.</p>")
    means, agreements = [], []
    for study in studies.itertuples():
        parts.append(f"<h3>{e(study.study)}</h3><p>Status: {e(study.status)}; {study.cases} cases, "
                     f"{study.reviewers} readers; {study.rated} of {study.assigned} readings rated.</p>")
        results = study_results(study.study, actor=LOCAL)
        if results.ratings.empty:
            parts.append("<p><em>No ratings yet.</em></p>")
            continue
        by_method = results.means["method"]
        means.append(by_method.assign(study=study.study))
        agreements.append(results.agreement.assign(study=study.study))
        shown = pd.DataFrame({
            "method": by_method["method"], "ratings": by_method["n_ratings"], "readers": by_method["n_readers"],
            "images": by_method["n_cases"],
            "evidence match (1–5)": [_ci_cell(*r) for r in by_method[["evidence_match", "evidence_ci_low",
                                                                         "evidence_ci_high"]].itertuples(index=False)],
            "plausible (share)": [_ci_cell(*r) for r in by_method[["plausible", "plausible_ci_low",
                                                                    "plausible_ci_high"]].itertuples(index=False)]})
        agree = pd.DataFrame({
            "measure": results.agreement["measure"], "outcome": results.agreement["outcome"],
            "value [95% CI]": [_ci_cell(*r, fmt="{:.3f}") for r in results.agreement[["value", "ci_low", "ci_high"]]
                               .itertuples(index=False)],
            "cases": results.agreement["n_cases"], "readers": results.agreement["n_readers"],
            "note": results.agreement["note"]})
        parts.append(_table_html(shown) + f"<p>{e(agreement_verdict(results.agreement))}</p>" + _table_html(agree))
    if means:
        tables["review-means"] = pd.concat(means, ignore_index=True)
        tables["review-agreement"] = pd.concat(agreements, ignore_index=True)
    return parts


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>xaudit report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table.t{{border-collapse:collapse;
font-size:13px;margin:1em 0}} table.t td,table.t th{{padding:3px 8px;border-bottom:1px solid #ddd}}
code{{background:#f4f4f4;padding:1px 4px}}
.card{{border:1px solid #ddd;border-radius:8px;padding:.6em 1em;margin:.8em 0}} .card p{{margin:.4em 0}}
.badge{{display:inline-block;border-radius:1em;padding:2px 10px;font-weight:600;font-size:13px}}
.badge.good{{background:#d9f2e1;color:#17663a}} .badge.bad{{background:#fbdcdc;color:#9b1c1c}}
.badge.warn{{background:#fdebd0;color:#8a5300}} .badge.none{{background:#e8e8e8;color:#444}}
.study{{color:#666;font-size:13px}} details{{font-size:13px;color:#444}}</style></head><body>
<h1>xaudit report</h1><p>Workspace <code>{workspace}</code>, written {when}.</p>
{body}
</body></html>
"""


def write_report(out: str | Path | None = None, progress: Progress = silent, replace: bool = False) -> Path:
    """Write ``report.html`` and the CSV tables into ``out`` (default: a new folder under
    ``$XAUDIT_HOME/reports``), atomically (built in a temp folder, then renamed); ``replace``
    swaps out an existing report folder. Returns the HTML file's path."""
    get_engine()  # an unreachable database fails here, before any folder is made
    stamp = datetime.now(timezone.utc)
    target = Path(out) if out else workspace_dir("reports") / stamp.strftime("%Y%m%d-%H%M%S")
    if target.exists() and any(target.iterdir()) and not replace:
        raise WorkspaceError(f"report folder {target} is not empty; choose another --out")
    progress(0, 2, "computing tables")
    tables: dict[str, pd.DataFrame] = {}
    body = "\n".join(build_sections(tables))
    progress(1, 2, "writing files")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".report-", dir=target.parent))
    except OSError as exc:
        raise WorkspaceError(f"cannot write the report to {target} ({exc.strerror}); choose a writable --out") from None
    try:
        (tmp / "report.html").write_text(PAGE.format(workspace=html.escape(str(home())),
                                                     when=stamp.strftime("%Y-%m-%d %H:%M UTC"), body=body))
        for name, frame in tables.items():
            write_frame(frame, tmp / f"{name}.csv")
        if target.exists():
            old = target.with_name(f".old-{target.name}-{os.getpid()}")
            os.replace(target, old)
            shutil.rmtree(old)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    progress(2, 2, "done")
    return target / "report.html"
