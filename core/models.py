"""Keras models: the architecture presets, seeded training, and loading a user's model file.

This module imports TensorFlow/Keras. The Streamlit server never imports it: it reaches these
functions through the job service's workers (``core.job_service``).
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass

import numpy as np

from core import limits
from core.datasets import Dataset
from core.progress import Progress, ProgressFn, ignore


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    description: str


PRESETS = {
    "seed": Preset(
        "seed", "Seed CNN", "Conv2D 12×3×3 → MaxPool 2×2 → Dense 10, as in the TensorFlow post-training quantization tutorial"
    ),
    "wide": Preset(
        "wide", "Wider CNN", "Conv2D 32 → MaxPool → Conv2D 64 → MaxPool → Dropout → Dense 10: more accurate, ~10× the weights"
    ),
}


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "seed"
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    augment: bool = False  # each epoch sees every image moved a little (core.images.augment)

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown architecture {self.preset!r}; choose from {', '.join(PRESETS)}")
        if not 0 <= self.epochs <= 100:
            raise ValueError(f"epochs must lie in 0–100, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")


SMALL_DATASET = 5_000  # training images: below this, the suggested training is longer and augmented


def suggested_training(train_size: int) -> tuple[int, bool]:
    """(epochs, augment) the Model page suggests for a dataset of ``train_size`` training images.
    One pass over MNIST's 60,000 images is plenty, without augmentation. The 1,438 offline digits
    need 30 passes, each moved a little (core.images.augment): so trained, the seed CNN reads
    drawn digits 0.81 of the time against 0.68 (bench/drawn_digits.py), and reads a bar "1"."""
    if train_size < SMALL_DATASET:
        return 30, True
    return int(np.clip(20_000 // max(train_size, 1), 1, 15)), False


class ModelFileError(ValueError):
    """A model file the lab cannot use; the message says why."""


def build(preset: str = "seed", num_classes: int = 10):
    import keras

    layers = keras.layers
    if preset == "seed":
        body = [
            layers.Reshape((28, 28, 1)),
            layers.Conv2D(12, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(num_classes),
        ]
    elif preset == "wide":
        body = [
            layers.Reshape((28, 28, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dropout(0.25),
            layers.Dense(num_classes),
        ]
    else:
        raise ValueError(f"unknown architecture {preset!r}; choose from {', '.join(PRESETS)}")
    return keras.Sequential([keras.Input(shape=(28, 28)), *body], name=preset)


def compile_model(model, learning_rate: float = 1e-3, steps_per_execution: int = 1) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        # Several batches per TensorFlow call: the same arithmetic, far less Python overhead per
        # batch (60,000 MNIST images train ~30% faster here with 25).
        steps_per_execution=steps_per_execution,
    )


@dataclass(frozen=True)
class TrainResult:
    history: tuple[dict, ...]  # one {"epoch", "loss", "accuracy"} per epoch
    test_accuracy: float
    seconds: float


def _progress_callback(progress: ProgressFn, epochs: int, steps: int):
    import keras

    class Report(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch, self.stride = 0, 1
            self.history: list[dict] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.stride = getattr(self.model, "steps_per_execution", 1) or 1

        def on_train_batch_end(self, batch, logs=None):
            # Every batch would flood a pipe; ~50 reports per epoch is smooth enough to watch. With
            # several steps per execution, Keras calls this once per execution anyway.
            if self.stride > 1 or batch % max(1, steps // 50) == 0 or batch == steps - 1:
                logs = logs or {}
                batch = min(batch, steps - 1)
                done = (self.epoch * steps + batch + 1) / (epochs * steps)
                progress(
                    Progress(
                        "train",
                        done,
                        f"epoch {self.epoch + 1}/{epochs}, batch {batch + 1}/{steps}",
                        {"epoch": self.epoch + 1, "batch": batch + 1, "loss": float(logs.get("loss", np.nan))},
                    )
                )

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            entry = {"epoch": epoch + 1, "loss": float(logs.get("loss", np.nan)), "accuracy": float(logs.get("accuracy", np.nan))}
            self.history.append(entry)
            progress(Progress("train", (epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs} done", {"epoch_end": True, **entry}))

    return Report()


def train(model, dataset: Dataset, config: TrainConfig, progress: ProgressFn = ignore) -> TrainResult:
    """Fit a compiled or fresh model on the dataset (seeded), then score it on the test set."""
    import keras

    keras.utils.set_random_seed(config.seed)
    steps = int(np.ceil(dataset.train_size / config.batch_size))
    # Progress arrives once per execution: keep at least ~20 reports per epoch.
    compile_model(model, config.learning_rate, steps_per_execution=max(1, min(25, steps // 20)))
    start = time.perf_counter()
    report = _progress_callback(progress, max(config.epochs, 1), steps)
    if config.epochs and config.augment:
        batches = _augmented_batches(dataset, config)
        model.fit(batches, epochs=config.epochs, steps_per_epoch=steps, verbose=0, callbacks=[report])
    elif config.epochs:
        model.fit(
            dataset.x_train, dataset.y_train, epochs=config.epochs, batch_size=config.batch_size, verbose=0, callbacks=[report]
        )
    seconds = time.perf_counter() - start
    return TrainResult(tuple(report.history), keras_accuracy(model, dataset.x_test, dataset.y_test), seconds)


def _augmented_batches(dataset: Dataset, config: TrainConfig):
    """The training images in shuffled batches, each batch moved by core.images.augment, epoch after
    epoch. A generator, consumed in order however far Keras reads ahead, and seeded by (seed, epoch,
    batch): the same request moves the same images the same way."""
    from core.images import augment

    steps = int(np.ceil(dataset.train_size / config.batch_size))
    for epoch in itertools.count():  # Keras stops after its epochs (reading one past the end would warn)
        order = np.random.default_rng([config.seed, epoch]).permutation(dataset.train_size)
        for index in range(steps):
            chosen = order[index * config.batch_size : (index + 1) * config.batch_size]
            rng = np.random.default_rng([config.seed, epoch, index])
            yield augment(dataset.x_train[chosen], rng), dataset.y_train[chosen]


def keras_accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    logits = model.predict(adapt_to_input(model, images), batch_size=512, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def adapt_to_input(model, images: np.ndarray) -> np.ndarray:
    """N×28×28 images -> N×28×28×1 when the model wants a channel axis."""
    rank = len(model.inputs[0].shape)
    return images[..., None] if rank == 4 and images.ndim == 3 else images


def train_new(dataset: Dataset, config: TrainConfig, progress: ProgressFn = ignore):
    model = build(config.preset, len(dataset.class_names))
    return model, train(model, dataset, config, progress)


def to_bytes(model) -> bytes:
    """The model as the bytes of a .keras file."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        with open(path, "rb") as handle:
            return handle.read()


def check_keras_archive(data: bytes, file_name: str) -> None:
    """Refuse a .keras file whose zip would expand beyond the limits, before Keras opens it: the
    number of entries, each entry's and the total expanded size, and config.json's size (read
    from the central directory; nothing is decompressed)."""
    import io

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ModelFileError(
            f"{file_name}: not a .keras file (a .keras file is a zip archive, and this one cannot be read)"
        ) from error
    with archive:
        entries = archive.infolist()
        if len(entries) > limits.MAX_KERAS_ENTRIES:
            raise ModelFileError(
                limits.refusal(file_name, "the number of entries in the archive", len(entries), limits.MAX_KERAS_ENTRIES)
            )
        total = 0
        for entry in entries:
            if entry.filename == "config.json" and entry.file_size > limits.MAX_KERAS_CONFIG:
                raise ModelFileError(
                    limits.refusal(file_name, "config.json's expanded size", entry.file_size, limits.MAX_KERAS_CONFIG, "bytes")
                )
            total += entry.file_size
        if total > limits.MAX_KERAS_EXPANDED:
            raise ModelFileError(
                limits.refusal(file_name, "the archive's expanded size", total, limits.MAX_KERAS_EXPANDED, "bytes")
            )
        if "config.json" not in {entry.filename for entry in entries}:
            raise ModelFileError(f"{file_name}: not a Keras model archive (it has no config.json)")


def from_bytes(data: bytes, file_name: str = "model.keras"):
    """Load a user's .keras or .h5 from bytes, in safe mode (no arbitrary code), within the limits."""
    import keras

    file_name = limits.safe_name(file_name, "model.keras")
    suffix = os.path.splitext(file_name)[1].lower()
    if suffix not in (".keras", ".h5"):
        raise ModelFileError(f"{file_name}: expected a .keras or .h5 Keras model")
    if suffix == ".keras" and not data.startswith(b"PK"):
        raise ModelFileError(f"{file_name}: not a .keras file (a .keras file is a zip archive)")
    if suffix == ".h5" and not data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise ModelFileError(f"{file_name}: not an HDF5 (.h5) file")
    if suffix == ".keras":
        check_keras_archive(data, file_name)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model" + suffix)
        with open(path, "wb") as handle:
            handle.write(data)

        def why(error: BaseException) -> str:  # Keras names its temporary path; the person never sees it
            text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return text.replace(path, file_name).replace(folder, "…")

        try:
            model = keras.models.load_model(path, compile=False, safe_mode=True)
        except ValueError as error:
            text = str(error)
            if "Lambda" in text or "safe_mode" in text or "unsafe" in text:
                raise ModelFileError(
                    f"{file_name}: it contains a Lambda layer (arbitrary Python code), which the lab refuses to load"
                ) from error
            raise ModelFileError(f"{file_name}: Keras cannot load it ({why(error)})") from error
        except Exception as error:  # Keras raises many kinds on a damaged file; the person needs one line
            raise ModelFileError(f"{file_name}: Keras cannot load it ({why(error)})") from error
    check_classifier(model, file_name)
    return model


def check_classifier(model, file_name: str = "model") -> None:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelFileError(
            f"{file_name}: the lab needs one input and one output, the model has {len(model.inputs)} and {len(model.outputs)}"
        )
    shape = tuple(model.inputs[0].shape)
    ok_rank3 = len(shape) == 3 and all(d in (None, 28) for d in shape[1:])
    ok_rank4 = len(shape) == 4 and all(d in (None, 28) for d in shape[1:3]) and shape[3] in (None, 1)
    if not (ok_rank3 or ok_rank4):
        raise ModelFileError(f"{file_name}: input shape {shape} does not take 28×28 grey images")


@dataclass(frozen=True)
class ModelSummary:
    name: str
    architecture: str
    parameters: int
    layers: tuple[tuple[str, str, str, int], ...]  # (name, type, output shape, parameters)
    input_shape: tuple


def summarize(model, architecture: str = "") -> ModelSummary:
    layers = []
    for layer in model.layers:
        try:
            shape = str(tuple(layer.output.shape))
        except (AttributeError, ValueError):
            shape = "?"
        layers.append((layer.name, type(layer).__name__, shape, int(layer.count_params())))
    return ModelSummary(
        model.name, architecture or model.name, int(model.count_params()), tuple(layers), tuple(model.inputs[0].shape)
    )
