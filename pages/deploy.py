"""Deploy: will each variant run on a microcontroller? TFLite Micro runs it and measures the memory."""

from __future__ import annotations

import streamlit as st

from core import micro
from core.export_c import to_c
from ui import charts, resources, state
from ui.layout import markdown_table, model_fits, need_model, need_variants, remembered_widget, through_the_app, variant_label

through_the_app()
st.title("Deploy")


def measure_ui(converted: dict, dataset) -> dict[str, micro.MicroResult]:
    """core.micro.measure_all through the app's caches; the results also go to the session's report."""
    bar = st.progress(0.0, text="TensorFlow Lite Micro runs every variant on the test set (reference kernels)…")
    digest = dataset.digest

    def answers(name, tflite, images, xnnpack):
        return resources.litert_answers(converted[name].digest, digest, xnnpack, tflite, images, converted[name].brought)

    def measure_one(name, tflite, *arrays):
        return resources.micro_result(converted[name].digest, digest, tflite, *arrays)

    def progress(index, count, name):
        bar.progress(index / count, text=f"TFLite Micro: {name} on {dataset.test_size:,} test images…")

    tflites = {name: item.tflite for name, item in converted.items()}
    results = micro.measure_all(tflites, dataset.x_test, dataset.y_test, progress, measure_one, answers)
    bar.empty()
    state.set_micro_results(converted, digest, results)
    return results


def targets_ui() -> list[micro.Board]:
    names = [board.name for board in micro.BOARDS]
    picked = st.multiselect(
        "Boards", names, default=state.remembered("boards", names), key="boards", on_change=state.remember, args=("boards",)
    )
    boards = [board for board in micro.BOARDS if board.name in picked]
    with st.expander("A board of your own"):
        left, right = st.columns(2)
        ram = remembered_widget(
            left.number_input, "RAM (KB)", "custom_ram", 0, min_value=0, max_value=1_000_000, help="0 = no custom board"
        )
        flash = remembered_widget(right.number_input, "Flash (KB)", "custom_flash", 0, min_value=0, max_value=10_000_000)
        if ram and flash:
            boards.append(micro.Board("Your board", "custom", int(ram) * 1024, int(flash) * 1024, "your figures"))
    st.caption(
        " · ".join(
            f"**{b.name}**: {b.chip}, {b.ram_bytes // 1024} KB RAM, {b.flash_bytes // 1024} KB flash ({b.source})" for b in boards
        )
    )
    return boards


ARENA_MARK = {True: "✓", False: "✗", None: "?"}


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
            f"{kb(result.arena_bytes)} {ARENA_MARK[result.arena_checked]}" if result.arena_bytes is not None else "–",
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
        "Arena: what TFLite Micro's RecordingMicroAllocator recorded after an invoke; ✓: an interpreter with exactly that "
        "arena was built and ran an image here, ✗: it did not (allocate a little more), ?: not tried. Flash: the model's bytes; TFLite Micro's own code (interpreter and kernels) comes on top. "
        "Accuracy: the whole test set through TFLM's reference kernels. ≠ LiteRT: test images TFLM answers differently "
        "from LiteRT's built-in kernels (the same integer arithmetic), and in brackets from LiteRT with XNNPACK, whose "
        "int8 kernels round their requantization their own way."
    )


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
    st.download_button(
        f"⬇ {source.header_name} + {source.source_name}",
        source.zip_bytes(),
        file_name=f"{source.name}_model_data.zip",
        mime="application/zip",
        key="download_c",
    )
    st.code(source.usage(), language="cpp")
    st.caption(
        "What the lab checked: the `.cc` (the model's bytes) compiles with g++ and gives back the "
        "`.tflite` byte for byte, and every `Add…()` name is one TFLite Micro's `MicroMutableOpResolver` "
        "declares. What it did not: the `Register…Ops` function is not compiled here, because no "
        "package ships TFLite Micro's C++ headers; it compiles where your firmware includes "
        "`micro_mutable_op_resolver.h` first."
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
            st.plotly_chart(charts.ram_flash_figure(results, boards), key="chart_deploy")
            refusals_ui(results)
            export_ui(converted, results)
