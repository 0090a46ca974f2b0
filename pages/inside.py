"""Inside: what quantization is, on this session's own variants: every quantized tensor's scale and
zero point from the file, a weight laid over the levels that replace it, and a what-if sweep."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core import variants as registry
from core.quantization import (
    clipping_against_rounding,
    compare_activation,
    compare_weight,
    float_weights_by_name,
    quantized_tensors,
    stored_integers,
)
from ui import charts, state
from ui import jobs as jobs_ui
from ui.layout import markdown_table, model_fits, need_model, need_variants, through_the_app, variant_label
from ui.resources import accuracy_of, float_activations_of, ranked_layers_of, sweep_all

through_the_app()
st.title("Inside quantization")


def tensors_ui(name: str, tflite: bytes, float_tflite: bytes | None) -> None:
    tensors = quantized_tensors(tflite)
    if not tensors:
        st.info("Nothing quantized in this model: no tensor carries a scale.")
        return
    st.write(
        "Every tensor with quantization parameters, as the file stores them: the integer `q` stands "
        "for `scale × (q − zero_point)`. Weights are stored as integers; activations are rounded "
        "the same way while the model runs."
    )
    rows = [
        [
            f"`{t.name[:32]}`",
            f"{'weight' if t.is_weight else 'activation'}, {t.dtype}",
            (f"{t.scales[0]:.4g}" if not t.per_channel else f"{len(t.scales)} scales, {min(t.scales):.3g}…{max(t.scales):.3g}")
            + f"; zero point {', '.join(str(z) for z in sorted(set(t.zero_points)))}",
        ]
        for t in tensors
    ]
    # Three narrow columns, so that the table fits a phone; the chosen tensor's formula is under it.
    st.markdown(markdown_table(["tensor", "kind", "scale; zero point"], rows))
    chosen = [t for t in tensors if t.is_weight and t.bits <= 8] + [t for t in tensors if not t.is_weight and t.bits <= 16]
    if not chosen:
        return
    st.subheader("One tensor, its levels and its rounding")
    picked = st.selectbox(
        "Tensor",
        range(len(chosen)),
        format_func=lambda i: f"{chosen[i].name} ({'weight' if chosen[i].is_weight else 'activation'})",
        key="inside_weight",
    )
    tensor = chosen[picked]
    st.markdown("What its integers `q` mean, in the file's own numbers:")
    st.code(tensor.mapping(), language=None, wrap_lines=True)
    if not tensor.is_weight:
        activation_ui(tensor, float_tflite)
        return
    variant = registry.find(name)
    if variant is not None and variant.rotates_weights:
        st.info(
            "This recipe stores each weight multiplied by a Hadamard matrix, which spreads its outliers "
            "over a whole row: its integers replace the rotated weight, not the float32 one, so they are not laid over it here."
        )
        return
    floats = float_weights_by_name(float_tflite) if float_tflite is not None else {}
    match = floats.get(tensor.name)
    if match is None or match.shape != tuple(tensor.shape):
        retrained = variant is not None and variant.needs_training_data
        why = " (quantization-aware training retrained it)" if retrained else ""
        st.info(f"This weight has no float32 counterpart to compare with{why}.")
        return
    compared = compare_weight(tensor, stored_integers(tflite, tensor), match)
    metrics_ui(compared, tensor)
    channel = None
    if tensor.per_channel:
        st.plotly_chart(charts.scales_figure(tensor), key="chart_scales")
        st.caption(
            "Per channel, each output channel gets its own scale: a channel of small weights is not rounded as coarsely as the largest one."
        )
        channel = st.slider("Channel", 0, len(tensor.scales) - 1, 0, key="inside_channel")
    st.plotly_chart(charts.weight_histogram_figure(compared, channel), key="chart_levels")
    st.caption(
        "The float32 weights this tensor replaces; red lines mark the range the integers can hold "
        "(values beyond are clipped), orange lines the levels themselves when there are few enough to draw."
    )
    st.plotly_chart(charts.rounding_error_figure(compared), key="chart_rounding")
    st.caption("Rounding moves each weight by at most half a step: this is the error it leaves.")
    st.markdown("**Clipping against rounding.** Choose the bits and the range of this weight's float32 values:")
    left, right = st.columns(2)
    bits = left.slider("Bits", 2, 8, 4, key="inside_bits")
    fraction = right.slider("Range (share of the largest |weight|)", 0.3, 1.0, 1.0, 0.02, key="inside_range")
    values = compared.float_values if channel is None else np.take(compared.float_values, channel, axis=tensor.axis)
    st.plotly_chart(charts.range_tradeoff_figure(clipping_against_rounding(values, bits), fraction), key="chart_tradeoff")
    st.caption(
        "A narrow range clips the largest weights; a wide one makes every step coarser. With few bits the "
        "least total error sits well inside the largest weight: that is why an MSE range beats min-max at 2–4 bits."
    )


def metrics_ui(compared, tensor) -> None:
    left, middle, right = st.columns(3)
    left.metric("Clipped", f"{compared.clipped_fraction:.2%}", help="float values outside the range the integers can hold")
    middle.metric("SNR", f"{compared.snr_db:.1f} dB", help="the float values' power over the rounding error's")
    right.metric("Levels", f"{tensor.levels[1] - tensor.levels[0] + 1:,}", f"{tensor.bits} bits", delta_color="off")


def activation_ui(tensor, float_tflite: bytes | None) -> None:
    dataset = state.current_dataset()[0]
    found = None
    if float_tflite is not None:
        reference = state.variants()[registry.REFERENCE]
        found = float_activations_of(reference.digest, float_tflite, dataset.digest, dataset.x_test[:200]).get(tensor.name)
    if found is None:
        st.info("This activation has no float32 tensor of the same name to compare with: the converter renamed or fused it.")
        return
    compared = compare_activation(tensor, found)
    metrics_ui(compared, tensor)
    st.plotly_chart(charts.weight_histogram_figure(compared, None, what="activation value (real)"), key="chart_levels")
    st.caption(
        f"What the float32 model computes at this tensor on {len(found):,} test images; red lines mark the range "
        "the file's scale and zero point can hold, fixed by calibration (values beyond are clipped while the model runs)."
    )
    st.plotly_chart(charts.rounding_error_figure(compared), key="chart_rounding")
    st.caption("Rounding each value to the nearest level moves it by at most half a step, except where it is clipped.")


def sweep_ui(converted: dict, dataset) -> None:
    st.subheader("What if: fewer bits, another range, one scale or many")
    st.write(
        "The float32 model's convolution and dense kernels, rounded to 8 down to 2 bits, per channel or "
        "per tensor, over their min–max range or the range of least squared error, each scored on the test set."
    )
    reference = converted.get(registry.REFERENCE)
    if reference is None:
        st.info("Convert the float32 variant too: the what-if rounds its weights.")
        return
    bar = st.empty()

    def progress(fraction: float, text: str) -> None:
        bar.progress(fraction, text=f"Rounding and scoring 28 models on {len(dataset.x_test):,} test images: {text}")

    points = sweep_all(reference.digest, reference.tflite, dataset.digest, dataset.x_test, dataset.y_test, progress)
    bar.empty()
    real = {}
    for name, item in converted.items():
        tensors = quantized_tensors(item.tflite)
        if tensors and all(t.is_weight for t in tensors):  # weights rounded, activations float: what the sweep does
            bits = min(t.bits for t in tensors)
            real[name] = (bits, accuracy_of(item.digest, item.tflite, dataset.digest, dataset.x_test, dataset.y_test))
    st.plotly_chart(charts.sweep_figure(points, real), key="chart_sweep")
    st.caption(
        "Accuracy against bits: where the lines fall is where rounding starts to cost answers. The diamonds "
        "are the real weight-quantized variants of this session, at their bits."
    )


def keep_float_ui(model: state.LabModel, converted: dict, dataset) -> None:
    st.subheader("Keep these layers float")
    st.write(
        "The layers of a quantized variant, worst first by how far their output strays from float32 "
        "(SNR on test images). Keep the worst in float32 and measure again: a new variant, in Compare, "
        "Draw, Deploy and the report."
    )
    if not model.can_convert:
        st.info("Building a variant needs the Keras model: this one is a .tflite, compared as it is.")
        return
    reference = converted.get(registry.REFERENCE)
    bases = [name for name in converted if registry.can_keep_float(name)]
    if reference is None or not bases:
        st.info("Convert float32 and int8 (or a LiteRT Quantizer recipe) on Quantize first.")
        return
    base = st.selectbox("Variant to start from", bases, format_func=variant_label, key="keep_base")
    item = converted[base]
    ranked = ranked_layers_of(reference.digest, reference.tflite, item.digest, item.tflite, dataset.digest, dataset.x_test[:200])
    if not ranked:
        st.info(f"{variant_label(base)} quantizes no layer with weights: there is nothing to keep float.")
        return
    kinds = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "dense"}
    rows = [
        [
            f"`{layer.name}` ({kinds.get(layer.op, layer.op)})",
            f"{layer.weights:,}",
            "–" if snr is None else "broken" if np.isnan(snr) else f"{snr:.1f}",
        ]
        for layer, snr in ranked
    ]
    st.markdown(markdown_table(["layer", "weights", "SNR (dB)"], rows, align="lrr"))
    st.caption("Higher SNR is better: about 6 dB per bit of precision. “broken” is an output that is no longer a number.")
    calibration = item.calibration or state.remembered("calibration", 200)
    running = jobs_ui.active("keep_float")
    names = [layer.name for layer, _ in ranked]
    chosen = st.multiselect("Layers to keep in float32", names, default=names[:1], key="keep_layers")
    if st.button("Build it", key="keep_build", type="primary", disabled=running or not chosen):
        if len(chosen) >= len(names):
            st.error("That keeps every quantized layer float: nothing would be quantized. Leave at least one.")
        else:
            _submit_keep_float(model, base, calibration, layers=tuple(chosen))
    st.markdown("**Automatic:** the fewest float layers that keep accuracy within a drop of float32.")
    drop = st.slider("Largest drop allowed (percentage points)", 0.0, 5.0, 0.5, 0.1, key="keep_drop")
    if st.button("Find automatically", key="keep_auto", disabled=running):
        _submit_keep_float(model, base, calibration, max_drop_pp=float(drop))
    jobs_ui.job_panel("keep_float")
    steps = state.keep_float_steps().get(base)
    if steps:
        steps_ui(steps)


def _submit_keep_float(model: state.LabModel, base: str, calibration: int, **choice) -> None:
    from core.jobs import KeepFloatRequest

    try:
        request = KeepFloatRequest(
            model.digest, base, jobs_ui.dataset_ref(), calibration=calibration, model_bytes=model.keras_bytes, **choice
        )
    except (ValueError, OSError) as error:
        st.error(f"This cannot be built: {error}")
        return
    jobs_ui.submit(request)
    st.rerun()


def steps_ui(found: dict) -> None:
    rows = [
        [
            str(index),
            f"`{step['layer']}`" if step["layer"] else f"({found['base']})",
            f"{step['size_bytes']:,}",
            f"{step['accuracy']:.2%}",
            f"{(found['float_accuracy'] - step['accuracy']) * 100:.2f}",
        ]
        for index, step in enumerate(found["steps"])
    ]
    st.markdown(markdown_table(["step", "layer kept float", "bytes", "accuracy", "drop (pp)"], rows, align="llrrr"))
    st.plotly_chart(charts.keep_float_figure(found), key="chart_keep_float")
    st.caption(
        "Each step keeps one more layer in float32: the bytes it costs against the accuracy it buys. "
        f"The dashed line is float32 less {found['max_drop_pp']:g} points."
    )


model = need_model()
converted = need_variants() if model is not None else {}
if converted:
    dataset = state.current_dataset()[0]
    if model_fits(model, dataset, "inside"):
        quantized = [name for name in converted if name != registry.REFERENCE]
        if not quantized:
            st.info("Only float32 is converted: convert a quantized variant to look inside it.")
        else:
            name = st.selectbox("Variant", quantized, format_func=variant_label, key="inside_variant")
            reference = converted.get(registry.REFERENCE)
            try:
                tensors_ui(name, converted[name].tflite, reference.tflite if reference else None)
            except ValueError as error:  # a brought file whose numbers do not fit together: one line
                st.error(f"This variant's tensors cannot be shown: {str(error).splitlines()[0]}")
        if not any(item.brought for item in converted.values()):
            keep_float_ui(model, converted, dataset)
            sweep_ui(converted, dataset)
