"""Bits of page furniture shared by every page."""

from __future__ import annotations

import runpy
from pathlib import Path

import streamlit as st

from ui import state

APP_SCRIPT = Path(__file__).resolve().parents[1] / "app.py"

STEPS = (
    ("pages/model.py", "Model", "train a model or upload one"),
    ("pages/quantize.py", "Quantize", "convert it into quantized variants"),
    ("pages/compare.py", "Compare", "size, accuracy and latency side by side"),
    ("pages/draw.py", "Draw", "draw a digit and watch every variant answer"),
    ("pages/deploy.py", "Deploy", "will it run on a microcontroller? TensorFlow Lite Micro measures it"),
)


def through_the_app() -> None:
    """Make sure this page runs inside app.py's navigation. Call first on every page.

    Streamlit sees the ``pages/`` folder and, until some session has run ``st.navigation``, treats
    the app as a legacy multipage app: a deep link (``/draw``) opened first on a fresh server runs
    ``pages/draw.py`` alone, without app.py (raw file names in the sidebar, no session panel), and
    the server stays that way for later visitors. ``st.navigation`` clears the class-wide flag
    ``PagesManager.uses_pages_directory``; when a page finds it still set, it clears it and runs
    app.py in its place, in the same script run (so a click that caused the run is not lost):
    app.py's navigation picks the same page (a file's page and its ``st.Page`` share the hash of
    the name) and runs it, and this legacy run stops there.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(APP_SCRIPT), run_name="__main__")
        st.stop()


def next_step() -> str:
    """The page a person should visit next, from what the session holds."""
    if state.model() is None:
        return "pages/model.py"
    names = set(state.variants())
    if not names or (state.model().can_convert and names == {"float32"}):
        return "pages/quantize.py"
    if not state.get("lab_compared"):
        return "pages/compare.py"
    return "pages/draw.py"


def sidebar_status() -> None:
    with st.sidebar:
        st.caption("This session")
        choice = state.dataset_choice()
        model = state.model()
        st.markdown(
            f"- **Dataset:** {choice.upload_label or choice.name if choice else 'not loaded yet'}\n"
            f"- **Model:** {model.label if model else 'none yet'}\n"
            f"- **Variants:** {', '.join(state.variants()) or 'none yet'}"
        )


def notice(choice: state.DatasetChoice) -> None:
    if choice.notice:
        st.warning(choice.notice)


def need_model() -> state.LabModel | None:
    model = state.model()
    if model is None:
        st.info("There is no model in this session yet. Train or upload one first.")
        st.page_link("pages/model.py", label="Go to Model")
    return model


def model_fits(model: state.LabModel, dataset, page: str) -> bool:
    """Say plainly when the model was made on other data than the dataset now chosen. Returns
    whether the page may use the model with this dataset: never across different classes; across
    other data of the same classes only where the page labels it (``page`` = "compare" asks)."""
    if model.class_names and tuple(model.class_names) != tuple(dataset.class_names):
        st.error(
            f"This model answers with the classes of {model.dataset_name} ({', '.join(model.class_names[:4])}, …), not "
            f"those of {dataset.name} ({', '.join(dataset.class_names[:4])}, …): it cannot be scored or used on it. "
            f"Train a new model on {dataset.name}, or go back to {model.dataset_name}."
        )
        st.page_link("pages/model.py", label="Go to Model")
        return False
    if not model.dataset_digest or model.dataset_digest == dataset.digest:
        return True
    st.warning(
        f"The dataset changed since this model was made: it was trained on **{model.dataset_name}**, the dataset is now "
        f"**{dataset.name}**. Its Keras accuracy is for {model.dataset_name}. Train again on {dataset.name} for a model "
        "of this data, or evaluate this one on it (labelled as such)."
    )
    if page != "compare":
        return True
    return st.toggle(
        f"Evaluate this model on {dataset.name} anyway (it was trained on {model.dataset_name})", key="evaluate_other_data"
    )


def need_variants() -> dict:
    converted = state.variants()
    if not converted:
        st.info("No converted variants yet. Convert the model first.")
        st.page_link("pages/quantize.py", label="Go to Quantize")
    return converted


def remembered_widget(widget, label: str, key: str, default, **options):
    """A widget whose value survives page switches (state.remembered): ``widget`` is e.g. ``st.slider``
    or ``column.toggle``; ``options`` are its other arguments."""
    return widget(label, value=state.remembered(key, default), key=key, on_change=state.remember, args=(key,), **options)


def image_grid(images, captions: list[str], columns: int = 8) -> None:
    """Small 28×28 images in a grid, each with its caption (Markdown line breaks allowed)."""
    import numpy as np

    cells = st.columns(columns)
    for slot, (image, caption) in enumerate(zip(images, captions, strict=True)):
        with cells[slot % columns]:
            st.image((np.asarray(image) * 255).astype(np.uint8), width=64)
            st.caption(caption)


def variant_label(name: str) -> str:
    from core import variants

    found = variants.find(name)
    return found.label if found is not None else name


def markdown_table(header: list[str], rows: list[list], align: str = "") -> str:
    """A small table as Markdown. Model and Quantize show their tables this way rather than with
    st.dataframe, which loads pandas (~80 MB) into the server while a worker is training."""
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def epoch_chart(history: list[dict]):
    """Loss and accuracy per epoch (plotly graph_objects: no pandas needed)."""
    import plotly.graph_objects as go

    epochs = [row["epoch"] for row in history]
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=epochs, y=[row["loss"] for row in history], name="loss", mode="lines+markers"))
    figure.add_trace(
        go.Scatter(x=epochs, y=[row["accuracy"] for row in history], name="accuracy", mode="lines+markers", yaxis="y2")
    )
    figure.update_layout(
        height=280,
        margin={"t": 30, "b": 30},
        title="Training, per epoch",
        xaxis={"title": "epoch", "dtick": 1},
        yaxis={"title": "loss"},
        yaxis2={"title": "accuracy", "overlaying": "y", "side": "right"},
    )
    return figure
