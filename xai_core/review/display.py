"""What the Reading page draws, as arrays: window/level of the image, the heat-map overlay, the
lesion outline, the zoomed crop, the reviewer's click mark, and the mapping of a click on the
shown picture back to image pixels. No Streamlit; the page only shows :func:`compose`'s result.

Coordinates: ``x`` is the column and ``y`` the row, in image pixels; pixel ``(i, j)`` covers
``[i, i + 1) × [j, j + 1)``, so a continuous point ``(x, y)`` lies in pixel ``(floor(x), floor(y))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xai_core.errors import InvalidValueError

DISPLAY_PX = 640  # the shown picture's longer side, at least (nearest-neighbour upscaling)
OUTLINE_PX = 2  # the lesion outline's width in shown pixels
OUTLINE_RGB = (0.0, 1.0, 1.0)  # cyan: not a colour of the heat map's scale
MARK_RGB = (0.2, 1.0, 0.2)  # the reviewer's click
ZOOMS = (1.0, 1.5, 2.0, 3.0, 4.0)


@dataclass(frozen=True)
class Box:
    """A half-open crop ``[x0, x1) × [y0, y1)`` of the image, in image pixels."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True)
class Composed:
    """The picture to show (``(h·scale, w·scale, 3)`` uint8), the crop of the image it shows and
    the upscaling factor (shown pixels per image pixel)."""

    rgb: np.ndarray
    box: Box
    scale: int


def window_level(image: np.ndarray, level: float, width: float) -> np.ndarray:
    """Display intensities: ``level - width/2`` maps to 0 and ``level + width/2`` to 1, linearly,
    clipped to [0, 1] (the radiologist's window/level on an image scaled to [0, 1])."""
    if not (math.isfinite(level) and math.isfinite(width) and width > 0):
        raise InvalidValueError(f"window width must be a positive number, got {width!r} (level {level!r})")
    low = level - width / 2.0
    return np.clip((np.asarray(image, dtype=np.float32) - low) / width, 0.0, 1.0).astype(np.float32)


def hot(values: np.ndarray) -> np.ndarray:
    """The black → red → yellow → white colour scale: ``(r, g, b) = clip(3v, 3v - 1, 3v - 2)``
    for values in [0, 1]; shape ``(..., 3)``."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    return np.clip(3.0 * v - np.array([0.0, 1.0, 2.0], dtype=np.float32), 0.0, 1.0)


def overlay(gray: np.ndarray, heat: np.ndarray, opacity: float) -> np.ndarray:
    """The grey image with the heat map blended on top: a pixel's alpha is ``opacity · heat``
    (cold pixels stay transparent), its colour :func:`hot` of the heat. ``(H, W, 3)`` in [0, 1]."""
    if not 0.0 <= opacity <= 1.0:
        raise InvalidValueError(f"heat-map opacity must be in [0, 1], got {opacity!r}")
    h = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    alpha = (opacity * h)[..., None]
    return ((1.0 - alpha) * np.asarray(gray, dtype=np.float32)[..., None] + alpha * hot(h)).astype(np.float32)


def erode(mask: np.ndarray) -> np.ndarray:
    """Binary erosion with the 4-neighbourhood; outside the array counts as background."""
    padded = np.pad(np.asarray(mask, dtype=bool), 1)
    return (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])


def outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """The inner boundary of ``mask``, ``thickness`` pixels wide: mask pixels within
    ``thickness`` 4-neighbour steps of the background (outside the array counts as background)."""
    inner = np.asarray(mask, dtype=bool)
    for _ in range(thickness):
        inner = erode(inner)
    return np.asarray(mask, dtype=bool) & ~inner


def zoom_box(shape: tuple[int, int], factor: float, center: tuple[float, float] | None = None) -> Box:
    """The crop a zoom of ``factor`` shows: ``round(W / factor) × round(H / factor)`` pixels around
    ``center`` (x, y; the image centre by default; the start rounded half up), shifted to stay
    inside the image."""
    if not (math.isfinite(factor) and factor >= 1.0):
        raise InvalidValueError(f"zoom must be at least 1, got {factor!r}")
    height, width = shape
    w, h = max(1, round(width / factor)), max(1, round(height / factor))
    cx, cy = (width / 2.0, height / 2.0) if center is None else center
    x0 = min(max(math.floor(cx - w / 2.0 + 0.5), 0), width - w)  # rounded half up
    y0 = min(max(math.floor(cy - h / 2.0 + 0.5), 0), height - h)
    return Box(x0, y0, x0 + w, y0 + h)


def upscale(array: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of the first two axes by the integer ``scale``."""
    return np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)


def display_scale(box: Box, target: int = DISPLAY_PX) -> int:
    """Shown pixels per image pixel: the integer that brings the crop's longer side to ``target``
    or just under it (at least 1)."""
    return max(1, target // max(box.width, box.height))


def outline_in_box(mask: np.ndarray, box: Box, scale: int, thickness: int = OUTLINE_PX) -> np.ndarray:
    """The lesion's outline over ``box`` at the shown resolution (``box`` upscaled by ``scale``),
    ``thickness`` shown pixels wide; the crop's edge is no boundary (the pixels beyond it decide)."""
    margin = max(1, math.ceil(thickness / scale))
    padded = np.pad(np.asarray(mask, dtype=bool), margin)  # outside the image: background
    part = padded[box.y0:box.y1 + 2 * margin, box.x0:box.x1 + 2 * margin]
    ring = outline(upscale(part, scale), thickness)
    edge = margin * scale
    return ring[edge:-edge, edge:-edge]


def to_image_pixels(x: float, y: float, shown_width: float, shown_height: float, box: Box) -> tuple[float, float]:
    """Image-pixel coordinates of the point ``(x, y)`` of the shown picture (``shown_width`` ×
    ``shown_height`` pixels on screen, showing ``box``), kept inside ``box``."""
    if not (shown_width > 0 and shown_height > 0):
        raise InvalidValueError(f"the shown picture has no size ({shown_width}×{shown_height})")
    ix = box.x0 + float(x) * box.width / float(shown_width)
    iy = box.y0 + float(y) * box.height / float(shown_height)
    return (min(max(ix, box.x0), math.nextafter(box.x1, box.x0)),
            min(max(iy, box.y0), math.nextafter(box.y1, box.y0)))


def mark(rgb: np.ndarray, point: tuple[float, float], box: Box, scale: int, arm: int = 6,
         color: tuple[float, float, float] = MARK_RGB) -> np.ndarray:
    """``rgb`` (the shown picture) with a cross of half-width ``arm`` (2 pixels thick) at the image
    point ``(x, y)``; unchanged when the point lies outside ``box``."""
    x, y = point
    if not (box.x0 <= x < box.x1 and box.y0 <= y < box.y1):
        return rgb
    out = rgb.copy()
    px, py = int((x - box.x0) * scale), int((y - box.y0) * scale)
    rows, cols = out.shape[:2]
    value = np.asarray(color, dtype=out.dtype) * (255 if out.dtype == np.uint8 else 1)
    out[max(py - 1, 0):py + 1, max(px - arm, 0):min(px + arm + 1, cols)] = value
    out[max(py - arm, 0):min(py + arm + 1, rows), max(px - 1, 0):px + 1] = value
    return out


def compose(image: np.ndarray, heatmap: np.ndarray, lesion: np.ndarray | None, *, level: float = 0.5,
            width: float = 1.0, show_heatmap: bool = True, opacity: float = 0.5, zoom: float = 1.0,
            center: tuple[float, float] | None = None, point: tuple[float, float] | None = None,
            target: int = DISPLAY_PX) -> Composed:
    """The picture the Reading page shows: the zoomed crop of ``image`` under window/level, the
    heat map on top (when ``show_heatmap``), the lesion outline (when ``lesion`` is given) and
    the reviewer's click, upscaled (nearest neighbour) to about ``target`` pixels."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or np.shape(heatmap) != image.shape or (lesion is not None and np.shape(lesion) != image.shape):
        raise InvalidValueError(f"image, heat map and lesion must be (H, W) of one shape, got {image.shape}, "
                                f"{np.shape(heatmap)}, {None if lesion is None else np.shape(lesion)}")
    box = zoom_box(image.shape, zoom, center)
    crop = (slice(box.y0, box.y1), slice(box.x0, box.x1))
    gray = window_level(image[crop], level, width)
    rgb = overlay(gray, np.asarray(heatmap)[crop], opacity) if show_heatmap else np.repeat(gray[..., None], 3, axis=2)
    scale = display_scale(box, target)
    shown = np.round(upscale(rgb, scale) * 255.0).astype(np.uint8)
    if lesion is not None:
        shown[outline_in_box(lesion, box, scale)] = np.round(np.asarray(OUTLINE_RGB) * 255).astype(np.uint8)
    if point is not None:
        shown = mark(shown, point, box, scale)
    return Composed(shown, box, scale)
