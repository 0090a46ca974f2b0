"""This server against your device, measured in headless chromium on this machine in one run.

    python bench/device.py [--strokes 30]

Walks the app as a person does (Model → Quantize with the default variants plus a LiteRT Quantizer
static int8 → Compare → Draw) and prints:

* per variant, this server's LiteRT p50 (Compare's latency run) beside the browser's LiteRT.js p50
  (the page's own measurement: batches of runs, since performance.now() is clamped to 100 µs
  here), the browser ÷ server ratio and each side's int8 ÷ float32; the agreement of the browser's
  answers with the server's;
* stroke → every device answer on screen (timed inside the page by the component, from the
  pointer-up event to the frame after its cards are written) against stroke → every server answer
  on screen (from the same pointer-up to the moment every server card shows the new invoke count),
  median and p90 over the same strokes.

Target (issue 16): stroke → device answers median ≤ 50 ms. The server path waits for the canvas's
own 200 ms debounce, then a round trip and a rerun.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core import variants as registry  # noqa: E402
from tests.browser import (  # noqa: E402
    DEVICE,
    STROKE_TO_SERVER_ANSWERS,
    chromium_page,
    convert_variants,
    draw_stroke,
    go_to,
    grid_rows,
    measured,
    serve_app,
    strokes_seen,
    train_model,
    wait_idle,
)

EXTRA = ("static_wi8_ai8",)  # a recipe with int8 I/O of its own: its twin gets float32 edges
SHAPES = [[(0.3, 0.2), (0.7, 0.2), (0.5, 0.8)], [(0.5, 0.15), (0.5, 0.85)], [(0.3, 0.5), (0.7, 0.5)]]


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"median {statistics.median(ordered):.0f} ms, p90 {p90:.0f} ms"


def number(row: dict, column: str, form: str) -> str:
    try:
        return form.format(float(row[column]))
    except (KeyError, ValueError):
        return row.get(column) or "–"


def ratio(rows: dict, column: str) -> str:
    try:
        return f"{float(rows['int8'][column]) / float(rows[registry.REFERENCE][column]):.2f}×"
    except (KeyError, ValueError, ZeroDivisionError):
        return "–"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strokes", type=int, default=30)
    args = parser.parse_args()
    with chromium_page() as page, serve_app() as (url, _):
        page.goto(url)
        wait_idle(page)
        train_model(page)
        names = convert_variants(page, untick=(), tick=EXTRA)

        go_to(page, "Compare")
        measured(page)
        page.locator(".st-key-device_table").wait_for(timeout=120_000)
        wait_idle(page)
        # The first device run overlapped the server's own latency run on this machine's 2 cores:
        # measure the device again, alone.
        page.locator(".st-key-device_again button").click()
        page.locator(f"{DEVICE}[data-mode=measure][data-state=running]").wait_for(state="attached", timeout=60_000)
        measured(page)
        page.locator(".st-key-device_table").wait_for(timeout=120_000)
        wait_idle(page)
        rows = {row["variant"]: row for row in grid_rows(page, "device_table")}
        facts = page.get_by_text("Your device:", exact=False).first.inner_text()

        go_to(page, "Draw")
        page.locator(f"{DEVICE}[data-mode=draw][data-state=ready]").wait_for(state="attached", timeout=120_000)
        page.locator(".st-key-predictions").wait_for(timeout=60_000)
        page.evaluate(STROKE_TO_SERVER_ANSWERS, len(names))
        device_ms, server_ms = [], []
        for index in range(args.strokes):
            before = strokes_seen(page)
            draw_stroke(page, SHAPES[index % len(SHAPES)])
            handle = page.locator(f"{DEVICE}[data-mode=draw]").element_handle()
            page.wait_for_function("([root, n]) => Number(root.dataset.strokes || 0) > n", arg=[handle, before], timeout=30_000)
            page.wait_for_function("() => window.__strokes.length && window.__strokes.at(-1).done !== null", timeout=30_000)
            device_ms.append(float(page.locator(f"{DEVICE}[data-mode=draw]").get_attribute("data-stroke-ms")))
            stroke = page.evaluate("() => window.__strokes.at(-1)")
            server_ms.append(stroke["done"] - stroke["up"])
            wait_idle(page)
            time.sleep(0.3)

    print(facts)
    print()
    print("| variant | this server (LiteRT) p50 | your device (LiteRT.js, WASM) p50 | device ÷ server | agreement |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name in names:
        row = rows.get(name, {})
        print(
            f"| {name} | {number(row, 'server µs', '{:.1f} µs')} | {number(row, 'device µs', '{:.1f} µs')} | "
            f"{number(row, 'device ÷ server', '{:.1f}×')} | {row.get('agreement', '–')} |"
        )
    print(f"| **int8 ÷ float32** | **{ratio(rows, 'server µs')}** | **{ratio(rows, 'device µs')}** | | |")
    print()
    print(
        f"stroke → {len(names)} device answers on screen: {spread(device_ms)} over {len(device_ms)} strokes "
        f"(target median ≤ 50 ms; no server round trip)"
    )
    print(
        f"stroke → {len(names)} server answers on screen: {spread(server_ms)} over the same strokes "
        f"(the canvas itself waits 200 ms, then a round trip and a rerun)"
    )


if __name__ == "__main__":
    main()
