import numpy as np
import pytest

from core import variants
from core.inspect import ModelFormatError, format_inspection, inspect_tflite
from core.runtime import LiteModel, RuntimeModelError, check_model


def litert_weights(tflite: bytes, inspection) -> dict[int, np.ndarray]:
    """Each constant tensor as LiteRT itself reads it from the file (not from our flatbuffer reader)."""
    model = LiteModel(tflite, xnnpack=False)
    return {t.index: model.tensor(t.index) for t in inspection.tensors if t.is_weight}


@pytest.mark.parametrize("name", list(variants.VARIANTS))
def test_inspection_splits_the_file_into_weights_and_the_rest(name, tflites):
    inspection = inspect_tflite(tflites[name])
    assert inspection.size_bytes == len(tflites[name])
    # Our reading of the flatbuffer against LiteRT's: every constant tensor's bytes, one by one.
    weights = litert_weights(tflites[name], inspection)
    stored = {}
    for tensor in inspection.tensors:
        if tensor.is_weight:
            # int4 is stored two to a byte and int2 four; LiteRT hands them out one to a byte.
            array = weights[tensor.index]
            per_byte = {"int4": 2, "int2": 4}.get(tensor.dtype, 0)
            stored[tensor.index] = -(-array.size // per_byte) if per_byte else array.nbytes
            assert tensor.bytes == stored[tensor.index], f"{name}: {tensor.name} ({tensor.dtype})"
    assert inspection.weights_bytes == sum(stored.values())
    assert 0 < inspection.other_bytes < 0.5 * inspection.size_bytes + 20_000
    assert inspection.inputs[0].shape_signature[0] == -1
    assert {"CONV_2D", "FULLY_CONNECTED"} <= set(inspection.operator_counts)
    assert "weights" in format_inspection(inspection)


def test_weight_types_follow_the_variant(tflites):
    assert "float32" in inspect_tflite(tflites["float32"]).weights_by_dtype()
    assert "float16" in inspect_tflite(tflites["float16"]).weights_by_dtype()
    int8 = inspect_tflite(tflites["int8"])
    assert int8.weights_by_dtype().get("int8", 0) > 0.9 * int8.weights_bytes
    assert int8.inputs[0].dtype == "int8" and len(int8.inputs[0].scales) == 1


def _corruptions(data: bytes):
    yield b"", "too short"
    yield b"0123456789", "identifier"
    yield data[:200], "corrupt"
    yield data[: len(data) // 2], "corrupt"


def test_malformed_files_are_caught_before_any_interpreter(tflites):
    for bad, message in _corruptions(tflites["float32"]):
        with pytest.raises(ModelFormatError, match=message):
            inspect_tflite(bad)


def test_probe_accepts_a_good_model_and_refuses_a_broken_one(tflites):
    check_model(tflites["int8"])
    with pytest.raises((RuntimeModelError, ModelFormatError)):
        check_model(tflites["float32"][: len(tflites["float32"]) // 2])

    # The structure intact and the largest weight overwritten (found in the file by LiteRT's own
    # copy of it): weights are data, so the model is still accepted, and answers otherwise.
    original = tflites["float32"]
    inspection = inspect_tflite(original)
    largest = max(litert_weights(original, inspection).values(), key=lambda array: array.nbytes)
    where = original.find(largest.tobytes())
    assert where > 0
    scrambled = bytearray(original)
    scrambled[where : where + 256] = np.full(64, 7.5, dtype=np.float32).tobytes()
    check_model(bytes(scrambled))
    images = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    assert not np.allclose(LiteModel(bytes(scrambled)).predict_logits(images), LiteModel(original).predict_logits(images))
