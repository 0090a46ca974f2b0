"""Your device: the browser runtime (LiteRT.js) as a Streamlit component, for Compare and Draw.

The component's code is ``static/qlab/component.js`` (with ``device.js`` and ``framing.js`` beside
it), LiteRT.js itself is ``static/litertjs/``: the app's own server serves all of it
(``server.enableStaticServing``), so it runs in a classroom with no internet. What the page sends
back is checked by ``core.litertjs.parse_report`` before anything reads it.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import streamlit as st

from core import litertjs
from core import variants as registry
from ui.layout import variant_label

STATIC = Path(__file__).resolve().parent.parent / "static"
SAMPLES = 20  # latency samples per twin, each a batch of runs of at least device.js's MIN_SAMPLE_MS
CANVAS = 280  # the Draw page's canvas, in CSS pixels
CSS = """
.qlab-device .status{color:var(--st-text-color);opacity:.8;margin:.2rem 0 .5rem}
.qlab-device progress{width:100%;height:.5rem;accent-color:var(--st-primary-color)}
.qlab-device .cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(8rem,1fr));gap:.6rem}
.qlab-device .card{border:1px solid #ddd;border-radius:.5rem;padding:.6rem .8rem}
.qlab-device .card.disagrees{border:2px solid #d32f2f}
.qlab-device .card.refused{border-style:dashed}
.qlab-device .answer{font-size:2.2em;font-weight:700;line-height:1.2}
.qlab-device .disagrees .answer,.qlab-device .warn{color:#d32f2f}
.qlab-device .time,.qlab-device .value{color:#888;font-size:.85em}
"""


@st.cache_resource(show_spinner=False)
def _component():
    return st.components.v2.component("qlab_device", js=(STATIC / "qlab" / "component.js").read_text(encoding="utf-8"), css=CSS)


def twins(converted: dict) -> tuple[list[dict], dict[str, str]]:
    """The twins to send to the page ({name, label, digest, b64}) and the variants without one (name -> why)."""
    sent, missing = [], {}
    for name, item in converted.items():
        twin, why = item.browser_twin
        if twin is None:
            missing[name] = why
            continue
        sent.append(
            {
                "name": name,
                "label": variant_label(name),
                "digest": item.digest,
                "b64": base64.b64encode(twin.tflite).decode(),
            }
        )
    return sent, missing


def measure(converted: dict, images: np.ndarray, run: int):
    """Mount the measuring component; returns the device's checked report for this run, or None
    while it measures. Raises core.litertjs.DeviceReportError for a message that is not one."""
    sent, _ = twins(converted)
    run_id = f"{run}:" + ":".join(item["digest"] for item in sent)
    images = np.ascontiguousarray(images[: litertjs.AGREEMENT_IMAGES], dtype=np.float32)
    result = _component()(
        key="device_measure",
        data={
            "mode": "measure",
            "run_id": run_id,
            "twins": sent,
            "images": base64.b64encode(images.tobytes()).decode(),
            "image_count": len(images),
            "samples": SAMPLES,
        },
        on_report_change=lambda: None,
    )
    message = getattr(result, "report", None)
    if not message or not isinstance(message, dict) or message.get("run_id") != run_id:
        return None
    if "load_error" in message:
        return litertjs.DeviceUnavailable(str(message["load_error"])[: litertjs.MAX_ERROR_CHARS])
    return litertjs.parse_report(message, run_id, [item["name"] for item in sent], len(images), _classes(converted))


def _classes(converted: dict) -> int:
    from core.runtime import LiteModel

    reference = converted[registry.reference_of(converted)]
    twin, _ = reference.browser_twin
    return int(np.prod(LiteModel(twin.tflite if twin else reference.tflite).output.shape[1:]))


def draw(converted: dict, class_names) -> None:
    """Mount the drawing component: every twin answers each stroke in the page itself."""
    sent, _ = twins(converted)
    _component()(
        key="device_draw",
        data={
            "mode": "draw",
            "twins": sent,
            "class_names": list(class_names),
            "reference": registry.reference_of(converted),
            "size": CANVAS,
        },
    )


def integer(name: str) -> bool:
    found = registry.find(name)
    return bool(found and found.integer_arithmetic)
