"""Compare: size, accuracy, agreement and latency of every converted variant, as charts."""

from __future__ import annotations

import os
import time

import streamlit as st

from core import litertjs
from core import variants as registry
from core.compare import combine
from core.report import build_report, dataset_info, environment, to_csv, to_json
from ui import charts, device, state
from ui.layout import image_grid, model_fits, need_model, need_variants, remembered_widget, through_the_app, variant_label
from ui.resources import class_board, evaluate_all, inspect_for, layer_errors_all, time_all, twin_answers_of

through_the_app()
st.title("Compare")
LAYER_SAMPLE = 100


def latency_ui(converted, dataset) -> tuple[dict, float, int, bool]:
    """The timing settings, and every variant timed with them (kept per session, per setting)."""
    left, middle, right = st.columns(3)
    threads = remembered_widget(left.slider, "Threads", "threads", 1, min_value=1, max_value=max(1, os.cpu_count() or 1))
    xnnpack = remembered_widget(
        middle.toggle, "XNNPACK delegate", "xnnpack", True, help="LiteRT's optimized CPU kernels; off = the built-in kernels only"
    )
    runs = remembered_widget(right.select_slider, "Timed runs per variant", "runs", 1000, options=[200, 500, 1000, 2000])
    cache = state.latency_cache()
    settings = (threads, xnnpack, runs, tuple((name, item.digest) for name, item in converted.items()), dataset.digest)
    if settings not in cache or st.button("Measure again", key="measure"):
        bar, started = st.progress(0.0), time.perf_counter()

        def progress(index: int, name: str) -> None:
            bar.progress(
                index / len(converted), text=f"Timing {name}: {runs:,} single-image invokes after warm-up, then batches…"
            )

        measured = time_all(converted, dataset.x_test[:256], threads, xnnpack, runs, progress)
        bar.empty()
        cache[settings] = (measured, time.perf_counter() - started)
    return *cache[settings], threads, xnnpack


def side_by_side_ui(measurements, reference: str) -> None:
    frame = charts.measurements_frame(measurements, reference)
    st.dataframe(frame, hide_index=True, width="stretch", column_config=charts.measurement_columns(reference))
    left, right = st.columns(2)
    left.plotly_chart(charts.size_figure(frame), key="chart_size")
    right.plotly_chart(charts.accuracy_figure(frame), key="chart_accuracy")
    left.plotly_chart(charts.latency_figure(measurements), key="chart_latency")
    right.plotly_chart(charts.tradeoff_figure(frame), key="chart_tradeoff")


def device_ui(converted: dict, measurements: dict, dataset) -> None:
    """Every variant's browser twin timed in this browser with LiteRT.js, beside this server's LiteRT."""
    st.subheader("This server against your device")
    st.caption(
        "The same variants run in this browser with LiteRT.js (Google's LiteRT compiled to WebAssembly, served by this app). "
        "Each runs as its browser twin: the same graph with its batch fixed at 1 and, where its input and output are integers, "
        "float32 edges around them (same kernels, different edges). On a phone, open this page there: the figures are the phone's."
    )
    _, missing = device.twins(converted)
    for name, why in missing.items():
        st.caption(f"{variant_label(name)}: no browser twin ({why}).")
    run = state.device_run()
    if st.button("Measure my device again", key="device_again"):
        run = state.next_device_run()
    try:
        report = device.measure(converted, dataset.x_test, run)
    except litertjs.DeviceReportError as error:
        st.error(f"This browser's report could not be read: {error}")
        return
    if report is None:
        st.caption("Your browser is timing every variant (its progress is above); the server's figures stand meanwhile.")
        return
    if isinstance(report, litertjs.DeviceUnavailable):
        st.warning(f"LiteRT.js cannot run in this browser ({report.reason}); the figures above are this server's.")
        return
    outputs = {
        name: twin_answers_of(item.digest, item, dataset.x_test, dataset.digest)
        for name, item in converted.items()
        if name in report.rows and report.rows[name].ok
    }
    rows = litertjs.side_by_side({name: m.latency.p50_us for name, m in measurements.items()}, report, outputs, device.integer)
    facts = report.facts
    st.caption(
        f"Your device: {facts.device_class}, {facts.browser}, {facts.cores} cores, LiteRT.js {litertjs.VERSION} "
        f"({litertjs.WASM_BUILDS[facts.wasm_build]} build), WebGPU {'present' if facts.webgpu else 'absent'}."
    )
    server_ratio = litertjs.speed_ratio(rows, "int8", registry.REFERENCE, "server_us")
    device_ratio = litertjs.speed_ratio(rows, "int8", registry.REFERENCE, "device_us")
    if server_ratio and device_ratio:
        left, right = st.columns(2)
        left.metric("int8 ÷ float32, this server", f"{server_ratio:.2f}×", help="under 1: int8 is faster")
        right.metric("int8 ÷ float32, your device", f"{device_ratio:.2f}×", help="under 1: int8 is faster")
    with st.container(key="device_table"):
        st.dataframe(charts.device_frame(rows), hide_index=True, width="stretch", column_config=charts.device_columns())
    st.plotly_chart(charts.device_figure(rows), key="chart_device")
    broken = [row for row in rows if row.agreement is not None and not row.agreement.ok]
    if broken:
        st.warning(
            "The same twin, two builds of LiteRT (this server's and the browser's), scores that are not bit for bit equal: "
            + "; ".join(f"**{row.name}** {row.agreement.describe()}" for row in broken)
            + "."
        )
    class_board_ui(report, server_ratio)


def class_board_ui(report, server_ratio: float | None) -> None:
    """With consent, this device's int8 ÷ float32 joins the class's board (anonymous, in memory)."""
    from core.class_board import entry_from

    st.subheader("The class's devices")
    board, token = class_board(), state.board_token()
    joined = st.toggle(
        "Add my device to the class board",
        value=board.has(token),
        key="board_consent",
        help="Anonymous: the kind of device and the browser's family (e.g. Chrome on Android), its cores and its two timings. "
        "No address, no full user agent. Kept in this server's memory only, gone when it restarts.",
    )
    entry = entry_from(report)
    if joined and entry is not None:
        board.put(token, entry)
    elif not joined:
        board.remove(token)
    entries = board.entries()
    if joined and entry is None:
        st.caption("The board compares int8 with float32: convert both to join it.")
    if entries:
        st.plotly_chart(charts.class_board_figure(entries, server_ratio), key="chart_board")
    else:
        st.caption("No device on the board yet: each person who turns the toggle on adds theirs.")


def answers_ui(measurements, reference: str, dataset) -> None:
    st.subheader("Where the answers go")
    name = st.selectbox("Variant", list(measurements), format_func=variant_label, key="confusion_variant")
    st.plotly_chart(
        charts.confusion_figure(measurements[name].evaluation.confusion, dataset.class_names, name), key="chart_confusion"
    )
    st.subheader("Images whose answer flips")
    others = [name for name in measurements if name != reference]
    if not others:
        st.caption(f"Convert a quantized variant to see where it disagrees with {reference}.")
        return
    name = st.selectbox("Quantized variant", others, format_func=variant_label, key="flip_variant")
    ours, theirs = measurements[reference].evaluation.predictions, measurements[name].evaluation.predictions
    flips = measurements[name].evaluation.flips
    st.write(f"**{len(flips)}** of {len(ours):,} test images change their answer between {reference} and {name}.")
    names, shown = dataset.class_names, flips[:32]
    captions = [f"true {names[dataset.y_test[i]]}  \n{reference}: {names[ours[i]]}  \n{name}: {names[theirs[i]]}" for i in shown]
    image_grid(dataset.x_test[shown], captions)


def layer_errors_ui(converted, dataset) -> dict[str, list]:
    """Per-layer SNR of every quantized variant against float32: ranked for one, and all at a glance."""
    st.subheader("Where the error comes from")
    if registry.REFERENCE not in converted or len(converted) < 2:
        st.caption("Per-layer error needs the float32 variant as the reference and a quantized variant beside it.")
        return {}
    images = dataset.x_test[:LAYER_SAMPLE]
    with st.spinner("Comparing every layer of every variant with float32…"):
        errors = layer_errors_all(converted, images, dataset.digest)
    st.caption(
        f"Each layer's output against float32's on {len(images)} test images. SNR in dB: higher is closer to float32, "
        "each 6 dB is about one bit of precision; identical layers are shown at the top of the scale."
    )
    frame = charts.layer_frame(errors)
    name = st.selectbox("Variant", list(errors), format_func=variant_label, key="layer_variant")
    ranked = frame[frame["variant"] == name].sort_values("snr_shown")
    if ranked["LiteRT Quantizer's own SNR"].notna().any():
        st.caption("For this recipe, hover a bar to see the LiteRT Quantizer's own validation of the same tensor beside ours.")
    st.plotly_chart(charts.ranked_layers_figure(ranked, name), key="chart_layers")
    st.plotly_chart(charts.layers_heatmap(frame, registry.REFERENCE), key="chart_layers_all")
    return errors


def anatomy_ui(converted) -> None:
    """Bytes by tensor: weights against the rest of the file, per variant."""
    st.subheader("Model anatomy")
    inspections = {name: inspect_for(item.digest, item.tflite) for name, item in converted.items()}
    st.plotly_chart(charts.anatomy_figure(inspections), key="chart_anatomy")
    if why := charts.why_dynamic_is_not_4x(inspections):
        st.caption(why)
    name = st.selectbox("Variant", list(inspections), format_func=variant_label, key="anatomy_variant")
    st.plotly_chart(charts.tensor_bytes_figure(inspections[name], name), key="chart_tensors")


def export_ui(report: dict) -> None:
    st.subheader("Export")
    state.set_report(report)
    left, right = st.columns(2)
    left.download_button(
        "⬇ Comparison as JSON", to_json(report), file_name="comparison.json", mime="application/json", key="export_json"
    )
    right.download_button("⬇ Comparison as CSV", to_csv(report), file_name="comparison.csv", mime="text/csv", key="export_csv")
    if any("tflm" in row for row in report["variants"]):
        st.caption("The export carries TensorFlow Lite Micro's results from the Deploy page.")


def compare_ui(model: state.LabModel, converted: dict) -> None:
    dataset, choice = state.current_dataset()
    if not model_fits(model, dataset, "compare"):
        return
    other = model.dataset_digest and model.dataset_digest != dataset.digest
    reference = registry.reference_of(converted)
    trained_on = f" (the model was trained on {model.dataset_name})" if other else ""
    st.caption(
        f"On the {dataset.test_size:,} test images of {dataset.name}{trained_on}. Agreement is measured against {reference}."
    )
    started = time.perf_counter()
    with st.spinner(f"Evaluating every variant on {dataset.test_size:,} test images…"):
        evaluations = evaluate_all(converted, dataset)
    evaluate_s = time.perf_counter() - started
    st.subheader("Latency")
    timed, benchmark_s, threads, xnnpack = latency_ui(converted, dataset)
    tflites = {name: item.tflite for name, item in converted.items()}
    measurements = combine(tflites, evaluations, timed, {name: item.seconds for name, item in converted.items()})
    st.subheader("Side by side")
    side_by_side_ui(measurements, reference)
    device_ui(converted, measurements, dataset)
    answers_ui(measurements, reference, dataset)
    errors = layer_errors_ui(converted, dataset)
    anatomy_ui(converted)
    export_ui(
        build_report(
            dataset=dataset_info(dataset.summary(), bool(choice.notice)),
            model=model.report_info(),
            measurements=measurements,
            timings_s={"evaluate": evaluate_s, "benchmark": benchmark_s},
            env=environment(threads, xnnpack, tensorflow=None),
            layer_errors=errors,
            micro=state.micro_results(converted, dataset.digest),
        )
    )


model = need_model()
converted = need_variants() if model is not None else {}
if converted:
    try:
        compare_ui(model, converted)
    except (ValueError, RuntimeError, OSError) as error:  # core's errors (a model LiteRT cannot run …): one line
        st.error(f"The comparison stopped: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
