"""Measuring converted variants side by side: size, accuracy, agreement with float32, latency.

Works on .tflite bytes alone (no TensorFlow), so the CLI and the Streamlit server share it.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace

import numpy as np

from core import limits
from core import variants as registry
from core.datasets import Dataset
from core.evaluate import EvaluationResult, score
from core.latency import DEFAULT_RUNS, LatencyStats, batch_throughput, invoke_latency
from core.progress import Progress, ProgressFn, ignore
from core.runtime import LiteModel


@dataclass(frozen=True, eq=False)
class VariantMeasurement:
    name: str
    size_bytes: int
    evaluation: EvaluationResult
    latency: LatencyStats
    throughput_ips: float  # batched, measured alone after the evaluation
    convert_s: float = float("nan")

    @property
    def accuracy(self) -> float:
        return self.evaluation.accuracy

    @property
    def agreement(self) -> float:
        return self.evaluation.agreement


def reference_first(names) -> list[str]:
    names = list(names)
    reference = registry.reference_of(names)
    return [reference] + [name for name in names if name != reference]


def _chunk_probabilities(tflite: bytes, images: np.ndarray, threads: int, xnnpack: bool) -> tuple[np.ndarray, float]:
    model = LiteModel(tflite, threads=threads, xnnpack=xnnpack)
    start = time.perf_counter()
    probabilities = model.predict_probabilities(images)
    return probabilities, time.perf_counter() - start


class ParallelEvaluation:
    """Evaluates variants on the test set as they arrive, on a pool of threads (one per core).

    The test set is cut into chunks that run on their own interpreters in parallel (LiteRT releases
    the GIL while it computes), so evaluation can overlap the conversion of the next variant. A
    variant's ``seconds`` is the sum of its chunks' times, the busy time of one interpreter, so its
    throughput stays honest.
    """

    def __init__(
        self, dataset: Dataset, threads: int = 1, xnnpack: bool = True, workers: int | None = None, chunk_size: int = 1000
    ):
        self.dataset, self.threads, self.xnnpack = dataset, threads, xnnpack
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers or os.cpu_count() or 1))
        self.chunks = [
            np.arange(start, min(start + chunk_size, dataset.test_size)) for start in range(0, dataset.test_size, chunk_size)
        ]
        self.futures: dict[str, list[Future]] = {}

    def submit(self, name: str, tflite: bytes) -> None:
        self.futures[name] = [
            self.pool.submit(_chunk_probabilities, tflite, self.dataset.x_test[chunk], self.threads, self.xnnpack)
            for chunk in self.chunks
        ]

    def results(self, progress: ProgressFn = ignore) -> dict[str, EvaluationResult]:
        """Wait for every submitted variant; agreement is against the reference (variants.reference_of)."""
        total = sum(len(parts) for parts in self.futures.values())
        for done, _ in enumerate(as_completed([f for parts in self.futures.values() for f in parts]), start=1):
            progress(
                Progress(
                    "evaluate",
                    done / total,
                    f"evaluated {done}/{total} parts of {self.dataset.test_size:,} images × {len(self.futures)} variants",
                )
            )
        self.pool.shutdown()
        results: dict[str, EvaluationResult] = {}
        reference = None
        for name in reference_first(self.futures):
            parts = [future.result() for future in self.futures[name]]
            probabilities = np.concatenate([part[0] for part in parts])
            predictions = probabilities.argmax(axis=-1)
            results[name] = score(
                predictions,
                self.dataset.y_test,
                len(self.dataset.class_names),
                reference,
                probabilities,
                sum(part[1] for part in parts),
            )
            reference = predictions if reference is None else reference
        return {name: results[name] for name in self.futures}


def evaluate_variants(
    tflites: dict[str, bytes], dataset: Dataset, threads: int = 1, xnnpack: bool = True, progress: ProgressFn = ignore
) -> dict[str, EvaluationResult]:
    evaluation = ParallelEvaluation(dataset, threads, xnnpack)
    for name in tflites:
        evaluation.submit(name, tflites[name])
    return evaluation.results(progress)


def time_variant(
    tflite: bytes, images: np.ndarray, threads: int = 1, xnnpack: bool = True, runs: int = DEFAULT_RUNS, name: str = ""
) -> tuple[LatencyStats, float]:
    """One variant's single-image latency (``runs`` invokes after warm-up) and batched throughput
    over ``images`` (images per second)."""
    latency = invoke_latency(LiteModel(tflite, threads=threads, xnnpack=xnnpack), images[0], name, runs=runs)
    return latency, batch_throughput(LiteModel(tflite, threads=threads, xnnpack=xnnpack), images)


def without_training_images(dataset: Dataset) -> Dataset:
    """The dataset without its training images: what a measurement on the test set needs (a child
    process is sent this, not MNIST's 188 MB of training images)."""
    return replace(dataset, x_train=dataset.x_train[:0], y_train=dataset.y_train[:0])


def elsewhere(function, *args, what: str):
    """``function(*args)`` in a bounded child process (limits.MEASURE_MEMORY_MB and
    MEASURE_TIMEOUT_S): how every measurement of a file a person brought is run, off the server's
    thread and outside its memory. Raises core.isolation.IsolationError with one line."""
    from core.isolation import run_isolated

    return run_isolated(
        function,
        *args,
        timeout_s=limits.MEASURE_TIMEOUT_S,
        memory_mb=limits.MEASURE_MEMORY_MB,
        what=what,
        imports=("numpy", "ai_edge_litert.interpreter"),
    ).value


def time_variants(
    tflites: dict[str, bytes],
    evaluations: dict[str, EvaluationResult],
    throughput_images: np.ndarray,
    threads: int = 1,
    xnnpack: bool = True,
    runs: int = DEFAULT_RUNS,
    convert_seconds: dict[str, float] | None = None,
    progress: ProgressFn = ignore,
) -> dict[str, VariantMeasurement]:
    """Time each variant alone, one at a time, with nothing else running: a single-image invoke
    (``runs`` times after warm-up) and batched throughput over ``throughput_images``."""
    timings = {}
    for index, name in enumerate(tflites):
        progress(Progress("benchmark", index / len(tflites), f"timing {name}: {runs:,} single-image invokes"))
        timings[name] = time_variant(tflites[name], throughput_images, threads, xnnpack, runs, name)
    progress(Progress("benchmark", 1.0, "measured"))
    return combine(tflites, evaluations, timings, convert_seconds)


def combine(
    tflites: dict[str, bytes],
    evaluations: dict[str, EvaluationResult],
    timings: dict[str, tuple[LatencyStats, float]],
    convert_seconds: dict[str, float] | None = None,
) -> dict[str, VariantMeasurement]:
    """Each variant's size, evaluation and timing as one VariantMeasurement (the CLI and Compare alike)."""
    return {
        name: VariantMeasurement(
            name, len(tflites[name]), evaluations[name], *timings[name], (convert_seconds or {}).get(name, float("nan"))
        )
        for name in tflites
    }


def layer_errors_by_variant(tflites: dict[str, bytes], images: np.ndarray, progress: ProgressFn = ignore) -> dict[str, list]:
    """Per-layer error against float32 for every other variant (empty when float32 is absent).

    For the LiteRT Quantizer's recipes, each layer also carries the quantizer's own validation of
    the same tensor (``validator_snr_db``) as a cross-check of ours.
    """
    from core.layer_errors import layer_errors, litert_quantizer_snr_db, with_validator

    if registry.REFERENCE not in tflites:
        return {}
    others = [name for name in tflites if name != registry.REFERENCE]
    results = {}
    for index, name in enumerate(others):
        progress(Progress("layers", index / len(others), f"per-layer error of {name} on {len(images)} images"))
        results[name] = layer_errors(tflites[registry.REFERENCE], tflites[name], images)
        variant = registry.find(name)
        # The quantizer validates a file against the recipe that made it: a selective variant's is not the plain recipe.
        if variant is not None and variant.method == registry.METHOD_LITERT_QUANTIZER and not variant.keep_float:
            validator = litert_quantizer_snr_db(tflites[registry.REFERENCE], tflites[name], variant.recipe, images[:20])
            results[name] = with_validator(results[name], validator)
    return results


def size_ratio(measurements: dict[str, VariantMeasurement], name: str) -> float:
    reference = measurements.get(registry.REFERENCE)
    return measurements[name].size_bytes / reference.size_bytes if reference else float("nan")
