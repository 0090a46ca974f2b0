"""Bringing a digit image to the form MNIST digits have (used by the offline dataset and the canvas).

MNIST's recipe (LeCun et al.): the digit's bounding box is scaled, keeping its aspect ratio, to
fit a 20×20 box (anti-aliased, hence grey levels), then placed in a 28×28 field so that its centre
of mass sits at the centre. Models trained on MNIST expect exactly that framing; a raw drawing
scaled down as a whole does not look like their training data.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageChops

FIELD = 28
BOX = 20


def mnist_style(image: np.ndarray, threshold: float = 0.05) -> np.ndarray | None:
    """A white-on-black image (any size, values in [0, 1]) -> 28×28 float32, or None if blank."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {image.shape}")
    ink = image > threshold
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(ink.any(axis=0))
    digit = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = digit.shape
    scale = BOX / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    resized = np.array(Image.fromarray(digit, mode="F").resize((new_w, new_h), Image.Resampling.BILINEAR), dtype=np.float32)
    resized.clip(0.0, 1.0, out=resized)
    total = float(resized.sum())
    if total <= 0:
        return None
    # Centre of mass from the row and column sums (plain Python arithmetic: this runs per stroke
    # and 1,797 times for the offline digits).
    centre_y = float(resized.sum(axis=1) @ np.arange(new_h)) / total
    centre_x = float(resized.sum(axis=0) @ np.arange(new_w)) / total
    top = min(max(round(FIELD / 2 - centre_y), 0), FIELD - new_h)
    left = min(max(round(FIELD / 2 - centre_x), 0), FIELD - new_w)
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top : top + new_h, left : left + new_w] = resized
    return field


def canvas_to_grey(rgba: np.ndarray) -> np.ndarray:
    """The canvas's RGBA pixels (H×W×4, 0–255, white strokes on black) -> grey in [0, 1].

    The stroke's brightness is taken through its alpha, so a transparent background reads as black
    whatever its colour channels hold.
    """
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
        raise ValueError(f"expected an H×W×3 or H×W×4 image, got shape {rgba.shape}")
    rgb = rgba[..., :3].astype(np.float32).mean(axis=2) / 255.0
    if rgba.shape[2] == 4:
        rgb = rgb * (rgba[..., 3].astype(np.float32) / 255.0)
    return rgb


def canvas_png_to_grey(png: bytes, reduce: int = 2) -> np.ndarray:
    """The canvas's PNG (white strokes, any background alpha) -> grey in [0, 1], halved in size.

    Done in Pillow's C code rather than NumPy: this runs on every stroke. The digit ends up 20×20
    anyway, so a 140×140 grey image loses nothing that matters.
    """
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    if reduce > 1:
        image = image.reduce(reduce)
    grey = ImageChops.multiply(image.convert("L"), image.getchannel("A"))
    return np.asarray(grey, dtype=np.float32) / 255.0
