import pytest

from core import variants
from core.inspect import ModelFormatError, format_inspection, inspect_tflite
from core.runtime import RuntimeModelError, check_model


@pytest.mark.parametrize("name", list(variants.VARIANTS))
def test_inspection_splits_the_file_into_weights_and_the_rest(name, tflites):
    inspection = inspect_tflite(tflites[name])
    assert inspection.size_bytes == len(tflites[name])
    assert inspection.weights_bytes + inspection.other_bytes == inspection.size_bytes
    assert 0 < inspection.weights_bytes < inspection.size_bytes
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
    # Valid structure, scrambled weights region: must not take this process down either way.
    scrambled = bytearray(tflites["float32"])
    scrambled[len(scrambled) // 3 : len(scrambled) // 3 + 64] = b"\xff" * 64
    try:
        check_model(bytes(scrambled))
    except (RuntimeModelError, ModelFormatError):
        pass
