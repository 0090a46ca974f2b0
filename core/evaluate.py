"""Accuracy, per-class accuracy, confusion matrix and agreement with the float32 reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    accuracy: float
    per_class_accuracy: tuple[float, ...]  # NaN for a class absent from the test set
    confusion: np.ndarray  # [true class, predicted class] counts
    predictions: np.ndarray
    probabilities: np.ndarray  # N×classes, softmax of the logits
    agreement: float  # share predicted as the reference predicts; 1.0 for the reference itself
    flips: np.ndarray  # indices of test images whose prediction differs from the reference
    seconds: float  # time of the batched pass over the test set
    images: int

    @property
    def throughput_ips(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, np.clip(predictions, 0, num_classes - 1)), 1)
    return matrix


def score(
    predictions: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    reference: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    seconds: float = 0.0,
) -> EvaluationResult:
    matrix = confusion_matrix(labels, predictions, num_classes)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)
    reference = predictions if reference is None else reference
    flips = np.flatnonzero(predictions != reference)
    return EvaluationResult(
        accuracy=float(np.mean(predictions == labels)),
        per_class_accuracy=tuple(float(v) for v in per_class),
        confusion=matrix,
        predictions=predictions,
        probabilities=probabilities if probabilities is not None else np.zeros((len(predictions), 0), np.float32),
        agreement=float(1.0 - len(flips) / max(len(predictions), 1)),
        flips=flips,
        seconds=seconds,
        images=len(predictions),
    )
