"""The job records that cross the process boundary, and what a pool worker does with each.

A *request* says what to compute; it is a frozen dataclass whose :meth:`key` identifies the
computation, so that identical requests from many sessions are computed once
(:mod:`core.job_service`). A *result* is a frozen dataclass too. Datasets travel by reference
(:class:`~core.datasets.DatasetRef`), never as arrays; a model travels as the bytes of its .keras
file (a few hundred KB), keyed by their digest.

=================  ===================================================  ==========================
kind               request -> result                                    key
=================  ===================================================  ==========================
``train``          :class:`TrainRequest` -> :class:`TrainOutcome`       dataset digest, preset,
                                                                        epochs, batch size,
                                                                        learning rate, seed
``convert``        :class:`ConvertRequest` -> :class:`ConvertOutcome`   model digest, variants,
                                                                        calibration size and seed,
                                                                        QAT epochs (+ dataset
                                                                        digest when calibrated)
``load``           :class:`LoadModelRequest` -> :class:`TrainOutcome`   file digest, dataset digest
``keep_float``     :class:`KeepFloatRequest` ->                         model digest, base, layers
                   :class:`KeepFloatOutcome`                            or drop (+ dataset, calib.)
=================  ===================================================  ==========================

:func:`execute` runs inside a pool worker. TensorFlow is imported there on the first job and stays
imported for the worker's life: the Streamlit server never imports it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from core import litertjs
from core import variants as registry
from core.datasets import Dataset, DatasetRef
from core.progress import Progress, ProgressFn, ignore


def digest_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _key(kind: str, fields: dict) -> str:
    text = kind + "|" + "|".join(f"{name}={fields[name]!r}" for name in sorted(fields))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


# -- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainRequest:
    dataset: DatasetRef
    preset: str = "seed"
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    augment: bool = False

    kind = "train"

    def key(self) -> str:
        return _key(
            self.kind,
            {
                "dataset": self.dataset.digest,
                "preset": self.preset,
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "learning_rate": self.learning_rate,
                "seed": self.seed,
                "augment": self.augment,
            },
        )

    def describe(self) -> str:
        augmented = ", augmented" if self.augment else ""
        return f"training {self.preset}, {self.epochs} epoch{'s' if self.epochs != 1 else ''}{augmented} on {self.dataset.name} (seed {self.seed})"

    def run(self, progress: ProgressFn = ignore):
        return _train(self, progress)


@dataclass(frozen=True)
class ConvertRequest:
    model_digest: str
    variants: tuple[str, ...]
    dataset: DatasetRef  # calibration images and QAT's training data come from it
    calibration: int = 200
    qat_epochs: int = 1
    seed: int = 0  # which calibration images are drawn
    model_bytes: bytes = field(default=b"", repr=False, compare=False)  # the .keras file; keyed by model_digest

    kind = "convert"

    def __post_init__(self):
        for name in self.variants:
            registry.get(name)  # an unknown name is refused here, before anything is queued
        if self.model_bytes and digest_bytes(self.model_bytes) != self.model_digest:
            raise ValueError("the model bytes do not match the model digest")

    def key(self) -> str:
        chosen = [registry.get(name) for name in self.variants]
        calibrated = any(variant.needs_calibration or variant.needs_training_data for variant in chosen)
        qat = any(variant.needs_training_data for variant in chosen)
        return _key(
            self.kind,
            {
                "model": self.model_digest,
                "variants": tuple(sorted(self.variants)),
                "dataset": self.dataset.digest if calibrated else "",
                "calibration": (self.calibration, self.seed) if calibrated else 0,
                "qat_epochs": self.qat_epochs if qat else 0,
            },
        )

    def describe(self) -> str:
        return f"converting {len(self.variants)} variant{'s' if len(self.variants) != 1 else ''}"

    def run(self, progress: ProgressFn = ignore):
        return _convert(self, progress)


@dataclass(frozen=True)
class LoadModelRequest:
    file_name: str
    data: bytes = field(repr=False)
    dataset: DatasetRef | None = None  # scored on its test set when given

    kind = "load"

    def key(self) -> str:
        return _key(
            self.kind,
            {
                "file": digest_bytes(self.data),
                "suffix": os.path.splitext(self.file_name)[1].lower(),
                "dataset": self.dataset.digest if self.dataset else "",
            },
        )

    def describe(self) -> str:
        return f"loading {self.file_name}"

    def run(self, progress: ProgressFn = ignore):
        return _load(self, progress)


@dataclass(frozen=True)
class KeepFloatRequest:
    """A selective variant: ``base`` with ``layers`` kept float32, or (``max_drop_pp`` given, no
    layers) the fewest layers that keep accuracy within that drop of float32 (core.selective)."""

    model_digest: str
    base: str
    dataset: DatasetRef  # calibration images, and the test set the automatic mode scores on
    layers: tuple[str, ...] = ()
    max_drop_pp: float | None = None
    calibration: int = 200
    seed: int = 0
    model_bytes: bytes = field(default=b"", repr=False, compare=False)

    kind = "keep_float"

    def __post_init__(self):
        if not registry.can_keep_float(self.base):
            raise ValueError(f"{self.base} cannot keep layers float")
        if bool(self.layers) == (self.max_drop_pp is not None):
            raise ValueError("give either the layers to keep float or the largest drop allowed, not both")
        if self.layers:
            registry.get(registry.keep_float_name(self.base, self.layers))  # names checked before queueing
        if self.max_drop_pp is not None and not 0 <= self.max_drop_pp <= 100:
            raise ValueError(f"the allowed drop is 0 to 100 percentage points, got {self.max_drop_pp}")
        if self.model_bytes and digest_bytes(self.model_bytes) != self.model_digest:
            raise ValueError("the model bytes do not match the model digest")

    def key(self) -> str:
        calibrated = registry.get(self.base).needs_calibration
        return _key(
            self.kind,
            {
                "model": self.model_digest,
                "base": self.base,
                "layers": self.layers,
                "max_drop": self.max_drop_pp,
                # the automatic mode scores on the test set: the dataset matters then too
                "dataset": self.dataset.digest if calibrated or self.max_drop_pp is not None else "",
                "calibration": (self.calibration, self.seed) if calibrated else 0,
            },
        )

    def describe(self) -> str:
        if self.layers:
            return f"building {self.base} with {', '.join(self.layers)} in float"
        return f"finding the float layers that keep {self.base} within {self.max_drop_pp:g} pp"

    def run(self, progress: ProgressFn = ignore):
        return _keep_float(self, progress)


Request = TrainRequest | ConvertRequest | LoadModelRequest | KeepFloatRequest


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainOutcome:
    """A trained (or loaded) Keras model, as bytes, with what the pages show of it."""

    model_bytes: bytes = field(repr=False)
    model_digest: str
    keras_accuracy: float
    summary: object  # core.models.ModelSummary (plain values)
    history: tuple[dict, ...] = ()
    train_s: float = 0.0
    dataset_digest: str = ""

    @property
    def nbytes(self) -> int:
        return len(self.model_bytes) + 4096


@dataclass(frozen=True)
class ConvertedFile:
    name: str
    tflite: bytes = field(repr=False)
    seconds: float = 0.0
    twin: litertjs.Twin | None = field(default=None, repr=False)  # what LiteRT.js runs in the browser
    twin_error: str = ""  # why there is none, one line

    @classmethod
    def built(cls, name: str, tflite: bytes, seconds: float) -> ConvertedFile:
        """A converted file with its browser twin, made in the same job from the same bytes."""
        twin, error = litertjs.twin_or_error(tflite)
        return cls(name, tflite, seconds, twin, error)

    @property
    def nbytes(self) -> int:
        return len(self.tflite) + (len(self.twin.tflite) if self.twin else 0)


@dataclass(frozen=True)
class ConvertOutcome:
    model_digest: str
    files: tuple[ConvertedFile, ...]
    failures: tuple[tuple[str, str], ...] = ()  # (variant, why) for variants that could not be built
    calibration: int = 0

    @property
    def nbytes(self) -> int:
        return sum(item.nbytes for item in self.files) + 1024


@dataclass(frozen=True)
class KeepFloatOutcome:
    model_digest: str
    file: ConvertedFile  # the selective variant (the base itself when it already meets the drop)
    automatic: dict | None = None  # core.selective.Automatic.to_dict(), for the automatic mode
    calibration: int = 0

    @property
    def nbytes(self) -> int:
        return self.file.nbytes + 4096


# -- inside a pool worker ------------------------------------------------------------------------

_progress_queue = None  # set by worker_init: where progress reports go
_datasets: dict[str, Dataset] = {}  # by digest: a worker reads a dataset once, not once per job


def worker_init(progress_queue, parent_pid: int) -> None:
    """Run once in every new pool worker."""
    from core.isolation import exit_with_parent

    global _progress_queue
    _progress_queue = progress_queue
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    exit_with_parent(parent_pid)


def _dataset(ref: DatasetRef) -> Dataset:
    if ref.digest not in _datasets:
        if len(_datasets) >= 2:
            _datasets.pop(next(iter(_datasets)))
        _datasets[ref.digest] = ref.resolve()
    return _datasets[ref.digest]


def execute(job_id: str, request: Request):
    """The pool's entry point: run one request, streaming progress back to the server."""

    def progress(report: Progress) -> None:
        if _progress_queue is not None:
            _progress_queue.put((job_id, report))

    _release_memory()  # what the previous job left, before this one starts (not after: the result goes out first)
    return run_request(request, progress)


def _release_memory() -> None:
    """Between jobs, give back what a job left: Python's garbage, and the C heap's free pages
    (glibc keeps them otherwise, and the worker lives on). Keras's clear_session is not called:
    it saved ~10 MB but cost ~0.3 s on the next job, which re-traces its functions."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def run_request(request: Request, progress: ProgressFn = ignore):
    """Compute one request in this process (a pool worker, or a test): each request runs itself."""
    run = getattr(request, "run", None)
    if run is None:
        raise TypeError(f"not a job request: {type(request).__name__}")
    return run(progress)


def _train(request: TrainRequest, progress: ProgressFn) -> TrainOutcome:
    progress(Progress("train", 0.0, "loading TensorFlow and the data" if "tensorflow" not in _modules() else "loading the data"))
    from core import models

    dataset = _dataset(request.dataset)
    config = models.TrainConfig(
        request.preset, request.epochs, request.batch_size, request.learning_rate, request.seed, request.augment
    )
    model, result = models.train_new(dataset, config, progress)
    data = models.to_bytes(model)
    return TrainOutcome(
        data,
        digest_bytes(data),
        result.test_accuracy,
        models.summarize(model, request.preset),
        tuple(result.history),
        result.seconds,
        dataset.digest,
    )


def _convert(request: ConvertRequest, progress: ProgressFn) -> ConvertOutcome:
    progress(
        Progress("convert", 0.0, "loading TensorFlow and the model" if "tensorflow" not in _modules() else "loading the model")
    )
    from core import convert as converter
    from core import models

    model = models.from_bytes(request.model_bytes)
    chosen = [registry.get(name) for name in request.variants]
    context: dict = {}
    calibration = None
    if any(variant.needs_calibration or variant.needs_training_data for variant in chosen):
        dataset = _dataset(request.dataset)
        calibration = converter.calibration_sample(dataset.x_train, request.calibration, request.seed)
        if any(variant.needs_training_data for variant in chosen):
            context = {"dataset": dataset, "qat_epochs": request.qat_epochs}
    failures: dict[str, str] = {}
    results = converter.convert_all(model, list(request.variants), calibration, progress, failures=failures, **context)
    return ConvertOutcome(
        request.model_digest,
        tuple(ConvertedFile.built(name, result.tflite, result.seconds) for name, result in results.items()),
        tuple(failures.items()),
        request.calibration if calibration is not None else 0,
    )


def _keep_float(request: KeepFloatRequest, progress: ProgressFn) -> KeepFloatOutcome:
    progress(
        Progress("keep_float", 0.0, "loading TensorFlow and the model" if "tensorflow" not in _modules() else "loading the model")
    )
    import time

    from core import convert as converter
    from core import models, selective

    model = models.from_bytes(request.model_bytes)
    dataset = _dataset(request.dataset)
    calibration = converter.calibration_sample(dataset.x_train, request.calibration, request.seed)
    float_tflite = converter.convert(model, registry.REFERENCE).tflite

    def build(name: str) -> bytes:
        return converter.convert(model, name, calibration, float_tflite=float_tflite).tflite

    start = time.perf_counter()
    calibrated = request.calibration if registry.get(request.base).needs_calibration else 0
    if request.layers:
        name = registry.keep_float_name(request.base, request.layers)
        progress(Progress("keep_float", 0.3, f"converting {name}"))
        data = build(name)
        return KeepFloatOutcome(
            request.model_digest, ConvertedFile.built(name, data, time.perf_counter() - start), None, calibrated
        )
    found = selective.automatic(build, request.base, float_tflite, dataset.x_test, dataset.y_test, request.max_drop_pp, progress)
    return KeepFloatOutcome(
        request.model_digest,
        ConvertedFile.built(found.variant, found.tflite, time.perf_counter() - start),
        found.to_dict(),
        calibrated,
    )


def _load(request: LoadModelRequest, progress: ProgressFn) -> TrainOutcome:
    progress(Progress("load", 0.2, f"loading {request.file_name} (safe mode)"))
    from core import models

    model = models.from_bytes(request.data, request.file_name)
    accuracy, digest = float("nan"), ""
    if request.dataset is not None:
        dataset = _dataset(request.dataset)
        from core.runtime import check_outputs

        check_outputs(int(model.outputs[0].shape[-1] or 0), len(dataset.class_names), request.file_name)
        accuracy, digest = models.keras_accuracy(model, dataset.x_test, dataset.y_test), dataset.digest
    data = models.to_bytes(model)
    return TrainOutcome(data, digest_bytes(data), accuracy, models.summarize(model), dataset_digest=digest)


def _modules() -> set[str]:
    import sys

    return set(sys.modules)
