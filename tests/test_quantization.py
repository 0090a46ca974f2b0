"""Inside quantization: every quantized tensor's numbers, read from the file, against LiteRT's own."""

import numpy as np
import pytest

from core import variants
from core.quantization import (
    compare_weight,
    dequantize,
    float_weights_by_name,
    format_tensors,
    quantized_tensors,
    stored_integers,
)
from core.runtime import LiteModel

QUANTIZED = [name for name in variants.VARIANTS if name not in (variants.REFERENCE, "float16")]


@pytest.mark.parametrize("name", QUANTIZED)
def test_every_scale_zero_point_and_stored_integer_is_what_litert_reads(name, tflites):
    tensors = quantized_tensors(tflites[name])
    assert tensors, f"{name} has quantized tensors"
    litert = LiteModel(tflites[name], xnnpack=False)
    details = {d["index"]: d for d in litert.tensor_details()}
    for tensor in tensors:
        found = details[tensor.index]["quantization_parameters"]
        np.testing.assert_allclose(tensor.scales, found["scales"], rtol=1e-6, err_msg=tensor.name)
        assert list(tensor.zero_points) == [int(z) for z in found["zero_points"]], tensor.name
        if tensor.per_channel:
            assert tensor.axis == found["quantized_dimension"]
        if tensor.is_weight:
            ours = stored_integers(tflites[name], tensor)
            theirs = litert.tensor(tensor.index)
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{name}: {tensor.name}")
            # Dequantized with the file's scale and zero point, as LiteRT's own parameters say.
            scales, zeros = np.asarray(found["scales"]), np.asarray(found["zero_points"])
            if tensor.per_channel:
                shape = [1] * theirs.ndim
                shape[tensor.axis] = -1
                scales, zeros = scales.reshape(shape), zeros.reshape(shape)
            np.testing.assert_allclose(dequantize(tensor, ours), (theirs - zeros) * scales, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(
    "name", [name for name in QUANTIZED if not variants.get(name).needs_training_data and not variants.get(name).rotates_weights]
)
def test_each_quantized_weight_is_close_to_the_float_weight_it_replaces(name, tflites):
    """(Quantization-aware training retrains the weights, and the Hadamard recipes store them rotated:
    those replace no float32 weight as it is.)"""
    floats = float_weights_by_name(tflites["float32"])
    compared = 0
    for tensor in quantized_tensors(tflites[name]):
        if not tensor.is_weight or tensor.name not in floats or tensor.bits > 16:
            continue  # biases are int32 at the scale of input × weight: compared through the layers, not here
        result = compare_weight(tensor, stored_integers(tflites[name], tensor), floats[tensor.name])
        low, high = tensor.levels
        floor = {8: 30.0, 4: 10.0, 2: 0.0}[tensor.bits]
        assert result.snr_db > floor, f"{name}: {tensor.name} at {tensor.bits} bits: {result.snr_db:.1f} dB"
        assert result.clipped_fraction < 0.01
        # Rounding: within half a step of the float value, wherever it was not clipped.
        step = np.asarray(tensor.scales).max()
        assert np.abs(result.error).max() <= step / 2 + 1e-6 or result.clipped_fraction > 0
        compared += 1
    assert compared >= 1, f"{name}: no weight matched its float32 counterpart"


def test_a_retrained_models_weights_are_said_to_have_no_float_counterpart(tflites):
    table = format_tensors(tflites["qat_int8"], tflites["float32"])
    assert "no match" in table


def test_a_model_with_nothing_quantized_says_so(tflites):
    assert quantized_tensors(tflites["float32"]) == []
    assert format_tensors(tflites["float32"]) == "nothing quantized in this model: no tensor carries a scale"


def test_the_table_writes_the_files_formula_with_its_numbers(tflites):
    int8 = quantized_tensors(tflites["int8"])
    first = int8[0]  # the model's input: one scale, zero point −128
    assert not first.per_channel and first.levels == (-128, 127)
    text = first.mapping()
    assert f"× (q − {first.zero_points[0]})" in text and "q in -128…127" in text
    low, high = first.real_ranges()[0]
    assert low == pytest.approx(first.scales[0] * (-128 - first.zero_points[0]))
    assert high == pytest.approx(first.scales[0] * (127 - first.zero_points[0]))
    table = format_tensors(tflites["int8"], tflites["float32"])
    assert "activation" in table and "weight" in table and "%" in table


def test_cli_inspect_tensors_prints_the_table_with_the_float_reference(tflites, tmp_path):
    from tests.test_cli import cli

    (tmp_path / "int8.tflite").write_bytes(tflites["int8"])
    (tmp_path / "float32.tflite").write_bytes(tflites["float32"])
    result = cli("inspect", str(tmp_path / "int8.tflite"), "--tensors", "--reference", str(tmp_path / "float32.tflite"))
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if " weight " in line and " int8 " in line]
    assert len(rows) == 2 and all("%" in row for row in rows), result.stdout  # the conv and dense kernels
    nothing = cli("inspect", str(tmp_path / "float32.tflite"), "--tensors")
    assert nothing.returncode == 0 and "nothing quantized in this model" in nothing.stdout
    missing = cli("inspect", str(tmp_path / "int8.tflite"), "--reference", str(tmp_path / "none.tflite"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_rounded_kernels_change_only_the_kernels_bytes_and_take_their_levels(tflites):
    from core.quantization import kernels, with_rounded_kernels

    original = tflites["float32"]
    found = kernels(original)
    assert {k.op for k in found} == {"CONV_2D", "FULLY_CONNECTED"}
    rounded = with_rounded_kernels(original, 2, "per-channel", "min-max")
    assert len(rounded) == len(original)
    inside = np.zeros(len(original), dtype=bool)
    for kernel in found:
        inside[kernel.offset : kernel.offset + 4 * int(np.prod(kernel.shape))] = True
        values = np.frombuffer(rounded, "<f4", int(np.prod(kernel.shape)), kernel.offset).reshape(kernel.shape)
        for channel in np.moveaxis(values, kernel.axis, 0):
            assert len(np.unique(channel)) <= 3, "2 bits, symmetric: −1, 0, +1 steps"
    before, after = np.frombuffer(original, np.uint8), np.frombuffer(rounded, np.uint8)
    assert np.array_equal(before[~inside], after[~inside]) and not np.array_equal(before[inside], after[inside])
    LiteModel(rounded).predict_logits(np.zeros((2, 28, 28), np.float32))  # still a model LiteRT runs


def test_the_sweep_at_8_bits_per_channel_is_within_half_a_point_of_the_real_dynamic_variant(tflites, dataset):
    from core.quantization import sweep

    points = sweep(tflites["float32"], dataset.x_test, dataset.y_test, bits=(8, 2), ranges=("min-max", "mse"))
    assert len(points) == 2 * 2 * 2
    dynamic = np.mean(LiteModel(tflites["dynamic"]).predict_logits(dataset.x_test).argmax(axis=-1) == dataset.y_test)
    eight = next(p for p in points if p.bits == 8 and p.granularity == "per-channel" and p.range == "min-max")
    assert abs(eight.accuracy - dynamic) <= 0.005, (eight, dynamic)
    assert eight.agreement >= 0.99
    two = [p for p in points if p.bits == 2]
    assert max(p.agreement for p in two) < eight.agreement, "2 bits change answers"


def test_cli_sweep_prints_the_what_if_table(tflites, tmp_path):
    from tests.test_cli import cli

    (tmp_path / "float32.tflite").write_bytes(tflites["float32"])
    (tmp_path / "int8.tflite").write_bytes(tflites["int8"])
    result = cli("sweep", str(tmp_path / "float32.tflite"), "--dataset", "digits")
    assert result.returncode == 0, result.stderr
    widths = {str(bits) for bits in range(2, 9)}
    rows = [line.split() for line in result.stdout.splitlines() if len(line.split()) == 5 and line.split()[0] in widths]
    assert [int(row[0]) for row in rows] == [8, 7, 6, 5, 4, 3, 2]
    assert all(0.0 <= float(value) <= 1.0 for row in rows for value in row[1:])
    assert "28 models in" in result.stdout
    refused = cli("sweep", str(tmp_path / "int8.tflite"))
    assert refused.returncode == 2 and "no float32 convolution or dense kernel" in refused.stderr


def test_a_wider_range_clips_less_and_rounds_more_and_the_mse_range_sits_at_the_least_total(tflites):
    import itertools

    from core.quantization import clip_range, clipping_against_rounding, float_weights_by_name

    weights = float_weights_by_name(tflites["float32"])
    dense = max(weights.values(), key=lambda array: array.size)
    for bits in (8, 3):
        points = clipping_against_rounding(dense, bits)
        clipping = [p.clipping_mse for p in points]
        rounding = [p.rounding_mse for p in points]
        assert clipping[-1] == 0.0 and clipping[0] > clipping[-1]
        assert all(a >= b - 1e-15 for a, b in itertools.pairwise(clipping)), "clipping falls as the range widens"
        assert rounding[-1] > rounding[0], "a wider range rounds every value more coarsely"
        best = min(points, key=lambda p: p.total_mse)
        assert best.limit == pytest.approx(clip_range(dense, "mse", bits), rel=1e-6)
    assert min(clipping_against_rounding(dense, 3), key=lambda p: p.total_mse).fraction < 1.0, "3 bits: clip some"


def test_a_file_whose_scales_and_zero_points_disagree_gets_one_line(tflites):
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from core.inspect import ModelFormatError

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflites["int8"]), 0)
    weight = next(
        t
        for t in model.subgraphs[0].tensors
        if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale) > 1
    )
    weight.quantization.zeroPoint = [0, 0, 0]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(ModelFormatError, match="scales but 3 zero points"):
        quantized_tensors(bytes(builder.Output()))
    weight.quantization.zeroPoint = [0]
    weight.quantization.quantizedDimension = 7
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(ModelFormatError, match="along axis 7"):
        quantized_tensors(bytes(builder.Output()))


@pytest.mark.parametrize("name", ["int8", "int16x8", "static_wi8_ai8"])
def test_an_activations_rounding_is_what_litert_computes_there_from_the_same_input(name, tflites, dataset):
    """The file's activation scale and zero point laid over float32's own output of that layer: for
    the model's input, LiteRT's integers are exactly our rounding; further in, within a few steps."""
    from core.quantization import compare_activation, float_activations
    from core.runtime import LiteModel

    images = dataset.x_test[:50]
    floats = float_activations(tflites["float32"], images)
    quantized = LiteModel(tflites[name], preserve_all_tensors=True)
    quantized.set_input(images[: quantized.max_batch])
    quantized.invoke()
    details = {d["name"]: d for d in quantized.tensor_details()}
    activations = [t for t in quantized_tensors(tflites[name]) if not t.is_weight and t.name in floats]
    assert len(activations) >= 3, [t.name for t in activations]
    for tensor in activations:
        compared = compare_activation(tensor, floats[tensor.name])
        theirs = quantized.tensor(details[tensor.name]["index"])
        ours = compared.dequantized[: len(theirs)]
        step = tensor.scales[0]
        # What LiteRT holds there came through quantized layers: within a few steps of rounding the float.
        assert np.median(np.abs(dequantize(tensor, theirs) - ours)) <= 2 * step, tensor.name
        if not variants.get(name).recipe:  # the converter calibrates each range to the images' whole min-max
            assert compared.clipped_fraction < 0.01, (tensor.name, compared.clipped_fraction)
            assert compared.snr_db > (20 if tensor.bits == 8 else 50), (tensor.name, compared.snr_db)


def test_the_litert_quantizers_moving_average_ranges_clip_more_than_the_converters(tflites, dataset):
    """The LiteRT Quantizer's calibration keeps a moving average of each image's min and max
    (qsv_utils.moving_average_update), the converter the min and max over all: the logits' range
    is narrower, and Inside shows what it clips."""
    from core.quantization import compare_activation, float_activations

    floats = float_activations(tflites["float32"], dataset.x_test[:100])
    output = LiteModel(tflites["float32"]).interpreter.get_output_details()[0]["name"]
    clipped = {}
    for name in ("int8", "static_wi8_ai8"):
        tensor = next(t for t in quantized_tensors(tflites[name]) if t.name == output)
        clipped[name] = compare_activation(tensor, floats[output]).clipped_fraction
    assert clipped["int8"] < 0.01 < clipped["static_wi8_ai8"], clipped


def test_an_activation_comparison_refuses_a_weight(tflites):
    from core.quantization import compare_activation

    weight = next(t for t in quantized_tensors(tflites["int8"]) if t.is_weight)
    with pytest.raises(ValueError, match="not an activation"):
        compare_activation(weight, np.zeros(3))
