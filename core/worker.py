"""Running one piece of TensorFlow work in a fresh, single-use process.

The app's training and conversion go through the job service (``core.job_service``), whose pool
keeps TensorFlow imported in long-lived workers. This module is for work that needs a process of
its own: quantization-aware training (tfmot switches its whole process to legacy Keras, so it can
never share a worker with Keras 3) and the CLI's look inside a user's Keras file. The worker
streams :class:`~core.progress.Progress` reports back and ends with plain values (bytes, arrays,
dicts). A failure in the worker, or a crash of the worker, reaches the caller as a
:class:`WorkerError` with a clear message. The worker also isolates the converter's memory growth
and tfmot's switch to legacy Keras.

Protocol: the parent writes one pickled ``(job, payload)`` to the worker's stdin; the worker
answers on its original stdout with length-prefixed pickled frames ``("progress", Progress)``,
then ``("result", value)`` or ``("error", message)``. Everything the libraries print goes to
stderr, which the parent keeps to explain a crash.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from typing import Any

from core.progress import Progress, ProgressFn, ignore

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOBS: dict[str, Callable[..., Any]] = {}


class WorkerError(RuntimeError):
    """The job failed or the worker died; the message says what happened."""


def job(function: Callable[..., Any]) -> Callable[..., Any]:
    JOBS[function.__name__] = function
    return function


# -- the jobs (run inside the worker) ------------------------------------------------------------


@job
def load_keras(data: bytes, file_name: str, dataset, progress: ProgressFn) -> dict:
    from core import models

    progress(Progress("load", 0.2, f"loading {file_name}"))
    model = models.from_bytes(data, file_name)
    accuracy = models.keras_accuracy(model, dataset.x_test, dataset.y_test) if dataset is not None else float("nan")
    return {"model_bytes": models.to_bytes(model), "keras_accuracy": accuracy, "summary": models.summarize(model)}


@job
def qat(spec, x_train, y_train, calibration, epochs: int, progress: ProgressFn, **options) -> bytes:
    from core.qat import train_and_convert  # sets TF_USE_LEGACY_KERAS before TensorFlow loads

    return train_and_convert(spec, x_train, y_train, calibration, epochs, progress=progress, **options)


@job
def fail(how: str, progress: ProgressFn) -> None:
    """Fail on purpose ("raise", "exit" or "abort"): proves that every kind of failure reaches the caller."""
    progress(Progress("fail", 0.5, f"about to {how}"))
    if how == "raise":
        raise ValueError("failing on purpose")
    if how == "exit":
        os._exit(3)
    os.abort()


def exit_with_parent(parent_pid: int) -> None:
    """A worker must never outlive the process that started it, even one killed with SIGKILL:
    a daemon thread watches the parent and ends this process when it is gone."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


# -- the parent's side ---------------------------------------------------------------------------


def _read_frame(stream):
    header = stream.read(4)
    if len(header) < 4:
        return None
    (length,) = struct.unpack("<I", header)
    data = stream.read(length)
    if len(data) < length:
        return None
    return pickle.loads(data)


def run_job(name: str, progress: ProgressFn = ignore, timeout: float | None = None, **payload) -> Any:
    """Run one job in a fresh worker process and return its result."""
    if name not in JOBS:
        raise ValueError(f"no worker job named {name!r}")
    env = {
        **os.environ,
        "PYTHONPATH": PROJECT_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "core.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=PROJECT_ROOT,
            env=env,
        )
        outcome: tuple | None = None
        try:
            process.stdin.write(pickle.dumps((name, payload), protocol=pickle.HIGHEST_PROTOCOL))
            process.stdin.close()
            while (frame := _read_frame(process.stdout)) is not None:
                kind, value = frame
                if kind == "progress":
                    progress(value)
                else:
                    outcome = frame
            process.wait(timeout=timeout)
        except BrokenPipeError:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as error:
            process.kill()
            raise WorkerError(f"{name}: the worker took longer than {timeout:.0f} s and was stopped") from error
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if outcome is not None and outcome[0] == "result":
            return outcome[1]
        if outcome is not None and outcome[0] == "error":
            raise WorkerError(outcome[1])
        errors.seek(0)
        tail = [line for line in errors.read().decode(errors="replace").splitlines() if line.strip()][-3:]
        how = (
            f"was killed by signal {-process.returncode}" if process.returncode < 0 else f"exited with code {process.returncode}"
        )
        raise WorkerError(f"{name}: the worker process {how} before answering" + (f" ({' | '.join(tail)})" if tail else ""))


# -- the worker's side ---------------------------------------------------------------------------


def _serve() -> int:
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever TensorFlow or Keras prints must not corrupt the frames

    def send(kind: str, value) -> None:
        data = pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL)
        channel.write(struct.pack("<I", len(data)) + data)
        channel.flush()

    exit_with_parent(os.getppid())
    name, payload = pickle.load(sys.stdin.buffer)
    try:
        result = JOBS[name](progress=lambda report: send("progress", report), **payload)
    except Exception as error:  # reported to the parent as one clear line; the trace goes to stderr
        traceback.print_exc()
        message = str(error).strip() or type(error).__name__
        send("error", message if ":" in message.split(" ")[0] else f"{name}: {message}")
        return 1
    send("result", result)
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
