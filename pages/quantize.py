"""Quantize: pick variants from the registry and convert the model (in a worker process)."""

from __future__ import annotations

import streamlit as st

from core import variants as registry
from core.convert import DEFAULT_CALIBRATION
from core.jobs import ConvertRequest
from ui import jobs as jobs_ui
from ui import state
from ui.layout import markdown_table, model_fits, need_model, through_the_app, variant_label

through_the_app()
st.title("Quantize")


def choose_ui() -> tuple[list[str], int, dict]:
    st.write("Pick the variants to build. float32 is always built: it is the reference every other variant is measured against.")
    chosen = []
    previous = set(state.variants()) or set(registry.POST_TRAINING)
    for method, title in registry.METHOD_TITLES.items():
        st.markdown(f"**{title}**")
        members = [v for v in registry.VARIANTS.values() if v.method == method]
        if all(v.ladder for v in members):
            chosen += ladder_ui(members, previous)
            continue
        for variant in members:
            ticked = st.checkbox(
                f"{variant.label} (`{variant.name}`)",
                value=variant.is_reference or variant.name in previous,
                disabled=variant.is_reference,
                key=f"pick_{variant.name}",
                help=variant.explanation,
            )
            st.caption(variant.explanation)
            if ticked:
                chosen.append(variant.name)
    needs = [name for name in chosen if registry.get(name).needs_calibration]
    calibration = st.slider(
        "Calibration images (for " + (", ".join(needs) or "int8 / int16x8") + ")",
        min_value=10,
        max_value=1000,
        step=10,
        key="calibration",
        value=state.remembered("calibration", DEFAULT_CALIBRATION),
        on_change=state.remember,
        args=("calibration",),
        help="Representative training images the converter runs to find each activation's range.",
    )
    options = {}
    if any(registry.get(name).needs_training_data for name in chosen):
        options["qat_epochs"] = int(
            st.number_input(
                "Quantization-aware training: fine-tuning epochs",
                min_value=1,
                max_value=10,
                key="qat_epochs",
                value=state.remembered("qat_epochs", 1),
                on_change=state.remember,
                args=("qat_epochs",),
                help="Epochs of training with the int8 rounding simulated, starting from the trained weights.",
            )
        )
    return chosen, int(calibration), options


def ladder_ui(members: list, previous: set) -> list[str]:
    """The recipes as a compact grid, a row per kind and a box per bit width; each box's tooltip
    (and the table below) says what the recipe does."""
    chosen = []
    rows = dict.fromkeys(v.ladder[0] for v in members)
    for row in rows:
        cells = [v for v in members if v.ladder[0] == row]
        label, *boxes = st.columns([2] + [1] * 3, vertical_alignment="center")
        label.markdown(row)
        for box, variant in zip(boxes, cells, strict=False):
            if box.checkbox(
                variant.ladder[1], value=variant.name in previous, key=f"pick_{variant.name}", help=variant.explanation
            ):
                chosen.append(variant.name)
    with st.expander("What each recipe does"):
        st.markdown(markdown_table(["recipe", "what it does"], [[f"`{v.name}`", v.explanation] for v in members], align="ll"))
        st.caption(
            "Not offered: the blockwise recipes (b32, b64), which refuse a dense layer whose input width is "
            "not a multiple of the block, as the seed CNN's 1,352 is not. The README's recipe ladder says what "
            "each recipe does in LiteRT and TensorFlow Lite Micro."
        )
    return chosen


def convert_ui(model: state.LabModel, names: list[str], calibration: int, options: dict) -> None:
    running = jobs_ui.active("convert")
    if st.button(
        "Convert", key="convert", type="primary", disabled=running, help="A conversion is under way" if running else None
    ):
        try:
            request = ConvertRequest(
                model.digest,
                tuple(names),
                jobs_ui.dataset_ref(),
                calibration=calibration,
                qat_epochs=options.get("qat_epochs", 1),
                model_bytes=model.keras_bytes,
            )
        except (ValueError, OSError) as error:
            st.error(f"Conversion could not start: {error}")
            return
        jobs_ui.submit(request)
        st.rerun()
    jobs_ui.job_panel("convert")


def results_ui(converted: dict[str, state.ConvertedVariant]) -> None:
    reference = converted.get(registry.REFERENCE)
    rows = [
        [
            f"{variant_label(name)} (`{name}`)",
            f"{len(item.tflite):,}",
            f"{len(item.tflite) / len(reference.tflite):.2f}" if reference else "–",
            f"{item.seconds:.2f}",
        ]
        for name, item in converted.items()
    ]
    st.markdown(markdown_table(["variant", "bytes", "× float32", "convert (s)"], rows, align="lrrr"))
    columns = st.columns(min(len(converted), 5))
    for slot, (name, item) in enumerate(converted.items()):
        columns[slot % len(columns)].download_button(
            f"⬇ {name}.tflite", item.tflite, file_name=f"{name}.tflite", mime="application/octet-stream", key=f"download_{name}"
        )


model = need_model()
if model is not None:
    if not model.can_convert:
        st.info(f"{model.label} is a .tflite: it is compared as it is. Converting needs the Keras model it came from.")
    elif model_fits(model, state.current_dataset()[0], "quantize"):
        names, calibration, options = choose_ui()
        convert_ui(model, names, calibration, options)
    converted = state.variants()
    if converted:
        st.subheader("Converted")
        results_ui(converted)
        st.page_link("pages/compare.py", label="Next: compare them")
