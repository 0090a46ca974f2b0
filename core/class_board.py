"""The class's devices: int8 against float32 on every phone and laptop in the room, for the projector.

A session joins only with its person's consent (a toggle on Compare). An entry is anonymous: the
device class and the browser's family ("Chrome on Android"), never the full user agent or an
address. The board lives in the server's memory only, holds at most ``MAX_ENTRIES`` (the oldest
go first), and is gone when the server restarts. Each session writes only its own entry, under a
random token it holds.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from core.litertjs import DeviceReport

MAX_ENTRIES = 300


@dataclass(frozen=True)
class BoardEntry:
    device_class: str  # phone, tablet, laptop or desktop
    browser: str  # e.g. "Safari on iOS"
    cores: int
    wasm_build: str
    float32_us: float
    int8_us: float
    joined: float  # time.time(), for the oldest-first eviction

    @property
    def int8_over_float32(self) -> float:
        return self.int8_us / self.float32_us


def entry_from(report: DeviceReport, float_name: str = "float32", int8_name: str = "int8") -> BoardEntry | None:
    """The board's view of a device report; None when it timed neither of the two."""
    rows = report.rows
    if not all(name in rows and rows[name].ok for name in (float_name, int8_name)):
        return None
    return BoardEntry(
        report.facts.device_class,
        report.facts.browser,
        report.facts.cores,
        report.facts.wasm_build,
        rows[float_name].latency["wasm"].p50_us,
        rows[int8_name].latency["wasm"].p50_us,
        time.time(),
    )


class ClassBoard:
    """Bounded, in memory, shared by every session of one server; thread-safe."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, BoardEntry] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, token: str, entry: BoardEntry) -> None:
        with self._lock:
            self._entries[token] = entry
            self._entries.move_to_end(token)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def remove(self, token: str) -> None:
        with self._lock:
            self._entries.pop(token, None)

    def has(self, token: str) -> bool:
        with self._lock:
            return token in self._entries

    def entries(self) -> list[BoardEntry]:
        with self._lock:
            return list(self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
