"""The checks beyond the two studies, sized by a study part's ``beyond`` section
(:class:`~xai_core.sweep.study.BeyondSpec`): one function per check that the demo's beyond stage
and the sweep's beyond tasks both call, so the two cannot drift apart.

* faithfulness to the model (:func:`~xai_core.metrics.faithfulness_job.faithfulness`) of the stored
  maps of the check's methods that the architecture supports, and of the chance maps;
* Adebayo et al.'s cascading model-randomisation test (:func:`~xai_core.metrics.sanity_job.sanity`)
  of the check's supported methods and its control.

Both jobs skip what is stored; the ``*_pending`` functions tell the sweep's planner whether a run
would compute anything (database reads only, no model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xai_core.attribution.capabilities import capabilities
from xai_core.errors import XAuditError
from xai_core.metrics.evaluate_job import EvaluateResult, metric_plans
from xai_core.metrics.faithfulness_job import faithfulness, resolve_metrics
from xai_core.metrics.sanity_job import SanityResult, pending, sanity
from xai_core.progress import Progress, silent
from xai_core.sweep.study import FaithfulnessCheck, SanityCheck

SANITY_MODE = "cascading"  # each step randomises every layer from the head down to its own


def _supported(methods: list[str], arch: str) -> list[str]:
    """``methods`` that ``arch`` supports, in the given order."""
    caps = capabilities(arch)
    return [m for m in methods if caps.get(m) is True]


def faithfulness_methods(check: FaithfulnessCheck, arch: str) -> list[str]:
    """The check's methods that ``arch`` supports (the others have no maps to score)."""
    return _supported(check.methods, arch)


def run_faithfulness(check: FaithfulnessCheck, checkpoints: list[int], arch: str, selection: str, baselines: bool,
                     progress: Progress = silent) -> list[EvaluateResult]:
    """Score the check's metrics of the stored maps of ``checkpoints`` (all of ``arch``) on the first
    ``check.samples`` selected samples of each (checkpoint, method), and of the chance maps with
    ``baselines``; nothing when there is no checkpoint or supported method (the job would read an
    empty list as "every one")."""
    methods = faithfulness_methods(check, arch)
    if not checkpoints or not methods:
        return []
    return faithfulness(checkpoints, methods, selection=selection, baselines=baselines, metrics=check.metrics,
                        max_samples=check.samples, progress=progress)


def faithfulness_pending(check: FaithfulnessCheck, checkpoint: int, arch: str, selection: str,
                         baselines: bool) -> bool:
    """Whether :func:`run_faithfulness` of ``checkpoint`` would compute anything (also when its maps
    or predictions are not stored yet: the run then says what is missing)."""
    methods = faithfulness_methods(check, arch)
    if not methods:
        return False
    keys = [key for _, _, key in resolve_metrics(check.metrics)]
    try:
        plans, _ = metric_plans([checkpoint], methods, selection, baselines, keys, max_samples=check.samples)
    except XAuditError:
        return True
    return any(plan.todo for plan in plans)


def sanity_methods(check: SanityCheck, arch: str) -> list[str]:
    """The check's methods that ``arch`` supports, then its control (a chance map)."""
    return _supported(check.methods, arch) + ([check.control] if check.control else [])


def _sanity_kwargs(check: SanityCheck, arch: str, split: str,
                   method_params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The arguments :func:`run_sanity` and :func:`sanity_pending` pass to the job."""
    methods = sanity_methods(check, arch)
    return {"methods": methods, "mode": SANITY_MODE, "layers": check.layers, "split": split, "limit": check.samples,
            "params": {m: dict(method_params[m]) for m in methods if m in method_params}}


def run_sanity(check: SanityCheck, checkpoint: int, arch: str, split: str,
               method_params: Mapping[str, Mapping[str, Any]], progress: Progress = silent) -> list[SanityResult]:
    """The cascading sanity check of ``checkpoint`` (an ``arch``) on the first ``check.samples``
    images of ``split``, each method with its ``method_params`` (defaults otherwise)."""
    return sanity(checkpoint, progress=progress, **_sanity_kwargs(check, arch, split, method_params))


def sanity_pending(check: SanityCheck, checkpoint: int, arch: str, split: str,
                   method_params: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether :func:`run_sanity` would compute anything."""
    return pending(checkpoint, **_sanity_kwargs(check, arch, split, method_params)) > 0
