"""Deploy: will each variant run on a microcontroller? TFLite Micro runs it and measures the memory."""

from __future__ import annotations

import io
import zipfile

import streamlit as st

from core import micro
from core.export_c import to_c
from ui import state
from ui.layout import markdown_table, model_fits, need_model, need_variants, through_the_app, variant_label

through_the_app()
st.title("Deploy")


@st.cache_data(show_spinner=False, max_entries=256)
def measured(
    name: str, digest: str, dataset_digest: str, _tflite: bytes, _images, _labels, _reference, _litert, _xnnpack
) -> dict:
    """One variant under TFLite Micro, in a child process (keyed by the file's and the data's digests)."""
    return micro.measure(_tflite, _images, _labels, _reference, _litert, _xnnpack).to_dict()


@st.cache_data(show_spinner=False, max_entries=256)
def litert_answers(digest: str, dataset_digest: str, xnnpack: bool, _tflite: bytes, _images, brought: bool = False):
    """LiteRT's answers on the same file; a file a person brought runs in a bounded child process."""
    if brought:
        from core.compare import elsewhere

        return elsewhere(micro.litert_answers, _tflite, _images, xnnpack, what="LiteRT's answers for the comparison")
    return micro.litert_answers(_tflite, _images, xnnpack)


def measure_ui(converted: dict, dataset) -> dict[str, micro.MicroResult]:
    images, labels = dataset.x_test, dataset.y_test
    reference_name = "float32" if "float32" in converted else next(iter(converted))
    bar = st.progress(0.0, text="TensorFlow Lite Micro runs every variant on the test set (reference kernels)…")
    reference = litert_answers(
        converted[reference_name].digest,
        dataset.digest,
        True,
        converted[reference_name].tflite,
        images,
        converted[reference_name].brought,
    )
    results = {}
    for index, (name, item) in enumerate(converted.items()):
        bar.progress(index / len(converted), text=f"TFLite Micro: {name} on {len(images):,} test images…")
        builtin = litert_answers(item.digest, dataset.digest, False, item.tflite, images, item.brought)
        xnnpack = litert_answers(item.digest, dataset.digest, True, item.tflite, images, item.brought)
        results[name] = micro.MicroResult(
            **measured(name, item.digest, dataset.digest, item.tflite, images, labels, reference, builtin, xnnpack)
        )
    bar.empty()
    return results


def targets_ui() -> list[micro.Board]:
    names = [board.name for board in micro.BOARDS]
    picked = st.multiselect(
        "Boards", names, default=state.remembered("boards", names), key="boards", on_change=state.remember, args=("boards",)
    )
    boards = [board for board in micro.BOARDS if board.name in picked]
    with st.expander("A board of your own"):
        left, right = st.columns(2)
        ram = left.number_input(
            "RAM (KB)",
            min_value=0,
            max_value=1_000_000,
            value=state.remembered("custom_ram", 0),
            key="custom_ram",
            on_change=state.remember,
            args=("custom_ram",),
            help="0 = no custom board",
        )
        flash = right.number_input(
            "Flash (KB)",
            min_value=0,
            max_value=10_000_000,
            value=state.remembered("custom_flash", 0),
            key="custom_flash",
            on_change=state.remember,
            args=("custom_flash",),
        )
        if ram and flash:
            boards.append(micro.Board("Your board", "custom", int(ram) * 1024, int(flash) * 1024, "your figures"))
    st.caption(
        " · ".join(
            f"**{b.name}**: {b.chip}, {b.ram_bytes // 1024} KB RAM, {b.flash_bytes // 1024} KB flash ({b.source})" for b in boards
        )
    )
    return boards


def kb(value: int) -> str:
    return f"{value / 1024:,.1f} KB"


def table_ui(results: dict[str, micro.MicroResult], boards: list[micro.Board]) -> None:
    header = ["variant", "runs on TFLM", "arena (RAM)", "model (flash)", "accuracy", "≠ LiteRT (XNNPACK)"] + [
        b.name for b in boards
    ]
    rows = []
    for name, result in results.items():
        cells = [
            f"{variant_label(name)} (`{name}`)",
            "yes" if result.runs else "**no**",
            kb(result.arena_bytes) if result.runs else "–",
            kb(result.flash_bytes),
            f"{result.accuracy:.4f}" if result.accuracy is not None else "–",
            f"{result.differs_from_litert} ({result.differs_from_litert_xnnpack})"
            if result.differs_from_litert is not None
            else "–",
        ]
        for board in boards:
            fit = micro.fits(result, board)
            if fit is None:
                cells.append("–")
            elif fit.fits:
                cells.append(f":green[**fits**], {kb(min(fit.ram_headroom_bytes, fit.flash_headroom_bytes))} spare")
            else:
                short = -min(fit.ram_headroom_bytes, fit.flash_headroom_bytes)
                cells.append(f":red[**too big**]: short {kb(short)} of {'RAM' if fit.ram_headroom_bytes < 0 else 'flash'}")
        rows.append(cells)
    st.markdown(markdown_table(header, rows, align="llrrrr" + "l" * len(boards)))
    st.caption(
        "Arena: what TFLite Micro's RecordingMicroAllocator recorded after an invoke (an arena of exactly that size was "
        "checked to run). Flash: the model's bytes; TFLite Micro's own code (interpreter and kernels) comes on top. "
        "Accuracy: the whole test set through TFLM's reference kernels. ≠ LiteRT: test images TFLM answers differently "
        "from LiteRT's built-in kernels (the same integer arithmetic), and in brackets from LiteRT with XNNPACK, whose "
        "int8 kernels round their requantization their own way."
    )


def chart_ui(results: dict[str, micro.MicroResult], boards: list[micro.Board]) -> None:
    import plotly.graph_objects as go

    running = {name: result for name, result in results.items() if result.runs}
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
            x0=0,
            y0=0,
            x1=board.flash_bytes / 1024,
            y1=board.ram_bytes / 1024,
            line={"dash": "dot"},
            fillcolor="rgba(46,125,50,0.04)",
        )
        figure.add_annotation(
            x=board.flash_bytes / 1024,
            y=board.ram_bytes / 1024,
            text=board.name,
            showarrow=False,
            xanchor="right",
            yanchor="top",
            font={"size": 10},
        )
    figure.update_layout(
        title="RAM (arena) against flash (model), with each board's limits",
        height=460,
        xaxis={"title": "flash, KB (log)", "type": "log"},
        yaxis={"title": "RAM, KB (log)", "type": "log"},
    )
    st.plotly_chart(figure, key="chart_deploy")


def refusals_ui(results: dict[str, micro.MicroResult]) -> None:
    refused = {name: result for name, result in results.items() if not result.runs}
    if refused:
        st.subheader("What TFLite Micro refuses, in its own words")
        for name, result in refused.items():
            st.markdown(f"- **{variant_label(name)}** (`{name}`): `{result.reason}`")
        st.caption(
            "Dynamic range and the weight-only float16/int4 variants keep float activations and dequantize or "
            "quantize on the fly: microcontroller runtimes run integer kernels only."
        )


def export_ui(converted: dict, results: dict[str, micro.MicroResult]) -> None:
    st.subheader("Export as C")
    runnable = [name for name, result in results.items() if result.runs]
    if not runnable:
        st.info("No variant runs on TFLite Micro: convert int8 (or another full-integer variant) first.")
        return
    name = st.selectbox("Variant", runnable, format_func=variant_label, key="export_variant")
    try:
        source = to_c(converted[name].tflite, name, results[name].arena_bytes)
    except ValueError as error:  # a malformed file, or one larger than any microcontroller's flash
        st.error(f"This variant cannot be exported as C: {error}")
        return
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(source.header_name, source.header)
        bundle.writestr(source.source_name, source.source)
    st.download_button(
        f"⬇ {source.header_name} + {source.source_name}",
        archive.getvalue(),
        file_name=f"{source.name}_model_data.zip",
        mime="application/zip",
        key="download_c",
    )
    st.code(
        "\n".join(
            [
                f"constexpr int kTensorArenaSize = {results[name].arena_bytes};  // measured by TFLite Micro",
                "alignas(16) static uint8_t tensor_arena[kTensorArenaSize];",
                f"static tflite::MicroMutableOpResolver<{len(source.resolver_lines)}> resolver;",
                *source.resolver_lines,
            ]
        ),
        language="cpp",
    )


model = need_model()
converted = need_variants() if model is not None else {}
if model is not None and converted:
    dataset, _ = state.current_dataset()
    if model_fits(model, dataset, "deploy"):
        st.write(
            "TensorFlow Lite Micro, the runtime for microcontrollers, runs each converted variant here with its own "
            "reference kernels: whether it runs at all, the RAM its tensors need, and its answers on the test set."
        )
        try:
            results = measure_ui(converted, dataset)
        except (ValueError, RuntimeError) as error:  # TFLM could not be asked, or LiteRT could not run a variant
            st.error(
                f"TensorFlow Lite Micro could not be asked: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
            )
        else:
            boards = targets_ui()
            table_ui(results, boards)
            chart_ui(results, boards)
            refusals_ui(results)
            export_ui(converted, results)
