"""Parameters of the lesion benchmark generator: one dataclass, a YAML loader, validation.

Every knob has a CLI flag of the same name (``rotate_deg`` -> ``--rotate-deg``) and a key of the
same name in a ``--config`` YAML file. Precedence: defaults < config file < explicit flags.
Lengths are given as fractions of the output image side and areas as fractions of the image area,
so one parameter file gives the same-looking benchmark at 128 px and at 224 px.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from xai_core.errors import ConfigError, InputFileError

CONTRAST_SIGNS = ("both", "bright", "dark")
IRREGULAR_STYLES = ("mixed", "lobulated", "spiculated")
TWO_CLASS_NAMES = ("regular", "irregular")  # the MRI study's benchmark (classes = 2)
SHAPE_CLASSES = ("ellipse", "lobulated", "spiculated", "ring", "multifocal")  # classes = K >= 3: the first K
MAX_CLASSES = len(SHAPE_CLASSES)
VARIANTS = ("none", "suppressor", "confounder")  # xai_core.data.regions: the second region of an image
VARIANT_KNOBS = ("variant", "suppressor_amplitude", "confounder_strength", "region_area")


@dataclass(frozen=True)
class GeneratorParams:
    """All knobs of ``xaudit data build``; the stored ``params.yaml`` is ``asdict`` of this."""

    n: int = 2000
    size: int = 128
    seed: int = 0
    classes: int = 2  # 2: regular vs irregular (the MRI study); 3..5: the first K of SHAPE_CLASSES
    anatomy: str | None = None  # folder of T1 volumes; None = nilearn's MNI152 template
    # slices: axial slices whose brain area is at least this fraction of the largest slice's
    min_brain_fraction: float = 0.6
    # spatial variability (MONAI Rand2DElastic: one affine + elastic resampling per sample)
    rotate_deg: float = 10.0
    scale: float = 0.08
    shear: float = 0.04
    translate: float = 0.03
    elastic_spacing: float = 0.15
    elastic_magnitude: float = 0.012
    # intensity variability (MONAI RandBiasField, RandScaleIntensity, RandGaussianNoise)
    bias_coeff: float = 0.08
    intensity_scale: float = 0.1
    noise_std: float = 0.03
    # lesions
    max_lesions: int = 2
    lesion_area_min: float = 0.008
    lesion_area_max: float = 0.020
    max_aspect: float = 2.0
    irregular_style: str = "mixed"
    contrast_min: float = 0.40
    contrast_max: float = 0.80
    contrast_sign: str = "both"
    edge_width: float = 0.015
    # split fractions (test gets the rest), stratified by class
    train_frac: float = 0.70
    val_frac: float = 0.15
    # benchmark variant (xai_core.data.regions): none | suppressor | confounder
    variant: str = "none"
    suppressor_amplitude: float = 0.3  # the distractor amplitude is uniform in [-a, a]
    confounder_strength: float = 0.9  # P(marker present == class is marked)
    region_area: float = 0.006  # suppressor disc / confounder square area (fraction of the image area)

    def to_dict(self) -> dict[str, Any]:
        """``asdict`` less the variant knobs that do not apply (``none`` stores what it stored before
        they existed, so the default benchmark's ``params.yaml`` is byte-identical)."""
        out = dataclasses.asdict(self)
        unused = {"none": VARIANT_KNOBS, "suppressor": ("confounder_strength",),
                  "confounder": ("suppressor_amplitude",)}.get(self.variant, ())
        for key in unused:
            out.pop(key)
        return out


KNOBS: tuple[str, ...] = tuple(f.name for f in fields(GeneratorParams))


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(p: GeneratorParams) -> GeneratorParams:
    """Raise ConfigError with a one-line reason when a knob is out of its range."""
    _check(isinstance(p.n, int) and p.n >= 6, f"n must be an integer >= 6 (got {p.n!r})")
    _check(isinstance(p.classes, int) and 2 <= p.classes <= MAX_CLASSES,
           f"classes must be an integer 2..{MAX_CLASSES} (got {p.classes!r})")
    if p.classes == 2:
        _check(p.n % 2 == 0, f"n must be even so both classes get exactly n/2 samples (got {p.n})")
    else:
        _check(p.n % p.classes == 0, f"n must be a multiple of classes={p.classes} so each class gets exactly "
                                     f"n/{p.classes} samples (got n={p.n})")
    _check(isinstance(p.size, int) and 16 <= p.size <= 1024, f"size must be 16..1024 (got {p.size!r})")
    _check(isinstance(p.seed, int) and p.seed >= 0, f"seed must be a non-negative integer (got {p.seed!r})")
    _check(0.05 <= p.min_brain_fraction <= 1.0, "min_brain_fraction must be in [0.05, 1]")
    _check(0 <= p.rotate_deg <= 180, "rotate_deg must be in [0, 180]")
    for key in ("scale", "shear", "translate", "elastic_magnitude", "bias_coeff", "intensity_scale", "noise_std"):
        _check(0 <= getattr(p, key) <= 0.5, f"{key} must be in [0, 0.5] (got {getattr(p, key)!r})")
    _check(0.02 <= p.elastic_spacing <= 1.0, "elastic_spacing must be in [0.02, 1] (fraction of the image side)")
    _check(isinstance(p.max_lesions, int) and 1 <= p.max_lesions <= 10, "max_lesions must be 1..10")
    _check(
        0 < p.lesion_area_min <= p.lesion_area_max <= 0.12,
        "need 0 < lesion_area_min <= lesion_area_max <= 0.12 (fractions of the image area)",
    )
    _check(1.0 <= p.max_aspect <= 4.0, "max_aspect must be in [1, 4]")
    _check(p.irregular_style in IRREGULAR_STYLES, f"irregular_style must be one of {', '.join(IRREGULAR_STYLES)}")
    _check(p.classes == 2 or p.irregular_style == "mixed",
           "irregular_style applies to the two-class benchmark only; drop it or use classes=2")
    _check(0 < p.contrast_min <= p.contrast_max <= 2.0, "need 0 < contrast_min <= contrast_max <= 2")
    _check(p.contrast_sign in CONTRAST_SIGNS, f"contrast_sign must be one of {', '.join(CONTRAST_SIGNS)}")
    _check(0 <= p.edge_width <= 0.1, "edge_width must be in [0, 0.1] (fraction of the image side)")
    _check(
        0 < p.train_frac < 1 and 0 <= p.val_frac < 1 and p.train_frac + p.val_frac < 1,
        "need 0 < train_frac, 0 <= val_frac and train_frac + val_frac < 1 (test gets the rest)",
    )
    _check(p.variant in VARIANTS, f"variant must be one of {', '.join(VARIANTS)} (got {p.variant!r})")
    _check(0 <= p.confounder_strength <= 1,
           f"confounder_strength must be in [0, 1] (got {p.confounder_strength!r}); 0.5 = no association")
    _check(0 <= p.suppressor_amplitude <= 1, f"suppressor_amplitude must be in [0, 1] (got {p.suppressor_amplitude!r})")
    _check(0 < p.region_area <= 0.05, f"region_area must be in (0, 0.05] (fraction of the image area; got {p.region_area!r})")
    defaults = GeneratorParams()
    for key, needs in (("suppressor_amplitude", "suppressor"), ("confounder_strength", "confounder")):
        _check(getattr(p, key) == getattr(defaults, key) or p.variant == needs,
               f"{key} applies to --variant {needs} only; drop it or pass --variant {needs}")
    _check(p.region_area == defaults.region_area or p.variant != "none",
           "region_area applies to --variant suppressor|confounder only; drop it or choose a variant")
    return p


def _coerce(key: str, value: Any) -> Any:
    default = GeneratorParams.__dataclass_fields__[key].default
    if value is None or key == "anatomy":
        return None if value is None else str(value)
    try:
        if isinstance(default, bool):
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"parameter {key!r} must be a {type(default).__name__} (got {value!r})") from None


def read_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML parameter file; unknown keys raise ConfigError naming the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputFileError(f"cannot read config file {path} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix its syntax") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must be a mapping of parameter: value")
    unknown = sorted(str(k) for k in raw if k not in KNOBS)
    if unknown:
        raise ConfigError(
            f"unknown config key {unknown[0]!r} in {path}; valid keys: {', '.join(KNOBS)}"
        )
    return dict(raw)


def make_params(config: str | Path | None = None, **overrides: Any) -> GeneratorParams:
    """Defaults, then the config file, then ``overrides`` whose value is not None; validated."""
    values: dict[str, Any] = {}
    if config is not None:
        values.update(read_config(config))
    unknown = sorted(k for k in overrides if k not in KNOBS)
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r}; valid: {', '.join(KNOBS)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    coerced = {k: _coerce(k, v) for k, v in values.items()}
    return validate(GeneratorParams(**coerced))


def class_names(p: GeneratorParams) -> list[str]:
    """The benchmark's class names by label: regular/irregular for two classes, else the first
    ``classes`` of :data:`SHAPE_CLASSES`."""
    return list(TWO_CLASS_NAMES) if p.classes == 2 else list(SHAPE_CLASSES[: p.classes])


KNOB_HELP: dict[str, str] = {
    "n": "number of images over all splits (a multiple of classes; n/classes per class)",
    "size": "output image side in pixels (128; 224 for the paper's setting)",
    "seed": "random seed (same seed and knobs give byte-identical files)",
    "classes": "2 = regular vs irregular; 3..5 = the first K of ellipse, lobulated, spiculated, ring, multifocal",
    "anatomy": "folder of T1 volumes; default the MNI152 template",
    "min_brain_fraction": "axial slices with brain area >= this fraction of the largest slice's",
    "rotate_deg": "max random rotation (degrees)",
    "scale": "max random zoom (fraction)",
    "shear": "max random shear",
    "translate": "max random shift (fraction of the image side)",
    "elastic_spacing": "elastic grid spacing (fraction of the image side)",
    "elastic_magnitude": "elastic displacement (fraction of the image side)",
    "bias_coeff": "max bias-field coefficient",
    "intensity_scale": "max intensity scaling (fraction)",
    "noise_std": "Gaussian noise std (image in [0, 1])",
    "max_lesions": "lesions per image are 1..max_lesions",
    "lesion_area_min": "smallest lesion area (fraction of the image area)",
    "lesion_area_max": "largest lesion area (fraction of the image area)",
    "max_aspect": "largest axis ratio of regular (elliptic) lesions",
    "irregular_style": "irregular lesions (classes=2 only): mixed | lobulated | spiculated",
    "contrast_min": "smallest lesion contrast (added intensity)",
    "contrast_max": "largest lesion contrast",
    "contrast_sign": "lesion contrast: both | bright | dark",
    "edge_width": "soft-edge width (fraction of the image side; 0 = hard edges)",
    "train_frac": "training fraction per class",
    "val_frac": "validation fraction per class (test gets the rest)",
    "variant": "none | suppressor (a region with no class information the model may use to cancel a "
               "nuisance) | confounder (a marker outside the lesion that goes with the class)",
    "suppressor_amplitude": "suppressor: the shared nuisance amplitude is uniform in [-a, a]",
    "confounder_strength": "confounder: probability that the marker's presence agrees with the class (0.5 = none)",
    "region_area": "area of the suppressor disc / confounder square (fraction of the image area)",
}
