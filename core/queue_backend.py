"""The job service on a distributed queue: Celery on Redis, workers on any machine that reaches it.

Chosen by ``QLAB_QUEUE_URL`` (or ``queue_url`` under ``[jobs]`` in .streamlit/secrets.toml), e.g.
``redis://:password@host:6379/0`` or ``rediss://…`` for TLS. Without it, nothing here is imported
and the local pool (:mod:`core.job_service`) runs.

:class:`QueueJobService` *is* a :class:`~core.job_service.JobService`: the server keeps the same
FIFO line with places, joins identical requests, serves finished ones from the same byte-bounded
cache, drops jobs whose sessions are gone. Only the executor differs: instead of a local pebble
pool, a job is handed to Celery when a worker slot is free (workers announce their slots with a
heartbeat key), and its progress, end and result come back through Redis.

Why Celery (5.7) and not rq: Celery's prefork pool forks its worker processes once, *before*
TensorFlow is imported; each imports TensorFlow on its first job and keeps it for
``max_tasks_per_child`` jobs. rq forks a fresh work horse per job, from a parent that would have to
hold TensorFlow already (forking after TensorFlow has started its threads) or re-import it (~10 s)
every job. Celery also stops a *running* job and frees its process (``revoke(terminate=True)``;
the pool starts a fresh one), has per-task hard time limits, and records a killed process as
``WorkerLostError``: the job fails with one line and the next job runs (no retry).

What crosses Redis is typed JSON (:mod:`core.records`): Celery is configured for JSON only, and
the records name only our own frozen dataclasses. Every record (a job, its progress, its result)
is signed with an HMAC under ``QLAB_QUEUE_SECRET``, which the server and the workers share and
Redis never sees (:func:`sign`, :func:`verify`). Byte strings (models, uploads, results) are blobs
keyed by their digest, bounded in size, with a time to live.

Keys (prefix ``qlab:``): ``blob:<digest>`` bytes; ``blob-owners:<digest>`` the sessions using it;
``job:<id>`` the record of a dispatched job; ``progress:<id>`` its last progress; ``epochs:<id>``
its epochs; ``result:<id>`` its result record; ``cancelled:<id>``; ``worker:<name>`` a worker's
heartbeat. Celery's own keys: the ``qlab`` list (the line) and ``celery-task-meta-<id>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from urllib.parse import urlsplit, urlunsplit

from core import jobs, records
from core.isolation import how_process_ended
from core.job_service import JobError, JobService, PoolSettings
from core.progress import Progress

QUEUE = "qlab"
PREFIX = "qlab:"
MB = 1024 * 1024


def _secret() -> bytes:
    return os.environ.get("QLAB_QUEUE_SECRET", "").encode()


def sign(text: str) -> str:
    """A record as it goes into Redis: with an HMAC of it under QLAB_QUEUE_SECRET, a secret the
    server and the workers share and Redis never sees (``v0`` and no MAC when none is set)."""
    key = _secret()
    if not key:
        return "v0::" + text
    return "v1:" + hmac.new(key, text.encode(), hashlib.sha256).hexdigest() + ":" + text


def verify(signed: str | bytes, what: str) -> str:
    """The record, if it was signed with our secret; RecordError (one line) if not."""
    if isinstance(signed, bytes):
        signed = signed.decode("utf-8", errors="replace")
    version, _, rest = signed.partition(":")
    mac, _, text = rest.partition(":")
    key = _secret()
    if version not in ("v0", "v1"):
        raise records.RecordError(f"{what} is not a record of this lab's queue")
    if key:
        if version != "v1":
            raise records.RecordError(f"{what} is not signed (the other side has no QLAB_QUEUE_SECRET)")
        if not hmac.compare_digest(mac, hmac.new(key, text.encode(), hashlib.sha256).hexdigest()):
            raise records.RecordError(f"{what} is not signed with this class's QLAB_QUEUE_SECRET: refused")
    return text


@dataclass(frozen=True)
class QueueLimits:
    blob_ttl_s: int = 3600  # an upload or a model in the store, refreshed by every job that uses it
    result_ttl_s: int = 900  # a result waits this long for the server to fetch it
    max_blob_bytes: int = 64 * MB  # one file in the store: the app's upload limit
    max_result_bytes: int = 64 * MB  # one job's result, with its files; a larger one is refused, not stored
    heartbeat_s: float = 3.0
    vanished_s: float = 15.0  # a worker silent this long is gone: its running job fails
    lost_grace_s: float = 10.0  # after the queue comes back, how long a job may have no trace before it is lost


LIMITS = QueueLimits()


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username + ':' if parts.username else ':'}***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_url(url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss"):
        raise ValueError(f"the job queue must be a redis:// or rediss:// URL, got {safe_url(url)!r}")
    return url


def redis_client(url: str):
    import redis

    return redis.Redis.from_url(check_url(url), socket_timeout=5, socket_connect_timeout=3, health_check_interval=15)


def celery_app(url: str):
    """The Celery app of the lab's queue: JSON only, one job per worker process at a time."""
    from celery import Celery

    check_url(url)
    app = Celery("qlab", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_default_queue=QUEUE,
        task_acks_late=True,  # a worker holds one message at a time, so the line's places are true
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_reject_on_worker_lost=False,  # a killed process fails its job (one line); no redelivery
        result_expires=LIMITS.result_ttl_s,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a restarting Redis
        broker_transport_options={"visibility_timeout": 4 * 3600},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_proc_alive_timeout=120,  # a fresh worker process imports TensorFlow before its first job
    )
    if url.startswith("rediss://") and "ssl_cert_reqs" not in url:
        import ssl

        app.conf.broker_use_ssl = app.conf.redis_backend_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    app.task(name="qlab.run", bind=True)(_task)
    return app


# -- the store ----------------------------------------------------------------------------------


def store_blobs(client, blobs: dict[str, bytes], ttl_s: int, owners: tuple[str, ...] = ()) -> None:
    """Put blobs in the store by digest, each sent only when the store does not hold it yet (a
    model converted again, or an upload trained on again, is not sent again); every one's time to
    live starts again."""
    for data in blobs.values():
        if len(data) > LIMITS.max_blob_bytes:
            raise JobError(
                f"a file of {len(data) / MB:.1f} MB is over the queue's bound of {LIMITS.max_blob_bytes / MB:.0f} MB for one file"
            )
    digests = list(blobs)
    held = client.pipeline()
    for digest in digests:
        held.expire(PREFIX + "blob:" + digest, ttl_s)  # 1 where it is held (and now lives on), 0 where not
    pipe = client.pipeline()
    for digest, present in zip(digests, held.execute() if digests else [], strict=True):
        if not present:
            pipe.set(PREFIX + "blob:" + digest, blobs[digest], ex=ttl_s)
        for owner in owners:
            pipe.sadd(PREFIX + "blob-owners:" + digest, owner)
            pipe.expire(PREFIX + "blob-owners:" + digest, ttl_s)
    pipe.execute()


def fetch_blob(client, digest: str) -> bytes | None:
    return client.get(PREFIX + "blob:" + digest)


BLOB_PATH = "qlab-blob:"  # a DatasetRef path that names a file in the store, not on a disk


def to_queue(request, client, owners: tuple[str, ...], ttl_s: int):
    """The request as it travels: an uploaded dataset's file goes to the store by digest."""
    ref = getattr(request, "dataset", None)
    if ref is None or not ref.path or ref.path.startswith(BLOB_PATH):
        return request
    size = os.path.getsize(ref.path)
    if size > LIMITS.max_blob_bytes:
        raise JobError(
            f"the dataset {ref.name} is {size / MB:.1f} MB as saved, over the queue's bound of {LIMITS.max_blob_bytes / MB:.0f} MB"
        )
    with open(ref.path, "rb") as handle:
        data = handle.read()
    digest = jobs.digest_bytes(data)
    store_blobs(client, {digest: data}, ttl_s, owners)
    return replace(request, dataset=replace(ref, path=BLOB_PATH + digest))


def from_queue(request, client, folder: str):
    """On a worker: a dataset in the store is written once to this worker's own folder."""
    ref = getattr(request, "dataset", None)
    if ref is None or not ref.path.startswith(BLOB_PATH):
        return request
    digest = ref.path.removeprefix(BLOB_PATH)
    if not re.fullmatch(r"[0-9a-f]{32}", digest):
        raise records.RecordError("not a dataset in the queue's store")
    path = os.path.join(folder, f"dataset-{digest}.npz")
    if not os.path.exists(path):
        data = fetch_blob(client, digest)
        if data is None:
            raise JobError(f"the dataset {ref.name} has expired from the queue's store; choose it again")
        if jobs.digest_bytes(data) != digest:
            raise JobError(f"the dataset {ref.name} in the queue's store does not match its digest")
        partial = f"{path}.{os.getpid()}.part"
        with open(partial, "wb") as handle:
            handle.write(data)
        os.replace(partial, path)
    return replace(request, dataset=replace(ref, path=path))


# -- inside a worker process ---------------------------------------------------------------------

_worker: dict = {}  # this worker process's Redis client and folder, made on its first job


class _RedisProgress:
    """What jobs.execute puts progress into (the local pool's is a multiprocessing queue)."""

    def __init__(self, client, worker_name: str):
        self.client, self.worker_name, self.last = client, worker_name, 0.0

    def put(self, item) -> None:
        job_id, report = item
        epoch_end = bool(report.metrics.get("epoch_end"))
        now = time.monotonic()
        if not epoch_end and now - self.last < 0.2 and report.fraction < 1.0:
            return  # at most five a second; every epoch's end is sent
        self.last = now
        text = records.encode(report, {})
        record = sign(json.dumps({"worker": self.worker_name, "pid": os.getpid(), "report": text}))
        from redis.exceptions import RedisError

        pipe = self.client.pipeline()
        pipe.set(PREFIX + "progress:" + job_id, record, ex=LIMITS.result_ttl_s)
        if epoch_end:
            pipe.rpush(PREFIX + "epochs:" + job_id, text)
            pipe.expire(PREFIX + "epochs:" + job_id, LIMITS.result_ttl_s)
        try:
            pipe.execute()
        except RedisError:  # the queue is away for a moment: the job goes on, its progress is sent when it is back
            self.last = 0.0


def _task(task, job_id: str, payload: str, max_result_bytes: int = LIMITS.max_result_bytes) -> dict:
    """Celery's task: run one job in this worker process; the answer is a small JSON dict."""
    if "client" not in _worker:
        _worker["client"] = redis_client(task.app.conf.broker_url)
        _worker["folder"] = tempfile.mkdtemp(prefix="qlab-worker-")
        jobs.worker_init(_RedisProgress(_worker["client"], task.request.hostname or socket.gethostname()), os.getppid())
    client = _worker["client"]
    if client.exists(PREFIX + "cancelled:" + job_id):
        return {"error": "cancelled"}
    jobs._progress_queue.put((job_id, Progress("start", 0.0, "starting", {"epoch_end": False})))
    try:
        request = records.decode(verify(payload, "the job"), lambda digest: fetch_blob(client, digest))
        if not hasattr(request, "kind") or not hasattr(request, "run"):
            raise records.RecordError("not a job request")
        request = from_queue(request, client, _worker["folder"])
        outcome = jobs.execute(job_id, request)
        blobs: dict[str, bytes] = {}
        text = records.encode(outcome, blobs)
    except Exception as error:
        lines = str(error).strip().splitlines()
        return {"error": lines[0] if lines else type(error).__name__}
    size = len(text) + sum(len(data) for data in blobs.values())
    if size > max_result_bytes:
        return {
            "error": f"its result is {size / MB:.1f} MB, over the queue's bound of "
            f"{max_result_bytes / MB:.1f} MB for one result, and was not stored",
        }
    store_blobs(client, blobs, LIMITS.result_ttl_s)
    client.set(PREFIX + "result:" + job_id, sign(text), ex=LIMITS.result_ttl_s)
    return {"result": job_id, "bytes": size}


# -- the worker command --------------------------------------------------------------------------


def run_worker(url: str, concurrency: int = 1, name: str = "", max_jobs: int = 25, loglevel: str = "WARNING") -> None:
    """``python -m core worker --queue URL``: serve the queue until stopped (Ctrl-C or SIGTERM)."""
    from celery import signals

    app = celery_app(url)
    client = redis_client(url)
    client.ping()  # unreachable or a wrong password: say so now, in one line
    hostname = f"{name or 'qlab'}-{os.getpid()}@{socket.gethostname()}"
    stop = threading.Event()

    def beat() -> None:
        record = json.dumps({"slots": concurrency, "host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
        while not stop.is_set():
            try:
                client.set(PREFIX + "worker:" + hostname, record, ex=int(LIMITS.vanished_s))
            except Exception as error:  # Redis away: Celery waits it out, and so does the heartbeat
                print(f"worker {hostname}: the queue is unreachable ({type(error).__name__})", flush=True)
            stop.wait(LIMITS.heartbeat_s)

    @signals.worker_process_init.connect(weak=False)
    def warm(**_):  # in each forked worker process, before its first job: TensorFlow once, for its whole life
        import tensorflow  # noqa: F401

    @signals.worker_ready.connect(weak=False)
    def started(**_):
        threading.Thread(target=beat, name="qlab-heartbeat", daemon=True).start()
        print(f"worker {hostname}: serving {safe_url(url)} with {concurrency} process(es)", flush=True)

    @signals.worker_shutdown.connect(weak=False)
    def stopping(**_):
        stop.set()
        try:
            client.delete(PREFIX + "worker:" + hostname)
        except Exception:
            pass

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    worker = app.Worker(
        hostname=hostname,
        concurrency=concurrency,
        pool="prefork",
        queues=[QUEUE],
        max_tasks_per_child=max_jobs,
        loglevel=loglevel,
        without_gossip=True,
        without_mingle=True,
        optimization="fair",
    )
    worker.start()


# -- the server's side ---------------------------------------------------------------------------


class _QueuedJob:
    """What the service keeps as a job's ``future``: its Celery id and what Redis last said."""

    def __init__(self, service: QueueJobService, task_id: str):
        self.service, self.task_id = service, task_id
        self.finished, self.outcome, self.error = False, None, ""
        self.worker, self.pid, self.no_trace_since = "", 0, 0.0

    def done(self) -> bool:
        return self.finished

    def result(self):
        if self.error:
            raise JobError(self.error)
        return self.outcome

    def cancel(self) -> None:
        self.service._cancel_task(self.task_id)


class QueueJobService(JobService):
    """The job service with Celery on Redis as its executor (see the module's doc)."""

    def __init__(self, settings: PoolSettings, owner_alive=None, limits: QueueLimits = LIMITS):
        self.url = check_url(settings.queue_url)
        self.limits = limits
        self.client = redis_client(self.url)
        self.app = celery_app(self.url)
        self.unreachable = f"the job queue ({safe_url(self.url)}) is unreachable; jobs resume when it is back"
        self.problem = ""
        self.slots = 0
        self.owner_blobs: dict[str, set[str]] = {}
        super().__init__(settings, owner_alive)

    # the executor's hooks (see JobService)

    def _reports(self) -> list:
        time.sleep(0.25)
        return []  # progress is read with each job's state in _collect

    def _capacity(self) -> int:
        return self.slots

    def _start(self, job):
        task_id = f"{job.job_id}-{uuid.uuid4().hex[:12]}"
        owners = tuple(job.owners)
        request = to_queue(job.request, self.client, owners, self.limits.blob_ttl_s)
        blobs: dict[str, bytes] = {}
        payload = records.encode(request, blobs)
        store_blobs(self.client, blobs, self.limits.blob_ttl_s, owners)
        with self.lock:
            for owner in owners:
                self.owner_blobs.setdefault(owner, set()).update(blobs)
                if request is not job.request:
                    self.owner_blobs[owner].add(request.dataset.path.removeprefix(BLOB_PATH))
        limit = self.settings.timeouts_s.get(job.kind)
        self.client.set(PREFIX + "job:" + task_id, json.dumps({"kind": job.kind}), ex=int((limit or 3600) + 600))
        self.app.send_task(
            "qlab.run",
            args=(task_id, sign(payload)),
            kwargs={"max_result_bytes": self.limits.max_result_bytes},
            task_id=task_id,
            time_limit=limit,
            queue=QUEUE,
        )
        return _QueuedJob(self, task_id)

    def _cancel_task(self, task_id: str) -> None:
        try:
            self.client.set(PREFIX + "cancelled:" + task_id, "1", ex=LIMITS.blob_ttl_s)
            self.app.control.revoke(task_id, terminate=True, signal="SIGKILL")
        except Exception as error:
            print(f"job service: could not cancel {task_id} ({type(error).__name__})", flush=True)

    def _collect(self) -> None:
        from redis.exceptions import RedisError

        try:
            self._poll()
            if self.problem == self.unreachable:
                print(f"job service: the job queue at {safe_url(self.url)} is reachable again", flush=True)
            self.problem = "" if self.slots else f"no worker serves the job queue ({safe_url(self.url)}) yet"
        except RedisError as error:
            if not self.problem:
                print(f"job service: the job queue is unreachable ({type(error).__name__}: {error})", flush=True)
            self.problem = self.unreachable
            self.slots = 0
        super()._collect()

    def _poll(self) -> None:
        workers = [key for key in self.client.scan_iter(match=PREFIX + "worker:*", count=100)]
        beats = self.client.mget(workers) if workers else []
        alive = {}
        for key, beat in zip(workers, beats, strict=True):
            if beat:
                alive[key.decode().removeprefix(PREFIX + "worker:")] = json.loads(beat)
        self.slots = sum(int(record.get("slots", 1)) for record in alive.values())
        with self.lock:
            running = [job for job in self.jobs.values() if job.state == "running" and isinstance(job.future, _QueuedJob)]
        if not running:
            return
        pipe = self.client.pipeline()
        for job in running:
            task_id = job.future.task_id
            pipe.get("celery-task-meta-" + task_id)
            pipe.get(PREFIX + "progress:" + task_id)
            pipe.lrange(PREFIX + "epochs:" + task_id, 0, -1)
            pipe.exists(PREFIX + "job:" + task_id)
        answers = pipe.execute()
        now = time.monotonic()
        for index, job in enumerate(running):
            meta, progress, epochs, known = answers[4 * index : 4 * index + 4]
            meta = json.loads(meta) if meta else None
            handle = job.future
            if progress:
                try:
                    record = json.loads(verify(progress, "a progress report"))
                except records.RecordError:
                    record = {"report": records.encode(Progress(job.kind, 0.0, "running"), {})}
                handle.worker, handle.pid = record.get("worker", ""), int(record.get("pid", 0))
                report = records.decode(record["report"], lambda _: None)
                with self.lock:
                    job.last = report
                    job.epochs = [_epoch(records.decode(text, lambda _: None)) for text in epochs]
            if meta:
                self._ended(job, handle, meta)
            elif not progress and not known:
                handle.no_trace_since = handle.no_trace_since or now
                if now - handle.no_trace_since > self.limits.lost_grace_s:
                    handle.finished = True
                    handle.error = f"{job.request.describe()} was lost when the job queue restarted; please start it again"
            if not handle.finished and handle.worker and handle.worker not in alive and (meta is None or _running(meta)):
                handle.no_trace_since = handle.no_trace_since or now
                if now - handle.no_trace_since > self.limits.lost_grace_s:
                    self._cancel_task(handle.task_id)  # a redelivery must not run it again
                    handle.finished = True
                    handle.error = (
                        f"{job.request.describe()} failed: its worker ({handle.worker}) stopped answering "
                        "(stopped, or its machine lost the network)"
                    )

    def _ended(self, job, handle: _QueuedJob, meta: dict) -> None:
        status, answer = meta.get("status"), meta.get("result")
        if status in ("PENDING", "STARTED", "RECEIVED", "RETRY", "PROGRESS"):
            return
        handle.finished = True
        what = job.request.describe()
        if status == "SUCCESS" and isinstance(answer, dict) and "result" in answer:
            text = self.client.get(PREFIX + "result:" + handle.task_id)
            if text is None:
                handle.error = f"{what}: its result expired from the queue before the server fetched it"
                return
            try:
                handle.outcome = records.decode(verify(text, "its result"), lambda digest: fetch_blob(self.client, digest))
            except records.RecordError as error:
                handle.error = f"{what}: its result could not be read ({error})"
            self.client.delete(PREFIX + "result:" + handle.task_id)
        elif status == "SUCCESS" and isinstance(answer, dict) and "error" in answer:
            text = str(answer["error"])
            handle.error = text if text == "cancelled" or ":" in text.split(" ")[0] else f"{what}: {text}"
        else:
            kind = answer.get("exc_type", "") if isinstance(answer, dict) else ""
            message = " ".join(str(part) for part in answer.get("exc_message", ())) if isinstance(answer, dict) else ""
            if kind == "TimeLimitExceeded":
                limit = self.settings.timeouts_s.get(job.kind, 0)
                handle.error = f"{what} took longer than its limit of {limit:.0f} s and was stopped"
            elif kind == "WorkerLostError":
                number = re.search(r"signal (\d+)", message)
                ended = how_process_ended(-int(number.group(1)) if number else None, "worker process")
                handle.error = f"{what} failed: {ended}; a fresh worker took its place"
            elif status == "REVOKED":
                handle.error = "cancelled"
            else:
                handle.error = f"{what}: {kind or status}: {message}".rstrip(": ")
            if kind in ("TimeLimitExceeded", "WorkerLostError"):
                with self.lock:
                    self.counters["workers_replaced"] += 1

    # sessions and their files

    def forget_owner(self, owner: str) -> None:
        super().forget_owner(owner)
        with self.lock:
            digests = self.owner_blobs.pop(owner, set())
        try:
            for digest in digests:
                self.client.srem(PREFIX + "blob-owners:" + digest, owner)
                if not self.client.scard(PREFIX + "blob-owners:" + digest):
                    self.client.delete(PREFIX + "blob:" + digest, PREFIX + "blob-owners:" + digest)
        except Exception as error:  # the store's time to live removes them anyway
            print(f"job service: could not delete a session's files ({type(error).__name__})", flush=True)

    def snapshot(self) -> dict:
        found = super().snapshot()
        found.update(workers=self.slots, pool_open=self.slots > 0, queue=safe_url(self.url), problem=self.problem)
        return found

    def worker_pids(self) -> list[int]:
        with self.lock:
            return [job.future.pid for job in self.jobs.values() if isinstance(job.future, _QueuedJob) and job.future.pid]

    def _close_when_idle(self) -> None:
        pass  # the workers are their own processes, on their own machines

    def shutdown(self) -> None:
        super().shutdown()
        try:
            self.client.close()
        except Exception:
            pass


def _running(meta: dict) -> bool:
    return meta.get("status") in ("PENDING", "STARTED", "RECEIVED", "PROGRESS")


def _epoch(report: Progress) -> dict:
    return {key: report.metrics[key] for key in ("epoch", "loss", "accuracy") if key in report.metrics}
