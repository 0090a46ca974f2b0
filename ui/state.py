"""What a session holds, in ``st.session_state``, so it survives reruns and page switches.

Keys (one place to look):

* ``lab_dataset``: :class:`DatasetChoice`, the dataset in use (the arrays themselves are cached
  resources, or the session's own upload);
* ``lab_model``: :class:`LabModel`, the trained or uploaded model (bytes, never a Keras object);
* ``lab_variants``: ``{name: ConvertedVariant}``, the converted .tflite files (selective ones included);
* ``lab_keep_float_steps``: ``{base: steps}``, the automatic keep-float searches Inside ran;
* ``lab_latency``: ``{(threads, xnnpack, runs, variants' digests, dataset digest): ({name: (LatencyStats, images/s)}, seconds)}``,
  measured on Compare;
* ``lab_report``: the last comparison report Compare exported (``core.report.build_report``);
* ``lab_compared``: whether Compare has run (Home's next step);
* ``lab_micro``: ``(variants' digests, dataset digest, {name: MicroResult})``, TensorFlow Lite Micro's
  results as Deploy last measured them; Compare's export carries them when they are of its variants;
* ``lab_uploaded_dataset``: the :class:`~core.datasets.Dataset` the person uploaded;
* ``lab_drawing``, ``lab_drawing_start``: the canvas's strokes (kept for the next visit to Draw), and
  what the canvas was started with on this visit (or by Undo / Clear, counted in ``lab_drawing_edits``; ``lab_canvas_stale`` until the canvas
  sends what it reloaded);
  ``lab_digit``: the 28×28 image of the last drawing;
* ``pref_*``: a widget's last value, kept across page switches (:func:`remembered`);
* ``lab_jobs``: ``{kind: JobTicket}``, this session's jobs still under way (see ``ui.jobs``);
* ``lab_job_messages``: ``{kind: (level, text)}``, the last word on each kind of job;
* ``lab_uploaded_ref``: the :class:`~core.datasets.DatasetRef` of the session's uploaded dataset,
  saved once in the session's folder for the pool's workers to read;
* ``lab_draw``: per-session LiteRT interpreters and latency history for the Draw page (a LiteRT
  interpreter is not thread-safe, and Streamlit serves each session on its own thread, so
  interpreters are never shared between sessions), at most ``limits.SESSION_INTERPRETER_BYTES``
  of tensors, the oldest released first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:  # types only: Home's first run draws without importing NumPy
    from core.datasets import Dataset, DatasetRef, LoadedDataset
    from core.litertjs import Twin
    from core.models import ModelSummary


@dataclass(frozen=True)
class DatasetChoice:
    name: str  # what is in use: "mnist", "fashion-mnist", "digits" or "upload"
    notice: str = ""  # why it is not what was asked for (offline fallback), shown to the user
    upload_label: str = ""
    requested: str = ""  # what the person picked (differs from name after a fallback)


@dataclass(frozen=True, eq=False)
class LabModel:
    label: str  # e.g. "Seed CNN, 3 epochs on MNIST" or "my_model.keras"
    keras_bytes: bytes | None  # the .keras file; None for an uploaded .tflite
    summary: ModelSummary | None
    keras_accuracy: float
    history: tuple[dict, ...] = ()
    dataset_name: str = ""
    uploaded_tflite: bytes | None = None  # a .tflite the user brought: compared as it is
    dataset_digest: str = ""  # the content digest of the data it was trained (or scored) on
    seed: int | None = None  # the training seed, when trained here
    origin: str = ""  # "" computed for this session, "cache" from the class's shared cache, "joined" shared while running
    class_names: tuple[str, ...] = ()  # the classes it answers with (its training data's); () when not known
    augmented: bool | None = None  # trained here with core.images.augment; None when not trained here
    footprint: object = None  # core.runtime.Footprint of an uploaded .tflite, as core.runtime.check_model measured it

    def report_info(self) -> dict:
        """The report's ``model`` object (core.report.model_info)."""
        from core.report import model_info

        summary = self.summary
        architecture, parameters = (summary.architecture, summary.parameters) if summary else (self.label, None)
        return model_info(architecture, len(self.history) or None, parameters, self.keras_accuracy, self.augmented)

    @property
    def can_convert(self) -> bool:
        return self.keras_bytes is not None

    @cached_property
    def digest(self) -> str:
        from core.jobs import digest_bytes

        return digest_bytes(self.keras_bytes or self.uploaded_tflite or b"")


@dataclass(frozen=True, eq=False)
class ConvertedVariant:
    name: str
    tflite: bytes
    seconds: float
    calibration: int = 0
    brought: bool = False  # a file a person brought: measured in a bounded child process, not in the server
    made_twin: tuple | None = None  # (Twin or None, why not) from the conversion job that made the file

    @classmethod
    def from_job(cls, item, calibration: int = 0) -> ConvertedVariant:
        """A variant from a conversion job's ConvertedFile, with the browser twin the job made."""
        return cls(item.name, item.tflite, item.seconds, calibration, made_twin=(item.twin, item.twin_error))

    @cached_property
    def browser_twin(self) -> tuple[Twin | None, str]:
        """(the twin LiteRT.js runs in the browser, or None and why not): the job's, else made here
        from the file (a .tflite a person brought, already checked by core.runtime.check_model)."""
        if self.made_twin is not None:
            return self.made_twin
        from core.litertjs import twin_or_error

        return twin_or_error(self.tflite)

    @cached_property  # read on every Draw stroke: hash the file once
    def digest(self) -> str:
        return hashlib.sha1(self.tflite).hexdigest()[:16]


def get(key: str, default=None):
    return st.session_state.get(key, default)


def dataset_choice() -> DatasetChoice | None:
    return st.session_state.get("lab_dataset")


def model() -> LabModel | None:
    return st.session_state.get("lab_model")


def variants() -> dict[str, ConvertedVariant]:
    return st.session_state.setdefault("lab_variants", {})


def set_model(new_model: LabModel) -> None:
    """A new model makes the old variants and measurements meaningless: drop them."""
    st.session_state["lab_model"] = new_model
    st.session_state["lab_variants"] = {}
    st.session_state["lab_latency"] = {}
    st.session_state["lab_keep_float_steps"] = {}
    if new_model.uploaded_tflite is not None:
        st.session_state["lab_variants"] = {
            "uploaded": ConvertedVariant("uploaded", new_model.uploaded_tflite, 0.0, brought=True)
        }


def set_variants(converted: dict[str, ConvertedVariant]) -> None:
    """A new conversion of the same model: its variants, plus the selective ones the person built
    from that model on Inside (nothing they made is lost)."""
    from core import variants as registry

    kept = {
        name: item
        for name, item in variants().items()
        if name not in converted and not item.brought and registry.KEEP_FLOAT_MARK in name
    }
    st.session_state["lab_variants"] = {**converted, **kept}
    st.session_state["lab_latency"] = {}


def add_variant(item: ConvertedVariant) -> None:
    """One more variant beside the converted ones (a selective variant from Inside)."""
    st.session_state["lab_variants"] = {**variants(), item.name: item}
    st.session_state["lab_latency"] = {}


def keep_float_steps() -> dict[str, dict]:
    """The automatic keep-float searches of this model: {base: core.selective.Automatic.to_dict()}."""
    return st.session_state.setdefault("lab_keep_float_steps", {})


def draw_state():
    """This session's core.live.LiveModels (imported here only: LiteRT is not needed before Draw)."""
    if "lab_draw" not in st.session_state:
        from core.live import LiveModels

        st.session_state["lab_draw"] = LiveModels()
    return st.session_state["lab_draw"]


def remembered(key: str, default):
    """A widget's last value, kept outside the widget: Streamlit forgets a widget's own state when
    a page without it runs, so a choice would be lost on a page switch. Pass it as the widget's
    default and ``on_change=remember, args=(key,)``."""
    return st.session_state.get(f"pref_{key}", default)


def remember(key: str) -> None:
    st.session_state[f"pref_{key}"] = st.session_state[key]


def uploaded_ref() -> DatasetRef | None:
    return st.session_state.get("lab_uploaded_ref")


def set_uploaded_ref(ref: DatasetRef) -> None:
    st.session_state["lab_uploaded_ref"] = ref


def job_tickets() -> dict:
    return st.session_state.setdefault("lab_jobs", {})


def job_messages() -> dict:
    return st.session_state.setdefault("lab_job_messages", {})


def current_dataset(wait: bool = True) -> tuple[Dataset, DatasetChoice] | None:
    """The session's dataset; on the first run, MNIST (or the offline digits when it cannot be had).
    With ``wait=False``, None while a built-in dataset is still loading (see ui.resources.load_dataset)."""
    from ui.resources import load_dataset

    choice = dataset_choice()
    if choice is None:
        loaded: LoadedDataset | None = load_dataset("mnist", wait)
        if loaded is None:
            return None
        choice = DatasetChoice(loaded.dataset.name if loaded.notice else "mnist", loaded.notice, requested="mnist")
        st.session_state["lab_dataset"] = choice
        return loaded.dataset, choice
    if choice.name == "upload":
        uploaded = st.session_state.get("lab_uploaded_dataset")
        if uploaded is not None:
            return uploaded, choice
        choice = DatasetChoice("digits", "Your uploaded dataset is gone (the session restarted); using the offline digits.")
        st.session_state["lab_dataset"] = choice
    loaded = load_dataset(choice.name, wait)
    return None if loaded is None else (loaded.dataset, choice)


def latency_cache() -> dict:
    return st.session_state.setdefault("lab_latency", {})


def set_report(report: dict) -> None:
    st.session_state["lab_report"] = report
    st.session_state["lab_compared"] = True


def micro_results(converted: dict, dataset_digest: str) -> dict:
    """TFLite Micro's results, if Deploy measured these very variants on this dataset; else {}."""
    saved = st.session_state.get("lab_micro")
    key = (tuple((name, item.digest) for name, item in converted.items()), dataset_digest)
    return saved[1] if saved is not None and saved[0] == key else {}


def set_micro_results(converted: dict, dataset_digest: str, results: dict) -> None:
    st.session_state["lab_micro"] = ((tuple((name, item.digest) for name, item in converted.items()), dataset_digest), results)


def use_uploaded_dataset(dataset: Dataset) -> None:
    st.session_state["lab_uploaded_dataset"] = dataset
    st.session_state["lab_dataset"] = DatasetChoice("upload", "", upload_label=dataset.name, requested="upload")
    _suggest_training(dataset.train_size)


def choose_dataset(choice: DatasetChoice, train_size: int) -> None:
    st.session_state["lab_dataset"] = choice
    _suggest_training(train_size)


def _suggest_training(train_size: int) -> None:
    """Another dataset: the Model page's epochs and augmentation are its suggestion for this one
    (set before the widgets are drawn again: Streamlit keeps a widget's own value otherwise)."""
    from core.models import suggested_training

    for key, value in zip(("epochs", "augment"), suggested_training(train_size), strict=True):
        st.session_state[key] = value
        st.session_state[f"pref_{key}"] = value


def drawing_start():
    """The strokes to start the canvas with: the last drawing, taken when the page is entered."""
    st.session_state["lab_drawing_start"] = st.session_state.get("lab_drawing")
    return st.session_state["lab_drawing_start"]


def canvas_start():
    return st.session_state.get("lab_drawing_start")


def keep_drawing(strokes) -> None:
    st.session_state["lab_drawing"] = strokes


def strokes_drawn() -> int:
    return len((st.session_state.get("lab_drawing") or {}).get("objects", []))


def undo_stroke() -> None:
    """Restart the canvas with its last stroke taken away (the Draw page's Undo button). The canvas
    redraws what it is given and sends it back, so the answers follow."""
    drawing = st.session_state.get("lab_drawing") or {"objects": []}
    _restart_canvas({**drawing, "objects": list(drawing.get("objects", []))[:-1]})


def canvas_sent() -> None:
    """The canvas's on_change: what it holds now is new, not what it held before Undo or Clear."""
    st.session_state["lab_canvas_stale"] = False


def canvas_stale() -> bool:
    return st.session_state.get("lab_canvas_stale", False)


def clear_drawing() -> None:
    _restart_canvas({"objects": []})


def _restart_canvas(drawing: dict) -> None:
    # The canvas reloads only a start it has not seen before: a counter keeps two identical
    # starts (two Clears) apart.
    edits = st.session_state.get("lab_drawing_edits", 0) + 1
    st.session_state["lab_drawing_edits"] = edits
    start = {**drawing, "qlab_edit": edits}
    st.session_state["lab_drawing_start"] = start
    st.session_state["lab_drawing"] = start
    st.session_state["lab_canvas_stale"] = True  # until the canvas sends the drawing it reloaded
    if not drawing["objects"]:
        st.session_state["lab_digit"] = None


def digit():
    return st.session_state.get("lab_digit")


def set_digit(image) -> None:
    st.session_state["lab_digit"] = image


# -- your device (LiteRT.js in this browser) -------------------------------------------------------


def device_run() -> int:
    """Which measurement of this device Compare shows: Measure again starts the next."""
    return st.session_state.setdefault("lab_device_run", 0)


def next_device_run() -> int:
    st.session_state["lab_device_run"] = device_run() + 1
    return st.session_state["lab_device_run"]


def board_token() -> str:
    """This session's place on the class board: random, so a session can replace only its own entry."""
    import secrets

    return st.session_state.setdefault("lab_board_token", secrets.token_hex(8))
