"""The LiteRT Quantizer's whole ladder of weight recipes, measured: which convert, which LiteRT runs
(with XNNPACK and with its built-in kernels), which TFLite Micro runs, and how each agrees with
float32, on the seed and the wide CNN trained on tests/data/mnist-small. Then the automatic
keep-float search (core.selective) on both, the steps the README shows.

    python bench/recipe_ladder.py [--epochs 1] [--skip-ladder] [--skip-keep-float]

Every recipe of ``dir(litert_quantizer.recipe)`` that quantizes weights only (dynamic_*,
weight_only_*) is tried; the registry (core/variants.py) holds those that run on the seed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

MNIST_SMALL = Path(__file__).resolve().parents[1] / "tests" / "data" / "mnist-small"
# (base, largest drop in pp): int8 within 0 pp, and the 2-bit recipe (its convolution answers NaN) within 5 pp
SEARCHES = {"seed": (("int8", 0.0), ("dynamic_wi2c_afp32", 5.0)), "wide": (("int8", 0.0), ("dynamic_wi2c_afp32", 5.0))}


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:90]


def ladder(float_tflite: bytes, dataset) -> list[tuple]:
    from litert_quantizer import quantizer, recipe

    from core import micro, variants
    from core.runtime import LiteModel

    images, labels = dataset.x_test, dataset.y_test
    reference = LiteModel(float_tflite).predict_logits(images).argmax(-1)
    rows = []
    for name in sorted(n for n in dir(recipe) if n.startswith(("dynamic_", "weight_only_"))):
        try:
            with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = bytes(
                    quantizer.Quantizer(bytearray(float_tflite), getattr(recipe, name)())
                    .quantize(None, enable_progress_report=False)
                    .quantized_model
                )
        except Exception as error:  # the quantizer's own refusal, in its words
            rows.append((name, "no: " + _first_line(error), "", "", "", "", name in variants.VARIANTS))
            continue
        cells = []
        for xnnpack in (True, False):
            try:
                answers = LiteModel(data, xnnpack=xnnpack).predict_logits(images).argmax(-1)
                cells.append(f"{np.mean(answers == reference):.3f}")
            except Exception as error:
                cells.append("no: " + _first_line(error)[:40])
        found = micro.measure(data, images[:100], labels[:100], reference[:100], reference[:100])
        tflm = "runs" if found.runs else "no: " + found.reason.split(";")[0][:60]
        rows.append((name, "yes", f"{len(data) / len(float_tflite):.3f}", *cells, tflm, name in variants.VARIANTS))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--skip-ladder", action="store_true")
    parser.add_argument("--skip-keep-float", action="store_true")
    args = parser.parse_args()
    from core import convert, datasets, models, selective

    dataset = datasets.load_local(MNIST_SMALL)
    calibration = convert.calibration_sample(dataset.x_train, 200)
    for preset in ("seed", "wide"):
        model, _ = models.train_new(dataset, models.TrainConfig(preset, args.epochs, seed=0))
        float_tflite = convert.convert(model, "float32").tflite
        print(
            f"\n== {preset} CNN, {args.epochs} epoch(s) on mnist-small; agreement with float32 on {len(dataset.x_test):,} test images"
        )
        if not args.skip_ladder:
            print(
                "| recipe | converts | × float32 size | LiteRT (XNNPACK) | LiteRT (built-in kernels) | TFLite Micro | in the registry |"
            )
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for row in ladder(float_tflite, dataset):
                print(
                    "| " + " | ".join(str(cell) if not isinstance(cell, bool) else ("yes" if cell else "") for cell in row) + " |"
                )
        if not args.skip_keep_float:
            for base, drop in SEARCHES[preset]:

                def build(name: str, model=model, float_tflite=float_tflite) -> bytes:
                    return convert.convert(model, name, calibration, float_tflite=float_tflite).tflite

                start = time.perf_counter()
                found = selective.automatic(build, base, float_tflite, dataset.x_test, dataset.y_test, drop)
                print()
                print(selective.format_steps(found))
                print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
