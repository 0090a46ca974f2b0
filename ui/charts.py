"""The app's charts: each function turns core's results into a plotly figure and draws nothing itself.

Pages place the figures; keeping the figure code here keeps the pages to widgets, core calls and
layout. pandas and plotly are imported by the pages that draw (Compare, Deploy), never by Model or
Quantize, which keeps the server lighter while a worker trains.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from core import variants as registry

# -- Compare: side by side ------------------------------------------------------------------------------


def measurements_frame(measurements: dict, reference: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "variant": name,
                "bytes": m.size_bytes,
                "accuracy": m.accuracy,
                "agreement": m.agreement,
                "p50 µs": m.latency.p50_us,
                "p90 µs": m.latency.p90_us,
                "p99 µs": m.latency.p99_us,
                f"× {reference}": m.size_bytes / measurements[reference].size_bytes,
            }
            for name, m in measurements.items()
        ]
    )


def measurement_columns(reference: str) -> dict:
    """How measurements_frame's columns are shown in st.dataframe."""
    import streamlit as st

    number = st.column_config.NumberColumn
    columns = {"bytes": number(format="localized"), f"× {reference}": number(format="%.2f")}
    columns |= {column: number(format="%.4f") for column in ("accuracy", "agreement")}
    return columns | {column: number(format="%.1f") for column in ("p50 µs", "p90 µs", "p99 µs")}


def size_figure(frame: pd.DataFrame) -> go.Figure:
    figure = px.bar(frame, x="variant", y="bytes", text="bytes", title="File size")
    figure.update_traces(texttemplate="%{text:,}")
    return figure


def accuracy_figure(frame: pd.DataFrame) -> go.Figure:
    low, high = frame["accuracy"].min(), frame["accuracy"].max()
    pad = max(0.002, (high - low) * 0.5)
    figure = px.bar(frame, x="variant", y="accuracy", text="accuracy", title="Test accuracy (axis zoomed to the differences)")
    figure.update_traces(texttemplate="%{text:.4f}")
    figure.update_yaxes(range=[max(0.0, low - pad), min(1.0, high + pad)], tickformat=".3f")
    return figure


def latency_figure(measurements: dict) -> go.Figure:
    figure = go.Figure()
    for name, m in measurements.items():
        figure.add_trace(go.Box(y=m.latency.samples_us, name=name, boxpoints=False))
    runs = len(next(iter(measurements.values())).latency.samples_us)
    figure.update_layout(title=f"Single-image latency, {runs:,} runs each (µs, log scale)", yaxis_type="log", showlegend=False)
    return figure


def tradeoff_figure(frame: pd.DataFrame) -> go.Figure:
    figure = px.scatter(frame, x="bytes", y="accuracy", text="variant", title="Accuracy against size", size_max=12)
    figure.update_traces(textposition="top center", marker={"size": 12})
    return figure


def confusion_figure(matrix: np.ndarray, class_names, name: str) -> go.Figure:
    figure = px.imshow(
        matrix,
        x=list(class_names),
        y=list(class_names),
        text_auto=True,
        color_continuous_scale="Blues",
        labels={"x": "predicted", "y": "true", "color": "images"},
        title=f"Confusion matrix: {name}",
    )
    figure.update_xaxes(dtick=1)
    figure.update_yaxes(dtick=1)
    return figure


# -- Compare: where the error comes from --------------------------------------------------------------


def layer_frame(errors: dict[str, list]) -> pd.DataFrame:
    """One row per (variant, layer); identical layers (no error) are shown at the top of the scale."""
    rows = [
        {
            "variant": name,
            "layer": f"{position}. {error.op}",
            "tensor": error.tensor,
            "rmse": error.rmse,
            "snr_db": error.snr_db,
            "LiteRT Quantizer's own SNR": error.validator_snr_db,
        }
        for name, found in errors.items()
        for position, error in enumerate(found, start=1)
    ]
    frame = pd.DataFrame(rows)
    ceiling = max(100.0, float(frame["snr_db"].max(skipna=True) or 0) + 10)
    frame["snr_shown"] = frame["snr_db"].fillna(ceiling)
    return frame


def ranked_layers_figure(ranked: pd.DataFrame, name: str) -> go.Figure:
    figure = px.bar(
        ranked,
        x="snr_shown",
        y="layer",
        orientation="h",
        hover_data=["tensor", "rmse", "snr_db", "LiteRT Quantizer's own SNR"],
        title=f"{name}: layers ranked by error (worst at the top)",
        labels={"snr_shown": "SNR (dB)"},
    )
    figure.update_yaxes(categoryorder="array", categoryarray=list(ranked["layer"])[::-1])
    return figure


def layers_heatmap(frame: pd.DataFrame, reference: str) -> go.Figure:
    grid = frame.pivot_table(index="variant", columns="layer", values="snr_shown", sort=False)
    return px.imshow(
        grid,
        text_auto=".0f",
        aspect="auto",
        color_continuous_scale="RdYlGn",
        labels={"color": "SNR dB"},
        title=f"Every variant, every layer (SNR in dB; green = close to {reference})",
    )


# -- Compare: model anatomy -------------------------------------------------------------------------------


def anatomy_figure(inspections: dict) -> go.Figure:
    rows = []
    for name, inspection in inspections.items():
        for dtype, size in inspection.weights_by_dtype().items():
            rows.append({"variant": name, "part": f"weights ({dtype})", "bytes": size})
        rows.append({"variant": name, "part": "graph, metadata, padding", "bytes": inspection.other_bytes})
    return px.bar(
        pd.DataFrame(rows),
        x="variant",
        y="bytes",
        color="part",
        title="What the bytes are",
        category_orders={"variant": list(inspections)},
    )


def why_dynamic_is_not_4x(inspections: dict) -> str:
    reference, dynamic = inspections.get(registry.REFERENCE), inspections.get("dynamic")
    if reference is None or dynamic is None:
        return ""
    return (
        f"Why dynamic range gives {reference.size_bytes / dynamic.size_bytes:.1f}×, not 4×: its weights shrink "
        f"{reference.weights_bytes / max(dynamic.weights_bytes, 1):.1f}× (biases and small kernels stay float32 or int32), "
        f"and the {dynamic.other_bytes:,} bytes of graph and metadata do not shrink at all."
    )


def tensor_bytes_figure(inspection, name: str) -> go.Figure:
    rows = [
        {"tensor": t.name[:60], "bytes": t.bytes, "dtype": t.dtype, "shape": str(list(t.shape))}
        for t in inspection.tensors
        if t.is_weight
    ]
    rows.append({"tensor": "(graph, metadata, padding)", "bytes": inspection.other_bytes, "dtype": "rest", "shape": ""})
    detail = pd.DataFrame(rows).sort_values("bytes")
    return px.bar(
        detail, x="bytes", y="tensor", color="dtype", orientation="h", hover_data=["shape"], title=f"{name}: bytes by tensor"
    )


# -- Deploy ------------------------------------------------------------------------------------------


def log_range(values: list[float]) -> list[float]:
    """A log axis's range (in decades, as plotly wants it) that fits every positive value with a margin."""
    positive = [value for value in values if value > 0]
    low, high = (min(positive), max(positive)) if positive else (1.0, 10.0)
    return [math.log10(low) - 0.25, math.log10(high) + 0.25]


def ram_flash_figure(results: dict, boards: list) -> go.Figure:
    """RAM (the recorded arena) against flash (the model's bytes), both log axes, with every board's limits
    as a rectangle from the axes' lower corner. The ranges are set from the data and the boards: a
    rectangle drawn from 0 on a log axis would otherwise stretch the axis to absurd decades."""
    running = {name: result for name, result in results.items() if result.runs}
    flash = [r.flash_bytes / 1024 for r in running.values()] + [b.flash_bytes / 1024 for b in boards]
    ram = [r.arena_bytes / 1024 for r in running.values()] + [b.ram_bytes / 1024 for b in boards]
    x_range, y_range = log_range(flash), log_range(ram)
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=[r.flash_bytes / 1024 for r in running.values()],
            y=[r.arena_bytes / 1024 for r in running.values()],
            text=list(running),
            mode="markers+text",
            textposition="top center",
            name="variants",
            marker={"size": 12, "color": "#ff6f00"},
        )
    )
    for board in boards:
        figure.add_shape(
            type="rect",
            x0=10 ** x_range[0],
            y0=10 ** y_range[0],
            x1=board.flash_bytes / 1024,
            y1=board.ram_bytes / 1024,
            line={"dash": "dot"},
            fillcolor="rgba(46,125,50,0.04)",
        )
        figure.add_annotation(
            x=math.log10(board.flash_bytes / 1024),
            y=math.log10(board.ram_bytes / 1024),
            text=board.name,
            showarrow=False,
            xanchor="right",
            yanchor="top",
            font={"size": 10},
        )
    figure.update_layout(
        title="RAM (arena) against flash (model), with each board's limits",
        height=460,
        xaxis={"title": "flash, KB (log)", "type": "log", "range": x_range},
        yaxis={"title": "RAM, KB (log)", "type": "log", "range": y_range},
    )
    return figure


# -- Inside: one tensor's numbers, and the what-if sweep -------------------------------------------


def weight_histogram_figure(compared, channel: int | None = None, what: str = "weight value (real)") -> go.Figure:
    """The float values a quantized weight replaces, with the levels it can hold laid over them
    (every level up to 32 of them, else the two ends) and the clipping range shaded outside."""
    tensor = compared.tensor
    values = compared.float_values
    ranges = tensor.real_ranges()
    if tensor.per_channel and channel is not None:
        values = np.take(values, channel, axis=tensor.axis)
        low, high = ranges[channel]
        scale, zero = tensor.scales[channel], tensor.zero_points[channel]
    else:
        low, high = ranges[:, 0].min(), ranges[:, 1].max()
        scale, zero = tensor.scales[0], tensor.zero_points[0]
    figure = go.Figure(go.Histogram(x=values.ravel(), nbinsx=80, name="float32 values", marker_color="#4c78a8"))
    q_low, q_high = tensor.levels
    if q_high - q_low < 32 and (not tensor.per_channel or channel is not None):
        for q in range(q_low, q_high + 1):
            figure.add_vline(x=scale * (q - zero), line_width=1, line_color="#ff6f00", opacity=0.6)
    for edge in (low, high):
        figure.add_vline(x=edge, line_width=2, line_color="#d32f2f")
    span = max(abs(float(values.min())), abs(float(values.max())), abs(low), abs(high)) * 1.1
    figure.add_vrect(x0=-span, x1=low, fillcolor="#d32f2f", opacity=0.08, line_width=0)
    figure.add_vrect(x0=high, x1=span, fillcolor="#d32f2f", opacity=0.08, line_width=0)
    figure.update_layout(height=320, xaxis_title=what, yaxis_title="count", showlegend=False, margin=dict(t=30, b=40))
    figure.update_xaxes(range=[-span, span])
    return figure


def rounding_error_figure(compared) -> go.Figure:
    figure = go.Figure(go.Histogram(x=compared.error.ravel(), nbinsx=60, marker_color="#ff6f00"))
    figure.update_layout(height=260, xaxis_title="dequantized − float32", yaxis_title="count", margin=dict(t=30, b=40))
    return figure


def scales_figure(tensor) -> go.Figure:
    figure = go.Figure(go.Bar(x=list(range(len(tensor.scales))), y=list(tensor.scales), marker_color="#4c78a8"))
    figure.update_layout(height=260, xaxis_title=f"channel (axis {tensor.axis})", yaxis_title="scale", margin=dict(t=30, b=40))
    return figure


def sweep_figure(points: list, real: dict[str, tuple[int, float]]) -> go.Figure:
    """Accuracy against bits, a line per granularity and range; the real variants as points."""
    frame = pd.DataFrame([{"bits": p.bits, "accuracy": p.accuracy, "how": f"{p.granularity}, {p.range}"} for p in points])
    figure = px.line(frame, x="bits", y="accuracy", color="how", markers=True)
    for name, (bits, accuracy) in real.items():
        figure.add_trace(
            go.Scatter(
                x=[bits],
                y=[accuracy],
                mode="markers+text",
                text=[name],
                textposition="top center",
                name=name,
                marker=dict(size=12, symbol="diamond", color="#111"),
                showlegend=False,
            )
        )
    figure.update_layout(height=380, xaxis=dict(autorange="reversed", dtick=1), margin=dict(t=30, b=40))
    return figure


def range_tradeoff_figure(points: list, chosen_fraction: float | None = None) -> go.Figure:
    """Clipping error falls and rounding error grows as the range widens; their sum has a floor."""
    x = [p.fraction for p in points]
    figure = go.Figure(
        [
            go.Scatter(x=x, y=[p.clipping_mse for p in points], name="clipping", line=dict(color="#d32f2f")),
            go.Scatter(x=x, y=[p.rounding_mse for p in points], name="rounding", line=dict(color="#ff6f00")),
            go.Scatter(x=x, y=[p.total_mse for p in points], name="total", line=dict(color="#111", dash="dot")),
        ]
    )
    best = min(points, key=lambda p: p.total_mse)
    figure.add_vline(x=best.fraction, line_dash="dash", line_color="#4c78a8", annotation_text="least total error")
    if chosen_fraction is not None:
        figure.add_vline(x=chosen_fraction, line_color="#2e7d32", annotation_text="your range", annotation_position="bottom")
    figure.update_layout(
        height=320,
        xaxis_title="clipping range, share of the largest |weight|",
        yaxis_title="mean squared error",
        margin=dict(t=30, b=40),
    )
    return figure


def keep_float_figure(found: dict) -> go.Figure:
    """The automatic keep-float search: each step's file size against its accuracy, with the bound."""
    steps = found["steps"]
    labels = [step["layer"] or found["base"] for step in steps]
    figure = go.Figure(
        go.Scatter(
            x=[step["size_bytes"] / 1024 for step in steps],
            y=[step["accuracy"] for step in steps],
            mode="lines+markers+text",
            text=[f"{index}: {label}" for index, label in enumerate(labels)],
            textposition="top center",
            marker=dict(size=11),
            name="steps",
        )
    )
    figure.add_hline(y=found["float_accuracy"], line_color="#2e7d32", annotation_text="float32")
    figure.add_hline(
        y=found["float_accuracy"] - found["max_drop_pp"] / 100, line_dash="dash", line_color="#d32f2f", annotation_text="bound"
    )
    figure.update_layout(
        height=320, xaxis_title="file size (KB)", yaxis_title="accuracy", margin=dict(t=30, b=40), showlegend=False
    )
    return figure


# -- this server against your device (core.litertjs) ----------------------------------------------

SERVER, DEVICE, WEBGPU = "this server (LiteRT)", "your device (LiteRT.js, WebAssembly)", "your device (WebGPU)"


def device_frame(rows: list) -> pd.DataFrame:
    """core.litertjs.SideBySide rows as the table Compare shows; a WebGPU column only where the browser has one."""
    frame = pd.DataFrame(
        [
            {
                "variant": row.name,
                "server µs": row.server_us,
                "device µs": row.device_us,
                "WebGPU µs": row.webgpu_us,
                "device ÷ server": row.device_over_server,
                "agreement": row.refusal or (row.agreement.describe() if row.agreement else "–"),
            }
            for row in rows
        ]
    )
    return frame if frame["WebGPU µs"].notna().any() else frame.drop(columns="WebGPU µs")


def device_columns() -> dict:
    import streamlit as st

    number = st.column_config.NumberColumn
    return {
        "server µs": number(format="%.1f", help="p50 of single-image invokes on this server (LiteRT, the variant's own file)"),
        "device µs": number(format="%.1f", help="p50 per run in this browser (LiteRT.js, WebAssembly, the browser twin)"),
        "WebGPU µs": number(format="%.1f", help="p50 per run with LiteRT.js's WebGPU accelerator, where the browser has one"),
        "device ÷ server": number(format="%.2f×"),
        "agreement": st.column_config.TextColumn(
            help="the browser's scores on test images against the server's LiteRT on the same twin"
        ),
    }


def device_figure(rows: list) -> go.Figure:
    """Per variant, this server's time beside the device's: horizontal, so it reads on a phone."""
    records = []
    for row in rows:
        for where, value in ((SERVER, row.server_us), (DEVICE, row.device_us), (WEBGPU, row.webgpu_us)):
            if value:
                records.append({"variant": row.name, "where": where, "µs per image": value})
    frame = pd.DataFrame(records)
    figure = px.bar(
        frame,
        y="variant",
        x="µs per image",
        color="where",
        barmode="group",
        orientation="h",
        log_x=True,
        title="µs per image, log scale",
        color_discrete_map={SERVER: "#607d8b", DEVICE: "#ff6f00", WEBGPU: "#8e24aa"},
    )
    # The legend above the bars: below them it runs into the axis on a phone.
    figure.update_layout(
        height=170 + 44 * len(rows),
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0, "title": None},
        xaxis={"title": None},
        yaxis={"autorange": "reversed", "title": None},
        margin={"t": 90},
    )
    return figure


def class_board_figure(entries: list, server_ratio: float | None) -> go.Figure:
    """int8 ÷ float32 on every device on the board: left of 1, int8 is faster there."""
    frame = pd.DataFrame(
        [
            {
                "device": entry.device_class,
                "int8 ÷ float32": entry.int8_over_float32,
                "browser": entry.browser,
                "cores": entry.cores,
            }
            for entry in entries
        ]
    )
    figure = px.strip(
        frame,
        x="int8 ÷ float32",
        y="device",
        color="device",
        hover_data=["browser", "cores"],
        log_x=True,
        title=f"The class's devices: int8's time over float32's ({len(entries)} device{'s' if len(entries) != 1 else ''})",
    )
    figure.update_traces(marker={"size": 14, "opacity": 0.8})
    figure.add_vline(x=1.0, line_dash="dot", annotation_text="as fast", annotation_position="top")
    if server_ratio:
        figure.add_vline(x=server_ratio, line_color="#607d8b", annotation_text="this server", annotation_position="bottom")
    figure.update_layout(showlegend=False, height=320, yaxis_title=None)
    return figure
