"""The job service with a real pebble pool and real worker processes: queue order, dedupe and the
shared cache, cancel of a running job, crash and OOM-kill recovery, time limits, owners that go
away, and no process left behind. (Waiting loops poll the service; nothing here asserts a time.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from core.datasets import DatasetRef, load_offline_digits, save_npz
from core.job_service import CANCELLED, DONE, FAILED, JobService, PoolSettings
from core.jobs import TrainOutcome, TrainRequest
from tests.conftest import ROOT
from tests.job_faults import FaultRequest


def wait_until(condition, timeout: float = 180.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.05)


def wait_done(service: JobService, job_id: str, timeout: float = 180.0):
    wait_until(lambda: not service.status(job_id).active, timeout, f"job {job_id}")
    return service.status(job_id)


@pytest.fixture()
def service():
    found = JobService(PoolSettings(workers=1, timeouts_s={"fault": 3.0, "train": 300.0}, owner_grace_s=0.0))
    yield found
    found.shutdown()


def test_jobs_beyond_the_pool_wait_in_fifo_order_and_see_their_place(service):
    first = service.submit(FaultRequest("sleep", 1.5, nonce=1), "alice")
    second = service.submit(FaultRequest("sleep", 0.2, nonce=2), "bob")
    third = service.submit(FaultRequest("sleep", 0.2, nonce=3), "carol")
    wait_until(lambda: service.status(first.job_id).state == "running", what="the first job to start")
    assert service.status(second.job_id).position == 1 and service.status(third.job_id).position == 2
    for submission in (first, second, third):
        assert wait_done(service, submission.job_id).state == DONE
    started = [entry["job_id"] for entry in service.log]
    assert started == [first.job_id, second.job_id, third.job_id]
    assert service.snapshot()["computed"] == 3


def test_an_identical_request_joins_the_running_one_and_one_owner_gets_one_job(service):
    request = FaultRequest("sleep", 1.0, nonce=7)
    first = service.submit(request, "alice")
    again = service.submit(FaultRequest("sleep", 5.0, nonce=8), "alice")  # alice already has a job of this kind
    joined = service.submit(request, "bob")
    assert (first.how, again.how, joined.how) == ("new", "already", "joined")
    assert again.job_id == first.job_id == joined.job_id
    assert service.status(first.job_id).owners == 2
    assert wait_done(service, first.job_id).state == DONE
    assert service.snapshot()["computed"] == 1 and service.snapshot()["joined"] == 1


def test_cancel_stops_the_running_worker_and_the_pool_goes_on(service):
    running = service.submit(FaultRequest("sleep", 60.0, nonce=1), "alice")
    # "sleeping" is the job's own progress report: it runs inside the worker (not just handed to the pool)
    wait_until(lambda: service.status(running.job_id).message == "sleeping" and service.worker_pids(), what="the job to start")
    busy_worker = service.worker_pids()[0]
    service.cancel(running.job_id, "alice")
    assert service.status(running.job_id) is None  # nobody else waited for it: gone
    wait_until(
        lambda: not psutil.pid_exists(busy_worker) or psutil.Process(busy_worker).status() == psutil.STATUS_ZOMBIE,
        timeout=30,
        what="the cancelled worker to exit",
    )
    after = service.submit(FaultRequest("sleep", 0.1, nonce=2), "alice")
    assert wait_done(service, after.job_id).state == DONE
    assert service.snapshot()["cancelled"] == 1


def test_cancel_by_one_owner_leaves_a_shared_job_running_for_the_other(service):
    request = FaultRequest("sleep", 1.0, nonce=3)
    shared = service.submit(request, "alice")
    service.submit(request, "bob")
    service.cancel(shared.job_id, "alice")
    assert wait_done(service, shared.job_id).state == DONE


@pytest.mark.parametrize(
    "how, message",
    [
        ("raise", "failing on purpose"),
        ("exit", "exited with code 3"),
        ("abort", "killed by SIGABRT"),
        ("kill", "killed by SIGKILL (most likely out of memory)"),
    ],
)
def test_a_crash_fails_only_its_own_job_with_one_line_and_the_pool_replaces_the_worker(service, how, message):
    failing = service.submit(FaultRequest(how), "alice")
    status = wait_done(service, failing.job_id)
    assert status.state == FAILED and message in status.error and "\n" not in status.error
    after = service.submit(FaultRequest("sleep", 0.1, nonce=9), "bob")
    assert wait_done(service, after.job_id).state == DONE


def test_a_job_past_its_time_limit_is_stopped_with_a_message(service):
    slow = service.submit(FaultRequest("sleep", 30.0), "alice")
    status = wait_done(service, slow.job_id)
    assert status.state == FAILED and "longer than its limit of 3 s" in status.error


def test_a_job_whose_owner_is_gone_is_cancelled():
    alive = {"alice": True}
    service = JobService(PoolSettings(workers=1, owner_grace_s=0.0), owner_alive=lambda owner: alive.get(owner, False))
    try:
        job = service.submit(FaultRequest("sleep", 60.0, nonce=4), "alice")
        folder = service.owner_folder("alice")
        wait_until(lambda: service.status(job.job_id).state == "running", what="the job to start")
        alive["alice"] = False
        wait_until(lambda: service.status(job.job_id) is None, timeout=30, what="the orphaned job to be dropped")
        # The session's files go with it (removed just after the job records, outside the service's lock).
        wait_until(lambda: not os.path.exists(folder), timeout=10, what="the session's folder to be removed")
        assert service.snapshot()["cancelled"] == 1
    finally:
        service.shutdown()


def test_identical_trainings_are_computed_once_and_then_come_from_the_cache(service, tmp_path):
    digits = load_offline_digits()
    small = type(digits)(
        "small digits",
        digits.x_train[:400],
        digits.y_train[:400],
        digits.x_test[:100],
        digits.y_test[:100],
        digits.class_names,
        digits.source,
    )
    reference = DatasetRef.of(small, save_npz(tmp_path / "small.npz", small))  # by reference: the worker reads the file
    request = TrainRequest(reference, epochs=1, seed=3)
    first, second = service.submit(request, "alice"), service.submit(request, "bob")
    assert second.how == "joined"
    assert wait_done(service, first.job_id, timeout=300).state == DONE
    outcome = service.result(first.job_id)
    assert isinstance(outcome, TrainOutcome) and outcome.model_bytes[:2] == b"PK" and outcome.dataset_digest == small.digest
    assert outcome.summary.parameters == 20410 and len(outcome.history) == 1
    later = service.submit(request, "carol")
    assert later.how == "cached" and service.status(later.job_id).from_cache
    assert service.result(later.job_id) is outcome
    other_seed = service.submit(TrainRequest(reference, epochs=1, seed=4), "carol")
    assert other_seed.how == "new"
    assert wait_done(service, other_seed.job_id, timeout=300).state == DONE
    counters = service.snapshot()
    assert counters["computed"] == 2 and counters["cache_hits"] == 1 and counters["joined"] == 1


def test_a_dataset_that_changed_since_it_was_chosen_is_refused(service, tmp_path):
    digits = load_offline_digits()
    path = save_npz(tmp_path / "d.npz", digits)
    stale = DatasetRef(digits.name, "0" * 32, str(path), digits.class_names)
    status = wait_done(service, service.submit(TrainRequest(stale, epochs=1), "alice").job_id, timeout=300)
    assert status.state == FAILED and "content changed" in status.error


def test_no_worker_outlives_shutdown(service):
    job = service.submit(FaultRequest("sleep", 60.0, nonce=5), "alice")
    wait_until(lambda: service.status(job.job_id).state == "running" and service.worker_pids(), what="the job to start")
    workers = service.worker_pids()
    service.shutdown()
    assert service.status(job.job_id) is None or service.status(job.job_id).state == CANCELLED
    for pid in workers:
        wait_until(
            lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
            timeout=30,
            what=f"worker {pid} to exit",
        )


def test_no_worker_outlives_a_server_killed_with_sigkill():
    code = (
        "import sys, time; from core.job_service import JobService, PoolSettings; from tests.job_faults import FaultRequest\n"
        "s = JobService(PoolSettings(workers=2)); j = s.submit(FaultRequest('sleep', 120.0), 'a')\n"
        "while not (s.status(j.job_id).state == 'running' and len(s.worker_pids()) == 2): time.sleep(0.05)\n"
        "print(*s.worker_pids(), flush=True); time.sleep(600)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in server.stdout.readline().split()]
        assert len(workers) == 2
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        for pid in workers:
            wait_until(
                lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                timeout=30,
                what=f"orphaned worker {pid} to exit",
            )
    finally:
        if server.poll() is None:
            server.kill()


def test_settings_come_from_one_place():
    settings = PoolSettings.from_env({"QLAB_WORKERS": "3", "QLAB_CACHE_MB": "8", "QLAB_TIMEOUT_S": "5"})
    assert settings.workers == 3 and settings.cache_bytes == 8 * 1024 * 1024 and settings.timeouts_s["train"] == 5.0
    assert PoolSettings.from_env({}, overrides={"workers": 2}).workers == 2
    with pytest.raises(ValueError, match="at least 1 worker"):
        PoolSettings.from_env({"QLAB_WORKERS": "0"})
