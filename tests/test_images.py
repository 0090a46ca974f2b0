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


def test_augment_moves_each_digit_a_little_and_the_same_seed_moves_it_the_same_way():
    from core.datasets import load_offline_digits
    from core.images import augment

    digits = load_offline_digits().x_train[:200]
    moved = augment(digits, np.random.default_rng(7))
    again = augment(digits, np.random.default_rng(7))
    assert moved.shape == digits.shape and moved.dtype == np.float32
    assert 0.0 <= moved.min() and moved.max() <= 1.0
    np.testing.assert_array_equal(moved, again)
    assert not np.array_equal(moved, augment(digits, np.random.default_rng(8)))
    change = np.abs(moved - digits).mean(axis=(1, 2))
    assert (change > 0).all(), "every image is moved"
    ink_ratio = moved.sum(axis=(1, 2)) / digits.sum(axis=(1, 2))
    assert 0.2 < ink_ratio.min() and ink_ratio.max() < 2.5, "a digit is moved, not lost or smeared"

    # Squeezed in width: some copies are much narrower than their original, as a bar "1" is.
    def width(images):
        return (images > 0.3).any(axis=1).sum(axis=1)

    assert (width(moved) <= 0.75 * width(digits)).mean() > 0.1


def test_augmented_training_batches_cover_every_image_each_epoch_and_repeat_for_the_same_seed():
    import itertools

    from core.datasets import load_offline_digits
    from core.models import TrainConfig, _augmented_batches

    dataset = load_offline_digits()
    config = TrainConfig(epochs=2, batch_size=100, seed=3, augment=True)
    steps = int(np.ceil(dataset.train_size / 100))
    first = list(itertools.islice(_augmented_batches(dataset, config), 2 * steps))
    second = list(itertools.islice(_augmented_batches(dataset, config), 2 * steps))
    for (x, y), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    for epoch in range(2):
        labels = np.concatenate([y for _, y in first[epoch * steps : (epoch + 1) * steps]])
        assert np.array_equal(np.sort(labels), np.sort(dataset.y_train)), "each epoch sees every image once"
    assert not np.array_equal(first[0][1], first[steps][1]), "each epoch in its own order"
    other = next(_augmented_batches(dataset, TrainConfig(epochs=2, batch_size=100, seed=4, augment=True)))
    assert not np.array_equal(other[0], first[0][0])


def test_the_suggested_training_augments_small_datasets_only():
    from core.models import suggested_training

    assert suggested_training(1_438) == (30, True)  # the offline digits
    assert suggested_training(8_000) == (2, False)  # mnist-small
    assert suggested_training(60_000) == (1, False)  # MNIST
