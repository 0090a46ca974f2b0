import numpy as np

from core.images import canvas_to_grey, mnist_style


def test_a_stroke_is_fitted_into_20x20_and_centred_by_mass():
    canvas = np.zeros((280, 280), np.float32)
    canvas[20:200, 30:60] = 1.0  # a tall bar in the top-left corner
    digit = mnist_style(canvas)
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    rows = np.flatnonzero(digit.max(axis=1) > 0.05)
    assert rows[-1] - rows[0] + 1 == 20  # the long side is 20 pixels
    ys, xs = np.indices(digit.shape)
    assert abs((ys * digit).sum() / digit.sum() - 14) <= 1
    assert abs((xs * digit).sum() / digit.sum() - 14) <= 1


def test_a_blank_image_gives_none():
    assert mnist_style(np.zeros((280, 280))) is None


def test_canvas_rgba_uses_alpha_so_a_transparent_background_is_black():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3] = 255  # white but fully transparent
    rgba[2:4, 2:4, 3] = 255
    grey = canvas_to_grey(rgba)
    assert grey[0, 0] == 0 and grey[2, 2] == 1.0


def test_canvas_png_gives_the_same_digit_as_the_full_size_pixels():
    import io

    from PIL import Image

    from core.images import canvas_png_to_grey

    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = 255  # opaque black background, as the Draw page's canvas has
    rgba[40:240, 120:160, :3] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    small = mnist_style(canvas_png_to_grey(buffer.getvalue()))
    full = mnist_style(canvas_to_grey(rgba))
    assert small.shape == (28, 28)
    assert np.abs(small - full).max() < 0.1


def pillow_framing(image: np.ndarray) -> np.ndarray:
    """The MNIST recipe written out with Pillow for one image: the reference for the batched one."""
    from PIL import Image

    ink = image > 0.05
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    digit = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
    scale = 20 / max(digit.shape)
    new_h, new_w = max(1, round(digit.shape[0] * scale)), max(1, round(digit.shape[1] * scale))
    resized = np.array(Image.fromarray(digit, mode="F").resize((new_w, new_h), Image.Resampling.BILINEAR)).clip(0, 1)
    total = resized.sum()
    top = min(max(round(14 - (resized.sum(axis=1) @ np.arange(new_h)) / total), 0), 28 - new_h)
    left = min(max(round(14 - (resized.sum(axis=0) @ np.arange(new_w)) / total), 0), 28 - new_w)
    field = np.zeros((28, 28), dtype=np.float32)
    field[top : top + new_h, left : left + new_w] = resized
    return field


def test_batched_framing_gives_what_pillow_gives_each_image_alone():
    from core.datasets import _sklearn_digits
    from core.images import mnist_style_all

    scans = _sklearn_digits()[0] / 16.0
    rng = np.random.default_rng(0)
    strokes = np.zeros((6, 140, 140), dtype=np.float32)
    for index, stroke in enumerate(strokes):  # bars, blobs and a blank, of many box sizes
        top, left = rng.integers(0, 60, size=2)
        height, width = 10 + 15 * index, 4 + 9 * index  # random grey levels: no centre falls on a tie
        stroke[top : top + height, left : left + width] = rng.random((height, width)) * 0.9 + 0.1
    strokes[5] = 0
    for images, blanks in ((scans, [False] * len(scans)), (strokes, [False] * 5 + [True])):
        framed, blank = mnist_style_all(images)
        assert blank.tolist() == blanks
        for image, ours, empty in zip(images, framed, blank, strict=True):
            if empty:
                assert not ours.any()
                continue
            np.testing.assert_allclose(ours, pillow_framing(image), atol=1e-6)
