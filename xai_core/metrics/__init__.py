"""Explanation metrics: ground truth (lesion masks), drift between checkpoints, statistics, jobs.

Pure functions take ``(N, H, W)`` maps (numpy or torch) and boolean masks and return ``(N,)``
arrays; jobs read stored maps and write ``GroundTruthMetric`` / ``DriftMetric`` rows.
"""

from xai_core.metrics.baselines import BASELINE_METHODS, random_maps, sobel_maps
from xai_core.metrics.drift_measures import drift_keys, drift_metrics, gini, normalised_entropy
from xai_core.metrics.ground_truth import (
    GROUND_TRUTH_KEYS,
    average_precision,
    constant_maps,
    earth_movers_distance,
    emd_score,
    explanation_precision,
    ground_truth_metrics,
    mass_accuracy,
    pointing_game,
    roc_auc,
)
from xai_core.metrics.jobs import DriftResult, EvaluateResult, drift, evaluate
from xai_core.metrics.queries import TABLES, export_table
from xai_core.metrics.statistics import (
    STABILITY_DIRECTION,
    accuracy_controlled_effect,
    bootstrap_ci,
    ci_table,
    ci_text,
    ranking_agreement,
    stability_ranking,
    summarise,
)

__all__ = [
    "BASELINE_METHODS",
    "DriftResult",
    "EvaluateResult",
    "TABLES",
    "drift",
    "evaluate",
    "export_table",
    "GROUND_TRUTH_KEYS",
    "STABILITY_DIRECTION",
    "accuracy_controlled_effect",
    "average_precision",
    "bootstrap_ci",
    "ci_table",
    "ci_text",
    "constant_maps",
    "drift_keys",
    "drift_metrics",
    "earth_movers_distance",
    "emd_score",
    "explanation_precision",
    "gini",
    "ground_truth_metrics",
    "mass_accuracy",
    "normalised_entropy",
    "pointing_game",
    "random_maps",
    "ranking_agreement",
    "roc_auc",
    "sobel_maps",
    "stability_ranking",
    "summarise",
]
