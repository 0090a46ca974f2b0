"""A class on one server: N real chromium sessions against one `streamlit run`, measured.

    python bench/classroom.py --sessions 6              # all four scenarios below
    python bench/classroom.py --sessions 6 --only distinct,defaults
    python bench/classroom.py --queue auto --workers 2 --only distinct,overhead
    python bench/classroom.py --queue redis://:pw@host:6379/0 --workers 2   # N worker commands here, on that Redis

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
* ``overhead`` (with ``--queue``): ``warm`` on the local pool and then on the queue, in one run:
  the per-job overhead of the queue against the local pool.

With ``--queue`` (a Redis URL, or ``auto`` for a private redis-server on a free loopback port) the
server sends its jobs to the queue, and ``--workers`` N worker commands (``python -m core worker``)
run here, each in its own folder; the memory printed is then the server's alone (it holds no
TensorFlow), and ``distinct`` also prints the throughput per worker.

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
from contextlib import contextmanager
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

    def __init__(self, workers: int | None, queue_url: str = ""):
        self.folder = tempfile.mkdtemp(prefix="qlab-classroom-")
        self.stats = Path(self.folder) / "jobs.json"
        env = {"QLAB_JOB_STATS": str(self.stats)}
        if queue_url:
            env["QLAB_QUEUE_URL"] = queue_url
        elif workers:
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
            try:
                page.goto(url)
                wait_idle(page)
                go_to(page, "Model")
                set_training(page, epochs=epochs)
            finally:
                start.wait(timeout=600)  # everybody clicks Train at about the same moment (a session that failed too)
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
        errors.append(f"session {index}: {type(error).__name__}: {(str(error).splitlines() or [''])[0]}")


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


@contextmanager
def workers_on(url: str, count: int):
    """``count`` worker commands on ``url`` (``auto``: a private redis-server too); yields the URL."""
    from tests import redis_queue as queue

    if url == "auto":
        with queue.queue(workers=count) as (redis_server, started):
            with watching(started):
                yield redis_server.url
        return
    started = [queue.Worker(url, f"bench{index + 1}") for index in range(count)]
    try:
        queue.wait_for_workers(url, count)
        with watching(started):
            yield url
    finally:
        for worker in started:
            worker.stop()


@contextmanager
def watching(workers: list):
    """The peak RSS of each worker command (its Celery main process and its TensorFlow process)."""
    watches = [MemoryWatch(worker.process.pid) for worker in workers]
    for watch in watches:
        watch.start()
    try:
        yield
    finally:
        for watch in watches:
            watch.running = False
            watch.join()
        peaks = ", ".join(f"{watch.peak_total / MB:,.0f} MB" for watch in watches)
        print(f"\npeak RSS of each worker command (Celery's main process + its TensorFlow process): {peaks}")


def scenario_distinct(sessions: int, workers: int | None, queue_url: str = "") -> None:
    with Server(workers, queue_url) as server:
        began = time.perf_counter()
        results, errors = run_class(server, sessions, distinct=True)
        wall = time.perf_counter() - began
        time.sleep(1.0)
    times = [r["trained_s"] for r in results]
    finished = server.finished()
    waits = {
        kind: [j["queued_s"] for j in finished if j["kind"] == kind and not j["from_cache"]] for kind in ("train", "convert")
    }
    own = sorted(int(re.search(r"(\d+) epochs", r["label"]).group(1)) for r in results if re.search(r"(\d+) epochs", r["label"]))
    print(f"\n== {sessions} sessions, each its own training (epochs 2..{sessions + 1}), conversion and drawing")
    where = f"queue {server.counters().get('queue')}" if queue_url else "pool"
    print(f"{where}: {workers or server.counters().get('workers')} worker(s); counters {server.counters()}")
    if queue_url:
        print(
            f"peak RSS of the server alone: {server.watch.peak_server / MB:,.0f} MB "
            f"(TensorFlow in the server: {'yes' if server.watch.tensorflow_mapped else 'no'}; the workers are not its children)"
        )
        computed = [j for j in finished if not j["from_cache"] and j["state"] == "done"]
        busy = sum(j["run_s"] for j in computed)
        print(
            f"throughput: {len(computed)} jobs in {wall:.0f} s of class = {len(computed) / wall * 60 / (workers or 1):.1f} jobs "
            f"per minute per worker; the workers were busy {busy / (wall * (workers or 1)):.0%} of the time"
        )
    else:
        print(
            f"peak RSS, server + all workers: {server.watch.peak_total / MB:,.0f} MB (target ≤ 2,000 MB); "
            f"server alone peak {server.watch.peak_server / MB:,.0f} MB"
        )
    if times:
        print(
            f"click -> trained model: median {statistics.median(times):.1f} s, p95 {percentile(times, 0.95):.1f} s, "
            f"max {max(times):.1f} s over {len(times)} sessions"
        )
    for kind in ("train", "convert"):
        runs = [j["run_s"] for j in finished if j["kind"] == kind and not j["from_cache"] and j["state"] == "done"]
        if runs:
            print(f"a {kind} job's run, as the service saw it: median {statistics.median(runs):.1f} s, max {max(runs):.1f} s")
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


def scenario_warm(repeats: int, workers: int | None, queue_url: str = "") -> tuple[list[float], float]:
    overheads = []
    with Server(workers, queue_url) as server, chromium() as new_page:
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
    where = "the queue" if queue_url else "the local pool"
    print(
        f"\n== click -> trained model minus the training's own fit time, one session, {repeats} trainings on a warm worker of {where}"
    )
    print(
        f"median {statistics.median(overheads):.2f} s, max {max(overheads):.2f} s (target median ≤ 1.5 s); "
        f"the first, cold worker: {cold:.1f} s (TensorFlow's import and the data)"
    )
    return overheads, cold


def scenario_overhead(repeats: int, queue_url: str) -> None:
    """The same warm trainings on the local pool, then on the queue: the queue's cost per job."""
    local, _ = scenario_warm(repeats, 1)
    queued, _ = scenario_warm(repeats, 1, queue_url)
    print(
        f"\n== per-job overhead of the queue against the local pool (warm, minus the fit): local median "
        f"{statistics.median(local):.2f} s, queue median {statistics.median(queued):.2f} s: the queue adds "
        f"{statistics.median(queued) - statistics.median(local):+.2f} s per job"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--clicks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="warm trainings in the warm scenario")
    parser.add_argument("--workers", type=int, default=None, help="pool size, or worker commands with --queue (default 1 there)")
    parser.add_argument("--queue", default="", help="a redis:// URL, or auto (a private redis-server): the queue backend")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    if args.queue:
        chosen = (args.only or "distinct,overhead").split(",")
        count = args.workers or 1
        with workers_on(args.queue, count) as url:
            if "distinct" in chosen:
                scenario_distinct(args.sessions, count, url)
            if "overhead" in chosen:
                scenario_overhead(args.repeats, url)
            if "defaults" in chosen:
                print("(defaults, clicks: run them without --queue; the line, joins and cache are the same code)")
        return
    chosen = (args.only or "distinct,defaults,clicks,warm").split(",")
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
