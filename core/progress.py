"""Progress reports that a CLI, a page or a worker pipe can carry (plain, picklable values)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    stage: str  # "train", "convert", "evaluate", "benchmark", …
    fraction: float  # 0–1 within the stage
    message: str
    metrics: dict = field(default_factory=dict)  # e.g. {"epoch": 1, "loss": 0.3, "accuracy": 0.9}


ProgressFn = Callable[[Progress], None]


def ignore(_: Progress) -> None:
    pass
