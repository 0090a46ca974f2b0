"""Compare: size, accuracy, agreement and latency of every converted variant, as charts."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import variants as registry
from core.compare import VariantMeasurement, reference_first
from core.evaluate import score
from core.report import build_report, dataset_info, environment, model_info, to_csv, to_json
from ui import state
from ui.layout import model_fits, need_model, need_variants, through_the_app, variant_label
from ui.resources import evaluate_tflite, inspect_for, layer_errors_for, time_tflite

through_the_app()
st.title("Compare")


def evaluations_ui(converted, dataset):
    names = reference_first(converted)
    results = {}
    started = time.perf_counter()
    bar = st.progress(0.0, text="Evaluating on the test set…")
    for index, name in enumerate(names):
        bar.progress(index / len(names), text=f"Evaluating {name} on {dataset.test_size:,} test images…")
        item = converted[name]
        results[name] = evaluate_tflite(name, item.digest, item.tflite, dataset.digest, dataset, item.brought)
    bar.empty()
    return {name: results[name] for name in converted}, names[0], time.perf_counter() - started


def latency_ui(converted, dataset) -> tuple[dict, int, bool]:
    left, middle, right = st.columns(3)
    threads = left.slider(
        "Threads",
        1,
        max(1, os.cpu_count() or 1),
        value=state.remembered("threads", 1),
        key="threads",
        on_change=state.remember,
        args=("threads",),
    )
    xnnpack = middle.toggle(
        "XNNPACK delegate",
        value=state.remembered("xnnpack", True),
        key="xnnpack",
        on_change=state.remember,
        args=("xnnpack",),
        help="LiteRT's optimized CPU kernels; off = the built-in kernels only",
    )
    runs = right.select_slider(
        "Timed runs per variant",
        [200, 500, 1000, 2000],
        value=state.remembered("runs", 1000),
        key="runs",
        on_change=state.remember,
        args=("runs",),
    )
    cache = st.session_state.setdefault("lab_latency", {})
    settings = (threads, xnnpack, runs, dataset.digest)
    if settings not in cache or st.button("Measure again", key="measure"):
        bar = st.progress(0.0)
        measured, started = {}, time.perf_counter()
        for index, (name, item) in enumerate(converted.items()):
            bar.progress(
                index / len(converted), text=f"Timing {name}: {runs:,} single-image invokes after warm-up, then batches…"
            )
            measured[name] = time_tflite(name, item.tflite, dataset.x_test[:256], threads, xnnpack, runs, item.brought)
        bar.empty()
        cache[settings] = (measured, time.perf_counter() - started)
    return cache[settings], threads, xnnpack


def charts_ui(measurements: dict[str, VariantMeasurement], reference: str) -> None:
    frame = pd.DataFrame(
        [
            {
                "variant": name,
                "bytes": m.size_bytes,
                "accuracy": m.accuracy,
                "agreement": m.agreement,
                "p50 µs": m.latency.p50_us,
                "p90 µs": m.latency.p90_us,
                "p99 µs": m.latency.p99_us,
                "× float32": m.size_bytes / measurements[reference].size_bytes,
            }
            for name, m in measurements.items()
        ]
    )
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        column_config={
            "bytes": st.column_config.NumberColumn(format="localized"),
            "accuracy": st.column_config.NumberColumn(format="%.4f"),
            "agreement": st.column_config.NumberColumn(format="%.4f"),
            "× float32": st.column_config.NumberColumn(format="%.2f"),
            "p50 µs": st.column_config.NumberColumn(format="%.1f"),
            "p90 µs": st.column_config.NumberColumn(format="%.1f"),
            "p99 µs": st.column_config.NumberColumn(format="%.1f"),
        },
    )
    left, right = st.columns(2)
    size = px.bar(frame, x="variant", y="bytes", text="bytes", title="File size")
    size.update_traces(texttemplate="%{text:,}")
    left.plotly_chart(size, key="chart_size")
    low, high = frame["accuracy"].min(), frame["accuracy"].max()
    pad = max(0.002, (high - low) * 0.5)
    accuracy = px.bar(frame, x="variant", y="accuracy", text="accuracy", title="Test accuracy (axis zoomed to the differences)")
    accuracy.update_traces(texttemplate="%{text:.4f}")
    accuracy.update_yaxes(range=[max(0.0, low - pad), min(1.0, high + pad)], tickformat=".3f")
    right.plotly_chart(accuracy, key="chart_accuracy")
    latency = go.Figure()
    for name, m in measurements.items():
        latency.add_trace(go.Box(y=m.latency.samples_us, name=name, boxpoints=False))
    latency.update_layout(
        title=f"Single-image latency, {len(next(iter(measurements.values())).latency.samples_us):,} runs each (µs, log scale)",
        yaxis_type="log",
        showlegend=False,
    )
    left.plotly_chart(latency, key="chart_latency")
    scatter = px.scatter(frame, x="bytes", y="accuracy", text="variant", title="Accuracy against size", size_max=12)
    scatter.update_traces(textposition="top center", marker={"size": 12})
    right.plotly_chart(scatter, key="chart_tradeoff")


def confusion_ui(measurements, dataset) -> None:
    name = st.selectbox("Variant", list(measurements), format_func=variant_label, key="confusion_variant")
    matrix = measurements[name].evaluation.confusion
    figure = px.imshow(
        matrix,
        x=list(dataset.class_names),
        y=list(dataset.class_names),
        text_auto=True,
        color_continuous_scale="Blues",
        labels={"x": "predicted", "y": "true", "color": "images"},
        title=f"Confusion matrix: {name}",
    )
    figure.update_xaxes(dtick=1)
    figure.update_yaxes(dtick=1)
    st.plotly_chart(figure, key="chart_confusion")


def flips_ui(measurements, reference: str, dataset) -> None:
    others = [name for name in measurements if name != reference]
    if not others:
        st.caption("Convert a quantized variant to see where it disagrees with float32.")
        return
    name = st.selectbox("Quantized variant", others, format_func=variant_label, key="flip_variant")
    ours, theirs = measurements[reference].evaluation.predictions, measurements[name].evaluation.predictions
    flips = np.flatnonzero(ours != theirs)
    st.write(f"**{len(flips)}** of {len(ours):,} test images change their answer between {reference} and {name}.")
    columns = st.columns(8)
    for slot, index in enumerate(flips[:32]):
        truth = dataset.class_names[dataset.y_test[index]]
        with columns[slot % 8]:
            st.image((dataset.x_test[index] * 255).astype(np.uint8), width=64)
            st.caption(
                f"true {truth}  \n{reference}: {dataset.class_names[ours[index]]}  \n{name}: {dataset.class_names[theirs[index]]}"
            )


LAYER_SAMPLE = 100


def layer_errors_ui(converted, dataset) -> dict[str, list]:
    """Per-layer SNR of every quantized variant against float32: ranked for one, and all at a glance."""
    if registry.REFERENCE not in converted:
        st.caption("Per-layer error needs the float32 variant as the reference.")
        return {}
    reference = converted[registry.REFERENCE]
    images = dataset.x_test[:LAYER_SAMPLE]
    with st.spinner("Comparing every layer of every variant with float32…"):
        errors = {
            name: layer_errors_for(name, item.digest, reference.digest, reference.tflite, item.tflite, dataset.digest, images)
            for name, item in converted.items()
            if name != registry.REFERENCE
        }
    if not errors:
        st.caption("Convert a quantized variant to see where its error comes from.")
        return {}
    st.caption(
        f"Each layer's output against float32's on {len(images)} test images. SNR in dB: higher is closer to float32, "
        "each 6 dB is about one bit of precision; identical layers are shown at the top of the scale."
    )
    rows = []
    for name, found in errors.items():
        for position, error in enumerate(found, start=1):
            rows.append(
                {
                    "variant": name,
                    "layer": f"{position}. {error.op}",
                    "tensor": error.tensor,
                    "rmse": error.rmse,
                    "snr_db": error.snr_db,
                    "identical": error.snr_db is None,
                    "LiteRT Quantizer's own SNR": error.validator_snr_db,
                }
            )
    frame = pd.DataFrame(rows)
    ceiling = max(100.0, float(frame["snr_db"].max(skipna=True) or 0) + 10)
    frame["snr_shown"] = frame["snr_db"].fillna(ceiling)
    name = st.selectbox("Variant", list(errors), format_func=variant_label, key="layer_variant")
    ranked = frame[frame["variant"] == name].sort_values("snr_shown")
    if ranked["LiteRT Quantizer's own SNR"].notna().any():
        st.caption("For this recipe, hover a bar to see the LiteRT Quantizer's own validation of the same tensor beside ours.")
    ranked_chart = px.bar(
        ranked,
        x="snr_shown",
        y="layer",
        orientation="h",
        hover_data=["tensor", "rmse", "snr_db", "LiteRT Quantizer's own SNR"],
        title=f"{name}: layers ranked by error (worst at the top)",
        labels={"snr_shown": "SNR (dB)"},
    )
    ranked_chart.update_yaxes(categoryorder="array", categoryarray=list(ranked["layer"])[::-1])
    st.plotly_chart(ranked_chart, key="chart_layers")
    grid = frame.pivot_table(index="variant", columns="layer", values="snr_shown", sort=False)
    heat = px.imshow(
        grid,
        text_auto=".0f",
        aspect="auto",
        color_continuous_scale="RdYlGn",
        labels={"color": "SNR dB"},
        title="Every variant, every layer (SNR in dB; green = close to float32)",
    )
    st.plotly_chart(heat, key="chart_layers_all")
    return errors


def anatomy_ui(converted) -> None:
    """Bytes by tensor: weights against the rest of the file, per variant."""
    inspections = {name: inspect_for(item.digest, item.tflite) for name, item in converted.items()}
    rows = []
    for name, inspection in inspections.items():
        for dtype, size in inspection.weights_by_dtype().items():
            rows.append({"variant": name, "part": f"weights ({dtype})", "bytes": size})
        rows.append({"variant": name, "part": "graph, metadata, padding", "bytes": inspection.other_bytes})
    stacked = px.bar(
        pd.DataFrame(rows),
        x="variant",
        y="bytes",
        color="part",
        title="What the bytes are",
        category_orders={"variant": list(inspections)},
    )
    st.plotly_chart(stacked, key="chart_anatomy")
    reference = inspections.get(registry.REFERENCE)
    if reference is not None and "dynamic" in inspections:
        dynamic = inspections["dynamic"]
        st.caption(
            f"Why dynamic range gives {reference.size_bytes / dynamic.size_bytes:.1f}×, not 4×: its weights shrink "
            f"{reference.weights_bytes / max(dynamic.weights_bytes, 1):.1f}× (biases and small kernels stay float32 or int32), "
            f"and the {dynamic.other_bytes:,} bytes of graph and metadata do not shrink at all."
        )
    name = st.selectbox("Variant", list(inspections), format_func=variant_label, key="anatomy_variant")
    tensors = [t for t in inspections[name].tensors if t.is_weight]
    detail = pd.DataFrame(
        [{"tensor": t.name[:60], "bytes": t.bytes, "dtype": t.dtype, "shape": str(list(t.shape))} for t in tensors]
    )
    detail = pd.concat(
        [
            detail,
            pd.DataFrame(
                [{"tensor": "(graph, metadata, padding)", "bytes": inspections[name].other_bytes, "dtype": "rest", "shape": ""}]
            ),
        ]
    )
    per_tensor = px.bar(
        detail.sort_values("bytes"),
        x="bytes",
        y="tensor",
        color="dtype",
        orientation="h",
        hover_data=["shape"],
        title=f"{name}: bytes by tensor",
    )
    st.plotly_chart(per_tensor, key="chart_tensors")


def export_ui(report: dict) -> None:
    left, right = st.columns(2)
    st.session_state["lab_report"] = report  # the last export, as core.report built it
    left.download_button(
        "⬇ Comparison as JSON", to_json(report), file_name="comparison.json", mime="application/json", key="export_json"
    )
    right.download_button("⬇ Comparison as CSV", to_csv(report), file_name="comparison.csv", mime="text/csv", key="export_csv")


def compare_ui(model: state.LabModel, converted: dict) -> None:
    dataset, choice = state.current_dataset()
    if not model_fits(model, dataset, "compare"):
        return
    trained_on = (
        ""
        if not model.dataset_digest or model.dataset_digest == dataset.digest
        else f" (the model was trained on {model.dataset_name})"
    )
    st.caption(
        f"On the {dataset.test_size:,} test images of {dataset.name}{trained_on}. Agreement is measured against "
        f"{registry.REFERENCE if registry.REFERENCE in converted else 'the first variant'}."
    )
    evaluations, reference, evaluate_s = evaluations_ui(converted, dataset)
    st.subheader("Latency")
    (timed, benchmark_s), threads, xnnpack = latency_ui(converted, dataset)
    measurements = {}
    for name, item in converted.items():
        # Each variant was evaluated (and cached) alone: score it again against the reference.
        alone = evaluations[name]
        evaluation = score(
            alone.predictions,
            dataset.y_test,
            len(dataset.class_names),
            evaluations[reference].predictions,
            alone.probabilities,
            alone.seconds,
        )
        latency, throughput = timed[name]
        measurements[name] = VariantMeasurement(name, len(item.tflite), evaluation, latency, throughput, item.seconds)
    st.session_state["lab_compared"] = True
    st.subheader("Side by side")
    charts_ui(measurements, reference)
    st.subheader("Where the answers go")
    confusion_ui(measurements, dataset)
    st.subheader("Images whose answer flips")
    flips_ui(measurements, reference, dataset)
    st.subheader("Where the error comes from")
    errors = layer_errors_ui(converted, dataset)
    st.subheader("Model anatomy")
    anatomy_ui(converted)
    st.subheader("Export")
    summary = model.summary
    report = build_report(
        dataset=dataset_info(dataset.summary(), bool(choice.notice)),
        model=model_info(
            summary.architecture if summary else model.label,
            len(model.history) or None,
            summary.parameters if summary else None,
            model.keras_accuracy,
        ),
        measurements=measurements,
        timings_s={"evaluate": evaluate_s, "benchmark": benchmark_s},
        env=environment(threads, xnnpack, tensorflow=None),
        extras={name: {"layer_errors": [e.to_dict() for e in found]} for name, found in errors.items()},
    )
    export_ui(report)


model = need_model()
converted = need_variants() if model is not None else {}
if model is not None and converted:
    try:
        compare_ui(model, converted)
    except (ValueError, RuntimeError) as error:  # core's errors (a model LiteRT cannot run, a failed comparison): one line
        st.error(f"The comparison stopped: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
