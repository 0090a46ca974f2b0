"""The job service: long TensorFlow work for every session of one server, in a bounded pool.

One interface between callers and the pool: :meth:`JobService.submit` (returns at once),
:meth:`~JobService.status`, :meth:`~JobService.cancel`, :meth:`~JobService.result`. Callers name an
*owner* (the app passes its Streamlit session id); a job belongs to its owners, not to the code
that submitted it, so it outlives script reruns and page switches.

* **Bounded.** A ``pebble.ProcessPool`` of ``workers`` long-lived processes (TensorFlow is imported
  once per worker, not once per job); each worker is replaced after ``max_jobs_per_worker`` jobs,
  and the whole pool is closed after ``idle_seconds`` without work, so its memory goes back.
* **Fair.** Jobs beyond the pool wait in one FIFO queue held here (pebble would queue them in a
  pipe where nobody can see a place in line); :attr:`JobStatus.position` is the place.
* **Shared.** A request identical to one that is done comes from a byte-bounded LRU cache; one
  identical to one that is queued or running joins it. Counters say how often each happened.
* **Contained.** A job that raises, a worker that dies (a crash, the OOM killer) or a job past its
  time limit fails only that job, with one line; the pool replaces the worker. Cancelling the last
  owner's interest in a running job stops its worker, which frees its memory.
* **Clean.** A job whose owners are all gone (``owner_alive`` says so for ``owner_grace_s``) is
  cancelled; :meth:`shutdown` (also at interpreter exit) stops every worker, and a worker whose
  parent dies exits by itself.

Pebble was chosen over loky because it can cancel a *running* task (it stops that worker and
starts another) and has per-task timeouts; loky's reusable executor can neither.

A deployment larger than one machine keeps this interface with Celery on Redis behind it:
:func:`make_service` returns a :class:`core.queue_backend.QueueJobService` when a queue URL is set.
The executor is three hooks (``_reports``, ``_capacity``, ``_start``) and the future ``_start`` returns;
everything else (the line, joins, the cache, owners, limits) is this class, for both.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace

from cachetools import LRUCache

from core import jobs
from core.isolation import clean_spawn_context, how_process_ended
from core.progress import Progress

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


class JobError(RuntimeError):
    """A job that did not give a result; the message is one line for the person who asked."""


@dataclass(frozen=True)
class PoolSettings:
    """Every limit of the service, in one place. :meth:`from_env` reads ``QLAB_*`` variables."""

    workers: int = 1  # one TensorFlow worker is ~0.75-0.95 GB: with the server, 1 keeps it under 2 GB
    max_jobs_per_worker: int = 25
    idle_seconds: float = 600.0
    cache_bytes: int = 64 * 1024 * 1024
    owner_grace_s: float = 30.0  # how long an owner may be disconnected before its jobs are dropped
    keep_finished_s: float = 900.0  # finished job records are forgotten after this
    timeouts_s: dict = field(default_factory=lambda: {"train": 900.0, "convert": 900.0, "load": 120.0, "keep_float": 900.0})
    stats_path: str = ""  # when set, the counters and per-job times are written here as JSON
    queue_url: str = ""  # redis://… or rediss://…: the jobs go to workers on a queue (core.queue_backend)

    @classmethod
    def from_env(cls, environ=os.environ, overrides: dict | None = None) -> PoolSettings:
        settings = cls()
        values = dict(overrides or {})
        for name, variable, cast in (
            ("workers", "QLAB_WORKERS", int),
            ("max_jobs_per_worker", "QLAB_MAX_JOBS_PER_WORKER", int),
            ("idle_seconds", "QLAB_IDLE_SECONDS", float),
            ("owner_grace_s", "QLAB_OWNER_GRACE_S", float),
            ("stats_path", "QLAB_JOB_STATS", str),
            ("queue_url", "QLAB_QUEUE_URL", str),
        ):
            if variable in environ:
                values[name] = cast(environ[variable])
        if "QLAB_CACHE_MB" in environ:
            values["cache_bytes"] = int(float(environ["QLAB_CACHE_MB"]) * 1024 * 1024)
        if "QLAB_TIMEOUT_S" in environ:  # one limit for every kind (tests and benchmarks)
            values["timeouts_s"] = dict.fromkeys(settings.timeouts_s, float(environ["QLAB_TIMEOUT_S"]))
        settings = replace(settings, **values)
        if settings.workers < 1:
            raise ValueError(f"the pool needs at least 1 worker, got {settings.workers}")
        return settings


@dataclass(frozen=True)
class Submission:
    job_id: str
    how: str  # "new", "joined" (an identical job was queued or running), "cached", "already" (this owner's own)


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    kind: str
    description: str
    state: str  # queued | running | done | failed | cancelled
    position: int = 0  # 1 = next to start, when queued
    fraction: float = 0.0
    message: str = ""
    epochs: tuple[dict, ...] = ()  # per-epoch metrics of a training, as they arrive
    error: str = ""
    from_cache: bool = False
    owners: int = 0
    queued_s: float = 0.0
    run_s: float = 0.0
    problem: str = ""  # the executor's trouble, e.g. "the job queue (…) is unreachable"

    @property
    def active(self) -> bool:
        return self.state in (QUEUED, RUNNING)


def result_cache(max_bytes: int) -> LRUCache:
    """Results by request key, least recently used first out, bounded by their bytes."""
    return LRUCache(maxsize=max_bytes, getsizeof=lambda value: int(getattr(value, "nbytes", 1024)))


@dataclass(eq=False)
class _Job:
    job_id: str
    key: str
    request: object
    owners: set
    submitted: float
    state: str = QUEUED
    future: object = None
    started: float = 0.0
    ended: float = 0.0
    last: Progress | None = None
    epochs: list = field(default_factory=list)
    result: object = None
    error: str = ""
    from_cache: bool = False

    @property
    def kind(self) -> str:
        return self.request.kind


class JobService:
    problem = ""  # set by an executor that cannot be reached (core.queue_backend); shown with every status

    def __init__(self, settings: PoolSettings | None = None, owner_alive: Callable[[str], bool] | None = None):
        self.settings = settings or PoolSettings.from_env()
        self.owner_alive = owner_alive
        self.lock = threading.RLock()
        self.jobs: dict[str, _Job] = {}
        self.pending: deque[_Job] = deque()
        self.cache = result_cache(self.settings.cache_bytes)
        self.counters = {
            "submitted": 0,
            "computed": 0,
            "cache_hits": 0,
            "joined": 0,
            "done": 0,
            "failed": 0,
            "cancelled": 0,
            "workers_replaced": 0,
            "pools_started": 0,
        }
        self.ids = itertools.count(1)
        self.context = clean_spawn_context()
        self.progress_queue = self.context.Queue()
        self.pool = None
        self.last_busy = time.monotonic()
        self.absent_since: dict[str, float] = {}
        self.folders: dict[str, str] = {}
        self.root = tempfile.mkdtemp(prefix="qlab-jobs-")
        self.closed = False
        self.log: deque[dict] = deque(maxlen=5000)  # every finished job's kind, state and times
        self.thread = threading.Thread(target=self._loop, name="job-service", daemon=True)
        self.thread.start()
        atexit.register(self.shutdown)

    # -- the interface ---------------------------------------------------------------------------

    def submit(self, request, owner: str) -> Submission:
        """Queue a request for an owner, or join or reuse an identical one; returns at once."""
        key = request.key()
        with self.lock:
            if self.closed:
                raise JobError("the job service has stopped")
            self.counters["submitted"] += 1
            for job in self.jobs.values():  # this owner's own job of the same kind, still going
                if owner in job.owners and job.kind == request.kind and job.state in (QUEUED, RUNNING):
                    return Submission(job.job_id, "already")
            for job in self.jobs.values():  # an identical job, still going: join it
                if job.key == key and job.state in (QUEUED, RUNNING):
                    job.owners.add(owner)
                    self.counters["joined"] += 1
                    return Submission(job.job_id, "joined")
            job = _Job(f"{request.kind}-{next(self.ids)}", key, request, {owner}, time.monotonic())
            self.jobs[job.job_id] = job
            cached = self.cache.get(key)
            if cached is not None:
                job.state, job.result, job.from_cache, job.ended = DONE, cached, True, job.submitted
                self.counters["cache_hits"] += 1
                self._record(job)
                return Submission(job.job_id, "cached")
            self.pending.append(job)
            self.last_busy = time.monotonic()
        return Submission(job.job_id, "new")

    def status(self, job_id: str) -> JobStatus | None:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            now = time.monotonic()
            position = next((index + 1 for index, waiting in enumerate(self.pending) if waiting is job), 0)
            last = job.last
            return JobStatus(
                job.job_id,
                job.kind,
                job.request.describe(),
                job.state,
                position,
                1.0 if job.state == DONE else (last.fraction if last else 0.0),
                last.message if last else "",
                tuple(job.epochs),
                job.error,
                job.from_cache,
                len(job.owners),
                ((job.started or job.ended or now) - job.submitted) if not job.from_cache else 0.0,
                ((job.ended or now) - job.started) if job.started else 0.0,
                self.problem if job.state in (QUEUED, RUNNING) else "",
            )

    def result(self, job_id: str):
        """The result of a finished job; :class:`JobError` with its one line if it failed."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise JobError("this job is no longer known to the server (it restarted, or the job expired)")
            if job.state in (QUEUED, RUNNING):
                raise JobError("the job has not finished yet")
            if job.state != DONE:
                raise JobError(job.error)
            return job.result

    def cancel(self, job_id: str, owner: str) -> None:
        """Withdraw an owner's interest; the job stops when nobody else waits for it."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.state in FINISHED:
                return
            job.owners.discard(owner)
            if not job.owners:
                self._stop(job, "cancelled")

    def release(self, job_id: str, owner: str) -> None:
        """The owner has taken the result: the record may go (the cache keeps the result)."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is not None and job.state in FINISHED:
                job.owners.discard(owner)
                if not job.owners:
                    del self.jobs[job_id]

    def forget_owner(self, owner: str) -> None:
        """The owner is gone (its session ended): drop its interest in every job, and its files."""
        with self.lock:
            for job in list(self.jobs.values()):
                if owner in job.owners:
                    job.owners.discard(owner)
                    if not job.owners:
                        if job.state in FINISHED:
                            del self.jobs[job.job_id]
                        else:
                            self._stop(job, "cancelled: the session that asked for it has ended")
            folder = self.folders.pop(owner, None)
            self.absent_since.pop(owner, None)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)

    def owner_folder(self, owner: str) -> str:
        """A folder for an owner's files (an uploaded dataset saved once for the workers to read);
        removed when the owner is forgotten, and with everything else at shutdown."""
        with self.lock:
            if owner not in self.folders:
                self.folders[owner] = tempfile.mkdtemp(prefix="session-", dir=self.root)
            return self.folders[owner]

    def snapshot(self) -> dict:
        """The counters and the pool's state, for a status line or a benchmark."""
        with self.lock:
            running = sum(job.state == RUNNING for job in self.jobs.values())
            return {
                **self.counters,
                "queued": len(self.pending),
                "running": running,
                "pool_open": self.pool is not None,
                "workers": self.settings.workers,
                "cache_entries": len(self.cache),
                "cache_bytes": self.cache.currsize,
            }

    def worker_pids(self) -> list[int]:
        with self.lock:
            pool = self.pool
        if pool is None:
            return []
        try:
            return [pid for pid in list(pool._pool_manager.worker_manager.workers) if pid]
        except AttributeError:  # pebble's internals moved: the pids are only for tests and benchmarks
            return []

    def shutdown(self) -> None:
        """Cancel everything and stop every worker. Idempotent."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for job in list(self.jobs.values()):
                if job.state in (QUEUED, RUNNING):
                    self._stop(job, "cancelled: the server is stopping")
            pool, self.pool = self.pool, None
        if pool is not None:
            self._close_pool(pool)
        self.thread.join(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the service's own thread ----------------------------------------------------------------

    def _loop(self) -> None:
        last_check = 0.0
        while not self.closed:
            try:
                reports = self._reports()
            except (EOFError, OSError):  # the queue closed under us at shutdown
                return
            for job_id, report in reports:
                self._progress(job_id, report)
            try:
                self._collect()
                self._dispatch()
                if time.monotonic() - last_check > 2.0:
                    last_check = time.monotonic()
                    self._check_owners()
                    self._expire()
                    self._close_when_idle()
            except Exception as error:  # the service thread must not die: log and go on
                print(f"job service: {type(error).__name__}: {error}", flush=True)

    # -- the executor: a local pebble pool here, Celery in core.queue_backend ------------------------

    def _reports(self) -> list:
        """Progress reports that have come, waiting up to 0.1 s for the first."""
        reports: list = []
        try:
            reports = [self.progress_queue.get(timeout=0.1)]
            while len(reports) < 1000:  # drain what has come, then look at the pool
                reports.append(self.progress_queue.get_nowait())
        except queue.Empty:
            pass
        return reports

    def _capacity(self) -> int:
        """How many jobs may run at once."""
        return self.settings.workers

    def _start(self, job: _Job):
        """Hand a job to the executor; returns its future (``done()``, ``result()``, ``cancel()``)."""
        return self._ensure_pool().schedule(
            jobs.execute, args=(job.job_id, job.request), timeout=self.settings.timeouts_s.get(job.kind)
        )

    def _progress(self, job_id: str, report: Progress) -> None:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.state != RUNNING:
                return
            job.last = report
            if report.metrics.get("epoch_end"):
                job.epochs.append({key: report.metrics[key] for key in ("epoch", "loss", "accuracy") if key in report.metrics})

    def _ensure_pool(self):
        if self.pool is not None and not self.pool.active:
            self.counters["workers_replaced"] += self.settings.workers
            self._close_pool(self.pool)
            self.pool = None
        if self.pool is None:
            from pebble import ProcessPool

            self.pool = ProcessPool(
                max_workers=self.settings.workers,
                max_tasks=self.settings.max_jobs_per_worker,
                initializer=jobs.worker_init,
                initargs=(self.progress_queue, os.getpid()),
                context=self.context,
            )
            self.counters["pools_started"] += 1
        return self.pool

    def _dispatch(self) -> None:
        with self.lock:
            running = sum(job.state == RUNNING for job in self.jobs.values())
            while self.pending and running < self._capacity() and not self.closed:
                job = self.pending.popleft()
                try:
                    job.future = self._start(job)
                except Exception as error:  # refused before it ran (a file over a bound, the queue away)
                    job.state, job.error, job.ended = FAILED, _one_line(job, error), time.monotonic()
                    self.counters["failed"] += 1
                    self._record(job)
                    continue
                job.state, job.started = RUNNING, time.monotonic()
                job.last = Progress(job.kind, 0.0, "starting")
                self.counters["computed"] += 1
                self.counters[f"computed_{job.kind}"] = self.counters.get(f"computed_{job.kind}", 0) + 1
                running += 1
                self.last_busy = time.monotonic()

    def _collect(self) -> None:
        with self.lock:
            finished = [
                job for job in self.jobs.values() if job.state == RUNNING and job.future is not None and job.future.done()
            ]
        for job in finished:
            self._finish(job)

    def _finish(self, job: _Job) -> None:
        from pebble import ProcessExpired

        future = job.future
        try:
            result, error = future.result(), ""
        except CancelledError:
            result, error = None, "cancelled"
        except FutureTimeout:
            limit = self.settings.timeouts_s.get(job.kind, 0)
            result, error = None, f"{job.request.describe()} took longer than its limit of {limit:.0f} s and was stopped"
            with self.lock:
                self.counters["workers_replaced"] += 1
        except JobError as failure:  # the executor's own one line (the queue backend's)
            result, error = None, str(failure)
        except ProcessExpired as expired:
            result, error = None, _expired_message(job, expired.exitcode)
            with self.lock:
                self.counters["workers_replaced"] += 1
        except Exception as failure:  # the job's own exception, raised in the worker
            result, error = None, _one_line(job, failure)
        with self.lock:
            if job.state != RUNNING:  # cancelled meanwhile
                return
            job.ended = time.monotonic()
            self.last_busy = job.ended
            if error:
                job.state, job.error = FAILED, error
                self.counters["failed"] += 1
            else:
                job.state, job.result = DONE, result
                self.counters["done"] += 1
                if getattr(job.request, "cacheable", True) and self.cache.getsizeof(result) <= self.cache.maxsize:
                    self.cache[job.key] = result
            self._record(job)
            if not job.owners:  # nobody waits for it any more: finished and dropped
                del self.jobs[job.job_id]
        self._write_stats()

    def _stop(self, job: _Job, why: str) -> None:
        """Cancel a queued or running job (caller holds the lock)."""
        if job in self.pending:
            self.pending.remove(job)
        if job.future is not None and not job.future.done():
            job.future.cancel()  # pebble stops the worker running it and starts a fresh one
            self.counters["workers_replaced"] += 1
        job.state, job.error, job.ended = CANCELLED, why[0].upper() + why[1:] + ".", time.monotonic()
        self.counters["cancelled"] += 1
        self._record(job)
        if not job.owners:
            self.jobs.pop(job.job_id, None)
        threading.Thread(target=self._write_stats, daemon=True).start()

    def _check_owners(self) -> None:
        if self.owner_alive is None:
            return
        with self.lock:
            owners = {owner for job in self.jobs.values() for owner in job.owners} | set(self.folders)
        now = time.monotonic()
        for owner in owners:
            try:
                alive = self.owner_alive(owner)
            except Exception:
                alive = True
            if alive:
                self.absent_since.pop(owner, None)
            elif now - self.absent_since.setdefault(owner, now) >= self.settings.owner_grace_s:
                self.forget_owner(owner)

    def _expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            for job in list(self.jobs.values()):
                if job.state in FINISHED and now - job.ended > self.settings.keep_finished_s:
                    del self.jobs[job.job_id]

    def _close_when_idle(self) -> None:
        with self.lock:
            busy = self.pending or any(job.state == RUNNING for job in self.jobs.values())
            if busy or self.pool is None or time.monotonic() - self.last_busy < self.settings.idle_seconds:
                return
            pool, self.pool = self.pool, None
        self._close_pool(pool)

    @staticmethod
    def _close_pool(pool) -> None:
        pool.stop()
        try:
            pool.join(timeout=10)
        except Exception:
            pass

    def _record(self, job: _Job) -> None:
        """Log a finished job (caller holds the lock)."""
        self.log.append(
            {
                "job_id": job.job_id,
                "kind": job.kind,
                "state": job.state,
                "from_cache": job.from_cache,
                "queued_s": round((job.started - job.submitted) if job.started else 0.0, 3),
                "run_s": round((job.ended - job.started) if job.started else 0.0, 3),
            }
        )

    def _write_stats(self) -> None:
        if not self.settings.stats_path:
            return
        data = {"counters": self.snapshot()}
        with self.lock:
            data["finished"] = list(self.log)
        partial = f"{self.settings.stats_path}.{threading.get_ident()}.part"
        with open(partial, "w") as handle:
            json.dump(data, handle)
        os.replace(partial, self.settings.stats_path)


def make_service(settings: PoolSettings | None = None, owner_alive: Callable[[str], bool] | None = None) -> JobService:
    """The local pool, or the queue backend when ``settings.queue_url`` is set."""
    settings = settings or PoolSettings.from_env()
    if settings.queue_url:
        try:
            import celery  # noqa: F401
            import redis  # noqa: F401

            from core.queue_backend import QueueJobService
        except ImportError as error:  # the default install has no queue packages
            raise JobError(
                f"a job queue is set (QLAB_QUEUE_URL), but its packages are not installed ({error.name}): "
                "pip install -r requirements-queue.txt"
            ) from None
        return QueueJobService(settings, owner_alive)
    return JobService(settings, owner_alive)


def _one_line(job: _Job, error: BaseException) -> str:
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return first if ":" in first.split(" ")[0] else f"{job.request.describe()}: {first}"


def _expired_message(job: _Job, exitcode: int | None) -> str:
    return f"{job.request.describe()} failed: {how_process_ended(exitcode, 'worker process')}; a fresh worker took its place"
