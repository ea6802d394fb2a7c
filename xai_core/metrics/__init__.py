"""Explanation metrics: ground truth (lesion masks), drift between checkpoints, statistics, jobs.

A metric is one registered function (:mod:`xai_core.metrics.registry`) over a batch of ``(N, H, W)``
maps; the jobs ``evaluate`` (:mod:`~xai_core.metrics.evaluate_job`) and ``drift``
(:mod:`~xai_core.metrics.drift_job`) read stored maps and write one ``GroundTruthMetric`` /
``DriftMetric`` row per value; :mod:`~xai_core.metrics.queries` pivots them for the pages, the
report and the export.
"""

from xai_core.metrics.chance_maps import CHANCE_METHODS, random_maps, sobel_maps
from xai_core.metrics.drift_job import DriftResult, drift
from xai_core.metrics.drift_measures import drift_keys, drift_metrics, gini, normalised_entropy
from xai_core.metrics.evaluate_job import EvaluateResult, evaluate
from xai_core.metrics.ground_truth import (
    MapBatch,
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
from xai_core.metrics.queries import TABLES, export_table
from xai_core.metrics.registry import (
    MetricSpec,
    get_drift_metric,
    get_ground_truth_metric,
    list_drift_metrics,
    list_ground_truth_metrics,
    register_drift_metric,
    register_ground_truth_metric,
)
from xai_core.metrics.statistics import (
    accuracy_controlled_effect,
    bootstrap_ci,
    ci_table,
    ci_text,
    ranking_agreement,
    stability_ranking,
    summarise,
)
from xai_core.metrics.regions import region_share  # registers region_share (after queries: it reads them)

__all__ = [
    "CHANCE_METHODS",
    "DriftResult",
    "EvaluateResult",
    "MapBatch",
    "MetricSpec",
    "TABLES",
    "accuracy_controlled_effect",
    "average_precision",
    "bootstrap_ci",
    "ci_table",
    "ci_text",
    "constant_maps",
    "drift",
    "drift_keys",
    "drift_metrics",
    "earth_movers_distance",
    "emd_score",
    "evaluate",
    "explanation_precision",
    "export_table",
    "get_drift_metric",
    "get_ground_truth_metric",
    "gini",
    "ground_truth_metrics",
    "list_drift_metrics",
    "list_ground_truth_metrics",
    "mass_accuracy",
    "normalised_entropy",
    "pointing_game",
    "random_maps",
    "ranking_agreement",
    "register_drift_metric",
    "register_ground_truth_metric",
    "region_share",
    "roc_auc",
    "sobel_maps",
    "stability_ranking",
    "summarise",
]
