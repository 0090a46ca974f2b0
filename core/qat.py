"""Quantization-aware training (variant ``qat_int8``), kept apart from the rest of the lab.

tensorflow-model-optimization (tfmot) accepts only tf_keras (Keras 2) models, and importing it
switches the process to legacy Keras (``TF_USE_LEGACY_KERAS=1``), while the lab trains with
Keras 3. So QAT always runs in its own worker process, on a tf_keras *twin* of the model:

1. in the Keras 3 process, :func:`twin_spec` describes the Sequential model layer by layer
   (type and the few settings that define it) and takes its weights;
2. in a fresh worker, :func:`train_and_convert` rebuilds that stack with tf_keras, loads the
   weights, wraps it with ``quantize_model`` (fake quantization in every layer), fine-tunes it,
   and converts it to a full-int8 .tflite (int8 input and output).

Only the layer types below can be twinned; any other model is refused with a clear message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from core.progress import Progress, ProgressFn, ignore

# Keras layer type -> the config keys that define it (the rest are defaults or Keras-3-only).
TWIN_LAYERS = {
    "InputLayer": (),
    "Reshape": ("target_shape",),
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "activation", "use_bias"),
    "MaxPooling2D": ("pool_size", "strides", "padding"),
    "AveragePooling2D": ("pool_size", "strides", "padding"),
    "Flatten": (),
    "Dense": ("units", "activation", "use_bias"),
    "Dropout": ("rate",),
    "ReLU": (),
}


class QATUnsupportedError(ValueError):
    """The model cannot be given a tf_keras twin; the message says why."""


@dataclass(frozen=True, eq=False)
class TwinSpec:
    input_shape: tuple
    layers: tuple[tuple[str, dict], ...]  # (layer type, settings)
    weights: tuple[np.ndarray, ...]


def twin_spec(model) -> TwinSpec:
    """Describe a Keras 3 Sequential model so that tf_keras can rebuild it (no TensorFlow needed here
    beyond the model object itself)."""
    if type(model).__name__ != "Sequential":
        raise QATUnsupportedError(
            f"quantization-aware training needs a Sequential model built from {', '.join(sorted(TWIN_LAYERS))}; "
            f"this is a {type(model).__name__} model"
        )
    layers = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in TWIN_LAYERS:
            raise QATUnsupportedError(
                f"quantization-aware training cannot handle the {kind} layer {layer.name!r}; "
                f"supported: {', '.join(sorted(TWIN_LAYERS))}"
            )
        config = layer.get_config()
        layers.append((kind, {key: config[key] for key in TWIN_LAYERS[kind] if key in config}))
    shape = tuple(model.inputs[0].shape[1:])
    return TwinSpec(shape, tuple(layers), tuple(np.asarray(w) for w in model.get_weights()))


def _progress_callback(keras, progress: ProgressFn, epochs: int, steps: int):
    class Report(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if batch % max(1, steps // 25) == 0:
                done = (self.epoch * steps + batch + 1) / (epochs * steps)
                progress(
                    Progress(
                        "qat", done, f"quantization-aware training, epoch {self.epoch + 1}/{epochs}, batch {batch + 1}/{steps}"
                    )
                )

    return Report()


def train_and_convert(
    spec: TwinSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    calibration: np.ndarray,
    epochs: int = 1,
    learning_rate: float = 5e-4,
    batch_size: int = 32,
    seed: int = 0,
    progress: ProgressFn = ignore,
) -> bytes:
    """Run in a fresh process: fine-tune the twin with fake quantization, convert to full int8."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow is imported: tf.keras is tf_keras
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    progress(Progress("qat", 0.0, "building the tf_keras twin"))
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input(shape=spec.input_shape)]
        + [getattr(keras.layers, kind)(**settings) for kind, settings in spec.layers if kind != "InputLayer"]
    )
    model.set_weights(list(spec.weights))
    quantized = tfmot.quantization.keras.quantize_model(model)
    quantized.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    steps = int(np.ceil(len(x_train) / batch_size))
    if epochs:
        quantized.fit(
            x_train,
            y_train,
            epochs=epochs,
            batch_size=batch_size,
            verbose=0,
            callbacks=[_progress_callback(keras, progress, epochs, steps)],
        )
    progress(Progress("qat", 1.0, "converting the fine-tuned model to int8"))
    converter = tf.lite.TFLiteConverter.from_keras_model(quantized)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    samples = calibration.astype(np.float32)

    def representative_dataset():
        for image in samples:
            yield [image[None]]

    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()
