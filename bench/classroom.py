"""A class on one server: N real chromium sessions against one `streamlit run`, measured.

    python bench/classroom.py --sessions 6              # all four scenarios below
    python bench/classroom.py --sessions 6 --only distinct,defaults

Scenarios (each on a fresh server with the default pool settings unless --workers is given):

* ``distinct``: every session trains (its own epoch count, so nothing is shared), converts
  float32/dynamic/int8 and draws a digit. Prints the peak RSS of the server plus all its worker
  processes, click -> trained model (median, p95) as each browser saw it, the queue waits the pool
  recorded, and whether every session ended with its own model and three answering variants.
* ``defaults``: every session trains and converts with the defaults: the pool's own counters say
  how many trainings and conversions were computed for the whole class.
* ``clicks``: one session clicks Train 8 times in 4 s: jobs computed, and the peak RSS.
* ``warm``: one session trains once (the worker imports TensorFlow), then trains again with other
  seeds: click -> trained model minus the training's own fit time, on the warm worker.

Targets (issue 7): peak ≤ 2.0 GB with 6 sessions; one training and one conversion for a class on
the defaults; ≤ 1 job and ≤ 1.5 GB peak for 8 clicks; warm overhead ≤ 1.5 s median.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.app_figures import MemoryWatch  # noqa: E402
from tests.browser import (  # noqa: E402
    chromium,
    convert_variants,
    draw_stroke,
    go_to,
    read_stats,
    serve_app,
    set_training,
    wait_idle,
)

MB = 1024 * 1024
SEVEN = [(0.3, 0.2), (0.7, 0.2), (0.5, 0.8)]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Server:
    """A fresh server with its job-stats file and a memory watch over it and its workers."""

    def __init__(self, workers: int | None):
        self.folder = tempfile.mkdtemp(prefix="qlab-classroom-")
        self.stats = Path(self.folder) / "jobs.json"
        env = {"QLAB_JOB_STATS": str(self.stats)}
        if workers:
            env["QLAB_WORKERS"] = str(workers)
        self.context = serve_app(keras_home=str(Path(self.folder) / "keras"), env=env)

    def __enter__(self):
        self.url, self.process = self.context.__enter__()
        self.watch = MemoryWatch(self.process.pid)
        self.watch.start()
        return self

    def __exit__(self, *exc):
        self.watch.running = False
        self.watch.join()
        return self.context.__exit__(*exc)

    def counters(self) -> dict:
        return read_stats(self.stats)["counters"]

    def finished(self) -> list[dict]:
        return read_stats(self.stats)["finished"]


def one_student(url: str, index: int, epochs: int | None, results: list, errors: list, start: threading.Barrier) -> None:
    """One person, in a browser of their own: train, convert, draw."""
    try:
        with chromium() as new_page:
            page = new_page()
            page.goto(url)
            wait_idle(page)
            go_to(page, "Model")
            set_training(page, epochs=epochs)
            start.wait(timeout=600)  # everybody clicks Train at about the same moment
            clicked = time.perf_counter()
            page.locator(".st-key-train button").click()
            page.get_by_text("Current model", exact=False).first.wait_for(timeout=900_000)
            trained = time.perf_counter() - clicked
            label = page.locator("h3", has_text="Current model").first.inner_text()
            wait_idle(page)
            convert_variants(page, timeout=900_000)
            go_to(page, "Draw")
            draw_stroke(page, SEVEN)
            for name in ("float32", "dynamic", "int8"):
                page.locator(f".st-key-predictions [data-variant={name}]").wait_for(timeout=60_000)
            answers = page.locator(".st-key-predictions [data-variant]").count()
            results.append({"index": index, "trained_s": trained, "label": label, "answers": answers})
    except Exception as error:  # reported, not raised: the other sessions go on
        errors.append(f"session {index}: {type(error).__name__}: {str(error).splitlines()[0]}")


def run_class(server: Server, sessions: int, distinct: bool) -> tuple[list, list]:
    results: list = []
    errors: list = []
    start = threading.Barrier(sessions)
    threads = [
        threading.Thread(target=one_student, args=(server.url, i, (2 + i) if distinct else None, results, errors, start))
        for i in range(sessions)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def scenario_distinct(sessions: int, workers: int | None) -> None:
    with Server(workers) as server:
        results, errors = run_class(server, sessions, distinct=True)
        time.sleep(1.0)
    times = [r["trained_s"] for r in results]
    finished = server.finished()
    waits = {
        kind: [j["queued_s"] for j in finished if j["kind"] == kind and not j["from_cache"]] for kind in ("train", "convert")
    }
    own = sorted(int(re.search(r"(\d+) epochs", r["label"]).group(1)) for r in results if re.search(r"(\d+) epochs", r["label"]))
    print(f"\n== {sessions} sessions, each its own training (epochs 2..{sessions + 1}), conversion and drawing")
    print(f"pool: {server.counters().get('workers')} worker(s); counters {server.counters()}")
    print(
        f"peak RSS, server + all workers: {server.watch.peak_total / MB:,.0f} MB (target ≤ 2,000 MB); "
        f"server alone peak {server.watch.peak_server / MB:,.0f} MB"
    )
    if times:
        print(
            f"click -> trained model: median {statistics.median(times):.1f} s, p95 {percentile(times, 0.95):.1f} s, "
            f"max {max(times):.1f} s over {len(times)} sessions"
        )
    for kind, values in waits.items():
        if values:
            print(
                f"queue wait before a {kind} started: median {statistics.median(values):.1f} s, max {max(values):.1f} s "
                f"({len(values)} jobs)"
            )
    print(
        f"sessions that ended with their own model and 3 answering variants: "
        f"{sum(r['answers'] == 3 for r in results)}/{sessions}; models by epochs: {own}"
    )
    for error in errors:
        print(f"  FAILED {error}")


def scenario_defaults(sessions: int, workers: int | None) -> None:
    with Server(workers) as server:
        results, errors = run_class(server, sessions, distinct=False)
        time.sleep(1.0)
    counters = server.counters()
    print(f"\n== {sessions} sessions, all on the defaults")
    print(
        f"computed by the pool: {counters.get('computed_train', 0)} training(s), {counters.get('computed_convert', 0)} "
        f"conversion(s) (target 1 and 1); joined {counters.get('joined')}, from the cache {counters.get('cache_hits')}"
    )
    print(
        f"peak RSS, server + all workers: {server.watch.peak_total / MB:,.0f} MB; "
        f"sessions with a model and 3 answers: {sum(r['answers'] == 3 for r in results)}/{sessions}"
    )
    for error in errors:
        print(f"  FAILED {error}")


def scenario_clicks(clicks: int, workers: int | None) -> None:
    with Server(workers) as server, chromium() as new_page:
        page = new_page()
        page.goto(server.url)
        wait_idle(page)
        go_to(page, "Model")
        button = page.locator(".st-key-train button")
        for _ in range(clicks):
            try:
                button.click(force=True, timeout=400)  # as fast as an impatient student: disabled or not
            except Exception:
                pass
            time.sleep(4.0 / clicks)
        page.get_by_text("Current model", exact=False).first.wait_for(timeout=600_000)
        time.sleep(1.0)
        counters = server.counters()
    print(f"\n== one session clicking Train {clicks} times in 4 s")
    print(
        f"trainings computed: {counters.get('computed_train', 0)} (target ≤ 1); submits that joined their own running job: "
        f"{counters.get('submitted', 0) - counters.get('computed_train', 0)}"
    )
    print(f"peak RSS, server + all workers: {server.watch.peak_total / MB:,.0f} MB (target ≤ 1,500 MB)")


def scenario_warm(repeats: int, workers: int | None) -> None:
    overheads = []
    with Server(workers) as server, chromium() as new_page:
        page = new_page()
        page.goto(server.url)
        wait_idle(page)
        go_to(page, "Model")
        for seed in range(repeats + 1):
            set_training(page, epochs=1, seed=100 + seed)
            clicked = time.perf_counter()
            page.locator(".st-key-train button").click()
            page.get_by_text(f"Seed {100 + seed}, trained for this session", exact=False).first.wait_for(timeout=600_000)
            total = time.perf_counter() - clicked
            fit = float(
                re.search(r"Trained in ([\d.]+) s", page.get_by_text("Trained in", exact=False).first.inner_text()).group(1)
            )
            if seed:  # the first one imported TensorFlow into the worker
                overheads.append(total - fit)
            else:
                cold = total - fit
            wait_idle(page)
    print(f"\n== click -> trained model minus the training's own fit time, one session, {repeats} trainings on a warm worker")
    print(
        f"median {statistics.median(overheads):.2f} s, max {max(overheads):.2f} s (target median ≤ 1.5 s); "
        f"the first, cold worker: {cold:.1f} s (TensorFlow's import and the data)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--clicks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="warm trainings in the warm scenario")
    parser.add_argument("--workers", type=int, default=None, help="pool size (default: the app's own default)")
    parser.add_argument("--only", default="distinct,defaults,clicks,warm")
    args = parser.parse_args()
    chosen = args.only.split(",")
    if "distinct" in chosen:
        scenario_distinct(args.sessions, args.workers)
    if "defaults" in chosen:
        scenario_defaults(args.sessions, args.workers)
    if "clicks" in chosen:
        scenario_clicks(args.clicks, args.workers)
    if "warm" in chosen:
        scenario_warm(args.repeats, args.workers)


if __name__ == "__main__":
    main()
