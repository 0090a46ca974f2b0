"""A job kind of the tests' own, registered by nothing in the product: it fails (or dawdles) on purpose,
to prove that every kind of failure in a pool worker reaches the caller as one line. The job service
runs any frozen request that has ``kind``, ``key()``, ``describe()`` and ``run(progress)``."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from dataclasses import asdict, dataclass

from core.progress import Progress, ProgressFn, ignore


@dataclass(frozen=True)
class FaultRequest:
    """``how``: "raise", "exit", "abort", "kill" (SIGKILL, as the OOM killer does), or "sleep"."""

    how: str
    seconds: float = 0.0
    nonce: int = 0  # a distinct nonce makes an otherwise identical request distinct

    kind = "fault"
    cacheable = False  # each test wants its own computation

    def key(self) -> str:
        return hashlib.blake2b(repr(sorted(asdict(self).items())).encode(), digest_size=16).hexdigest()

    def describe(self) -> str:
        return f"fault: {self.how}"

    def run(self, progress: ProgressFn = ignore) -> None:
        progress(Progress("fault", 0.5, f"about to {self.how}"))
        if self.how == "raise":
            raise ValueError("failing on purpose")
        if self.how == "exit":
            os._exit(3)
        if self.how == "abort":
            os.abort()
        if self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.how == "sleep":
            end = time.monotonic() + self.seconds
            while time.monotonic() < end:
                time.sleep(0.05)
                progress(Progress("fault", 1 - (end - time.monotonic()) / max(self.seconds, 1e-9), "sleeping"))
            return None
        raise ValueError(f"unknown fault {self.how!r}")
