"""Draw: a digit on a canvas, and every converted variant's answer with the latency of its invoke."""

from __future__ import annotations

import time

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from core import variants as registry
from core.images import canvas_to_grey, mnist_style
from core.runtime import LiteModel, softmax
from ui import state
from ui.layout import need_model, need_variants, variant_label

st.title("Draw")
CANVAS = 280


def session_models(converted: dict[str, state.ConvertedVariant]) -> dict[str, LiteModel]:
    """This session's own interpreters (LiteRT interpreters are not thread-safe: never shared)."""
    draw = state.draw_state()
    for name, item in converted.items():
        cached = draw.models.get(name)
        if cached is None or cached[0] != item.digest:
            model = LiteModel(item.tflite, threads=1)
            model.predict_logits(np.zeros((1, 28, 28), np.float32))  # warm-up: first invokes set up kernels
            model.predict_logits(np.zeros((1, 28, 28), np.float32))
            draw.models[name] = (item.digest, model)
            draw.latencies_us[name] = []
    for name in list(draw.models):
        if name not in converted:
            del draw.models[name]
    return {name: draw.models[name][1] for name in converted}


def predict(models: dict[str, LiteModel], digit: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    answers = {}
    for name, model in models.items():
        model.set_input(digit[None])
        start = time.perf_counter_ns()
        model.invoke()
        elapsed_us = (time.perf_counter_ns() - start) / 1000
        scores = model.output_logits()[0]
        probabilities = scores if np.all(scores >= 0) and abs(scores.sum() - 1) < 0.02 else softmax(scores)
        answers[name] = (probabilities, elapsed_us)
    return answers


def answers_ui(answers, class_names, draw: state.DrawState) -> None:
    reference = registry.REFERENCE if registry.REFERENCE in answers else next(iter(answers))
    expected = int(np.argmax(answers[reference][0]))
    columns = st.columns(len(answers))
    for column, (name, (probabilities, elapsed_us)) in zip(columns, answers.items(), strict=True):
        history = draw.latencies_us.setdefault(name, [])
        history.append(elapsed_us)
        top = np.argsort(probabilities)[::-1][:3]
        disagrees = int(top[0]) != expected
        with column.container(border=True, key=f"answer_{name}"):
            st.markdown(f"**{variant_label(name)}**")
            if disagrees:
                st.markdown(f"# :red[{class_names[top[0]]}]")
                st.markdown(f":red-background[disagrees with {reference}]")
            else:
                st.markdown(f"# {class_names[top[0]]}")
            for label in top:
                st.progress(float(probabilities[label]), text=f"{class_names[label]}: {probabilities[label]:.1%}")
            st.caption(f"invoke {elapsed_us:,.0f} µs · median {np.median(history):,.0f} µs over {len(history)}")


@st.fragment
def canvas_fragment(converted: dict[str, state.ConvertedVariant], class_names) -> None:
    models = session_models(converted)
    draw = state.draw_state()
    left, right = st.columns([3, 2])
    with left:
        result = st_canvas(
            stroke_width=18, stroke_color="#FFFFFF", background_color="#000000", height=CANVAS, width=CANVAS,
            drawing_mode="freedraw", return_image_data=True, key="canvas",
            initial_drawing=st.session_state.get("lab_drawing_start"),
        )  # fmt: skip
    if result.json_data is not None:
        st.session_state["lab_drawing"] = result.json_data  # kept for the next visit to this page
    image = result.image_data
    if image is not None:
        digit = mnist_style(canvas_to_grey(image))
        st.session_state["lab_digit"] = digit
    else:  # the canvas sends nothing until a stroke: show the answer to the restored drawing
        digit = st.session_state.get("lab_digit")
    with right:
        st.caption("What the models see: 28×28, cropped to the stroke, fitted into 20×20 and centred by mass, as MNIST digits are")
        preview = digit if digit is not None else np.zeros((28, 28), np.float32)
        st.image((np.kron(preview, np.ones((6, 6))) * 255).astype(np.uint8), width=168)
    with st.container(key="predictions"):
        if digit is None:
            st.info("Draw a digit on the black square (a big one, filling most of it). Every variant will answer here.")
            return
        answers_ui(predict(models, digit), class_names, draw)


model = need_model()
converted = need_variants() if model is not None else {}
if model is not None and converted:
    dataset, _ = state.current_dataset()
    st.write("Draw with the mouse (or a finger). The toolbar under the canvas undoes and clears.")
    # Restore the last drawing when the page is entered; within the page the canvas keeps its own.
    st.session_state["lab_drawing_start"] = st.session_state.get("lab_drawing")
    canvas_fragment(converted, dataset.class_names)
