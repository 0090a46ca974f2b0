"""Heavy, read-only things cached across sessions (datasets, evaluations of a given .tflite)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:  # imported where they are used: Home's first run draws before NumPy is even imported
    import numpy as np

    from core import datasets
    from core.evaluate import EvaluationResult

RETRY_DOWNLOAD_S = 300.0  # after a failed download, a visitor this much later tries again
_attempts: dict[str, int] = {}  # name -> which attempt is cached
_fell_back_at: dict[str, float] = {}  # name -> when the cached attempt fell back to the offline digits
_loader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="qlab-dataset")  # downloads and framing, off the script's thread


def load_dataset(name: str, wait: bool = True) -> datasets.LoadedDataset | None:
    """MNIST / Fashion-MNIST (downloaded once into the keras cache) or the offline digits.

    The load runs in a background thread shared by every session, so a page can draw first and
    show the dataset when it is there: with ``wait=False`` this returns None while it is still
    loading (Home); otherwise it waits, with a spinner.

    A successful load is cached for the server's life. When the download failed and the offline
    digits stood in, that stands only for RETRY_DOWNLOAD_S: a passing network fault must not leave
    every later visitor on the digits until a restart."""
    if name in _fell_back_at and time.monotonic() - _fell_back_at[name] > RETRY_DOWNLOAD_S:
        _attempts[name] = _attempts.get(name, 0) + 1
        del _fell_back_at[name]
    loading = _load_dataset(name, _attempts.get(name, 0))
    if not loading.done():
        if not wait:
            return None
        with st.spinner("Loading the dataset…"):
            loading.exception()  # waits
    if loading.exception() is not None:  # not cached: the next run tries again
        _load_dataset.clear(name, _attempts.get(name, 0))
        raise loading.exception()
    loaded = loading.result()
    if loaded.notice:
        _fell_back_at.setdefault(name, time.monotonic())
    return loaded


@st.cache_resource(show_spinner=False, max_entries=8)
def _load_dataset(name: str, attempt: int) -> Future:
    return _loader.submit(_load, name)


def _load(name: str) -> datasets.LoadedDataset:
    from core import datasets  # NumPy and the framing, imported in the loader's thread

    return datasets.load(name)


def measured(brought: bool, function, *args, what: str):
    """``function(*args)`` here, or, for a file a person brought, in a bounded child process
    (core.compare.elsewhere): the one place that decides where a measurement runs."""
    if brought:
        from core.compare import elsewhere

        return elsewhere(function, *args, what=what)
    return function(*args)


def evaluate_all(converted: dict, dataset: datasets.Dataset) -> dict[str, EvaluationResult]:
    """Every variant on the whole test set, agreement against the reference (core.compare.evaluate_variants),
    cached by the files' and the data's digests."""
    key = tuple((name, item.digest, item.brought) for name, item in converted.items())
    return _evaluate_all(key, {name: item.tflite for name, item in converted.items()}, dataset.digest, dataset)


@st.cache_data(show_spinner=False, max_entries=64)
def _evaluate_all(key: tuple, _tflites: dict, dataset_key: str, _dataset: datasets.Dataset) -> dict[str, EvaluationResult]:
    from core.compare import evaluate_variants, without_training_images  # LiteRT: not needed before Compare

    brought = any(brought for _, _, brought in key)
    return measured(brought, evaluate_variants, _tflites, without_training_images(_dataset), what="evaluating your model")


def time_all(converted: dict, images: np.ndarray, threads: int, xnnpack: bool, runs: int, progress=None) -> dict:
    """Every variant timed alone, one after another (time_tflite); ``progress(index, name)`` before each."""
    timed = {}
    for index, (name, item) in enumerate(converted.items()):
        if progress:
            progress(index, name)
        timed[name] = time_tflite(name, item.tflite, images, threads, xnnpack, runs, item.brought)
    return timed


def layer_errors_all(converted: dict, images: np.ndarray, dataset_key: str) -> dict[str, list]:
    """Per-layer error of every variant but float32 against float32 (layer_errors_for, cached)."""
    from core import variants as registry

    reference = converted[registry.REFERENCE]
    return {
        name: layer_errors_for(name, item.digest, reference.digest, reference.tflite, item.tflite, dataset_key, images)
        for name, item in converted.items()
        if name != registry.REFERENCE
    }


def time_tflite(name: str, tflite: bytes, images: np.ndarray, threads: int, xnnpack: bool, runs: int, brought: bool = False):
    """One variant's latency and throughput (core.compare.time_variant); a file a person brought is
    timed in a bounded child process. Not cached here: Compare keeps its timings per session."""
    from core.compare import time_variant

    return measured(brought, time_variant, tflite, images, threads, xnnpack, runs, name, what=f"timing {name}")


@st.cache_data(show_spinner=False, max_entries=64)
def layer_errors_for(
    name: str, digest: str, float_digest: str, _float_tflite: bytes, _tflite: bytes, dataset_key: str, _images: np.ndarray
):
    """Per-layer error of one variant against float32 (keyed by both files' digests and the data),
    with the LiteRT Quantizer's own validation beside it for its recipes."""
    from core.compare import layer_errors_by_variant

    return layer_errors_by_variant({"float32": _float_tflite, name: _tflite}, _images)[name]


@st.cache_data(show_spinner=False, max_entries=64)
def inspect_for(digest: str, _tflite: bytes):
    from core.inspect import inspect_tflite

    return inspect_tflite(_tflite)


@st.cache_data(show_spinner=False, max_entries=256)
def micro_result(digest: str, dataset_digest: str, _tflite: bytes, _images, _labels, _reference, _litert, _xnnpack):
    """One variant under TFLite Micro, in a child process (core.micro.measure), keyed by the file's and the data's digests."""
    from core import micro

    return micro.measure(_tflite, _images, _labels, _reference, _litert, _xnnpack)


@st.cache_data(show_spinner=False, max_entries=256)
def litert_answers(digest: str, dataset_digest: str, xnnpack: bool, _tflite: bytes, _images, brought: bool = False):
    """LiteRT's answers on the same file, for TFLite Micro's comparison; a file a person brought runs in a
    bounded child process."""
    from core import micro

    return measured(brought, micro.litert_answers, _tflite, _images, xnnpack, what="LiteRT's answers for the comparison")


_SWEEPS_KEPT = 16


@st.cache_resource(show_spinner=False)
def _sweeps() -> tuple[dict, threading.Lock]:
    """Finished sweeps, shared by every session: {(float digest, dataset key): points}, the newest
    last; and the lock that makes a second session asking for the same sweep wait for the first."""
    return {}, threading.Lock()


def sweep_all(float_digest: str, float_tflite: bytes, dataset_key: str, images, labels, progress=None) -> list:
    """The what-if sweep of core.quantization, cached by the float32 file's and the data's digests
    (it rewrites only built-in float32 files, which the server made itself). ``progress(fraction,
    text)`` follows a sweep that has to run; a sweep stopped half way (the person left the page)
    stores nothing, and the next visit runs it again."""
    from core.quantization import sweep

    (cache, lock), key = _sweeps(), (float_digest, dataset_key)
    with lock:  # one sweep at a time in the server (each is ~2 s of one core on MNIST-sized test sets)
        if key not in cache:
            cache[key] = sweep(float_tflite, images, labels, progress=progress)
            while len(cache) > _SWEEPS_KEPT:
                cache.pop(next(iter(cache)))
        return cache[key]


@st.cache_data(show_spinner=False, max_entries=64)
def accuracy_of(digest: str, _tflite: bytes, dataset_key: str, _images, _labels) -> float:
    """One built-in variant's accuracy on the test images (for the what-if chart's real points)."""
    from core.selective import accuracy_of as measured_accuracy

    return measured_accuracy(_tflite, _images, _labels)


@st.cache_data(show_spinner=False, max_entries=32)
def ranked_layers_of(float_digest: str, _float_tflite: bytes, digest: str, _tflite: bytes, dataset_key: str, _images) -> list:
    """core.selective.ranked_layers of a built-in variant (LiteRT on a sample of test images), cached by digests."""
    from core.selective import ranked_layers

    return ranked_layers(_float_tflite, _tflite, _images)


@st.cache_data(show_spinner=False, max_entries=8)
def float_activations_of(float_digest: str, _float_tflite: bytes, dataset_key: str, _images) -> dict:
    """core.quantization.float_activations of a built-in float32 file, cached by digests."""
    from core.quantization import float_activations

    return float_activations(_float_tflite, _images)


@st.cache_resource(show_spinner=False)
def class_board():
    """The class's devices (core.class_board): one per server, in memory, shared by every session."""
    from core.class_board import ClassBoard

    return ClassBoard()


@st.cache_data(show_spinner=False, max_entries=64)
def twin_answers_of(digest: str, _converted_item, _images, dataset_key: str):
    """core.litertjs.server_answers on one variant's browser twin (a brought file's in a bounded
    child process), cached by the file's digest and the data's; None without a twin."""
    from core.litertjs import server_answers

    twin, _ = _converted_item.browser_twin
    if twin is None:
        return None
    return measured(_converted_item.brought, server_answers, twin.tflite, _images, what="LiteRT on the browser twin")
