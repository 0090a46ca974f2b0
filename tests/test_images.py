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
