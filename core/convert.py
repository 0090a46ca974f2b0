"""Turning a Keras model into .tflite bytes, one builder per variant method.

All conversion goes through :func:`convert`. It imports TensorFlow; the Streamlit server reaches
it only through the job service's workers (``core.job_service``).
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core import variants as registry
from core.progress import Progress, ProgressFn, ignore

DEFAULT_CALIBRATION = 200
QAT_TIMEOUT_S = 900  # the fine-tuning process (the convert job has its own limit around it)


@dataclass(frozen=True)
class ConversionResult:
    variant: str
    tflite: bytes
    seconds: float

    @property
    def size_bytes(self) -> int:
        return len(self.tflite)


class ConversionError(RuntimeError):
    """A variant could not be built; the message names the variant and the cause."""


Builder = Callable[..., bytes]
BUILDERS: dict[str, Builder] = {}


def builder(method: str):
    def register(function: Builder) -> Builder:
        BUILDERS[method] = function
        return function

    return register


def _model_input(model, images: np.ndarray) -> np.ndarray:
    from core.models import adapt_to_input

    return adapt_to_input(model, images).astype(np.float32)


def _representative_dataset(model, calibration: np.ndarray):
    """The calibration images, one at a time, as the converter (and its debugger) iterate them."""
    samples = _model_input(model, calibration)

    def representative_dataset():
        for image in samples:
            yield [image[None]]

    return representative_dataset


@builder(registry.METHOD_TFLITE_CONVERTER)
def _tflite_converter(
    model,
    variant: registry.Variant,
    calibration: np.ndarray | None,
    progress: ProgressFn = ignore,
    float_tflite: bytes | None = None,
    **_,
) -> bytes:
    import tensorflow as tf

    if variant.keep_float:
        return _int8_with_float_layers(model, variant, calibration, float_tflite)

    settings = variant.converter
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if settings.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if settings.float16_weights:
        converter.target_spec.supported_types = [tf.float16]
    if settings.calibrate:
        converter.representative_dataset = _representative_dataset(model, calibration)
    if settings.builtin_ops == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif settings.builtin_ops == "int16x8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    if settings.io_type == "int8":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    # Keras's export prints "Saved artifact at …" on stdout; the CLI's stdout is for results.
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def _int8_with_float_layers(model, variant: registry.Variant, calibration: np.ndarray, float_tflite: bytes | None) -> bytes:
    """The converter's int8 with some layers denylisted, through TensorFlow's QuantizationDebugger
    (core.selective says why this path)."""
    import tensorflow as tf

    from core import selective

    if float_tflite is None:
        float_tflite = _tflite_converter(model, registry.get(registry.REFERENCE), None)
    kept = selective.resolve(float_tflite, variant.keep_float)
    representative_dataset = _representative_dataset(model, calibration)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    # The kept layers need float kernels beside the int8 ones.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=selective.denylisted_nodes(kept))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative_dataset, debug_options=options
        )
        return debugger.get_nondebug_quantized_model()


@builder(registry.METHOD_LITERT_QUANTIZER)
def _litert_quantizer(
    model,
    variant: registry.Variant,
    calibration: np.ndarray | None,
    progress: ProgressFn = ignore,
    float_tflite: bytes | None = None,
    **_,
) -> bytes:
    """Google's LiteRT Quantizer: a recipe applied to the float32 .tflite (no TensorFlow needed)."""
    from litert_quantizer import quantizer, recipe

    if float_tflite is None:
        float_tflite = _tflite_converter(model, registry.get(registry.REFERENCE), None)
    if variant.keep_float:
        from core import selective

        chosen = selective.recipe_with(variant.recipe, selective.resolve(float_tflite, variant.keep_float))
    else:
        chosen = getattr(recipe, variant.recipe)()
    job = quantizer.Quantizer(bytearray(float_tflite), chosen)
    ranges = None
    if job.need_calibration:
        from core.runtime import LiteModel

        key, name = LiteModel(float_tflite).signature_input()
        shaped = _model_input(model, calibration) if model is not None else calibration.astype(np.float32)
        # Its calibration draws a progress bar and warns about preserved tensors: not for our users.
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ranges = job.calibrate({key: [{name: image[None]} for image in shaped]})
    return bytes(job.quantize(ranges, enable_progress_report=False).quantized_model)


@builder(registry.METHOD_QAT)
def _quantization_aware_training(
    model,
    variant: registry.Variant,
    calibration: np.ndarray | None,
    progress: ProgressFn = ignore,
    dataset=None,
    qat_epochs: int = 1,
    **_,
) -> bytes:
    """Fine-tune a tf_keras twin with fake quantization, in a process of its own (see core.qat): tfmot
    switches its whole process to legacy Keras."""
    from core.isolation import IsolationError, run_isolated
    from core.qat import train_and_convert, twin_spec

    if dataset is None:
        raise ValueError(f"{variant.name} needs the training data (pass dataset=…)")
    spec = twin_spec(model)
    x_train, calibration = _model_input(model, dataset.x_train), _model_input(model, calibration)
    try:
        isolated = run_isolated(
            train_and_convert,
            spec,
            x_train,
            dataset.y_train,
            calibration,
            qat_epochs,
            timeout_s=QAT_TIMEOUT_S,
            what="quantization-aware training",
            imports=(),
            progress=progress,
        )
    except IsolationError as error:
        raise ConversionError(f"{variant.name}: {error}") from error
    return isolated.value


def calibration_sample(images: np.ndarray, count: int = DEFAULT_CALIBRATION, seed: int = 0) -> np.ndarray:
    """A seeded sample of training images to calibrate activation ranges on."""
    if count < 1:
        raise ValueError(f"calibration needs at least 1 image, got {count}")
    count = min(count, len(images))
    return images[np.random.default_rng(seed).choice(len(images), size=count, replace=False)]


def convert(
    model, variant_name: str, calibration: np.ndarray | None = None, progress: ProgressFn = ignore, **context
) -> ConversionResult:
    """Build one variant of the model; returns its .tflite bytes (saving them is the caller's job).

    ``context`` carries what some methods need beyond the model (the float32 .tflite for the
    LiteRT Quantizer, the dataset for quantization-aware training).
    """
    variant = registry.get(variant_name)
    if variant.needs_calibration and (calibration is None or len(calibration) == 0):
        raise ValueError(f"{variant_name} needs calibration images")
    build = BUILDERS.get(variant.method)
    if build is None:
        raise ConversionError(f"{variant_name}: no builder for method {variant.method!r}")
    start = time.perf_counter()
    try:
        data = build(model, variant, calibration, progress=progress, **context)
    except (ValueError, ConversionError):  # a SelectionError is a ValueError: its one line goes through
        raise
    except Exception as error:  # the converter raises a zoo of types; the caller needs one
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(f"{variant_name}: conversion failed ({first})") from error
    return ConversionResult(variant_name, bytes(data), time.perf_counter() - start)


def convert_all(
    model,
    names: list[str],
    calibration: np.ndarray | None = None,
    progress: ProgressFn = ignore,
    on_converted: Callable[[ConversionResult], None] | None = None,
    failures: dict[str, str] | None = None,
    **context,
) -> dict[str, ConversionResult]:
    """Build several variants; ``on_converted`` sees each result as soon as it exists.

    With ``failures`` given, a variant that cannot be built is recorded there (name -> message) and
    the others still are; without it, the first failure raises.
    """
    results: dict[str, ConversionResult] = {}
    # The costliest to run first, so that a caller evaluating each result as it comes overlaps the
    # long evaluations with the other conversions; variants built from the float32 .tflite (the
    # LiteRT Quantizer recipes) after it.
    ordered = sorted(
        names,
        key=lambda name: (
            registry.get(name).method == registry.METHOD_LITERT_QUANTIZER or bool(registry.get(name).keep_float),
            name != registry.REFERENCE and registry.get(name).run_cost <= 1,
            -registry.get(name).run_cost,
        ),
    )
    for index, name in enumerate(ordered):
        progress(Progress("convert", index / len(ordered), f"converting {name}"))
        if registry.REFERENCE in results:
            context.setdefault("float_tflite", results[registry.REFERENCE].tflite)
        try:
            results[name] = convert(model, name, calibration, progress, **context)
        except (ValueError, ConversionError) as error:
            if failures is None or name == registry.REFERENCE:
                raise
            failures[name] = str(error)
            continue
        if on_converted:
            on_converted(results[name])
        progress(Progress("convert", (index + 1) / len(ordered), f"{name}: {results[name].size_bytes:,} bytes"))
    return {name: results[name] for name in names if name in results}
