"""Bringing a digit image to the form MNIST digits have (used by the offline dataset and the canvas).

MNIST's recipe (LeCun et al.): the digit's bounding box is scaled, keeping its aspect ratio, to
fit a 20×20 box (anti-aliased, hence grey levels), then placed in a 28×28 field so that its centre
of mass sits at the centre. Models trained on MNIST expect exactly that framing; a raw drawing
scaled down as a whole does not look like their training data.
"""

from __future__ import annotations

import functools
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
    framed, blank = mnist_style_all(image[None], threshold)
    return None if blank[0] else framed[0]


def mnist_style_all(images: np.ndarray, threshold: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Many white-on-black images of one size (N×H×W, values in [0, 1]) framed the MNIST way at
    once: (N×28×28 float32, N booleans that are True where an image is blank, its field all 0).

    Images whose digit has the same bounding-box size are scaled together, by the matrices of
    Pillow's own bilinear filter (:func:`_resize_matrix`), so one image or 1,797 get the same
    numbers as ``Image.resize`` would give each alone.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"expected N×H×W grey images, got shape {images.shape}")
    count = len(images)
    framed = np.zeros((count, FIELD, FIELD), dtype=np.float32)
    ink = images > threshold
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    blank = ~rows.any(axis=1)
    top_ink, bottom_ink = rows.argmax(axis=1), rows.shape[1] - rows[:, ::-1].argmax(axis=1)
    left_ink, right_ink = cols.argmax(axis=1), cols.shape[1] - cols[:, ::-1].argmax(axis=1)
    heights, widths = bottom_ink - top_ink, right_ink - left_ink
    for height, width in {(h, w) for h, w, b in zip(heights, widths, blank, strict=True) if not b}:
        group = np.flatnonzero((heights == height) & (widths == width) & ~blank)
        scale = BOX / max(height, width)
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        digits = np.stack([images[i, top_ink[i] : top_ink[i] + height, left_ink[i] : left_ink[i] + width] for i in group])
        resized = _resize_matrix(height, new_h) @ digits @ _resize_matrix(width, new_w).T
        resized = resized.astype(np.float32).clip(0.0, 1.0)
        for index, digit in zip(group, resized, strict=True):
            total = float(digit.sum())
            if total <= 0:
                blank[index] = True
                continue
            centre_y = float(digit.sum(axis=1) @ np.arange(new_h)) / total
            centre_x = float(digit.sum(axis=0) @ np.arange(new_w)) / total
            top = min(max(round(FIELD / 2 - centre_y), 0), FIELD - new_h)
            left = min(max(round(FIELD / 2 - centre_x), 0), FIELD - new_w)
            framed[index, top : top + new_h, left : left + new_w] = digit
    return framed, blank


@functools.lru_cache(maxsize=512)
def _resize_matrix(size: int, new_size: int) -> np.ndarray:
    """Pillow's bilinear resize of one axis from ``size`` to ``new_size`` samples, as a matrix:
    Pillow resizes each axis separately, so resizing the identity gives the filter's weights."""
    identity = Image.fromarray(np.eye(size, dtype=np.float32), mode="F")
    weights = np.array(identity.resize((size, new_size), Image.Resampling.BILINEAR), dtype=np.float32)
    weights.flags.writeable = False
    return weights


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


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """N×28×28 digits, each moved the ways one person's drawing differs from another's: rotated
    (±12°), squeezed or widened (width 0.6–1.1×, height 0.9–1.05×: a bar "1" is much narrower than
    a serif one), shifted (±2 px), and with its strokes thinned or thickened (a 2×2 min or max
    filter, a third of the time each). Bilinear, in NumPy, for a batch at once; values stay in [0, 1]."""
    images = np.asarray(images, dtype=np.float32)
    count, height, width = images.shape
    angle = rng.uniform(-12, 12, (count, 1)) * (np.pi / 180)
    scale_x, scale_y = rng.uniform(0.6, 1.1, (count, 1)), rng.uniform(0.9, 1.05, (count, 1))
    shift_y, shift_x = rng.uniform(-2, 2, (count, 1)), rng.uniform(-2, 2, (count, 1))
    cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    # For each output pixel, where it comes from: the inverse of rotate·scale about the centre.
    grid_y, grid_x = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    grid_y, grid_x = grid_y.reshape(1, -1) - (height - 1) / 2, grid_x.reshape(1, -1) - (width - 1) / 2
    source_y = ((cos * grid_y + sin * grid_x) / scale_y + (height - 1) / 2 - shift_y).astype(np.float32)
    source_x = ((cos * grid_x - sin * grid_y) / scale_x + (width - 1) / 2 - shift_x).astype(np.float32)
    top, left = np.floor(source_y), np.floor(source_x)
    fy, fx = source_y - top, source_x - left
    # Samples outside the image read the zero border of a padded copy.
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    rows = np.clip(top.astype(np.int64) + 1, 0, height)
    cols = np.clip(left.astype(np.int64) + 1, 0, width)
    flat = padded.reshape(-1)
    base = np.arange(count)[:, None] * (height + 2) * (width + 2) + rows * (width + 2) + cols
    moved = (
        flat[base] * (1 - fy) * (1 - fx)
        + flat[base + 1] * (1 - fy) * fx
        + flat[base + width + 2] * fy * (1 - fx)
        + flat[base + width + 3] * fy * fx
    )
    far = (source_y < -1) | (source_y > height) | (source_x < -1) | (source_x > width)
    moved[far] = 0.0
    moved = moved.reshape(count, height, width)
    stroke = rng.integers(0, 3, count)  # 0: as it is, 1: thinner, 2: thicker
    for kind, combine in ((1, np.minimum), (2, np.maximum)):
        chosen = moved[stroke == kind]
        below = np.pad(chosen, ((0, 0), (1, 0), (0, 0)))[:, :-1]
        beside = np.pad(chosen, ((0, 0), (0, 0), (1, 0)))[:, :, :-1]
        corner = np.pad(chosen, ((0, 0), (1, 0), (1, 0)))[:, :-1, :-1]
        moved[stroke == kind] = combine(combine(chosen, below), combine(beside, corner))
    return moved.clip(0.0, 1.0)
