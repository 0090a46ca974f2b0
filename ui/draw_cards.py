"""The Draw page's HTML: every variant's answer as a card, and the 28×28 image the models see.

A stroke sends one HTML element (the preview and every card): each element a rerun sends costs the
browser time on every stroke.
"""

from __future__ import annotations

import base64
import io
from html import escape

import numpy as np
from PIL import Image

from core.live import Answer
from ui.layout import variant_label


def answer_html(name: str, answer: Answer, class_names) -> str:
    """One variant's card: its answer, the top-3 probabilities as bars, the invoke's latency."""
    probabilities, disagrees_with = answer.probabilities, answer.disagrees_with
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
        f'<div class="time">invoke {answer.invoke_us:,.0f} µs · median {answer.median_us:,.0f} µs over {answer.images}</div></div>'
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


def answers_html(answers: dict[str, Answer], class_names) -> str:
    """Every variant's card, side by side; cards that disagree with the reference are outlined in red."""
    return (
        '<div class="qlab-answers">'
        + "".join(answer_html(name, answer, class_names) for name, answer in answers.items())
        + "</div>"
    )


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
