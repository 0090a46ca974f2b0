"""Every runtime module answers the same calls (core.runtime.Runtime): LiteRT and TensorFlow Lite Micro
run the same int8 file through the same measurement functions and agree with each other."""

from __future__ import annotations

import numpy as np
import pytest

from core.latency import invoke_latency
from core.micro import MicroModel
from core.runtime import LiteModel


@pytest.mark.parametrize("name", ["int8", "qat_int8"])
def test_litert_and_tflite_micro_answer_the_same_calls_with_the_same_answers(tflites, dataset, name):
    images = dataset.x_test[:200]
    litert = LiteModel(tflites[name], xnnpack=False)  # LiteRT's built-in kernels: TFLM's reference arithmetic
    micro = MicroModel(tflites[name])
    ours, theirs = litert.predict_logits(images), micro.predict_logits(images)
    assert ours.shape == theirs.shape == (200, len(dataset.class_names))
    np.testing.assert_array_equal(ours.argmax(axis=-1), theirs.argmax(axis=-1))
    # The same integer arithmetic, dequantized the same way: at most one output step apart (a rounding tie).
    np.testing.assert_allclose(ours, theirs, atol=litert.output.scale * 1.001)
    assert np.mean(np.isclose(ours, theirs, atol=1e-6)) > 0.99
    for model in (litert, micro):
        latency = invoke_latency(model, images[0], runs=20, warmup=2)
        assert latency.runs == 20 and latency.p50_us > 0 and model.memory_bytes > 0 and model.max_batch >= 1


def test_tflite_micro_says_whether_the_recorded_arena_itself_was_tried(tflites, dataset):
    from core.micro import measure

    images, labels = dataset.x_test[:50], dataset.y_test[:50]
    answers = np.zeros(50, np.int64)
    result = measure(tflites["int8"], images, labels, answers, answers)
    assert result.runs and result.arena_checked is True and "exactly that size runs" in result.arena_method
    refused = measure(tflites["dynamic"], images, labels, answers, answers)
    assert not refused.runs and refused.arena_checked is None and refused.reason
