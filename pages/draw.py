"""Draw: a digit on a canvas, and every converted variant's answer with the latency of its invoke."""

from __future__ import annotations

import streamlit as st
from streamlit_drawable_canvas import st_canvas

from core import limits
from core.images import canvas_png_to_grey, mnist_style
from ui import device, state
from ui.draw_cards import CARD_STYLE, answers_html, preview_html
from ui.layout import model_fits, need_model, need_variants, through_the_app

through_the_app()
st.title("Draw")
CANVAS = 280


def one_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


@st.fragment
def canvas_fragment(converted: dict[str, state.ConvertedVariant], class_names) -> None:
    """The canvas and the answers: a stroke reruns only this, not the page."""
    live = state.draw_state()
    try:
        left_out = live.load({name: (item.digest, item.tflite) for name, item in converted.items()})
    except (ValueError, RuntimeError) as error:  # LiteRT cannot load a variant: one line, not a traceback
        st.error(f"The variants cannot be loaded for drawing: {one_line(error)}")
        return
    if left_out:
        budget = limits.SESSION_INTERPRETER_BYTES // limits.MB
        st.warning(
            f"Not answering here: {', '.join(left_out)}. A session keeps at most {budget} MB of interpreters in the server."
        )
    left, right = st.columns([2, 3])
    with left:
        # The canvas's own toolbar (undo, redo, reset) floats just above it, shown on hover: room
        # is left for it here, so that it covers nothing. A phone has no hover: Undo and Clear are
        # also buttons under the canvas, big enough for a finger.
        st.space("medium")
        result = st_canvas(
            stroke_width=18,
            stroke_color="#FFFFFF",
            background_color="#000000",
            height=CANVAS,
            width=CANVAS,
            drawing_mode="freedraw",
            return_image_data=True,
            key="canvas",
            initial_drawing=state.canvas_start(),
            on_change=state.canvas_sent,
        )
        stale = state.canvas_stale()  # after Undo or Clear, until the canvas has redrawn and sent
        if result.json_data is not None and not stale:
            state.keep_drawing(result.json_data)  # kept for the next visit to this page
        with st.container(horizontal=True, key="drawing_tools"):
            drawn = state.strokes_drawn() > 0
            st.button("Undo stroke", key="undo_stroke", icon=":material/undo:", on_click=state.undo_stroke, disabled=not drawn)
            st.button("Clear", key="clear_drawing", icon=":material/delete:", on_click=state.clear_drawing, disabled=not drawn)
    digit = state.digit()  # the canvas sends nothing until a stroke: the answer to the restored drawing
    if result.image_bytes is not None and not stale:
        try:
            digit = mnist_style(canvas_png_to_grey(result.image_bytes))
        except (ValueError, OSError) as error:  # an image the canvas sent that cannot be read: one line
            st.error(f"The drawing could not be read: {one_line(error)}")
            return
        state.set_digit(digit)
    with right.container(key="predictions"):
        if digit is None:
            st.info("Draw a digit on the black square (a big one, filling most of it). Every variant will answer here.")
            return
        try:
            answers = live.answer(digit)
        except (ValueError, RuntimeError) as error:  # an interpreter error: one line, the canvas stays
            st.error(f"A variant could not answer: {one_line(error)}")
            return
        st.html(preview_html(digit) + answers_html(answers, class_names))


model = need_model()
converted = need_variants() if model is not None else {}
dataset = state.current_dataset()[0] if converted else None
if converted and model_fits(model, dataset, "draw"):
    st.write(
        "Draw a digit with the mouse or a finger. **Undo stroke** and **Clear** are under the canvas "
        "(with a mouse, the canvas's own toolbar also shows above it when the pointer is over it)."
    )
    st.html(CARD_STYLE)  # once per page, outside the fragment: a stroke sends only the cards
    state.drawing_start()  # restore the last drawing when the page is entered; within the page the canvas keeps its own
    class_names = model.class_names or dataset.class_names
    canvas_fragment(converted, class_names)  # the answers are the model's classes
    st.subheader("On your device")
    st.caption(
        "The same variants in this browser (LiteRT.js, WebAssembly), each as its browser twin: they answer as soon as a stroke "
        "ends, with no trip to the server, which stays the reference above."
    )
    device.draw(converted, class_names)  # outside the fragment: a stroke does not send the twins again
