"""Seconds per epoch of the seed CNN on real MNIST digits, on this machine, for the classroom
projection in the README: trains 2 epochs on tests/data/mnist-small (8,000 training digits) and
scales the second epoch (the first includes tracing) to MNIST's 60,000.

    python bench/mnist_epoch.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import datasets, models  # noqa: E402
from core.progress import Progress  # noqa: E402
from tests.conftest import mnist_small  # noqa: E402


def main() -> None:
    dataset = datasets.load_local(mnist_small())
    ends: list[float] = []

    def progress(report: Progress) -> None:
        if report.metrics.get("epoch_end"):
            ends.append(time.perf_counter())

    start = time.perf_counter()
    models.train_new(dataset, models.TrainConfig(epochs=2, seed=0), progress)
    second = ends[1] - ends[0]
    print(f"first epoch {ends[0] - start:.1f} s (with tracing), second {second:.1f} s on {dataset.train_size:,} digits")
    print(f"projected: {second * 60000 / dataset.train_size:.1f} s per epoch on MNIST's 60,000 training digits")


if __name__ == "__main__":
    main()
