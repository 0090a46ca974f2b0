"""Quantization-aware training, the LiteRT Quantizer recipes, and per-layer error (issue 4)."""

import numpy as np
import pytest

from core import variants
from core.inspect import inspect_tflite
from core.layer_errors import layer_errors
from core.runtime import LiteModel

QUANTIZED = [name for name in variants.VARIANTS if name != variants.REFERENCE]


def test_the_litert_quantizer_recipes_are_registered_under_their_own_names():
    assert set(variants.LITERT_QUANTIZER) == {
        "dynamic_wi8_afp32",
        "dynamic_wi4_afp32",
        "weight_only_wi8_afp32",
        "weight_only_wi4_afp32",
        "static_wi8_ai8",
        "static_wi8_ai16",
    }
    assert variants.get("qat_int8").method == variants.METHOD_QAT


def test_int4_weights_are_packed_at_half_the_size_of_int8(tflites):
    assert len(tflites["dynamic_wi4_afp32"]) <= 0.65 * len(tflites["dynamic"])
    assert "int4" in inspect_tflite(tflites["dynamic_wi4_afp32"]).weights_by_dtype()


def test_static_recipes_quantize_the_activations(tflites):
    assert LiteModel(tflites["static_wi8_ai8"]).input.dtype == "int8"
    activations = {t.dtype for t in inspect_tflite(tflites["static_wi8_ai16"]).tensors if not t.is_weight}
    assert "int16" in activations


def test_qat_gives_a_full_int8_model_at_least_as_accurate_as_post_training_int8(tflites, dataset):
    qat, ptq = LiteModel(tflites["qat_int8"]), LiteModel(tflites["int8"])
    assert qat.input.dtype == "int8" and qat.output.dtype == "int8"
    accuracy = {
        name: np.mean(model.predict_logits(dataset.x_test).argmax(1) == dataset.y_test)
        for name, model in (("qat", qat), ("int8", ptq))
    }
    # One more epoch of (quantization-aware) training: it must not lose to plain int8 by more than noise.
    assert accuracy["qat"] >= accuracy["int8"] - 0.005, accuracy


def test_qat_refuses_a_model_it_cannot_twin_with_a_clear_message(dataset):
    import keras

    from core import convert
    from core.qat import QATUnsupportedError

    inputs = keras.Input(shape=(28, 28))
    x = keras.layers.Flatten()(inputs)
    functional = keras.Model(inputs, keras.layers.Dense(10)(x))
    with pytest.raises(QATUnsupportedError, match="needs a Sequential model"):
        convert.convert(functional, "qat_int8", dataset.x_train[:10], dataset=dataset)
    odd = keras.Sequential(
        [keras.Input(shape=(28, 28)), keras.layers.Flatten(), keras.layers.LayerNormalization(), keras.layers.Dense(10)]
    )
    with pytest.raises(QATUnsupportedError, match="LayerNormalization"):
        convert.convert(odd, "qat_int8", dataset.x_train[:10], dataset=dataset)


@pytest.mark.parametrize("name", QUANTIZED)
def test_every_quantized_variant_has_per_layer_errors(name, tflites, dataset):
    errors = layer_errors(tflites["float32"], tflites[name], dataset.x_test[:50])
    ops = [error.op for error in errors]
    assert {"CONV_2D", "FULLY_CONNECTED"} <= set(ops), ops
    for error in errors:
        assert np.isfinite(error.rmse) and error.rmse >= 0
        assert error.snr_db is None or np.isfinite(error.snr_db)


def test_layer_errors_rank_the_schemes_as_their_bits_say(tflites, dataset):
    def snr(name, op):
        found = [e for e in layer_errors(tflites["float32"], tflites[name], dataset.x_test[:50]) if e.op == op]
        return found[0].snr_db

    assert snr("float16", "FULLY_CONNECTED") > snr("int8", "FULLY_CONNECTED")  # 16 bits beat 8
    assert snr("int16x8", "CONV_2D") > snr("int8", "CONV_2D")  # int16 activations beat int8
    assert snr("dynamic", "FULLY_CONNECTED") > snr("dynamic_wi4_afp32", "FULLY_CONNECTED")  # int8 weights beat int4
    # The converter leaves the tiny 3×3×12 conv kernel unquantized in dynamic range: identical output.
    assert snr("dynamic", "CONV_2D") is None


# At the float output of the weight-only and dynamic recipes the two interpreters' float rounding moves the
# figure by about a dB from one training to the next (CPU training is not bit-deterministic across runs):
# 1.34 dB (weight_only_wi8, ~60 dB) and 1.17 dB (dynamic_wi4, ~31 dB) were each seen once on a clean clone,
# hence 2 dB there.
@pytest.mark.parametrize(
    "name, tolerance_db", [("dynamic_wi4_afp32", 2.0), ("weight_only_wi8_afp32", 2.0), ("static_wi8_ai8", 5.0)]
)
def test_our_layer_errors_agree_with_the_litert_quantizers_own_validation(name, tolerance_db, tflites, dataset):
    """Both compare the same tensors on the same images. On the static recipes the two differ by a
    few dB inside the network, and at the int8 output, which saturates at the calibrated range in
    the interpreter (raw values at −128/127), the quantizer's validation reports far less error than
    the interpreter's output shows: that output layer is left out here and reported in the README."""
    from core.compare import layer_errors_by_variant

    errors = layer_errors_by_variant({"float32": tflites["float32"], name: tflites[name]}, dataset.x_test[:20])[name]
    checked = [e for e in errors if e.validator_snr_db is not None and e.snr_db is not None]
    if name.startswith("static_"):
        checked = [e for e in checked if e.op != "FULLY_CONNECTED"]
    assert checked, "no layer matched the quantizer's tensor names"
    for error in checked:
        assert abs(error.snr_db - error.validator_snr_db) < tolerance_db, error
