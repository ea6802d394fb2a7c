"""The study file: one YAML file naming a whole study, validated with pydantic.

A study has one or more *parts* (``parts: {name: part}``; a file with ``dataset:`` at the top is
one part named after the study). A part names its dataset (generator build parameters or an
imported folder), its models (architectures, width, pre-training sources, the ``grid`` of
fine-tuning degrees or the ``tl-ft`` protocol, training settings), its attribution methods and
their parameters, its ground-truth metrics, its drift comparisons, the sample selections and,
optionally, the checks beyond the two studies (``beyond``: faithfulness, sanity).
:func:`load_study` reads and validates a file; a bad file raises :class:`StudyError` with one line
naming the key path and the allowed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, field_validator
from pydantic import model_validator

from models.architectures import DEGREES, list_architectures
from models.grid import GRID_INIT
from models.pretraining import list_pretraining_sources
from xai_core.attribution.registry import get_method, list_methods
from xai_core.data.params import KNOBS, make_params
from xai_core.errors import ConfigError, XAuditError
from xai_core.metrics import faithfulness as _faithfulness  # noqa: F401  (registers the faithfulness metrics)
from xai_core.metrics.chance_maps import CHANCE_METHODS
from xai_core.metrics.drift_job import CROSS_METHODS, DRIFT_SELECTIONS
from xai_core.metrics.evaluate_job import GT_SELECTIONS
from xai_core.metrics.registry import list_faithfulness_metrics, list_ground_truth_metrics
from xai_core.metrics.sanity_randomise import check_layers

PROTOCOLS = ("grid", "tl-ft")
SPLITS = ("train", "val", "test")


class StudyError(ConfigError):
    """A study file that cannot be read or does not validate (one line: key path and allowed values)."""


def _one_of(value: str, allowed: list[str] | tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ImportSpec(_Strict):
    """A folder of the user's labelled images (``xaudit data import``)."""

    folder: str
    size: PositiveInt | None = None
    seed: int = 0
    split_csv: str | None = None
    allow_unbalanced: bool = False


class DatasetSpec(_Strict):
    """The dataset: ``build`` (generator parameters, ``xaudit data build``) or ``import``."""

    name: str = Field(min_length=1, max_length=200)
    build: dict[str, Any] | None = None
    import_: ImportSpec | None = Field(default=None, alias="import")

    @field_validator("build")
    @classmethod
    def _build(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        unknown = sorted(k for k in value if k not in KNOBS)
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r}; allowed: {', '.join(KNOBS)}")
        try:
            make_params(**value)
        except XAuditError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        if (self.build is None) == (self.import_ is None):
            raise ValueError("give exactly one of build (generator parameters) or import (a folder)")
        return self


class PretrainSpec(_Strict):
    """Pre-training sources; ``steps``/``size`` for the sources this project pre-trains itself."""

    sources: list[str] = Field(min_length=1)
    steps: PositiveInt | None = None
    size: PositiveInt | None = None

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        return [_one_of(v, list_pretraining_sources(), "pre-training source") for v in value]

    def kwargs(self) -> dict[str, Any]:
        """``ensure_pretrained``/``train_grid`` pre-training keyword arguments."""
        return pretrain_kwargs(self.steps, self.size)


def pretrain_kwargs(steps: int | None, size: int | None) -> dict[str, Any]:
    """``ensure_pretrained`` keyword arguments of the set values (None: the source's default)."""
    return {k: v for k, v in (("steps", steps), ("size", size)) if v is not None}


class TrainingSpec(_Strict):
    """Training settings (``models.finetune.TrainConfig`` fields; unset ones keep its defaults)."""

    epochs: PositiveInt | None = None
    ft_epochs: PositiveInt | None = None  # ``tl-ft``: the FT run's epochs (default: ``epochs``)
    lr: PositiveFloat | None = None
    batch_size: PositiveInt | None = None
    weight_decay: float | None = None
    patience: PositiveInt | None = None
    min_epochs: PositiveInt | None = None
    seed: int = 0
    augment: bool = False
    amp: bool = True
    save_every: PositiveInt | None = None
    init: Literal[GRID_INIT] = "previous"  # type: ignore[valid-type]

    def config_fields(self) -> dict[str, Any]:
        """The set ``TrainConfig`` fields (``init`` is the grid's and ``ft_epochs`` the ``tl-ft``
        protocol's, not the config's)."""
        names = ("epochs", "lr", "batch_size", "weight_decay", "patience", "min_epochs", "save_every")
        out = {k: getattr(self, k) for k in names if getattr(self, k) is not None}
        return {**out, "seed": self.seed, "augment": self.augment, "amp": self.amp}


class ModelsSpec(_Strict):
    """Architectures × pre-training sources × (degrees of the ``grid`` | the ``tl-ft`` protocol)."""

    archs: list[str] = Field(min_length=1)
    width: PositiveFloat = 1.0
    pretrain: PretrainSpec
    protocol: Literal[PROTOCOLS] = "grid"  # type: ignore[valid-type]
    degrees: list[str] = Field(default_factory=lambda: list(DEGREES))
    training: TrainingSpec = Field(default_factory=TrainingSpec)

    @field_validator("archs")
    @classmethod
    def _archs(cls, value: list[str]) -> list[str]:
        return [_one_of(v, list_architectures(), "architecture") for v in value]

    @field_validator("degrees")
    @classmethod
    def _degrees(cls, value: list[str]) -> list[str]:
        return [_one_of(v, DEGREES, "fine-tuning degree") for v in value]

    @model_validator(mode="after")
    def _ft_epochs(self) -> ModelsSpec:
        if self.training.ft_epochs is not None and self.protocol != "tl-ft":
            raise ValueError("training.ft_epochs applies to protocol tl-ft only; drop it or set protocol: tl-ft")
        return self


class MethodsSpec(_Strict):
    """Attribution methods (``all``: every method the architecture supports) and their parameters."""

    names: list[str] | Literal["all"] = "all"
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    split: Literal[SPLITS] = "test"  # type: ignore[valid-type]
    samples: PositiveInt | None = None  # maps per checkpoint and method (None: the whole split)
    shard: PositiveInt = 64  # samples per map task

    @field_validator("names")
    @classmethod
    def _names(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, str):
            return value
        return [_one_of(v, list_methods(), "attribution method") for v in value]

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for method, params in value.items():
            _one_of(method, list_methods(), "attribution method")
            try:
                get_method(method).resolve(dict(params))
            except XAuditError as exc:
                raise ValueError(f"{method}: {exc}") from None
        return value


class MetricsSpec(_Strict):
    """Ground-truth metrics (None: every registered one; ``[]``: none, the part has no evaluate
    stage) and the chance-level baselines."""

    names: list[str] | None = None
    baselines: bool = True

    @property
    def enabled(self) -> bool:
        """Whether the part computes ground-truth metrics."""
        return self.names != []

    @field_validator("names")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return [_one_of(v, list_ground_truth_metrics(), "ground-truth metric") for v in value]

    @model_validator(mode="after")
    def _baselines(self) -> MetricsSpec:
        if not self.enabled and self.baselines:
            raise ValueError("baselines are scored with ground-truth metrics; with names: [] set baselines: false")
        return self


class DriftSpec(_Strict):
    """TL→FT drift: ``pairs`` ``tl-ft`` (every TL→FT pair of the part; with ``epochs`` also TL→epoch)
    or ``none``; ``cross_methods``: methods compared with each other on one checkpoint."""

    pairs: Literal["tl-ft", "none"] = "tl-ft"
    epochs: bool = True
    cross_methods: list[str] = Field(default_factory=lambda: list(CROSS_METHODS))

    @field_validator("cross_methods")
    @classmethod
    def _cross(cls, value: list[str]) -> list[str]:
        if len(value) == 1 or len(set(value)) != len(value):
            raise ValueError("needs none or two or more different methods, e.g. [layercam, gradcam_plus_plus]")
        return [_one_of(v, list_methods(), "attribution method") for v in value]


class SelectionsSpec(_Strict):
    """Which samples the metrics and the drift measures use."""

    metrics: Literal[GT_SELECTIONS] = "correct"  # type: ignore[valid-type]
    drift: Literal[DRIFT_SELECTIONS] = "true_positive"  # type: ignore[valid-type]


def _known_methods(value: list[str]) -> list[str]:
    return [_one_of(v, list_methods(), "attribution method") for v in value]


class FaithfulnessCheck(_Strict):
    """Faithfulness to the model (Petsiuk et al. 2018: deletion/insertion AUC, ...) of the stored maps
    of ``methods`` and of the chance maps (with ``metrics.baselines``) on the checkpoints of
    ``degrees`` (``tl-ft``: tl and all), on the first ``samples`` samples (by id) of each
    (checkpoint, method) that ``selections.metrics`` selects among those with maps."""

    degrees: list[str] = Field(default_factory=lambda: ["all"], min_length=1)
    methods: list[str] = Field(min_length=1)
    metrics: list[str] | None = None  # None: every registered faithfulness metric
    samples: PositiveInt | None = None  # None: every selected sample

    @field_validator("degrees")
    @classmethod
    def _degrees(cls, value: list[str]) -> list[str]:
        return [_one_of(v, DEGREES, "fine-tuning degree") for v in value]

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        return _known_methods(value)

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return [_one_of(v, list_faithfulness_metrics(), "faithfulness metric") for v in value]

    def metric_names(self) -> list[str]:
        """The metrics scored: as listed, else every registered faithfulness metric."""
        return self.metrics or list_faithfulness_metrics()


class SanityCheck(_Strict):
    """Adebayo et al.'s cascading model-randomisation test of ``methods`` (and the ``control``, a
    chance map that never looks at the model and must fail) on the first ``samples`` images of the
    methods' split, on the all-layers FT checkpoint of ``pretrain`` (default: the part's first
    source) of each architecture; ``layers``: the cascade steps (default every layer)."""

    methods: list[str] = Field(min_length=1)
    layers: list[str] | None = None
    control: str | None = "baseline_sobel"
    pretrain: str | None = None
    samples: PositiveInt = 16

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        return _known_methods(value)

    @field_validator("control")
    @classmethod
    def _control(cls, value: str | None) -> str | None:
        return None if value is None else _one_of(value, CHANCE_METHODS, "chance map")


class BeyondSpec(_Strict):
    """The checks beyond the two studies; an absent section runs none."""

    faithfulness: FaithfulnessCheck | None = None
    sanity: SanityCheck | None = None


class StudyPart(_Strict):
    """One dataset and everything built on it."""

    dataset: DatasetSpec
    models: ModelsSpec
    methods: MethodsSpec = Field(default_factory=MethodsSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    drift: DriftSpec = Field(default_factory=DriftSpec)
    selections: SelectionsSpec = Field(default_factory=SelectionsSpec)
    beyond: BeyondSpec | None = None

    def trained_degrees(self) -> list[str]:
        """The degrees whose checkpoints the part trains: the grid's (``tl-ft``: tl and all)."""
        return ["tl", "all"] if self.models.protocol == "tl-ft" else list(self.models.degrees)

    def sanity_source(self) -> str | None:
        """The pre-training source of the sanity check's checkpoint (None: no ``beyond.sanity``)."""
        if self.beyond is None or self.beyond.sanity is None:
            return None
        return self.beyond.sanity.pretrain or self.models.pretrain.sources[0]

    @model_validator(mode="after")
    def _beyond(self) -> StudyPart:
        """The checks name what the part makes: its degrees and explained methods, its sources and
        the layers of its architectures."""
        faith, sanity = (self.beyond.faithfulness, self.beyond.sanity) if self.beyond else (None, None)
        if faith is not None:
            for degree in faith.degrees:
                _part_has(degree, self.trained_degrees(), "beyond.faithfulness.degrees", "degrees the part trains")
            if self.methods.names != "all":
                for method in faith.methods:
                    _part_has(method, self.methods.names, "beyond.faithfulness.methods",
                              "methods the part explains (methods.names)")
        if sanity is not None:
            _part_has(str(self.sanity_source()), self.models.pretrain.sources, "beyond.sanity.pretrain",
                      "pre-training sources of the part")
            _part_has("all", self.trained_degrees(), "beyond.sanity", "degrees the part trains (it checks the all "
                      "checkpoint)")
            for arch in self.models.archs:
                try:
                    check_layers(arch, sanity.layers)
                except XAuditError as exc:
                    raise ValueError(f"beyond.sanity.layers: {exc}") from None
        return self


def _part_has(value: str, allowed: list[str], key: str, what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{key}: {value!r} is not among the {what}; allowed: {', '.join(allowed)}")


PART_KEYS = tuple(StudyPart.model_fields)


class Study(_Strict):
    """A whole study: its parts, in order, and whether a report is written at the end."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    description: str = ""
    report: bool = True
    parts: dict[str, StudyPart] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _single_part(cls, data: Any) -> Any:
        """A file with the part keys at the top is one part named after the study."""
        if isinstance(data, dict) and "parts" not in data and any(k in data for k in PART_KEYS):
            part = {k: data[k] for k in PART_KEYS if k in data}
            rest = {k: v for k, v in data.items() if k not in PART_KEYS}
            return {**rest, "parts": {str(data.get("name", "study")): part}}
        return data


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------
def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model an annotation holds (``Model``, ``Model | None``, ``dict[str, Model]``) and whether
    it is a mapping of them (then the next key path element is a mapping key)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = getattr(annotation, "__args__", ())
    model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return model, getattr(annotation, "__origin__", None) is dict


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed where ``loc`` points (for an unknown-key error)."""
    current: type[BaseModel] | None = model
    skip = False
    for part in loc[:-1]:
        if skip:
            skip = False
            continue
        if current is None:
            return []
        field = current.model_fields.get(str(part)) or next(
            (f for f in current.model_fields.values() if f.alias == part), None)
        if field is None:
            return []
        current, skip = _model_in(field.annotation)
    if current is None:
        return []
    return [f.alias or name for name, f in current.model_fields.items()]


def describe_error(error: ValidationError, source: str) -> str:
    """One line for the first validation error: ``source: key.path: problem; allowed: ...``."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    path = ".".join(str(p) for p in loc) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(Study, loc)
        return f"{source}: {path}: unknown key; allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{source}: {path}: required key is missing"
    message = str(first["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        expected = first.get("ctx", {}).get("expected", "")
        message = f"{first['input']!r} is not allowed; allowed: {expected}"
    return f"{source}: {path}: {message}"


def parse_study(data: Any, source: str = "study") -> Study:
    """Validate an already-parsed study mapping; :class:`StudyError` names the first bad key."""
    if not isinstance(data, dict):
        raise StudyError(f"{source}: the file must be a YAML mapping with the keys name, parts (or dataset, models, ...)")
    try:
        return Study.model_validate(data)
    except ValidationError as exc:
        raise StudyError(describe_error(exc, source)) from None


def load_study(path: str | Path) -> Study:
    """Read and validate the study file at ``path``."""
    file = Path(path)
    if not file.is_file():
        raise StudyError(f"study file {file} does not exist; pass a YAML file (presets are in studies/)")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise StudyError(f"{file.name}: not valid YAML{where}; check the indentation and colons") from None
    return parse_study(data, file.name)


def studies_dir() -> Path:
    """The shipped presets: ``xai_core/studies`` (package data, so an installed wheel has them;
    ``studies/`` at the repository root links to it)."""
    return Path(__file__).resolve().parents[1] / "studies"
