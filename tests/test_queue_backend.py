"""The queue backend against a real redis-server and two real ``python -m core worker`` processes,
each in its own temporary directory: nothing is shared with the server but Redis. Real trainings
and conversions on the digits that ship with scikit-learn (or an upload, through the store); the
faults are real too: a worker process SIGKILLed, a cancel, a time limit, Redis killed and started
again. (Waiting loops poll the service; nothing here asserts a time.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from core import queue_backend, records
from core.datasets import DatasetRef, load_offline_digits, save_npz
from core.job_service import DONE, FAILED, PoolSettings, make_service
from core.jobs import ConvertOutcome, ConvertRequest, TrainOutcome, TrainRequest
from tests import redis_queue as queue
from tests.conftest import ROOT
from tests.test_job_service import wait_done, wait_until

DIGITS = load_offline_digits()
BUILT_IN = DatasetRef.of(DIGITS)  # by name: each worker loads it itself


@pytest.fixture(scope="module")
def redis_and_workers():
    with queue.queue(workers=2) as (server, workers):
        yield server, workers


@pytest.fixture()
def service(redis_and_workers):
    server, _ = redis_and_workers
    settings = PoolSettings(queue_url=server.url, owner_grace_s=0.0, timeouts_s={"train": 300.0, "convert": 300.0})
    found = make_service(settings)
    yield found
    found.shutdown()


def running_pid(service, job_id: str) -> int:
    wait_until(lambda: service.status(job_id).state == "running" and _handle(service, job_id).pid, what=f"{job_id} to start")
    return _handle(service, job_id).pid


def _handle(service, job_id):
    with service.lock:
        job = service.jobs.get(job_id)
        return job.future if job is not None else None


def long_training(seed: int) -> TrainRequest:
    return TrainRequest(BUILT_IN, epochs=100, seed=seed)  # the most a training may ask for: a minute or more here


def test_the_queue_backend_is_chosen_by_its_url_and_the_pool_stays_the_default(service):
    assert type(service).__name__ == "QueueJobService"
    assert type(make_service(PoolSettings())).__name__ == "JobService"
    assert PoolSettings.from_env({"QLAB_QUEUE_URL": "redis://h:6379/0"}).queue_url == "redis://h:6379/0"
    with pytest.raises(ValueError, match="redis:// or rediss://"):
        make_service(PoolSettings(queue_url="amqp://h"))
    assert queue_backend.safe_url("rediss://:secret@h:6380/0") == "rediss://:***@h:6380/0"
    wait_until(lambda: service.snapshot()["workers"] == 2, what="the two workers' slots")


def test_six_distinct_requests_from_three_owners_complete_on_two_workers(service, tmp_path):
    upload = type(DIGITS)(
        "uploaded digits",
        DIGITS.x_train[:600],
        DIGITS.y_train[:600],
        DIGITS.x_test[:150],
        DIGITS.y_test[:150],
        DIGITS.class_names,
        DIGITS.source,
    )
    uploaded = DatasetRef.of(upload, save_npz(tmp_path / "upload.npz", upload))  # a file only the server has
    data = {"alice": BUILT_IN, "bob": BUILT_IN, "carol": uploaded}
    trainings = {
        owner: service.submit(TrainRequest(ref, epochs=2, seed=index), owner) for index, (owner, ref) in enumerate(data.items())
    }
    assert all(submission.how == "new" for submission in trainings.values())
    assert service.status(trainings["carol"].job_id).position >= 1  # two slots, three jobs: one waits its turn
    for submission in trainings.values():
        assert wait_done(service, submission.job_id, 300).state == DONE
    pids = {_handle(service, submission.job_id).pid for submission in trainings.values()}  # the process each ran in
    outcomes = {owner: service.result(submission.job_id) for owner, submission in trainings.items()}
    assert all(isinstance(outcome, TrainOutcome) and outcome.model_bytes[:2] == b"PK" for outcome in outcomes.values())
    assert outcomes["carol"].dataset_digest == upload.digest != outcomes["alice"].dataset_digest
    assert len(pids - {0}) == 2, f"both workers served: {pids}"
    conversions = {
        owner: service.submit(
            ConvertRequest(outcome.model_digest, ("float32", "int8"), data[owner], model_bytes=outcome.model_bytes), owner
        )
        for owner, outcome in outcomes.items()
    }
    for submission in conversions.values():
        assert wait_done(service, submission.job_id, 300).state == DONE
        converted = service.result(submission.job_id)
        assert isinstance(converted, ConvertOutcome) and [item.name for item in converted.files] == ["float32", "int8"]
        assert all(item.tflite[4:8] == b"TFL3" and item.twin is not None for item in converted.files)
    assert service.snapshot()["computed"] == 6 and service.snapshot()["failed"] == 0
    # carol's upload went through the store, by digest; it goes when her session does
    client = service.client
    stored = [key for key in client.scan_iter(match="qlab:blob-owners:*") if client.sismember(key, "carol")]
    assert stored
    service.forget_owner("carol")
    assert not any(client.exists(key) for key in stored)


def test_an_identical_request_joins_the_running_one_then_comes_from_the_cache(service):
    request = TrainRequest(BUILT_IN, epochs=3, seed=11)
    first, joined = service.submit(request, "alice"), service.submit(request, "bob")
    assert (first.how, joined.how, first.job_id) == ("new", "joined", joined.job_id)
    assert service.status(first.job_id).owners == 2
    assert wait_done(service, first.job_id, 300).state == DONE
    later = service.submit(request, "carol")
    assert later.how == "cached" and service.result(later.job_id) is service.result(first.job_id)
    assert service.snapshot()["computed"] == 1


def test_cancel_stops_the_running_job_and_frees_its_worker(service):
    job = service.submit(long_training(21), "alice")
    pid = running_pid(service, job.job_id)
    service.cancel(job.job_id, "alice")
    assert service.status(job.job_id) is None
    wait_until(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        60,
        "the cancelled process to exit",
    )
    # both slots serve again: two jobs run at once
    after = [
        service.submit(TrainRequest(BUILT_IN, epochs=1, seed=22 + index), owner) for index, owner in enumerate(("alice", "bob"))
    ]
    for submission in after:
        assert wait_done(service, submission.job_id, 300).state == DONE


def test_a_sigkilled_worker_process_fails_only_its_own_job_with_one_line(service):
    doomed, other = service.submit(long_training(31), "alice"), service.submit(TrainRequest(BUILT_IN, epochs=20, seed=32), "bob")
    pid = running_pid(service, doomed.job_id)
    running_pid(service, other.job_id)
    os.kill(pid, signal.SIGKILL)
    status = wait_done(service, doomed.job_id, 120)
    assert status.state == FAILED and "killed by SIGKILL" in status.error and "\n" not in status.error
    assert wait_done(service, other.job_id, 300).state == DONE
    after = service.submit(TrainRequest(BUILT_IN, epochs=1, seed=33), "alice")  # the next job runs (no retry of the killed one)
    assert wait_done(service, after.job_id, 300).state == DONE
    assert service.snapshot()["computed"] == 3


def test_a_job_that_raises_on_the_worker_fails_with_its_one_line(service, tmp_path):
    path = save_npz(tmp_path / "d.npz", DIGITS)
    stale = DatasetRef(DIGITS.name, "0" * 32, str(path), DIGITS.class_names)  # not the digest of its content
    status = wait_done(service, service.submit(TrainRequest(stale, epochs=1), "alice").job_id, 300)
    assert status.state == FAILED and "content changed" in status.error and "\n" not in status.error


def test_a_job_whose_session_is_gone_is_cancelled_and_its_worker_process_freed(redis_and_workers):
    server, _ = redis_and_workers
    alive = {"alice": True}
    service = make_service(
        PoolSettings(queue_url=server.url, owner_grace_s=0.0), owner_alive=lambda owner: alive.get(owner, False)
    )
    try:
        job = service.submit(long_training(95), "alice")
        pid = running_pid(service, job.job_id)
        alive["alice"] = False
        wait_until(lambda: service.status(job.job_id) is None, 30, "the orphaned job to be dropped")
        wait_until(
            lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 60, "its process to exit"
        )
        assert service.snapshot()["cancelled"] == 1
    finally:
        service.shutdown()


def test_a_job_past_its_time_limit_is_stopped(redis_and_workers):
    server, _ = redis_and_workers
    limited = make_service(PoolSettings(queue_url=server.url, timeouts_s={"train": 4.0}))
    try:
        status = wait_done(limited, limited.submit(long_training(41), "alice").job_id, 120)
        assert status.state == FAILED and "longer than its limit of 4 s" in status.error
    finally:
        limited.shutdown()


def test_a_result_over_its_bound_is_refused_and_not_stored(redis_and_workers):
    server, _ = redis_and_workers
    small = queue_backend.QueueLimits(max_result_bytes=100_000)  # a trained model is ~270 KB
    bounded = queue_backend.QueueJobService(PoolSettings(queue_url=server.url), limits=small)
    try:
        job = bounded.submit(TrainRequest(BUILT_IN, epochs=1, seed=51), "alice")
        status = wait_done(bounded, job.job_id, 300)
        assert status.state == FAILED and "over the queue's bound of 0.1 MB" in status.error and "not stored" in status.error
        assert not list(bounded.client.scan_iter(match="qlab:result:*"))
    finally:
        bounded.shutdown()


def test_a_redis_restart_is_survived(redis_and_workers):
    """Redis killed (no persistence: it comes back empty) and started again: the page says the queue
    is unreachable meanwhile, what sessions have is kept, a job running on a worker finishes, one
    asked for during the outage waits in the server's line and runs when the queue is back."""
    server, _ = redis_and_workers
    service = make_service(PoolSettings(queue_url=server.url))
    try:
        kept = service.submit(TrainRequest(BUILT_IN, epochs=1, seed=61), "alice")
        assert wait_done(service, kept.job_id, 300).state == DONE
        outcome = service.result(kept.job_id)
        across = service.submit(TrainRequest(BUILT_IN, epochs=25, seed=63), "carol")
        running_pid(service, across.job_id)
        server.stop()
        waiting = service.submit(TrainRequest(BUILT_IN, epochs=1, seed=62), "bob")
        wait_until(lambda: "unreachable" in service.status(waiting.job_id).problem, 30, "the queue to be seen as unreachable")
        assert "unreachable" in service.status(across.job_id).problem
        assert service.result(kept.job_id) is outcome  # what a session has is kept
        server.start()
        queue.wait_for_workers(server.url, 2, 120)  # the workers wait out the restart by themselves
        for submission in (across, waiting):
            status = wait_done(service, submission.job_id, 300)
            assert status.state == DONE and status.problem == "", status.error
        assert service.submit(TrainRequest(BUILT_IN, epochs=1, seed=61), "dave").how == "cached"
    finally:
        service.shutdown()


def test_records_are_typed_json_and_anything_else_is_refused():
    request = ConvertRequest("0" * 32, ("int8",), BUILT_IN, model_bytes=b"")
    blobs: dict = {}
    text = records.encode(TrainRequest(BUILT_IN, epochs=2), blobs)
    assert records.decode(text, blobs.get) == TrainRequest(BUILT_IN, epochs=2)
    assert records.decode(records.encode(request, blobs), blobs.get) == request
    for forged in (
        {"$record": "Popen", "fields": {"args": "id"}},
        {"$record": "TrainRequest", "fields": {"dataset": None, "__class__": 1}},
        {"$record": "ConvertRequest", "fields": {"model_digest": "x", "variants": {"$tuple": ["no-such"]}, "dataset": None}},
    ):
        with pytest.raises(records.RecordError):
            records.decode(json.dumps(forged), blobs.get)
    blob = {"$blob": "0" * 32, "size": 3}
    with pytest.raises(records.RecordError, match="does not match"):
        records.decode(json.dumps(blob), lambda digest: b"abc")
    with pytest.raises(records.RecordError, match="not a job record type"):
        records.encode(object(), {})


def test_a_pickled_message_is_not_run_by_a_worker(redis_and_workers):
    """Celery accepts JSON only: a pickle put on the queue by someone else is discarded unrun."""
    server, workers = redis_and_workers
    marker = os.path.join(workers[0].folder, "pwned")
    app = queue_backend.celery_app(server.url)
    app.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    app.send_task(
        "qlab.run", args=(f"pickle-{os.getpid()}", f"open({marker!r}, 'w')"), serializer="pickle", queue=queue_backend.QUEUE
    )
    probe = make_service(PoolSettings(queue_url=server.url))
    try:  # a job after it runs, so the pickled message has been taken off the queue by now
        assert wait_done(probe, probe.submit(TrainRequest(BUILT_IN, epochs=1, seed=81), "alice").job_id, 300).state == DONE
    finally:
        probe.shutdown()
    assert not os.path.exists(marker)
    assert any("pickle" in worker.log() for worker in workers)


def test_records_are_signed_and_a_worker_refuses_a_job_without_the_classs_secret(redis_and_workers):
    assert os.environ.get("QLAB_QUEUE_SECRET")
    signed = queue_backend.sign("{}")
    assert signed.startswith("v1:") and queue_backend.verify(signed, "x") == "{}"
    for forged in ("v0::{}", "v1:" + "0" * 64 + ":{}", "{}", signed.replace("{}", "[]")):
        with pytest.raises(records.RecordError):
            queue_backend.verify(forged, "the record")
    server, _ = redis_and_workers
    app = queue_backend.celery_app(server.url)
    task_id = f"forged-{os.getpid()}"
    payload = "v0::" + records.encode(TrainRequest(BUILT_IN, epochs=1, seed=82), {})  # well typed, but not signed
    app.send_task("qlab.run", args=(task_id, payload), task_id=task_id, queue=queue_backend.QUEUE)
    client = queue_backend.redis_client(server.url)
    wait_until(lambda: client.get(f"celery-task-meta-{task_id}"), 120, "the forged job to be refused")
    answer = json.loads(client.get(f"celery-task-meta-{task_id}"))["result"]
    assert "not signed" in answer["error"]
    assert not client.exists(f"qlab:result:{task_id}")


def test_the_worker_command_says_in_one_line_when_the_queue_cannot_be_reached(redis_and_workers):
    server, _ = redis_and_workers
    wrong = server.url.replace(server.password, "wrong-password")
    done = subprocess.run(
        [sys.executable, "-m", "core", "worker", "--queue", wrong], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "cannot be reached" in done.stderr and "wrong-password" not in done.stderr


def test_a_worker_command_killed_whole_fails_its_job_with_one_line_and_another_worker_runs_the_next():
    """The whole worker command SIGKILLed (its machine switched off): its heartbeat stops, the server
    fails its running job with one line (it is not retried: a redelivery is marked cancelled), and
    the job after it runs on a worker that is still there."""
    with queue.queue(workers=1) as (server, (doomed,)):
        limits = queue_backend.QueueLimits(lost_grace_s=1.0)
        service = queue_backend.QueueJobService(PoolSettings(queue_url=server.url), limits=limits)
        try:
            job = service.submit(long_training(91), "alice")
            running_pid(service, job.job_id)
            os.killpg(doomed.process.pid, signal.SIGKILL)
            status = wait_done(service, job.job_id, 120)
            assert status.state == FAILED and "stopped answering" in status.error and "\n" not in status.error
            spare = queue.Worker(server.url, "spare")
            try:
                after = service.submit(TrainRequest(BUILT_IN, epochs=1, seed=92), "alice")
                assert wait_done(service, after.job_id, 300).state == DONE
            finally:
                spare.stop()
        finally:
            service.shutdown()


def test_the_page_says_when_the_queue_is_unreachable_and_the_session_keeps_its_model(redis_and_workers, tmp_path):
    """In chromium, on the queue backend: Redis goes away; the session's model stays, a new Train
    waits with the queue's trouble on the page, and finishes once Redis is back."""
    from tests.browser import chromium_page, require_browser, serve_app, set_training, train_model, wait_idle

    require_browser()
    server, _ = redis_and_workers
    with serve_app(keras_home=str(tmp_path / "keras"), env={"QLAB_QUEUE_URL": server.url}) as (url, _), chromium_page() as page:
        page.goto(url)
        wait_idle(page)
        train_model(page, epochs=1, seed=101)
        server.stop()
        try:
            set_training(page, seed=102)
            page.locator(".st-key-train button").click()
            page.get_by_text("is unreachable", exact=False).first.wait_for(timeout=60_000)
            assert page.get_by_text("Current model", exact=False).first.is_visible()
            assert page.get_by_text("Seed 101", exact=False).first.is_visible()
        finally:
            server.start()
        queue.wait_for_workers(server.url, 2, 120)
        page.get_by_text("Seed 102, trained for this session", exact=False).first.wait_for(timeout=300_000)


def test_a_class_over_tls_checks_the_servers_certificate():
    """rediss://: the server and a worker speak TLS to Redis and check its certificate; a client
    that does not trust the certificate's CA is refused."""
    with queue.queue(workers=1, tls=True) as (server, _):
        service = make_service(PoolSettings(queue_url=server.url))
        try:
            job = service.submit(TrainRequest(BUILT_IN, epochs=1, seed=111), "alice")
            assert wait_done(service, job.job_id, 300).state == DONE
        finally:
            service.shutdown()
        untrusted = server.url.split("&ssl_ca_certs=")[0]  # the system's CAs only
        with pytest.raises(Exception, match="certificate verify failed"):
            queue_backend.redis_client(untrusted).ping()


def test_a_queue_url_without_the_queue_packages_is_one_clear_line():
    code = (
        "import sys; sys.modules['celery'] = sys.modules['redis'] = None\n"
        "from core.job_service import JobError, PoolSettings, make_service\n"
        "try:\n    make_service(PoolSettings(queue_url='redis://h:6379/0'))\n"
        "except JobError as error:\n    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "pip install -r requirements-queue.txt" in done.stdout, done.stderr
