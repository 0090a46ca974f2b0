"""Answering one drawn image with every variant, each invoke timed: the Draw page's runtime side.

A :class:`LiveModels` belongs to one session: LiteRT interpreters are not thread-safe, and Streamlit
serves each session on its own thread, so interpreters are never shared between sessions. It holds
at most ``limits.SESSION_INTERPRETER_BYTES`` of tensors (each interpreter counts what LiteRT
allocated for it), releasing the oldest first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from core import limits
from core.runtime import LiteModel, to_probabilities
from core.variants import reference_of

WARM_UP = 2  # the first invokes set up kernels: not what a stroke costs


@dataclass(frozen=True, eq=False)
class Answer:
    probabilities: np.ndarray
    invoke_us: float  # this image's invoke
    median_us: float  # over every image this session drew
    images: int
    disagrees_with: str = ""  # the reference, when this variant answers otherwise


@dataclass
class LiveModels:
    models: OrderedDict = field(default_factory=OrderedDict)  # name -> (digest, LiteModel), oldest first
    latencies_us: dict = field(default_factory=dict)  # name -> every invoke's time
    budget_bytes: int = limits.SESSION_INTERPRETER_BYTES

    def held_bytes(self) -> int:
        return sum(model.memory_bytes for _, model in self.models.values())

    def hold(self, name: str, digest: str, model: LiteModel) -> list[str]:
        """Keep an interpreter; release the oldest while more than the budget is held. Returns the names released."""
        self.models[name] = (digest, model)
        self.models.move_to_end(name)
        released = []
        while self.held_bytes() > self.budget_bytes and len(self.models) > 1:
            oldest = next(iter(self.models))
            del self.models[oldest]
            released.append(oldest)
        return released

    def load(self, files: dict[str, tuple[str, bytes]]) -> list[str]:
        """Interpreters for ``{name: (digest, tflite)}``, warmed up, reusing those already held. Returns
        the names left out because the budget is full."""
        for name in list(self.models):
            if name not in files or self.models[name][0] != files[name][0]:
                del self.models[name]
        for name, (digest, tflite) in files.items():
            if name in self.models:
                continue
            model = LiteModel(tflite, threads=1)
            for _ in range(WARM_UP):
                model.predict_logits(np.zeros((1, 28, 28), np.float32))
            self.latencies_us[name] = []
            if self.hold(name, digest, model):
                break  # the budget is full: the rest are not opened (and the oldest was released)
        return [name for name in files if name not in self.models]

    def answer(self, image: np.ndarray) -> dict[str, Answer]:
        """Every held variant's answer to one 28×28 image, with its invoke time."""
        found = {}
        for name, (_, model) in self.models.items():
            model.set_input(image[None])
            start = time.perf_counter_ns()
            model.invoke()
            elapsed_us = (time.perf_counter_ns() - start) / 1000
            history = self.latencies_us.setdefault(name, [])
            history.append(elapsed_us)
            found[name] = (to_probabilities(model.output_logits()[0]), elapsed_us, float(np.median(history)), len(history))
        if not found:
            return {}
        reference = reference_of(found)
        expected = int(np.argmax(found[reference][0]))
        return {
            name: Answer(*values, disagrees_with=reference if int(np.argmax(values[0])) != expected else "")
            for name, values in found.items()
        }
