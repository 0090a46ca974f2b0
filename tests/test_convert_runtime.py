"""Every variant, converted for real and run by the real LiteRT interpreter, against the float reference."""

import numpy as np
import pytest

from core import variants
from core.runtime import LiteModel, RuntimeModelError, TensorInfo, dequantize, quantize

ALL = list(variants.VARIANTS)
QUANTIZED = [name for name in ALL if name != variants.REFERENCE]  # float32 against itself would prove nothing


@pytest.fixture(scope="session")
def float_predictions(tflites, dataset):
    return LiteModel(tflites["float32"]).predict_logits(dataset.x_test).argmax(axis=-1)


def test_float32_tflite_matches_keras(tflites, dataset, keras_predictions):
    predictions = LiteModel(tflites["float32"]).predict_logits(dataset.x_test).argmax(axis=-1)
    assert np.mean(predictions == keras_predictions) >= 0.999


@pytest.mark.parametrize("name", QUANTIZED)
def test_variant_agrees_with_float32_within_its_tolerance(name, tflites, dataset, float_predictions):
    variant = variants.get(name)
    predictions = LiteModel(tflites[name]).predict_logits(dataset.x_test).argmax(axis=-1)
    agreement = np.mean(predictions == float_predictions)
    assert agreement >= variant.min_agreement, f"{name}: agreement {agreement:.4f} < {variant.min_agreement}"


@pytest.mark.parametrize("name", QUANTIZED)
def test_variant_fits_its_size_budget(name, tflites):
    ratio = len(tflites[name]) / len(tflites["float32"])
    assert ratio <= variants.get(name).max_size_ratio, f"{name}: {ratio:.3f} of float32"


def test_int8_has_quantized_input_and_output_and_still_gives_probabilities(tflites, dataset):
    model = LiteModel(tflites["int8"])
    assert model.input.dtype == "int8" and model.input.quantized
    assert model.output.dtype == "int8" and model.output.quantized
    probabilities = model.predict_probabilities(dataset.x_test[:20])
    assert probabilities.shape == (20, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_int16x8_runs_int16_activations(tflites):
    from core.inspect import inspect_tflite

    dtypes = {t.dtype for t in inspect_tflite(tflites["int16x8"]).tensors if not t.is_weight}
    assert "int16" in dtypes


def test_batch_size_follows_the_data(tflites, dataset):
    model = LiteModel(tflites["dynamic"])
    one = model.predict_logits(dataset.x_test[:1])
    many = model.predict_logits(dataset.x_test[:37])
    assert one.shape == (1, 10) and many.shape == (37, 10)
    assert np.allclose(one[0], many[0], atol=1e-4)


@pytest.mark.parametrize("threads, xnnpack", [(1, False), (2, True)])
def test_threads_and_xnnpack_switch_give_the_same_answers(tflites, dataset, threads, xnnpack, float_predictions):
    model = LiteModel(tflites["float32"], threads=threads, xnnpack=xnnpack)
    predictions = model.predict_logits(dataset.x_test[:200]).argmax(axis=-1)
    assert np.mean(predictions == float_predictions[:200]) >= 0.995


def test_quantize_and_dequantize_round_trip_int8_uint8_int16():
    values = np.linspace(0, 1, 11, dtype=np.float32)
    for dtype, zero in (("int8", -128), ("uint8", 0), ("int16", 0)):
        info = TensorInfo("x", 0, (11,), (11,), dtype, 1 / 255 if dtype != "int16" else 1 / 32767, zero)
        q = quantize(values, info)
        assert q.dtype == np.dtype(dtype)
        assert np.allclose(dequantize(q, info), values, atol=info.scale)


def test_unknown_input_dimensions_are_filled_in_from_the_data(dataset):
    """The seed tutorial's main pain: a model with None batch, height and width."""
    import keras

    from core import convert

    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape=(None, None, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalMaxPooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    expected = model.predict(dataset.x_test[:50, ..., None], verbose=0)
    calibration = convert.calibration_sample(dataset.x_train, 50)
    for name in ("float32", "dynamic", "int8"):
        lite = LiteModel(convert.convert(model, name, calibration).tflite)
        assert lite.input.shape_signature[1:3] == (-1, -1)
        logits = lite.predict_logits(dataset.x_test[:50])
        assert logits.shape == (50, 10)
        if name == "float32":
            assert np.allclose(logits, expected, atol=1e-4)
        else:
            assert np.mean(logits.argmax(1) == expected.argmax(1)) >= 0.9


def test_conversion_needs_calibration_where_the_registry_says_so(keras_model):
    from core import convert

    with pytest.raises(ValueError, match="int8 needs calibration images"):
        convert.convert(keras_model, "int8", None)


def test_a_file_that_is_not_a_model_is_refused_with_a_message():
    with pytest.raises(RuntimeModelError, match="LiteRT cannot load"):
        LiteModel(b"definitely not a flatbuffer at all")
