"""The comparison as a JSON-ready dict and as a text table (core returns values; callers save)."""

from __future__ import annotations

import csv
import io
import math
import platform

from core.compare import VariantMeasurement, size_ratio


def _number(value: float, digits: int = 6):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), digits)


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


def build_report(dataset: dict, model: dict, measurements: dict[str, VariantMeasurement], timings_s: dict,
                 env: dict, extras: dict[str, dict] | None = None, keras_latency_us: dict | None = None) -> dict:  # fmt: skip
    report = {
        "dataset": dataset,
        "model": model,
        "variants": [variant_row(measurements, name, (extras or {}).get(name)) for name in measurements],
        "timings_s": {key: _number(value, 3) for key, value in timings_s.items()},
        "environment": env,
    }
    if keras_latency_us:
        report["keras_latency_us"] = keras_latency_us
    return report


def format_table(report: dict) -> str:
    header = f"{'variant':<22} {'bytes':>9} {'×f32':>5} {'accuracy':>8} {'agree':>7} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'img/s':>9}"
    lines = [header, "-" * len(header)]
    for row in report["variants"]:
        lat = row["latency_us"]
        lines.append(
            f"{row['name']:<22} {row['size_bytes']:>9,} {row['size_ratio'] or float('nan'):>5.2f} {row['accuracy']:>8.4f} "
            f"{row['agreement']:>7.4f} {lat['p50']:>8.1f} {lat['p90']:>8.1f} {lat['p99']:>8.1f} {row['throughput_ips'] or 0:>9,.0f}"
        )
    return "\n".join(lines)


def to_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["variant", "size_bytes", "size_ratio", "accuracy", "agreement", "flips", "p50_us", "p90_us", "p99_us",
                     "throughput_ips", "convert_s"])  # fmt: skip
    for row in report["variants"]:
        lat = row["latency_us"]
        writer.writerow([row["name"], row["size_bytes"], row["size_ratio"], row["accuracy"], row["agreement"], row["flips"],
                         lat["p50"], lat["p90"], lat["p99"], row["throughput_ips"], row["convert_s"]])  # fmt: skip
    return out.getvalue()
