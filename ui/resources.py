"""Heavy, read-only things cached across sessions (datasets, evaluations of a given .tflite)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core import datasets
from core.evaluate import EvaluationResult


@st.cache_resource(show_spinner="Loading the dataset…")
def load_dataset(name: str) -> datasets.LoadedDataset:
    """MNIST / Fashion-MNIST (downloaded once into the keras cache) or the offline digits."""
    return datasets.load(name)


@st.cache_data(show_spinner=False, max_entries=64)
def evaluate_tflite(name: str, digest: str, _tflite: bytes, dataset_key: str, _dataset: datasets.Dataset) -> EvaluationResult:
    """One variant on the whole test set (keyed by the .tflite's digest and the dataset)."""
    from core.compare import evaluate_variants  # the LiteRT runtime: not needed before Compare

    return evaluate_variants({name: _tflite}, _dataset)[name]


def dataset_key(dataset: datasets.Dataset) -> str:
    return f"{dataset.name}:{dataset.train_size}:{dataset.test_size}:{float(np.sum(dataset.x_test[:50])):.3f}"


@st.cache_data(show_spinner=False, max_entries=64)
def layer_errors_for(name: str, digest: str, float_digest: str, _float_tflite: bytes, _tflite: bytes, dataset_key: str,
                     _images: np.ndarray):  # fmt: skip
    """Per-layer error of one variant against float32 (keyed by both files' digests and the data),
    with the LiteRT Quantizer's own validation beside it for its recipes."""
    from core.compare import layer_errors_by_variant

    return layer_errors_by_variant({"float32": _float_tflite, name: _tflite}, _images)[name]


@st.cache_data(show_spinner=False, max_entries=64)
def inspect_for(digest: str, _tflite: bytes):
    from core.inspect import inspect_tflite

    return inspect_tflite(_tflite)
