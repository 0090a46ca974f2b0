"""The app's speed and memory, measured in headless chromium on this machine.

    python bench/app_figures.py [--strokes 20] [--renders 3] [--first-render-only]

Prints:
* first render of Home after `streamlit run` (process start → Home drawn in the browser), against
  a bare one-line Streamlit app measured the same way, alternated, ``--renders`` runs each: the
  ratio of the medians (target ≤ 1.15, issue 14);
* stroke → every variant's prediction on screen on the Draw page, with three variants (float32,
  dynamic, int8), median and p90 over the strokes; timed inside the page, from the pointer-up
  event to the moment all three answers show the new invoke count;
* the server's RSS after a full Model → Quantize → Compare → Draw walk, and the peak of the server
  with its worker processes during the walk; and whether TensorFlow was ever mapped into the server.

Targets (issue 3): stroke → answer median ≤ 300 ms (the canvas itself waits 200 ms after a stroke);
first render ≤ 3 s; server ≤ 300 MB RSS; server + workers ≤ 1 GB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser import (  # noqa: E402
    STROKE_TO_SERVER_ANSWERS,
    chromium,
    chromium_page,
    convert_variants,
    draw_stroke,
    go_to,
    serve_app,
    train_model,
    wait_idle,
)


class MemoryWatch(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.server = psutil.Process(pid)
        self.peak_server = self.peak_total = 0
        self.tensorflow_mapped = False
        self.running = True

    def sample(self) -> tuple[int, int]:
        server = self.server.memory_info().rss
        total = server
        for child in self.server.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return server, total

    def run(self) -> None:
        while self.running:
            server, total = self.sample()
            self.peak_server, self.peak_total = max(self.peak_server, server), max(self.peak_total, total)
            if not self.tensorflow_mapped:
                self.tensorflow_mapped = any("tensorflow" in m.path for m in self.server.memory_maps())
            time.sleep(0.2)


BARE_APP = 'import streamlit as st\n\nst.title("Bare")\n'


def first_render(new_page, script: str, heading: str) -> float:
    """Seconds from `streamlit run script` to its page drawn and idle in a new browser session."""
    page = new_page()
    try:
        start = time.perf_counter()
        with serve_app(script=script) as (url, _):
            page.goto(url)
            page.locator("h1", has_text=heading).wait_for()
            wait_idle(page)
            return time.perf_counter() - start
    finally:
        page.context.close()


def first_render_ratio(runs: int) -> None:
    """Home against a bare app, alternated (bare, Home, bare, Home, …) so that the machine's drift
    falls on both alike; one browser, started first, a new context (session) per run."""
    with tempfile.TemporaryDirectory(prefix="qlab-bare-") as folder, chromium() as new_page:
        bare_script = Path(folder) / "bare.py"
        bare_script.write_text(BARE_APP)
        first_render(new_page, str(bare_script), "Bare")  # warms the disk cache for both alike
        bare, home = [], []
        for _ in range(runs):
            bare.append(first_render(new_page, str(bare_script), "Bare"))
            home.append(first_render(new_page, "app.py", "TFLite Quantization Lab"))
    ratio = statistics.median(home) / statistics.median(bare)
    print(
        f"first render, process start → page drawn, {runs} runs each alternated: Home median "
        f"{statistics.median(home):.2f} s ({', '.join(f'{x:.2f}' for x in home)}), a bare one-line app "
        f"{statistics.median(bare):.2f} s ({', '.join(f'{x:.2f}' for x in bare)}): Home/bare {ratio:.2f}× (target ≤ 1.15×)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strokes", type=int, default=20)
    parser.add_argument("--renders", type=int, default=3, help="first-render runs of each app")
    parser.add_argument("--first-render-only", action="store_true")
    args = parser.parse_args()
    first_render_ratio(args.renders)
    if args.first_render_only:
        return
    with chromium_page() as page:  # the browser is ready first: its own start-up is not the app's
        start = time.perf_counter()
        with serve_app() as (url, server):
            server_up = time.perf_counter() - start
            watch = MemoryWatch(server.pid)
            watch.start()
            page.goto(url)
            page.locator("h1", has_text="TFLite Quantization Lab").wait_for()
            wait_idle(page)
            first_render = time.perf_counter() - start

            train_model(page)
            convert_variants(page)  # float32, dynamic, int8
            go_to(page, "Compare")
            page.locator(".st-key-chart_confusion").wait_for(timeout=300_000)
            go_to(page, "Draw")
            page.evaluate(STROKE_TO_SERVER_ANSWERS, 3)
            shapes = [[(0.3, 0.2), (0.7, 0.2), (0.5, 0.8)], [(0.5, 0.15), (0.5, 0.85)], [(0.3, 0.5), (0.7, 0.5)]]
            for index in range(args.strokes):
                draw_stroke(page, shapes[index % len(shapes)])
                page.wait_for_function("() => window.__strokes.length && window.__strokes.at(-1).done !== null", timeout=30_000)
                time.sleep(0.3)
            strokes = page.evaluate("() => window.__strokes")
            wait_idle(page)
            time.sleep(1.0)
            watch.running = False
            watch.join()
            server_rss, total_rss = watch.sample()
    latencies = sorted(s["done"] - s["up"] for s in strokes if s["done"] is not None)
    p90 = latencies[int(0.9 * (len(latencies) - 1))]
    mb = 1024 * 1024
    print(
        f"first render of Home after `streamlit run`: {first_render:.2f} s (target ≤ 3 s): server up (health check "
        f"answers) {server_up:.2f} s, then Home loaded and drawn {first_render - server_up:.2f} s"
    )
    print(
        f"stroke → 3 variants' answers on screen: median {statistics.median(latencies):.0f} ms, p90 {p90:.0f} ms, "
        f"min {latencies[0]:.0f} ms over {len(latencies)} strokes (target median ≤ 300 ms; the canvas waits 200 ms)"
    )
    print(f"server RSS after the walk: {server_rss / mb:.0f} MB (target ≤ 300 MB); peak {watch.peak_server / mb:.0f} MB")
    print(f"server + workers, peak during the walk: {watch.peak_total / mb:.0f} MB (target ≤ 1 GB)")
    print(f"TensorFlow ever mapped into the server process: {'yes' if watch.tensorflow_mapped else 'no'}")


if __name__ == "__main__":
    main()
