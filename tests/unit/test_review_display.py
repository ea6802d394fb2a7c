"""The Reading page's picture (xai_core.review.display): hand-computed values on small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from xai_core.errors import InvalidValueError
from xai_core.review.display import (
    Box,
    compose,
    display_scale,
    hot,
    mark,
    outline,
    outline_in_box,
    overlay,
    to_image_pixels,
    upscale,
    window_level,
    zoom_box,
)


def test_window_level_maps_the_window_linearly_and_clips() -> None:
    image = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    assert window_level(image, 0.5, 1.0).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]  # identity
    assert window_level(image, 0.5, 0.5).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]  # window [0.25, 0.75]
    assert window_level(image, 0.25, 0.5).tolist() == [0.0, 0.5, 1.0, 1.0, 1.0]  # window [0, 0.5]
    with pytest.raises(InvalidValueError, match="window width"):
        window_level(image, 0.5, 0.0)


def test_hot_colour_scale() -> None:
    np.testing.assert_allclose(hot(np.array([0.0, 1 / 3, 0.5, 2 / 3, 1.0, 2.0])),
                               [[0, 0, 0], [1, 0, 0], [1, 0.5, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]], atol=1e-6)


def test_overlay_alpha_is_opacity_times_heat() -> None:
    gray = np.array([[0.5, 0.5, 0.2]])
    heat = np.array([[0.5, 0.0, 1.0]])
    # pixel 0: alpha 0.8·0.5 = 0.4, hot(0.5) = (1, 0.5, 0): 0.6·0.5 + 0.4·(1, 0.5, 0) = (0.7, 0.5, 0.3)
    # pixel 1: no heat, the grey shows; pixel 2: alpha 0.8, hot(1) = white: 0.2·0.2 + 0.8 = 0.84
    np.testing.assert_allclose(overlay(gray, heat, 0.8)[0], [[0.7, 0.5, 0.3], [0.5, 0.5, 0.5], [0.84, 0.84, 0.84]],
                               atol=1e-6)
    np.testing.assert_allclose(overlay(gray, heat, 0.0)[0], np.repeat(gray[0][:, None], 3, axis=1))
    with pytest.raises(InvalidValueError, match="opacity"):
        overlay(gray, heat, 1.5)


def test_outline_is_the_inner_ring_of_the_mask() -> None:
    mask = np.zeros((5, 5), bool)
    mask[1:4, 1:4] = True
    ring = outline(mask)
    assert ring.sum() == 8 and not ring[2, 2] and ring[1, 1] and ring[3, 2]
    assert not ring[~mask].any()  # drawn on the lesion's own pixels, never outside
    assert outline(mask, thickness=2).sum() == 9  # the 3×3 square is two steps thin everywhere
    edge = np.ones((3, 3), bool)  # a mask filling the array: the array's border is its boundary
    assert outline(edge).sum() == 8


def test_zoom_box_centres_and_stays_inside() -> None:
    assert zoom_box((32, 32), 1.0) == Box(0, 0, 32, 32)
    assert zoom_box((32, 32), 2.0) == Box(8, 8, 24, 24)
    assert zoom_box((32, 32), 2.0, center=(2.0, 30.0)) == Box(0, 16, 16, 32)  # shifted back inside
    assert zoom_box((32, 32), 4.0, center=(20.0, 10.0)) == Box(16, 6, 24, 14)
    assert zoom_box((30, 40), 3.0) == Box(14, 10, 27, 20)  # w = round(40/3) = 13, x0 = 20 - 6.5 rounded up
    with pytest.raises(InvalidValueError, match="zoom"):
        zoom_box((32, 32), 0.5)


def test_upscale_and_display_scale() -> None:
    assert upscale(np.array([[1, 2], [3, 4]]), 2).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert display_scale(Box(0, 0, 32, 32)) == 20  # 640 / 32
    assert display_scale(Box(0, 0, 48, 30)) == 13  # 640 // 48
    assert display_scale(Box(0, 0, 1024, 1024)) == 1


def test_click_on_the_shown_picture_maps_back_to_image_pixels() -> None:
    box = Box(8, 8, 24, 24)  # zoom 2 of a 32×32 image, shown 320×320 on screen: 20 screen px per pixel
    assert to_image_pixels(160, 0, 320, 320, box) == (16.0, 8.0)
    assert to_image_pixels(30, 50, 320, 320, box) == (9.5, 10.5)
    x, y = to_image_pixels(320, 320, 320, 320, box)  # the far edge stays inside the crop
    assert 23.99 < x < 24 and 23.99 < y < 24
    assert to_image_pixels(100, 100, 200, 400, Box(0, 0, 32, 32)) == (16.0, 8.0)  # non-square display
    with pytest.raises(InvalidValueError, match="no size"):
        to_image_pixels(1, 1, 0, 320, box)


def test_outline_in_box_ignores_the_crop_edge_but_not_the_image_edge() -> None:
    mask = np.zeros((6, 6), bool)
    mask[0:4, 2:6] = True  # touches the image's top and right edges
    box = Box(3, 0, 6, 3)  # cuts the lesion on its left (x = 3) and bottom (y = 3)
    ring = outline_in_box(mask, box, scale=2, thickness=1)
    assert ring.shape == (6, 6)
    expected = np.zeros((6, 6), bool)
    expected[0, :] = True  # image top edge
    expected[:, -1] = True  # image right edge
    np.testing.assert_array_equal(ring, expected)  # no line along the cut left and bottom sides
    # the full image at scale 1: the ring of the 4×4 block, its top and right edges on the image border
    np.testing.assert_array_equal(outline_in_box(mask, Box(0, 0, 6, 6), 1, 1), outline(mask))


def test_mark_draws_a_cross_at_the_point() -> None:
    rgb = np.zeros((20, 20, 3), np.uint8)
    out = mark(rgb, (2.5, 1.5), Box(0, 0, 10, 10), scale=2, arm=3, color=(1.0, 0.0, 0.0))
    # shown pixel (5, 3): horizontal arm on rows 2-3, columns 2-8; vertical arm on columns 4-5, rows 0-6
    red = out[..., 0] == 255
    assert red[2:4, 2:9].all() and red[0:7, 4:6].all()
    assert red.sum() == 2 * 7 + 2 * 7 - 4
    assert (rgb == 0).all()  # a copy
    assert mark(rgb, (12.0, 1.0), Box(0, 0, 10, 10), scale=2) is rgb  # outside: unchanged


def test_compose_layers_window_overlay_outline_and_zoom() -> None:
    image = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    heat = np.array([[0.0, 0.0], [0.0, 1.0]], np.float32)
    lesion = np.array([[False, False], [False, True]])
    out = compose(image, heat, lesion, level=0.5, width=1.0, opacity=0.5, target=4)
    assert out.box == Box(0, 0, 2, 2) and out.scale == 2 and out.rgb.shape == (4, 4, 3)
    assert out.rgb[0, 0].tolist() == [0, 0, 0]
    assert out.rgb[0, 2].tolist() == [64, 64, 64]  # 0.25 · 255 = 63.75
    assert out.rgb[2, 0].tolist() == [128, 128, 128]  # 0.5 · 255 = 127.5 rounds to even
    assert out.rgb[3, 3].tolist() == [0, 255, 255]  # the lesion's outline (2 shown pixels wide) covers it
    plain = compose(image, heat, None, show_heatmap=False, level=0.75, width=0.5, target=2)
    assert plain.rgb[..., 0].tolist() == [[0, 0], [0, 255]]  # window [0.5, 1]: 0.5 → 0, 1 → 1
    heat_only = compose(image, heat, None, opacity=0.5, target=2)
    assert heat_only.rgb[1, 1].tolist() == [255, 255, 255]  # 0.5·1 + 0.5·hot(1) = white
    zoomed = compose(np.arange(16, dtype=np.float32).reshape(4, 4) / 15, np.zeros((4, 4)), None, zoom=2.0,
                     center=(3.0, 3.0), target=4)
    assert zoomed.box == Box(2, 2, 4, 4) and zoomed.scale == 2
    assert zoomed.rgb[::2, ::2, 0].tolist() == [[170, 187], [238, 255]]  # pixels 10, 11, 14, 15 of 15
    with pytest.raises(InvalidValueError, match="one shape"):
        compose(image, heat[:1], None)
