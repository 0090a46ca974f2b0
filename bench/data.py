"""The benchmark's data: real MNIST when it is cached or downloadable, else mnist-small tiled to
MNIST's size (60,000 / 10,000: the same 8,000 / 2,000 real digits repeated), so the timings have
the shape of a full MNIST run on a machine without network."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core import datasets

ROOT = Path(__file__).resolve().parents[1]
MNIST_SMALL = ROOT / "tests" / "data" / "mnist-small"  # shipped with the repository


def _tile(array: np.ndarray, size: int) -> np.ndarray:
    return np.resize(array, (size, *array.shape[1:]))


def benchmark_dataset(kind: str = "tiled"):
    """('tiled' | 'mnist' | a folder) -> ((x_train, y_train), (x_test, y_test)) as float32 / int."""
    if kind == "mnist":
        data = datasets.fetch("mnist")
    else:
        data = datasets.load_local(MNIST_SMALL if kind == "tiled" else kind)
        if kind == "tiled":
            return (
                (_tile(data.x_train, 60000), _tile(data.y_train, 60000)),
                (_tile(data.x_test, 10000), _tile(data.y_test, 10000)),
            )
    return (data.x_train, data.y_train), (data.x_test, data.y_test)


def write_tiled_idx(folder: Path) -> Path:
    (x_train, y_train), (x_test, y_test) = benchmark_dataset("tiled")
    datasets.save_idx(folder, datasets.Dataset("mnist-tiled", x_train, y_train, x_test, y_test, datasets.DIGIT_CLASSES, "tiled"))
    return folder
