"""Latency: single-image invoke times after warm-up, as percentiles in microseconds.

What is timed is ``interpreter.invoke()`` on one image already placed in the input tensor: the
model's own work, without Python's copying around it. Keras's ``model.predict`` and ``model(x)``
are timed the same way (warm-up, then timed calls, percentiles) so that the seed tutorial's
comparison can be repeated honestly; they are far slower, so they get fewer runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.runtime import Runtime

DEFAULT_RUNS = 1000
DEFAULT_WARMUP = 50


@dataclass(frozen=True, eq=False)
class LatencyStats:
    label: str
    runs: int
    threads: int
    xnnpack: bool
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    samples_us: np.ndarray

    def percentiles(self) -> dict:
        return {"p50": round(self.p50_us, 2), "p90": round(self.p90_us, 2), "p99": round(self.p99_us, 2)}


def time_calls(call: Callable[[], object], runs: int, warmup: int) -> np.ndarray:
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    for _ in range(warmup):
        call()
    samples = np.empty(runs, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(runs):
        start = clock()
        call()
        samples[i] = clock() - start
    return samples / 1000.0


def stats(label: str, samples_us: np.ndarray, threads: int = 1, xnnpack: bool = True) -> LatencyStats:
    p50, p90, p99 = np.percentile(samples_us, [50, 90, 99])
    return LatencyStats(
        label, len(samples_us), threads, xnnpack, float(p50), float(p90), float(p99), float(samples_us.mean()), samples_us
    )


def invoke_latency(
    model: Runtime, image: np.ndarray, label: str = "", runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP
) -> LatencyStats:
    model.set_input(np.asarray(image, np.float32).reshape(1, 28, 28))
    return stats(label, time_calls(model.invoke, runs, warmup), model.threads, model.xnnpack)


THROUGHPUT_SECONDS = 0.5
THROUGHPUT_IMAGES = 1000


def batch_throughput(
    model: Runtime, images: np.ndarray, seconds: float = THROUGHPUT_SECONDS, min_images: int = THROUGHPUT_IMAGES
) -> float:
    """Images per second when the interpreter runs whole batches: passes are repeated for at least
    ``seconds`` and at least ``min_images`` images (a shorter window swings several-fold)."""
    model.predict_logits(images[:64])  # warm-up and allocation
    done, start = 0, time.perf_counter()
    while True:
        model.predict_logits(images)
        done += len(images)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and done >= min_images:
            return done / elapsed


def keras_latency(model, image: np.ndarray, predict_runs: int = 7, call_runs: int = 30) -> dict[str, LatencyStats]:
    """``model.predict(x)`` and ``model(x)`` on one image (model is a Keras model; imports nothing)."""
    from core.models import adapt_to_input

    batch = adapt_to_input(model, np.asarray(image, np.float32).reshape(1, 28, 28))
    return {
        "keras_predict": stats("keras model.predict", time_calls(lambda: model.predict(batch, verbose=0), predict_runs, 2)),
        "keras_call": stats("keras model(x)", time_calls(lambda: model(batch, training=False), call_runs, 3)),
    }
