"""The README's variant guide table, from a JSON report of `python -m core run`.

    python -m core run --data-dir tests/data/mnist-small --epochs 1 --variants all --mcu --json out/all.json
    python bench/guide_table.py out/all.json

With --mcu in the run, the table adds TensorFlow Lite Micro's verdict: whether it runs the variant,
the arena it records (RAM) and the smallest of the named boards it fits.
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    report = json.load(open(path))
    micro = any("tflm" in row for row in report["variants"])
    extra_head, extra_rule = (" TFLite Micro | arena (RAM) |", " --- | ---: |") if micro else ("", "")
    print(f"| variant | bytes | × float32 | accuracy | agreement | p50 µs | weakest layer (SNR) |{extra_head}")
    print(f"| --- | ---: | ---: | ---: | ---: | ---: | --- |{extra_rule}")
    for row in report["variants"]:
        measured = [layer for layer in row.get("layer_errors", []) if layer["snr_db"] is not None]
        worst = min(measured, key=lambda layer: layer["snr_db"], default=None)
        weakest = f"{worst['op']} {worst['snr_db']:.0f} dB" if worst else "—"
        extra = ""
        if micro:
            tflm = row.get("tflm", {})
            extra = f" runs ({tflm['accuracy']:.4f}) | {tflm['arena_bytes']:,} B |" if tflm.get("runs") else " **refused** | — |"
        print(
            f"| `{row['name']}` | {row['size_bytes']:,} | {row['size_ratio']:.2f} | {row['accuracy']:.4f} | "
            f"{row['agreement']:.4f} | {row['latency_us']['p50']:.1f} | {weakest} |{extra}"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/all.json")
