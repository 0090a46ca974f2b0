"""A real queue for the tests and benchmarks: Debian's redis-server on a free loopback port (with a
password), and ``python -m core worker`` processes, each in its own temporary directory, that
share nothing with the server but Redis.

``QLAB_TEST_QUEUE=1`` makes :func:`tests.browser.serve_app` start the app on this queue, so the
browser tests run unchanged against the queue backend (CI runs them on both backends).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    from tests.browser import free_port as port

    return port()


class RedisServer:
    """redis-server on 127.0.0.1, no persistence (a restart loses what it held, as a crash would)."""

    def __init__(self, tls: bool = False):
        self.port, self.password, self.tls = free_port(), secrets.token_hex(12), tls
        self.folder = tempfile.mkdtemp(prefix="qlab-redis-")
        self.process: subprocess.Popen | None = None
        if tls:
            self._certificates()
        self.start()

    @property
    def url(self) -> str:
        if self.tls:  # the server's certificate is checked against the test's own CA
            ca = os.path.join(self.folder, "ca.crt")
            return f"rediss://:{self.password}@127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def _certificates(self) -> None:
        """A CA of the test's own and a certificate for 127.0.0.1 signed by it (openssl)."""
        folder = self.folder
        with open(os.path.join(folder, "san.ext"), "w") as handle:
            handle.write("subjectAltName=IP:127.0.0.1\n")
        for command in (
            "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=qlab-test-ca",
            "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1",
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 -extfile san.ext",
        ):
            subprocess.run(["openssl", *command.split()], cwd=folder, check=True, capture_output=True)

    def _listen(self) -> list[str]:
        if not self.tls:
            return ["--port", str(self.port)]
        return [
            "--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no",
            "--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt",
        ]  # fmt: skip

    def start(self) -> None:
        if not os.path.exists(REDIS):
            raise RuntimeError("redis-server is missing: apt-get install -y redis-server (.ci/run does this)")
        self.process = subprocess.Popen(
            [
                REDIS,
                *self._listen(),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                self.password,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.folder,
            stdout=open(os.path.join(self.folder, "redis.log"), "ab"),
            stderr=subprocess.STDOUT,
        )
        import redis

        deadline = time.monotonic() + 20
        while True:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=2)  # a fresh one each try
            try:
                client.ping()
                break
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.process.kill()  # no server left behind
                    raise RuntimeError(
                        f"redis-server did not answer ({error}); its log: {Path(self.folder, 'redis.log').read_text()[-600:]}"
                    ) from None
                client.close()
                time.sleep(0.1)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # as a crash: nothing is saved
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class Worker:
    """``python -m core worker --queue URL`` in its own temporary directory (HOME, TMPDIR, KERAS_HOME)."""

    def __init__(self, url: str, name: str, processes: int = 1):
        self.name = name
        self.folder = tempfile.mkdtemp(prefix=f"qlab-{name}-")
        env = {
            **os.environ,
            "HOME": self.folder,
            "TMPDIR": self.folder,
            "KERAS_HOME": os.path.join(self.folder, "keras"),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("QLAB_QUEUE_URL", None)
        self.log_path = os.path.join(self.folder, "worker.log")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "core", "worker", "--queue", url, "--name", name, "--processes", str(processes)],
            cwd=self.folder,
            env=env,
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def wait_for_workers(url: str, count: int, timeout: float = 180.0) -> None:
    """Until ``count`` workers beat on the queue and each has its TensorFlow process ready."""
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    while len(list(client.scan_iter(match="qlab:worker:*"))) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not start within {timeout:.0f} s")
        time.sleep(0.2)
    client.close()


@contextmanager
def queue(workers: int = 2, processes: int = 1, tls: bool = False):
    """A Redis server and ``workers`` worker commands; yields (redis, [workers]). The server (this
    process, or an app it starts) and the workers share a QLAB_QUEUE_SECRET, as a class would."""
    os.environ.setdefault("QLAB_QUEUE_SECRET", secrets.token_hex(16))
    server = RedisServer(tls)
    started: list[Worker] = []
    try:
        started = [Worker(server.url, f"w{index + 1}", processes) for index in range(workers)]
        wait_for_workers(server.url, workers)
        yield server, started
    finally:
        for worker in started:
            worker.stop()
        server.close()


_shared: dict = {}


def shared_queue_url() -> str:
    """One queue for a whole test session (the browser tests under QLAB_TEST_QUEUE=1), closed at exit."""
    if "url" not in _shared:
        context = queue()
        server, _ = context.__enter__()
        _shared["url"] = server.url
        atexit.register(context.__exit__, None, None, None)
    return _shared["url"]


def assert_served(*kinds: str) -> None:
    """Under QLAB_TEST_QUEUE=1: the queue's workers ran jobs of these kinds (the app did use the
    queue, not a pool of its own). Without it, nothing to check."""
    if os.environ.get("QLAB_TEST_QUEUE") != "1":
        return
    import redis

    client = redis.Redis.from_url(shared_queue_url())
    for kind in kinds:
        served = [key for key in client.scan_iter(match=f"celery-task-meta-{kind}-*")]
        assert served, f"no {kind} job went through the queue"
        assert any(b'"SUCCESS"' in (client.get(key) or b"") for key in served), f"no {kind} job succeeded on the queue"
    client.close()
