"""Attribution engine: every method of both studies, batched on any device, stored and cached.

Public API::

    explain(model, images, method, target=None, **params) -> np.ndarray (N, H, W) float32
    explain_with_info(...) -> Explanation (maps, targets, seconds, device, params)
    list_methods() -> list[str];  get_method(name) -> MethodSpec;  register_method (decorator)
    capabilities(arch) -> {method: True | reason};  capability_matrix()
    params_hash(method, params) -> str
    explain_checkpoint(checkpoint_ref, method, sample_pks=None, split=None, params=None, ...) (job)
    explain_samples(checkpoint_id, sample_pks, method, **params) -> np.ndarray  (cached or computed)
    load_maps(checkpoint_id, method, sample_pks, params=None) -> np.ndarray
"""

from xai_core.attribution import methods as _methods  # noqa: F401,E402  (registers the methods)
from xai_core.attribution.canonical import prepare  # noqa: E402
from xai_core.attribution.capabilities import capabilities, capability_matrix, check_supported  # noqa: E402
from xai_core.attribution.engine import Explanation, explain, explain_with_info, postprocess  # noqa: E402
from xai_core.attribution.jobs import (  # noqa: E402
    ExplainJobResult,
    SampleMaps,
    explain_checkpoint,
    explain_samples,
    explain_samples_info,
    load_maps,
    read_maps,
)
from xai_core.attribution.registry import (
    MethodSpec,
    Param,
    equivalence_column,
    equivalent_pairs,
    get_method,
    list_methods,
    params_hash,
    register_method,
)
from xai_core.attribution.store import StoredMaps, stored_pks  # noqa: E402

__all__ = [
    "ExplainJobResult",
    "Explanation",
    "SampleMaps",
    "StoredMaps",
    "explain_checkpoint",
    "equivalence_column",
    "equivalent_pairs",
    "explain_samples",
    "explain_samples_info",
    "load_maps",
    "read_maps",
    "stored_pks",
    "MethodSpec",
    "Param",
    "capabilities",
    "capability_matrix",
    "check_supported",
    "explain",
    "explain_with_info",
    "get_method",
    "list_methods",
    "params_hash",
    "postprocess",
    "prepare",
    "register_method",
]
