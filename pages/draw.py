"""Draw: a digit on a canvas, and every converted variant's answer with the latency of its invoke."""

from __future__ import annotations

import base64
import io
import time
from html import escape

import numpy as np
import streamlit as st
from PIL import Image
from streamlit_drawable_canvas import st_canvas

from core import limits
from core import variants as registry
from core.images import canvas_png_to_grey, mnist_style
from core.runtime import LiteModel, to_probabilities
from ui import state
from ui.layout import model_fits, need_model, need_variants, through_the_app, variant_label

through_the_app()
st.title("Draw")
CANVAS = 280


def session_models(converted: dict[str, state.ConvertedVariant]) -> dict[str, LiteModel]:
    """This session's own interpreters (LiteRT interpreters are not thread-safe: never shared),
    within the session's budget (state.DrawState.hold): the variants past it are left out."""
    draw = state.draw_state()
    for name in list(draw.models):
        if name not in converted or draw.models[name][0] != converted[name].digest:
            del draw.models[name]
    for name, item in converted.items():
        if name not in draw.models:
            model = LiteModel(item.tflite, threads=1)
            model.predict_logits(np.zeros((1, 28, 28), np.float32))  # warm-up: first invokes set up kernels
            model.predict_logits(np.zeros((1, 28, 28), np.float32))
            draw.latencies_us[name] = []
            if draw.hold(name, item.digest, model):
                break  # the budget is full: the rest are not opened (and the oldest was released)
    return {name: draw.models[name][1] for name in converted if name in draw.models}


def predict(models: dict[str, LiteModel], digit: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    answers = {}
    for name, model in models.items():
        model.set_input(digit[None])
        start = time.perf_counter_ns()
        model.invoke()
        elapsed_us = (time.perf_counter_ns() - start) / 1000
        answers[name] = (to_probabilities(model.output_logits()[0]), elapsed_us)
    return answers


def answer_html(
    name: str, probabilities: np.ndarray, class_names, elapsed_us: float, history: list[float], disagrees_with: str
) -> str:
    """One variant's card: its answer, the top-3 probabilities as bars, the invoke's latency."""
    top = np.argsort(probabilities)[::-1][:3]
    bars = "".join(
        f'<div class="bar"><span class="label">{escape(class_names[i])}</span>'
        f'<span class="track"><span style="width:{probabilities[i] * 100:.1f}%"></span></span>'
        f'<span class="value">{probabilities[i]:.1%}</span></div>'
        for i in top
    )
    warning = f'<div class="warn">disagrees with {escape(disagrees_with)}</div>' if disagrees_with else ""
    return (
        f'<div class="card{" disagrees" if disagrees_with else ""}" data-variant="{escape(name)}">'
        f'<strong>{escape(variant_label(name))}</strong><div class="answer">{escape(class_names[top[0]])}</div>{warning}{bars}'
        f'<div class="time">invoke {elapsed_us:,.0f} µs · median {np.median(history):,.0f} µs over {len(history)}</div></div>'
    )


CARD_STYLE = """<style>
.qlab-answers{display:grid;grid-template-columns:repeat(auto-fit,minmax(9.5rem,1fr));gap:.8rem}
.qlab-answers .card{border:1px solid #ddd;border-radius:.5rem;padding:.8rem 1rem}
.qlab-answers .card.disagrees{border:2px solid #d32f2f;background:#fff5f5}
.qlab-answers .answer{font-size:2.6em;font-weight:700;line-height:1.2}
.qlab-answers .disagrees .answer,.qlab-answers .warn{color:#d32f2f}.qlab-answers .warn{font-weight:600}
.qlab-answers .bar{display:flex;align-items:center;gap:.5em;margin:.15em 0}
.qlab-answers .label{width:4.5em;overflow:hidden;white-space:nowrap}
.qlab-answers .track{flex:1;background:#eee;border-radius:3px;height:.7em}
.qlab-answers .track span{display:block;height:100%;background:#ff6f00;border-radius:3px}
.qlab-answers .value{width:3.5em;text-align:right}.qlab-answers .time{color:#888;font-size:.85em;margin-top:.3em}
</style>"""


def answers_html(answers, class_names, draw: state.DrawState) -> str:
    """Every variant's card, side by side; cards that disagree with float32 are outlined in red."""
    reference = registry.REFERENCE if registry.REFERENCE in answers else next(iter(answers))
    expected = int(np.argmax(answers[reference][0]))
    cards = []
    for name, (probabilities, elapsed_us) in answers.items():
        history = draw.latencies_us.setdefault(name, [])
        history.append(elapsed_us)
        disagrees = int(np.argmax(probabilities)) != expected
        cards.append(answer_html(name, probabilities, class_names, elapsed_us, history, reference if disagrees else ""))
    return '<div class="qlab-answers">' + "".join(cards) + "</div>"


def preview_html(digit: np.ndarray | None) -> str:
    """The 28×28 input as an inline PNG (no extra request), scaled up with square pixels."""
    pixels = (digit if digit is not None else np.zeros((28, 28), np.float32)) * 255
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return (
        '<div style="display:flex;gap:1rem;align-items:center;margin-bottom:.8rem">'
        f'<img src="data:image/png;base64,{encoded}" width="112" height="112" '
        'style="image-rendering:pixelated;border-radius:4px" alt="the 28×28 image the models see">'
        '<div style="color:#888;font-size:.9em">What the models see: 28×28, cropped to the stroke, fitted into 20×20 '
        "and centred by its centre of mass, as MNIST's digits were made.</div></div>"
    )


@st.fragment
def canvas_fragment(converted: dict[str, state.ConvertedVariant], class_names) -> None:
    """The canvas and the answers: a stroke reruns only this, not the page.

    Everything the stroke changes goes out as one HTML element (the 28×28 preview and every
    variant's card): each element a rerun sends costs the browser time on every stroke.
    """
    try:
        models = session_models(converted)
    except (ValueError, RuntimeError) as error:  # LiteRT cannot load a variant: one line, not a traceback
        st.error(
            f"The variants cannot be loaded for drawing: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        )
        return
    draw = state.draw_state()
    left_out = [name for name in converted if name not in models]
    if left_out:
        st.warning(
            f"Not answering here: {', '.join(left_out)}. A session keeps at most {limits.SESSION_INTERPRETER_BYTES // limits.MB} MB "
            "of interpreters in the server."
        )
    left, right = st.columns([2, 3])
    with left:
        result = st_canvas(
            stroke_width=18,
            stroke_color="#FFFFFF",
            background_color="#000000",
            height=CANVAS,
            width=CANVAS,
            drawing_mode="freedraw",
            return_image_data=True,
            key="canvas",
            initial_drawing=st.session_state.get("lab_drawing_start"),
        )
    if result.json_data is not None:
        st.session_state["lab_drawing"] = result.json_data  # kept for the next visit to this page
    png = result.image_bytes
    if png is not None:
        try:
            digit = mnist_style(canvas_png_to_grey(png))
        except (ValueError, OSError) as error:  # an image the canvas sent that cannot be read: one line
            st.error(f"The drawing could not be read: {error}")
            return
        st.session_state["lab_digit"] = digit
    else:  # the canvas sends nothing until a stroke: show the answer to the restored drawing
        digit = st.session_state.get("lab_digit")
    with right.container(key="predictions"):
        if digit is None:
            st.info("Draw a digit on the black square (a big one, filling most of it). Every variant will answer here.")
            return
        try:
            answers = predict(models, digit)
        except (ValueError, RuntimeError) as error:  # an interpreter error: one line, the canvas stays
            st.error(f"A variant could not answer: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
            return
        st.html(preview_html(digit) + answers_html(answers, class_names, draw))


model = need_model()
converted = need_variants() if model is not None else {}
dataset = state.current_dataset()[0] if converted else None
if converted and model_fits(model, dataset, "draw"):
    st.write("Draw with the mouse (or a finger). The toolbar under the canvas undoes and clears.")
    st.html(CARD_STYLE)  # once per page, outside the fragment: a stroke sends only the cards
    # Restore the last drawing when the page is entered; within the page the canvas keeps its own.
    st.session_state["lab_drawing_start"] = st.session_state.get("lab_drawing")
    canvas_fragment(converted, model.class_names or dataset.class_names)  # the answers are the model's classes
