"""Model: choose a dataset, then train a model (in a worker process) or upload one."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

from core import datasets, limits, models
from core.datasets import DatasetError
from core.inspect import ModelFormatError, inspect_tflite
from core.jobs import LoadModelRequest, TrainRequest
from core.runtime import RuntimeModelError, check_model
from ui import jobs as jobs_ui
from ui import state
from ui.layout import epoch_chart, image_grid, markdown_table, model_fits, notice, remembered_widget, through_the_app
from ui.resources import load_dataset

DATASET_LABELS = {
    "mnist": "MNIST (handwritten digits, 60,000 + 10,000)",
    "fashion-mnist": "Fashion-MNIST (clothing, 60,000 + 10,000)",
    "digits": "Offline digits (scikit-learn, 1,797 scans; no network needed)",
    "upload": "Your own files (IDX or .npz)",
}

through_the_app()
st.title("Model")


def dataset_ui() -> tuple[datasets.Dataset, state.DatasetChoice]:
    dataset, choice = state.current_dataset()
    options = list(DATASET_LABELS)
    current = choice.requested or choice.name
    picked = st.selectbox("Dataset", options, index=options.index(current), format_func=DATASET_LABELS.get, key="dataset_select")
    if picked == "upload":
        files = st.file_uploader(
            "The four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
            "t10k-labels-idx1-ubyte; .gz or not) or one keras-format .npz (x_train, y_train, x_test, y_test)",
            accept_multiple_files=True,
            key="dataset_upload",
        )
        if files and st.button("Use these files", key="use_dataset"):
            try:
                uploaded = load_uploaded_dataset(files)
            except DatasetError as error:
                st.error(f"These files cannot be used: {error}")
            else:
                state.use_uploaded_dataset(uploaded)
                st.rerun()
    elif picked != current:
        loaded = load_dataset(picked)
        state.choose_dataset(
            state.DatasetChoice(loaded.dataset.name if loaded.notice else picked, loaded.notice, requested=picked),
            loaded.dataset.train_size,
        )
        st.rerun()
    return state.current_dataset()


def load_uploaded_dataset(files) -> datasets.Dataset:
    """Parse uploaded files within the limits (core.limits): names sanitized, headers read first."""
    names = [limits.safe_name(file.name) for file in files]
    if len(set(names)) != len(names):
        raise DatasetError("two of the files have the same name")
    with tempfile.TemporaryDirectory() as folder:
        for name, file in zip(names, files, strict=True):
            (Path(folder) / name).write_bytes(file.getvalue())
        npz = [name for name in names if name.lower().endswith(".npz")]
        if npz:
            if len(files) > 1:
                raise DatasetError("give either one .npz or the four IDX files, not both")
            loaded, label = datasets.load_local(Path(folder) / npz[0]), npz[0]
        else:
            loaded, label = datasets.load_local(folder), "your IDX files"
    # Named after the upload, never after the temporary folder it was read from.
    return dataclasses.replace(loaded, name=label, source=f"your upload: {', '.join(sorted(names))}")


def samples_ui(dataset: datasets.Dataset) -> None:
    rng = np.random.default_rng(0)
    picks = rng.choice(dataset.train_size, size=min(16, dataset.train_size), replace=False)
    image_grid(dataset.x_train[picks], [dataset.class_names[label] for label in dataset.y_train[picks]])


def train_ui(dataset: datasets.Dataset) -> None:
    left, middle, right = st.columns([2, 1, 1])
    presets = list(models.PRESETS)
    preset = left.selectbox(
        "Architecture",
        presets,
        index=presets.index(state.remembered("preset", "seed")),
        format_func=lambda p: models.PRESETS[p].label,
        key="preset",
        on_change=state.remember,
        args=("preset",),
    )
    left.caption(models.PRESETS[preset].description)
    suggested_epochs, suggested_augment = models.suggested_training(dataset.train_size)
    epochs = remembered_widget(middle.number_input, "Epochs", "epochs", suggested_epochs, min_value=1, max_value=30, step=1)
    augment = remembered_widget(
        middle.checkbox,
        "Augment",
        "augment",
        suggested_augment,
        help="Every epoch, each training image is moved a little: rotated, squeezed, shifted, its strokes "
        "thinned or thickened, the ways drawings differ. It helps a small dataset (the offline digits) "
        "read digits people draw; MNIST's 60,000 need none.",
    )
    seed = remembered_widget(
        right.number_input,
        "Seed",
        "seed",
        0,
        min_value=0,
        max_value=2**31 - 1,
        step=1,
        help="Training with the same data, architecture, epochs and seed gives the same model: the "
        "server computes it once for the whole class. Change the seed for a run of your own.",
    )
    running = jobs_ui.active("train")
    if st.button("Train", key="train", type="primary", disabled=running, help="A training is under way" if running else None):
        try:
            request = TrainRequest(
                jobs_ui.dataset_ref(), preset=preset, epochs=int(epochs), seed=int(seed), augment=bool(augment)
            )
        except OSError as error:  # the upload could not be saved for the workers (a full disk): one line
            st.error(f"Training could not start: {error}")
            return
        label = f"{models.PRESETS[preset].label}, {epochs} epoch{'s' if epochs > 1 else ''}{', augmented' if augment else ''} on {dataset.name}"
        jobs_ui.submit(request, label)
        st.rerun()  # show the job's panel (and disable the button) at once
    jobs_ui.job_panel("train", chart=epoch_chart)


def upload_ui(dataset: datasets.Dataset) -> None:
    file = st.file_uploader(
        "A Keras model (.keras, .h5) or a TensorFlow Lite model (.tflite)", type=["keras", "h5", "tflite"], key="model_upload"
    )
    jobs_ui.job_panel("load")
    if file is None or not st.button("Use this model", key="use_model", disabled=jobs_ui.active("load")):
        return
    name, data = limits.safe_name(file.name, "model"), file.getvalue()
    if name.lower().endswith(".tflite"):
        try:
            # Its memory, run time and outputs, measured in a bounded child process before the server runs it.
            found = check_model(data, name, classes=len(dataset.class_names))
        except (ModelFormatError, RuntimeModelError) as error:
            st.error(f"This model cannot be used: {error}")
            return
        state.set_model(
            state.LabModel(
                label=name,
                keras_bytes=None,
                summary=None,
                keras_accuracy=float("nan"),
                dataset_name=dataset.name,
                uploaded_tflite=data,
                dataset_digest=dataset.digest,
                class_names=dataset.class_names,
                footprint=found,
            )
        )
        st.toast(f"{name} loaded: it is compared as it is (conversion needs a Keras model).")
        return
    try:
        if not name.lower().endswith((".keras", ".h5")):
            raise models.ModelFileError(f"{name}: expected a .keras, .h5 or .tflite model file")
        if name.lower().endswith(".keras"):
            models.check_keras_archive(data, name)  # the zip's directory, before anything is expanded
    except models.ModelFileError as error:
        st.error(f"This model cannot be used: {error}")
        return
    try:
        request = LoadModelRequest(name, data, jobs_ui.dataset_ref())
    except OSError as error:  # the upload could not be saved for the workers (a full disk): one line
        st.error(f"The model could not be loaded: {error}")
        return
    jobs_ui.submit(request)
    st.rerun()


def model_ui(model: state.LabModel, dataset: datasets.Dataset) -> None:
    st.subheader(f"Current model: {model.label}")
    model_fits(model, dataset, "model")
    if model.seed is not None:
        where = {"cache": "from the class's shared cache", "joined": "shared with another session's identical run"}.get(
            model.origin, "trained for this session"
        )
        st.caption(f"Seed {model.seed}, {where}.")
    if model.summary is not None:
        left, right = st.columns(2)
        left.metric("Parameters", f"{model.summary.parameters:,}")
        right.metric(f"Keras test accuracy (on {model.dataset_name}, its own test set)", f"{model.keras_accuracy:.4f}")
        st.markdown(
            markdown_table(
                ["layer", "type", "output shape", "parameters"],
                [[name, kind, f"`{shape}`", f"{count:,}"] for name, kind, shape, count in model.summary.layers],
                align="lllr",
            )
        )
    else:
        inspection = inspect_tflite(model.uploaded_tflite)
        st.write(
            f"A .tflite of {inspection.size_bytes:,} bytes, input {list(inspection.inputs[0].shape_signature)} "
            f"{inspection.inputs[0].dtype}; operators: {', '.join(inspection.operator_counts)}."
        )
        if model.footprint is not None:
            found = model.footprint
            st.caption(
                f"Measured on one image in a bounded process: {found.tensor_bytes / limits.MB:,.1f} MB of tensors, "
                f"{found.invoke_ms:,.2f} ms. It runs in batches of at most {found.max_batch} images, so that one interpreter "
                f"holds at most {limits.INTERPRETER_BYTES // limits.MB} MB; the lab measures it in a process of its own."
            )
    if model.history:
        st.plotly_chart(epoch_chart(list(model.history)), key="chart_epochs")


dataset, choice = dataset_ui()
notice(choice)
st.caption(f"{dataset.source}. {dataset.train_size:,} training and {dataset.test_size:,} test images.")
samples_ui(dataset)

st.divider()
train_tab, upload_tab = st.tabs(["Train a model", "Upload a model"])
with train_tab:
    train_ui(dataset)
with upload_tab:
    upload_ui(dataset)

current = state.model()
if current is not None:
    st.divider()
    model_ui(current, dataset)
    st.page_link("pages/quantize.py", label="Next: quantize it")
