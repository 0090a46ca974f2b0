"""One call in a fresh, single-use process, bounded in memory and in time.

For work that must not run in the caller's process: a .tflite a person brought (the probe, and
the measurements of that file), whose interpreter's C++ code may crash or allocate far more than
its file size suggests. :func:`run_isolated` runs ``function(*args)`` in a spawned child (built on
pebble, the library the job service already uses), with

* a hard memory bound: the child caps its own address space (``RLIMIT_AS``) at what it has mapped
  after its imports plus ``memory_mb``, so an allocation past the bound fails in the child (a
  ``MemoryError``, or a C++ abort) instead of growing the server;
* a time limit: past ``timeout_s`` the child is stopped;
* one line for every way it can end badly (:class:`IsolationError`).

The result comes back with the child's peak resident memory (:class:`Isolated`).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import resource
import signal
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from multiprocessing import popen_spawn_posix, spawn
from typing import Any

MB = 1024 * 1024


class IsolationError(RuntimeError):
    """The isolated call gave no result; the message is one line for a person."""


@dataclass(frozen=True)
class Isolated:
    value: Any
    peak_mb: float  # the child's peak resident memory
    bound_mb: float  # the memory the call was allowed on top of the child's imports (0: none)


def reset_peak_memory() -> None:
    """Start this process's peak resident memory (VmHWM) afresh. A spawned child otherwise inherits
    the peak of the process it was forked from."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_memory_mb() -> float:
    """This process's peak resident memory since it started, or since :func:`reset_peak_memory`."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mapped_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[0]) * resource.getpagesize()


def exit_with_parent(parent_pid: int) -> None:
    """A child must never outlive the process that started it, even one killed with SIGKILL: a
    daemon thread watches the parent and ends this process when it is gone."""
    import time

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _bounded_call(
    function, args: tuple, memory_mb: float, imports: tuple[str, ...], parent_pid: int, progress_queue=None
) -> tuple[Any, float]:
    """Inside the child: import what the call needs, cap the address space, call, report the peak."""
    import importlib

    exit_with_parent(parent_pid)

    # What the libraries print in the child (LiteRT's C++ log lines) is not for the person: the
    # outcome comes back as a value or an exception.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    reset_peak_memory()
    for module in imports:
        importlib.import_module(module)
    if memory_mb:
        limit = _mapped_bytes() + int(memory_mb * MB)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        value = function(*args) if progress_queue is None else function(*args, progress=progress_queue.put)
    except RuntimeError as error:
        # LiteRT's C++ allocator, refused memory past the bound, raises an empty RuntimeError.
        if memory_mb and (not str(error).strip() or "alloc" in str(error).lower()):
            raise MemoryError(str(error)) from None
        raise
    return value, peak_memory_mb()


def run_isolated(
    function,
    *args,
    timeout_s: float,
    memory_mb: float = 0,
    what: str = "the work",
    imports: tuple[str, ...] = ("numpy",),
    progress: Callable[[Any], None] | None = None,
) -> Isolated:
    """Run ``function(*args)`` (a module-level function; arguments and result are pickled) in a
    fresh process. With ``progress``, the function is also given ``progress=`` and what it reports
    reaches ``progress`` here. Raises :class:`IsolationError` with one line when it raises (its own
    message), crashes, goes past its memory bound or its time limit."""
    from pebble import ProcessExpired, concurrent

    context = clean_spawn_context()
    reports = context.Queue() if progress is not None else None
    call = concurrent.process(timeout=timeout_s, daemon=True, context=context)(_bounded_call)
    future = call(function, args, memory_mb, imports, os.getpid(), reports)
    if reports is not None:
        _relay(future, reports, progress)
    bound = f" (it may use {memory_mb:,.0f} MB)" if memory_mb else ""
    try:
        value, peak = future.result()
    except FutureTimeout as error:
        raise IsolationError(f"{what} took longer than {timeout_s:,.0f} s and was stopped") from error
    except MemoryError as error:
        raise IsolationError(f"{what} needs more memory than its bound of {memory_mb:,.0f} MB") from error
    except ProcessExpired as expired:
        raise IsolationError(f"{what} crashed: {how_process_ended(expired.exitcode)}{bound}") from expired
    except Exception as error:  # the function's own exception, raised in the child
        text = str(error).strip()
        raise IsolationError(text.splitlines()[0] if text else type(error).__name__) from error
    return Isolated(value, peak, memory_mb)


def _relay(future, reports, progress: Callable[[Any], None]) -> None:
    """Hand the child's reports to ``progress`` until it ends, then what is left in the queue."""
    import queue

    while True:
        try:
            progress(reports.get(timeout=0.1))
        except queue.Empty:
            if future.done():
                break
    while True:
        try:
            progress(reports.get_nowait())
        except (queue.Empty, OSError, EOFError):
            break
    reports.close()


def how_process_ended(exitcode: int | None, process: str = "process") -> str:
    """'its process was killed by SIGKILL (most likely out of memory)', or the exit code."""
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        likely = " (most likely out of memory)" if number == signal.SIGKILL else ""
        return f"its {process} was killed by {name}{likely}"
    return f"its {process} exited with code {exitcode}"


# -- starting clean processes -------------------------------------------------------------------------

_launching = threading.local()


def _preparation_data(name, _original=spawn.get_preparation_data):
    data = _original(name)
    if getattr(_launching, "clean", False):
        # Our children need nothing from the parent's __main__. Left in, a spawned child would
        # re-run the parent's main script: under `streamlit run`, it imports Streamlit into every
        # child (~50 MB, 0.7 s); under an unguarded script, worse.
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


spawn.get_preparation_data = _preparation_data


class _CleanPopen(popen_spawn_posix.Popen):
    def _launch(self, process_obj):
        _launching.clean = True
        try:
            super()._launch(process_obj)
        finally:
            _launching.clean = False


class _CleanProcess(multiprocessing.context.SpawnProcess):
    _start_method = "spawn"

    @staticmethod
    def _Popen(process_obj):
        return _CleanPopen(process_obj)


class _CleanContext(multiprocessing.context.SpawnContext):
    Process = _CleanProcess


def clean_spawn_context():
    """A spawn context (never fork a server full of threads) whose processes do not import the
    parent's __main__. The job service's pool and every isolated call start from it."""
    return _CleanContext()
