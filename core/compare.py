"""Measuring converted variants side by side: size, accuracy, agreement with float32, latency.

Works on .tflite bytes alone (no TensorFlow), so the CLI and the Streamlit server share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core import variants as registry
from core.datasets import Dataset
from core.evaluate import EvaluationResult, evaluate
from core.latency import DEFAULT_RUNS, LatencyStats, invoke_latency
from core.progress import Progress, ProgressFn, ignore
from core.runtime import LiteModel


@dataclass(frozen=True, eq=False)
class VariantMeasurement:
    name: str
    size_bytes: int
    evaluation: EvaluationResult
    latency: LatencyStats
    convert_s: float = float("nan")

    @property
    def accuracy(self) -> float:
        return self.evaluation.accuracy

    @property
    def agreement(self) -> float:
        return self.evaluation.agreement


def reference_first(names) -> list[str]:
    return sorted(names, key=lambda name: name != registry.REFERENCE)


def measure_variants(tflites: dict[str, bytes], dataset: Dataset, threads: int = 1, xnnpack: bool = True,
                     runs: int = DEFAULT_RUNS, convert_seconds: dict[str, float] | None = None,
                     progress: ProgressFn = ignore) -> dict[str, VariantMeasurement]:  # fmt: skip
    """Evaluate every variant on the test set and time a single-image invoke of each.

    Agreement is measured against float32 when it is among the variants, else against the first.
    """
    order = reference_first(tflites)
    results: dict[str, VariantMeasurement] = {}
    reference = None
    probe_image = dataset.x_test[0]
    for index, name in enumerate(order):
        progress(Progress("evaluate", index / len(order), f"evaluating {name} on {dataset.test_size:,} images"))
        model = LiteModel(tflites[name], threads=threads, xnnpack=xnnpack)
        evaluation = evaluate(model, dataset.x_test, dataset.y_test, len(dataset.class_names), reference)
        if reference is None:
            reference = evaluation.predictions
        progress(Progress("benchmark", index / len(order), f"timing {name}: {runs:,} single-image invokes"))
        single = LiteModel(tflites[name], threads=threads, xnnpack=xnnpack)
        latency = invoke_latency(single, probe_image, name, runs=runs)
        results[name] = VariantMeasurement(name, len(tflites[name]), evaluation, latency,
                                           (convert_seconds or {}).get(name, float("nan")))  # fmt: skip
    progress(Progress("benchmark", 1.0, "measured"))
    return {name: results[name] for name in tflites}


def size_ratio(measurements: dict[str, VariantMeasurement], name: str) -> float:
    reference = measurements.get(registry.REFERENCE)
    return measurements[name].size_bytes / reference.size_bytes if reference else float("nan")


def flips_between(reference: EvaluationResult, other: EvaluationResult) -> np.ndarray:
    return np.flatnonzero(reference.predictions != other.predictions)
