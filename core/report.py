"""The comparison as a JSON-ready dict and as a text table (core returns values; callers save)."""

from __future__ import annotations

import csv
import io
import json
import math
import platform

from core.compare import VariantMeasurement, size_ratio


def _number(value: float, digits: int = 6):
    return None if value is None or not math.isfinite(float(value)) else round(float(value), digits)


def json_safe(value):
    """The value with every NaN or infinity replaced by None (JSON has no NaN: strict parsers
    reject it), NumPy scalars made plain, tuples made lists."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # a NumPy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dataset_info(summary: dict, offline_fallback: bool) -> dict:
    """The report's ``dataset`` object, for the CLI and the app alike."""
    return {**summary, "offline_fallback": bool(offline_fallback)}


def model_info(
    architecture: str, epochs: int | None, parameters: int | None, keras_accuracy: float | None, augmented: bool | None = None
) -> dict:
    """The report's ``model`` object, for the CLI and the app alike (None where it is not known,
    e.g. the Keras accuracy of an uploaded .tflite, or how a model brought from elsewhere was trained)."""
    return {
        "architecture": architecture,
        "epochs": epochs,
        "augmented": augmented,
        "parameters": None if parameters is None else int(parameters),
        "keras_accuracy": _number(keras_accuracy),
    }


def variant_row(measurements: dict[str, VariantMeasurement], name: str, extra: dict | None = None) -> dict:
    m = measurements[name]
    row = {
        "name": name,
        "size_bytes": m.size_bytes,
        "size_ratio": _number(size_ratio(measurements, name), 4),
        "accuracy": _number(m.accuracy),
        "agreement": _number(m.agreement),
        "flips": int(len(m.evaluation.flips)),
        "latency_us": m.latency.percentiles(),
        "throughput_ips": _number(m.throughput_ips, 1),
        "convert_s": _number(m.convert_s, 3),
        "per_class_accuracy": [_number(v, 4) for v in m.evaluation.per_class_accuracy],
        "confusion": m.evaluation.confusion.tolist(),
    }
    row.update(extra or {})
    return row


def environment(threads: int, xnnpack: bool = True, tensorflow: str | None = None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "tensorflow": tensorflow or installed("tensorflow"),
        "litert": installed("ai-edge-litert"),
        "threads": threads,
        "xnnpack": xnnpack,
        "machine": platform.machine(),
    }


def build_report(
    dataset: dict,
    model: dict,
    measurements: dict[str, VariantMeasurement],
    timings_s: dict,
    env: dict,
    layer_errors: dict[str, list] | None = None,
    micro: dict | None = None,
    keras_latency_us: dict | None = None,
) -> dict:
    """The one report, for ``core run --json`` and the app's export alike: every variant's row, with its
    per-layer errors and its TensorFlow Lite Micro results (``tflm``) where they were measured."""
    layer_errors, micro = layer_errors or {}, micro or {}
    extras = {
        name: {
            **({"layer_errors": [error.to_dict() for error in layer_errors[name]]} if name in layer_errors else {}),
            **({"tflm": micro[name].to_dict()} if name in micro else {}),
        }
        for name in measurements
    }
    report = {
        "dataset": dataset,
        "model": model,
        "variants": [variant_row(measurements, name, extras[name]) for name in measurements],
        "timings_s": {key: _number(value, 3) for key, value in timings_s.items()},
        "environment": env,
    }
    if keras_latency_us:
        report["keras_latency_us"] = keras_latency_us
    return json_safe(report)


# The report's shape as a JSON Schema (draft 2020-12), for the CLI's --json and the app's export alike:
# required keys and their types (null where a figure is not known). Tests validate both against it
# with the jsonschema library.
_NUMBER = {"type": ["number", "null"]}
_TFLM = {
    "type": "object",
    "required": ["runs", "reason", "arena_bytes", "flash_bytes", "accuracy", "agreement", "differs_from_litert", "images"],
    "properties": {
        "runs": {"type": "boolean"},
        "reason": {"type": "string"},
        "arena_bytes": {"type": ["integer", "null"]},
        "flash_bytes": {"type": "integer"},
        "accuracy": _NUMBER,
        "agreement": _NUMBER,
        "differs_from_litert": {"type": ["integer", "null"]},
        "images": {"type": "integer"},
    },
}
_LAYER_ERROR = {
    "type": "object",
    "required": ["op", "tensor", "rmse", "snr_db"],
    "properties": {"op": {"type": "string"}, "tensor": {"type": "string"}, "rmse": _NUMBER, "snr_db": _NUMBER},
}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["dataset", "model", "variants", "timings_s", "environment"],
    "properties": {
        "dataset": {
            "type": "object",
            "required": ["name", "source", "train_size", "test_size", "offline_fallback"],
            "properties": {
                "name": {"type": "string"},
                "source": {"type": "string"},
                "train_size": {"type": "integer"},
                "test_size": {"type": "integer"},
                "offline_fallback": {"type": "boolean"},
            },
        },
        "model": {
            "type": "object",
            "required": ["architecture", "epochs", "parameters", "keras_accuracy"],
            "properties": {
                "architecture": {"type": "string"},
                "epochs": {"type": ["integer", "null"]},
                "augmented": {"type": ["boolean", "null"]},
                "parameters": {"type": ["integer", "null"]},
                "keras_accuracy": _NUMBER,
            },
        },
        "variants": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": [
                    "name",
                    "size_bytes",
                    "size_ratio",
                    "accuracy",
                    "agreement",
                    "flips",
                    "latency_us",
                    "throughput_ips",
                    "convert_s",
                    "per_class_accuracy",
                    "confusion",
                ],
                "properties": {
                    "name": {"type": "string"},
                    "size_bytes": {"type": "integer"},
                    "size_ratio": _NUMBER,
                    "accuracy": _NUMBER,
                    "agreement": _NUMBER,
                    "flips": {"type": "integer"},
                    "latency_us": {"type": "object", "additionalProperties": _NUMBER},
                    "throughput_ips": _NUMBER,
                    "convert_s": _NUMBER,
                    "per_class_accuracy": {"type": "array", "items": _NUMBER},
                    "confusion": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
                    "layer_errors": {"type": "array", "items": _LAYER_ERROR},
                    "tflm": _TFLM,
                },
            },
        },
        "timings_s": {"type": "object", "additionalProperties": {"type": "number"}},
        "environment": {
            "type": "object",
            "required": ["python", "tensorflow", "litert", "threads", "xnnpack", "machine"],
            "properties": {
                "python": {"type": "string"},
                "tensorflow": {"type": ["string", "null"]},
                "litert": {"type": ["string", "null"]},
                "threads": {"type": "integer"},
                "xnnpack": {"type": "boolean"},
                "machine": {"type": "string"},
            },
        },
    },
}


def schema_errors(report: dict) -> list[str]:
    """What in the report does not follow SCHEMA (an empty list when it all does), one line each."""
    from jsonschema import Draft202012Validator

    return [
        f"{'.'.join(str(part) for part in error.absolute_path) or 'report'}: {error.message}"
        for error in Draft202012Validator(SCHEMA).iter_errors(report)
    ]


def to_json(report: dict) -> str:
    """The report as strict JSON (a NaN left anywhere raises here, not in a reader's parser)."""
    return json.dumps(report, indent=2, allow_nan=False)


def format_table(report: dict) -> str:
    width = max([22] + [len(row["name"]) for row in report["variants"]])  # selective variants have long names
    header = f"{'variant':<{width}} {'bytes':>9} {'×f32':>5} {'accuracy':>8} {'agree':>7} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'img/s':>9}"
    lines = [header, "-" * len(header)]
    for row in report["variants"]:
        lat = row["latency_us"]
        lines.append(
            f"{row['name']:<{width}} {row['size_bytes']:>9,} {row['size_ratio'] or float('nan'):>5.2f} {row['accuracy']:>8.4f} "
            f"{row['agreement']:>7.4f} {lat['p50']:>8.1f} {lat['p90']:>8.1f} {lat['p99']:>8.1f} {row['throughput_ips'] or 0:>9,.0f}"
        )
    return "\n".join(lines)


def format_micro_table(report: dict) -> str:
    """TFLite Micro's verdict per variant, and which boards each fits (core.micro.BOARDS)."""
    from core.micro import BOARDS, MicroResult, fits

    short = [board.name.split(" (")[0].replace("Raspberry Pi ", "").replace("Arduino ", "")[:14] for board in BOARDS]
    header = f"{'variant':<22} {'TFLM':>4} {'arena B':>8} {'flash B':>8} {'accuracy':>8} {'≠LiteRT (XNNPACK)':>17}  " + " ".join(
        f"{s:>14}" for s in short
    )
    lines = [
        "TensorFlow Lite Micro (reference kernels): fits = arena ≤ RAM and model ≤ flash; headroom in KB",
        header,
        "-" * len(header),
    ]
    refusals = []
    for row in report["variants"]:
        tflm = row.get("tflm")
        if tflm is None:
            continue
        result = MicroResult(**tflm)
        if not result.runs:
            lines.append(
                f"{row['name']:<22} {'no':>4} {'–':>8} {result.flash_bytes:>8,} {'–':>8} {'–':>17}  "
                + " ".join(f"{'–':>14}" for _ in BOARDS)
            )
            refusals.append(f"  {row['name']}: {result.reason}")
            continue
        cells = []
        for board in BOARDS:
            fit = fits(result, board)
            cells.append(
                f"{('yes' if fit.fits else 'NO')} {min(fit.ram_headroom_bytes, fit.flash_headroom_bytes) / 1024:+.0f}K".rjust(14)
            )
        lines.append(
            f"{row['name']:<22} {'yes':>4} {result.arena_bytes:>8,} {result.flash_bytes:>8,} {result.accuracy:>8.4f} "
            f"{f'{result.differs_from_litert} ({result.differs_from_litert_xnnpack})':>17}  " + " ".join(cells)
        )
    if refusals:
        lines += ["refused by TFLite Micro:", *refusals]
    return "\n".join(lines)


def to_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "variant",
            "size_bytes",
            "size_ratio",
            "accuracy",
            "agreement",
            "flips",
            "p50_us",
            "p90_us",
            "p99_us",
            "throughput_ips",
            "convert_s",
        ]
    )
    for row in report["variants"]:
        lat = row["latency_us"]
        writer.writerow(
            [
                row["name"],
                row["size_bytes"],
                row["size_ratio"],
                row["accuracy"],
                row["agreement"],
                row["flips"],
                lat["p50"],
                lat["p90"],
                lat["p99"],
                row["throughput_ips"],
                row["convert_s"],
            ]
        )
    return out.getvalue()
