"""The seed notebook's own procedure (TensorFlow's post-training dynamic range quantization
tutorial), step for step, for timing against ``python -m core run``.

    train 1 epoch -> convert float32 and dynamic -> evaluate both image by image with the
    interpreter -> time one image

Run by bench/core_vs_seed.py in a fresh process; prints one JSON line with its figures.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
START = time.perf_counter()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.data import benchmark_dataset  # noqa: E402


def evaluate_model(interpreter: Interpreter, test_images, test_labels) -> float:
    """The tutorial's evaluate_model: one image at a time."""
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    predictions = []
    for test_image in test_images:
        test_image = np.expand_dims(test_image, axis=0).astype(np.float32)
        interpreter.set_tensor(input_index, test_image)
        interpreter.invoke()
        output = interpreter.tensor(output_index)
        predictions.append(np.argmax(output()[0]))
    return float((np.array(predictions) == test_labels).mean())


def main() -> None:
    (train_images, train_labels), (test_images, test_labels) = benchmark_dataset(sys.argv[1] if len(sys.argv) > 1 else "tiled")
    model = tf.keras.Sequential(
        [
            tf.keras.layers.InputLayer(shape=(28, 28)),
            tf.keras.layers.Reshape(target_shape=(28, 28, 1)),
            tf.keras.layers.Conv2D(filters=12, kernel_size=(3, 3), activation="relu"),
            tf.keras.layers.MaxPooling2D(pool_size=(2, 2)),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(10),
        ]
    )
    model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(train_images, train_labels, epochs=1, validation_data=(test_images, test_labels), verbose=0)

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    tflite_model = converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    tflite_quant_model = converter.convert()

    interpreter = Interpreter(model_content=tflite_model)
    interpreter.allocate_tensors()
    interpreter_quant = Interpreter(model_content=tflite_quant_model)
    interpreter_quant.allocate_tensors()
    float_accuracy = evaluate_model(interpreter, test_images, test_labels)
    quant_accuracy = evaluate_model(interpreter_quant, test_images, test_labels)

    test_image = np.expand_dims(test_images[0], axis=0).astype(np.float32)
    input_index = interpreter_quant.get_input_details()[0]["index"]
    interpreter_quant.set_tensor(input_index, test_image)
    t0 = time.perf_counter()
    interpreter_quant.invoke()
    one_image_us = (time.perf_counter() - t0) * 1e6
    print(
        json.dumps(
            {
                "float_accuracy": float_accuracy,
                "dynamic_accuracy": quant_accuracy,
                "float_bytes": len(tflite_model),
                "dynamic_bytes": len(tflite_quant_model),
                "one_image_us": one_image_us,
                "seconds": time.perf_counter() - START,
            }
        )
    )


if __name__ == "__main__":
    main()
    # Skip TensorFlow's slow teardown, exactly as `python -m core` does, so both are timed alike.
    sys.stdout.flush()
    os._exit(0)
