"""Shared fixtures: real data, a real model trained once per session, real conversions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
# Real MNIST digits shipped with the tests (tests/data/mnist-small/README.md): a fresh clone, with no
# network and nothing beside it, runs every test on the same data.
MNIST_SMALL = ROOT / "tests" / "data" / "mnist-small"


def mnist_small() -> Path:
    """The shipped digits' folder; a missing file is a broken checkout, which fails rather than skips."""
    if not (MNIST_SMALL / "train-images-idx3-ubyte.gz").exists():
        raise FileNotFoundError(f"mnist-small is missing from {MNIST_SMALL}: the checkout is incomplete")
    return MNIST_SMALL


@pytest.fixture(scope="session")
def dataset():
    """mnist-small: 8,000 + 2,000 real MNIST digits, the data every tolerance of the registry is set on."""
    from core import datasets

    return datasets.load_local(mnist_small())


@pytest.fixture(scope="session")
def keras_model(dataset):
    from core import models

    model, _ = models.train_new(dataset, models.TrainConfig(epochs=1, seed=0))
    return model


@pytest.fixture(scope="session")
def keras_predictions(keras_model, dataset):
    from core.models import adapt_to_input

    return np.argmax(keras_model.predict(adapt_to_input(keras_model, dataset.x_test), verbose=0), axis=-1)


@pytest.fixture(scope="session")
def conversions(keras_model, dataset):
    """Every registered variant, converted once: TFLiteConverter, LiteRT Quantizer and QAT alike."""
    from core import convert, variants

    calibration = convert.calibration_sample(dataset.x_train, 200)
    return convert.convert_all(keras_model, list(variants.VARIANTS), calibration, dataset=dataset)


@pytest.fixture(scope="session")
def tflites(conversions):
    return {name: result.tflite for name, result in conversions.items()}


@pytest.fixture(scope="module")
def lab_state(keras_model, conversions, dataset):
    """A session holding a real model and the five post-training variants (for AppTest)."""
    from core import models
    from ui import state

    model = state.LabModel(
        label="Seed CNN (test)",
        keras_bytes=models.to_bytes(keras_model),
        summary=models.summarize(keras_model, "seed"),
        keras_accuracy=0.9,
        history=({"epoch": 1, "loss": 0.5, "accuracy": 0.85},),
        dataset_name=dataset.name,
    )
    from core.variants import POST_TRAINING

    variants = {name: state.ConvertedVariant(name, conversions[name].tflite, conversions[name].seconds) for name in POST_TRAINING}
    return {
        "lab_dataset": state.DatasetChoice("upload", upload_label=dataset.name, requested="upload"),
        "lab_uploaded_dataset": dataset,
        "lab_model": model,
        "lab_variants": variants,
    }
