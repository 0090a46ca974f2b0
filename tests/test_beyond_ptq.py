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
        "dynamic_wi2c_afp32",
        "dynamic_wi8c_hr_afp32",
        "dynamic_wi4c_hr_afp32",
        "dynamic_wi2c_hr_afp32",
        "weight_only_wi8_afp32",
        "weight_only_wi4_afp32",
        "static_wi8_ai8",
        "static_wi8_ai16",
    }
    assert variants.get("qat_int8").method == variants.METHOD_QAT


def test_int4_weights_are_packed_at_half_the_size_of_int8(tflites):
    assert len(tflites["dynamic_wi4_afp32"]) <= 0.65 * len(tflites["dynamic"])
    assert "int4" in inspect_tflite(tflites["dynamic_wi4_afp32"]).weights_by_dtype()


def test_the_recipes_ladder_fills_a_compact_grid_a_row_per_kind_a_cell_per_width():
    cells = [variants.get(name).ladder for name in variants.LITERT_QUANTIZER]
    assert len(set(cells)) == len(cells)  # no two recipes share a cell
    assert {row for row, _ in cells} == {"dynamic", "dynamic, Hadamard-rotated", "weight-only", "static (calibrated)"}
    assert variants.get("dynamic_wi2c_hr_afp32").ladder == ("dynamic, Hadamard-rotated", "2-bit")


def test_two_bit_weights_store_four_levels_and_the_hadamard_rotation_rescues_them(tflites, dataset):
    from core.quantization import quantized_tensors, stored_integers

    reference = LiteModel(tflites["float32"]).predict_logits(dataset.x_test).argmax(1)
    agreement = {}
    for name in ("dynamic_wi2c_afp32", "dynamic_wi2c_hr_afp32"):
        kernels = [t for t in quantized_tensors(tflites[name]) if t.is_weight and t.bits == 2]
        assert kernels, name
        for tensor in kernels:
            assert set(np.unique(stored_integers(tflites[name], tensor))) <= {-2, -1, 0, 1}
        agreement[name] = np.mean(LiteModel(tflites[name]).predict_logits(dataset.x_test).argmax(1) == reference)
    # Four levels per channel cost the seed most of its answers; the rotation spreads the outliers first.
    assert agreement["dynamic_wi2c_afp32"] < agreement["dynamic_wi2c_hr_afp32"] - 0.2, agreement


def test_a_hadamard_model_fixed_at_batch_one_runs_one_image_at_a_time(tflites, dataset):
    model = LiteModel(tflites["dynamic_wi8c_hr_afp32"])
    assert model.max_batch == 1  # its inserted RESHAPE fixes the batch: found by one invoke at two
    logits = model.predict_logits(dataset.x_test[:50])
    assert logits.shape == (50, 10)
    assert np.allclose(logits[7], model.predict_logits(dataset.x_test[7:8])[0])


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
    broken = [error for error in errors if error.broken]
    if broken:  # LiteRT's hybrid convolution answers NaN with 2-bit filters (the file's integers are sound); it spreads
        assert name == "dynamic_wi2c_afp32" and broken[0].op == "CONV_2D", broken
        assert all(error.to_dict()["output_not_finite"] and error.to_dict()["rmse"] is None for error in broken)
    for error in errors:
        if error.broken:
            continue
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
