"""The whole comparison in one call, as ``python -m core run`` performs it (in process).

load data -> train (or load) a Keras model -> convert the chosen variants -> evaluate them on the
test set -> time them -> a report dict. The app runs the same steps page by page.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from core import limits
from core import variants as registry
from core.compare import ParallelEvaluation, VariantMeasurement, evaluate_variants, layer_errors_by_variant, time_variants
from core.convert import DEFAULT_CALIBRATION, calibration_sample
from core.datasets import load
from core.latency import DEFAULT_RUNS
from core.progress import Progress, ProgressFn, ignore
from core.report import build_report, dataset_info, environment, model_info


@dataclass(frozen=True)
class RunConfig:
    dataset: str = "mnist"
    data_dir: str | None = None
    origin: str | None = None
    model_path: str | None = None
    preset: str = "seed"
    epochs: int = 1
    augment: bool = False  # training images moved a little each epoch (core.images.augment)
    variants: tuple[str, ...] = registry.POST_TRAINING
    threads: int = 1
    calibration: int = DEFAULT_CALIBRATION
    runs: int = DEFAULT_RUNS
    seed: int = 0
    keras_latency: bool = False
    mcu: bool = False  # also measure every variant under TFLite Micro (core.micro)
    layer_sample: int = 100  # test images for the per-layer error of each quantized variant
    extra: dict = field(default_factory=dict)  # method-specific options (e.g. QAT epochs)
    keep_float: tuple[str, ...] = ()  # layers every variant that can (core.selective) also builds in float
    max_drop_pp: float | None = None  # and/or: the fewest float layers within this drop of float32, per variant


@dataclass(frozen=True, eq=False)
class RunResult:
    report: dict
    notice: str
    keras_model_bytes: bytes
    tflites: dict[str, bytes]
    measurements: dict[str, VariantMeasurement]
    searches: dict = field(default_factory=dict)  # base -> core.selective.Automatic, with --max-drop


def run(config: RunConfig, progress: ProgressFn = ignore) -> RunResult:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from core import convert as converter
    from core import models

    timings: dict[str, float] = {}
    start = time.perf_counter()
    progress(Progress("load", 0.0, f"loading {config.data_dir or config.dataset}"))
    loaded = load(config.dataset, config.data_dir, origin=config.origin)
    dataset = loaded.dataset
    timings["load"] = time.perf_counter() - start
    if config.model_path and config.model_path.lower().endswith(".tflite"):
        return _run_tflite(config, loaded, timings, start, progress)

    mark = time.perf_counter()
    import keras
    import tensorflow as tf

    if config.model_path:
        progress(Progress("train", 0.0, f"loading {config.model_path}"))
        with open(config.model_path, "rb") as handle:
            model = models.from_bytes(handle.read(), os.path.basename(config.model_path))
        architecture, epochs = os.path.basename(config.model_path), 0
    else:
        model, _ = models.train_new(
            dataset, models.TrainConfig(config.preset, config.epochs, seed=config.seed, augment=config.augment), progress
        )
        architecture, epochs = config.preset, config.epochs
    keras_accuracy = models.keras_accuracy(model, dataset.x_test, dataset.y_test)
    timings["train"] = time.perf_counter() - mark

    mark = time.perf_counter()
    calibration = calibration_sample(dataset.x_train, config.calibration, config.seed)
    # Each variant is evaluated on the other core while the next one converts.
    evaluation = ParallelEvaluation(dataset, config.threads)
    names = list(config.variants)
    keepers = [name for name in config.variants if registry.can_keep_float(name)]
    if config.keep_float:
        if not keepers:
            raise ValueError(
                "--keep-float needs a variant that can keep layers float: "
                + ", ".join(name for name in registry.VARIANTS if registry.can_keep_float(name))
            )
        names += [registry.keep_float_name(name, config.keep_float) for name in keepers]
    conversions = converter.convert_all(
        model,
        names,
        calibration,
        progress,
        on_converted=lambda result: evaluation.submit(result.variant, result.tflite),
        dataset=dataset,
        **config.extra,
    )
    searches = {}
    if config.max_drop_pp is not None:
        from core import selective

        reference = conversions.get(registry.REFERENCE) or converter.convert(model, registry.REFERENCE)
        float_tflite = reference.tflite
        for name in keepers:
            found = selective.automatic(
                lambda variant: converter.convert(model, variant, calibration, float_tflite=float_tflite).tflite,
                name,
                float_tflite,
                dataset.x_test,
                dataset.y_test,
                config.max_drop_pp,
                progress,
            )
            searches[name] = found
            if found.variant not in conversions:
                conversions[found.variant] = converter.ConversionResult(found.variant, found.tflite, 0.0)
                evaluation.submit(found.variant, found.tflite)
    timings["convert"] = time.perf_counter() - mark

    mark = time.perf_counter()
    tflites = {name: result.tflite for name, result in conversions.items()}
    evaluations = evaluation.results(progress)
    timings["evaluate"] = time.perf_counter() - mark
    mark = time.perf_counter()
    measurements = time_variants(
        tflites,
        evaluations,
        dataset.x_test[:256],
        config.threads,
        runs=config.runs,
        convert_seconds={n: r.seconds for n, r in conversions.items()},
        progress=progress,
    )
    timings["benchmark"] = time.perf_counter() - mark
    mark = time.perf_counter()
    errors = layer_errors_by_variant(tflites, dataset.x_test[: config.layer_sample], progress)
    timings["layer_errors"] = time.perf_counter() - mark

    keras_us = None
    if config.keras_latency:
        mark = time.perf_counter()
        progress(Progress("benchmark", 1.0, "timing Keras model.predict and model(x) on one image"))
        from core.latency import keras_latency

        keras_us = {key: value.percentiles() for key, value in keras_latency(model, dataset.x_test[0]).items()}
        timings["benchmark"] += time.perf_counter() - mark
    micro_results = _micro(config, tflites, dataset, timings, progress)
    timings["total"] = time.perf_counter() - start

    report = build_report(
        dataset=dataset_info(dataset.summary(), bool(loaded.notice)),
        model=model_info(
            architecture, epochs, model.count_params(), keras_accuracy, None if config.model_path else config.augment
        ),
        measurements=measurements,
        timings_s=timings,
        env=environment(config.threads, tensorflow=tf.__version__) | {"keras": keras.__version__},
        keras_latency_us=keras_us,
        layer_errors=errors,
        micro=micro_results,
    )
    if searches:
        report["keep_float_search"] = {name: found.to_dict() for name, found in searches.items()}
    return RunResult(report, loaded.notice, models.to_bytes(model), tflites, measurements, searches)


def _micro(config: RunConfig, tflites: dict, dataset, timings: dict, progress: ProgressFn) -> dict:
    if not config.mcu:
        return {}
    from core.micro import measure_all

    mark = time.perf_counter()
    results = measure_all(
        tflites,
        dataset.x_test,
        dataset.y_test,
        lambda index, count, name: progress(Progress("mcu", index / count, f"TFLite Micro: {name}")),
    )
    progress(Progress("mcu", 1.0, "TFLite Micro: measured"))
    timings["mcu"] = time.perf_counter() - mark
    return results


def _run_tflite(config: RunConfig, loaded, timings: dict, start: float, progress: ProgressFn) -> RunResult:
    """A .tflite a person brought, compared as it is (nothing to convert), once core.runtime.check_model
    has measured it in a bounded child process."""
    from core.runtime import check_model

    dataset, name = loaded.dataset, os.path.basename(config.model_path)
    with open(config.model_path, "rb") as handle:
        data = handle.read(limits.MAX_TFLITE_BYTES + 1)
    if len(data) > limits.MAX_TFLITE_BYTES:
        raise ValueError(limits.refusal(name, "the file's size", len(data), limits.MAX_TFLITE_BYTES, "bytes"))
    progress(Progress("load", 0.5, f"running one image of {name} in a bounded process"))
    check_model(data, name, classes=len(dataset.class_names))
    tflites = {"uploaded": data}
    mark = time.perf_counter()
    evaluations = evaluate_variants(tflites, dataset, config.threads, progress=progress)
    timings["evaluate"] = time.perf_counter() - mark
    mark = time.perf_counter()
    measurements = time_variants(tflites, evaluations, dataset.x_test[:256], config.threads, runs=config.runs, progress=progress)
    timings["benchmark"] = time.perf_counter() - mark
    micro_results = _micro(config, tflites, dataset, timings, progress)
    timings["total"] = time.perf_counter() - start
    report = build_report(
        dataset=dataset_info(dataset.summary(), bool(loaded.notice)),
        model=model_info(name, None, None, None),
        measurements=measurements,
        timings_s=timings,
        env=environment(config.threads),
        micro=micro_results,
    )
    return RunResult(report, loaded.notice, b"", tflites, measurements)
