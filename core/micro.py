"""Will a variant run on a microcontroller? TFLite Micro itself answers, and measures the memory.

This module is the one place that touches TFLite Micro (pip ``tflite-micro``: TFLM's own C++
interpreter with its reference kernels), as ``core/runtime.py`` is for LiteRT. For each variant:

* whether TFLM runs it, and if not, TFLM's own reason (what its C++ printed), in one line;
* the arena TFLM needs: the total its RecordingMicroAllocator records after the first invoke
  (head: the tensors' memory plan; tail: what persists), checked by allocating exactly that much;
* flash: the model's bytes, which a microcontroller keeps in flash as a C array;
* accuracy and agreement with the float32 reference on the test set, every image through TFLM's
  reference kernels, and how many images TFLM answers differently from LiteRT on the same file:
  from LiteRT's built-in kernels (the same reference integer arithmetic: 0 is expected), and from
  LiteRT with XNNPACK, its default, whose int8 kernels requantize with their own rounding (an
  output one step apart can flip an answer on a near-tie).

Every variant runs in a child process (``core.isolation``): a model that crashes TFLM's C++
ends that child only, and becomes a row with the reason. TFLM prints from C to stdout; the child
captures that at the file-descriptor level.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass

import numpy as np

SEARCH_ARENA = 1024 * 1024  # the arena a variant first gets; what it needs is then recorded
MICRO_LATENCY_RUNS = 200  # timed invokes on the reference kernels (slower than LiteRT's)


@dataclass(frozen=True)
class MicroResult:
    runs: bool
    reason: str = ""  # TFLM's own words when it does not run
    arena_bytes: int | None = None  # RAM for tensors, as TFLM's RecordingMicroAllocator records it
    arena_head_bytes: int | None = None  # the memory plan of the tensors (reused between layers)
    arena_tail_bytes: int | None = None  # what persists: tensor structs, quantization data, op state
    arena_method: str = ""  # "recorded, and allocating exactly that much works" (or why not)
    arena_checked: bool | None = None  # an interpreter with exactly arena_bytes ran one image (None: not tried)
    flash_bytes: int = 0  # the model itself, as a C array in flash (TFLM's own code is not counted)
    accuracy: float | None = None
    agreement: float | None = None  # with float32's answers (LiteRT), as everywhere in the lab
    differs_from_litert: int | None = None  # test images TFLM answers differently from LiteRT's built-in kernels, same file
    differs_from_litert_xnnpack: int | None = None  # … and from LiteRT with XNNPACK, its default CPU path
    images: int = 0
    invoke_us: float | None = None  # median TFLM invoke, reference kernels, on this machine

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Board:
    name: str
    chip: str
    ram_bytes: int
    flash_bytes: int
    source: str  # where the figures are published


KiB = 1024
# Published on-chip RAM and flash. (Boards with external PSRAM/flash list the chip's own RAM and the
# module's flash.)
BOARDS = (
    Board(
        "Arduino Nano 33 BLE Sense",
        "nRF52840 (Cortex-M4F, 64 MHz)",
        256 * KiB,
        1024 * KiB,
        "Arduino's board page: 256 KB SRAM, 1 MB flash",
    ),
    Board(
        "Raspberry Pi Pico",
        "RP2040 (2× Cortex-M0+, 133 MHz)",
        264 * KiB,
        2048 * KiB,
        "Raspberry Pi's datasheet: 264 KB SRAM, 2 MB QSPI flash",
    ),
    Board(
        "ESP32-DevKitC (WROOM-32)",
        "ESP32 (2× Xtensa LX6, 240 MHz)",
        520 * KiB,
        4096 * KiB,
        "Espressif's datasheet: 520 KB SRAM; the module's 4 MB flash",
    ),
    Board(
        "STM32F746G-DISCO", "STM32F746NG (Cortex-M7, 216 MHz)", 320 * KiB, 1024 * KiB, "ST's datasheet: 320 KB RAM, 1 MB flash"
    ),
)


@dataclass(frozen=True)
class Fit:
    board: str
    fits: bool
    ram_headroom_bytes: int  # negative: short by that much
    flash_headroom_bytes: int


def fits(result: MicroResult, board: Board) -> Fit | None:
    """Does the variant fit the board, by the measured arena and model size? None if TFLM cannot run it."""
    if not result.runs or result.arena_bytes is None:
        return None
    ram, flash = board.ram_bytes - result.arena_bytes, board.flash_bytes - result.flash_bytes
    return Fit(board.name, ram >= 0 and flash >= 0, ram, flash)


# -- the parent's side ---------------------------------------------------------------------------


def measure(
    tflite: bytes,
    images: np.ndarray,
    labels: np.ndarray,
    reference_predictions: np.ndarray,
    litert_predictions: np.ndarray,
    litert_xnnpack_predictions: np.ndarray | None = None,
    timeout: float = 600,
) -> MicroResult:
    """One variant under TFLM, in a child process (core.isolation). ``litert_predictions``: LiteRT's
    answers on the same file with its built-in kernels; ``litert_xnnpack_predictions``: with XNNPACK
    (optional). A crash or a time-out of TFLM is a row with the reason."""
    from core.isolation import IsolationError, run_isolated

    xnnpack = litert_predictions if litert_xnnpack_predictions is None else litert_xnnpack_predictions
    arrays = [np.asarray(images, np.float32)] + [
        np.asarray(a) for a in (labels, reference_predictions, litert_predictions, xnnpack)
    ]
    try:
        return run_isolated(_measure_in_child, tflite, *arrays, timeout_s=timeout, what="TFLM", imports=()).value
    except IsolationError as error:
        return MicroResult(False, str(error), flash_bytes=len(tflite))


def measure_arena(tflite: bytes) -> MicroResult:
    """Whether TFLM runs the model and the arena it records, on one blank image (no test set)."""
    blank, none = np.zeros((1, 28, 28), np.float32), np.zeros(1, np.int64)
    return measure(tflite, blank, none, none, none)


def litert_answers(tflite: bytes, images: np.ndarray, xnnpack: bool) -> np.ndarray:
    """LiteRT's answers on the same file: the comparison for TFLM's."""
    from core.runtime import LiteModel

    return np.argmax(LiteModel(tflite, xnnpack=xnnpack).predict_logits(images), axis=-1)


def measure_all(
    tflites: dict[str, bytes], images: np.ndarray, labels: np.ndarray, progress=None, measure_one=None, answers=None
) -> dict[str, MicroResult]:
    """Every variant under TFLM; LiteRT's answers on the same files are the comparison.

    ``measure_one(name, tflite, images, labels, reference, builtin, xnnpack)`` and
    ``answers(name, tflite, images, xnnpack)`` default to :func:`measure` and :func:`litert_answers`;
    the app passes its cached versions of the same calls."""
    from core.variants import reference_of

    measure_one = measure_one or (lambda name, *args: measure(*args))
    answers = answers or (lambda name, tflite, images, xnnpack: litert_answers(tflite, images, xnnpack))
    reference_name = reference_of(tflites)
    reference = answers(reference_name, tflites[reference_name], images, True)  # the reference as Compare scores it
    results = {}
    for index, (name, data) in enumerate(tflites.items()):
        if progress:
            progress(index, len(tflites), name)
        builtin, xnnpack = answers(name, data, images, False), answers(name, data, images, True)
        results[name] = measure_one(name, data, images, labels, reference, builtin, xnnpack)
    return results


# -- the child's side ----------------------------------------------------------------------------

_ALLOCATION = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def _one_line(text: str, error: BaseException | None) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and "RecordingMicroAllocator" not in line]
    said = "; ".join(lines[:2])
    if error is not None:
        said = f"{said} ({error})" if said else str(error)
    return said or "TFLM refused the model without a reason"


def _quantize(images: np.ndarray, details: dict) -> np.ndarray:
    dtype = details["dtype"]
    if np.issubdtype(dtype, np.floating):
        return images.astype(dtype)
    scale = details["quantization_parameters"]["scales"]
    zero = details["quantization_parameters"]["zero_points"]
    info = np.iinfo(dtype)
    return np.clip(np.round(images / scale[0] + zero[0]), info.min, info.max).astype(dtype)


class MicroModel:
    """A .tflite under TFLite Micro's interpreter, answering the calls a LiteRT LiteModel answers
    (the runtime interface of core.runtime): ``set_input``, ``invoke``, ``output_logits``,
    ``predict_logits``, ``memory_bytes``. TFLM runs the batch its file fixes (one image), on its
    reference kernels, in an arena of a fixed size."""

    threads, xnnpack = 1, False  # TFLM has one thread and no delegate

    def __init__(self, tflite: bytes, arena_size: int = SEARCH_ARENA):
        from tflite_micro import runtime as tflm

        self.interpreter = tflm.Interpreter.from_bytes(tflite, arena_size=arena_size)
        self.input_details = self.interpreter.get_input_details(0)
        self.output_details = self.interpreter.get_output_details(0)
        self.shape = tuple(int(d) for d in self.input_details["shape"])
        self.max_batch = self.shape[0]
        self.memory_bytes = arena_size

    def set_input(self, images: np.ndarray) -> None:
        self.interpreter.set_input(_quantize(np.asarray(images, np.float32).reshape(self.shape), self.input_details), 0)

    def invoke(self) -> None:
        self.interpreter.invoke()

    def output_logits(self) -> np.ndarray:
        raw = np.asarray(self.interpreter.get_output(0))
        params = self.output_details.get("quantization_parameters") or {}
        scales, zeros = params.get("scales", []), params.get("zero_points", [])
        if np.issubdtype(raw.dtype, np.integer) and len(scales):
            return (raw.astype(np.float32) - zeros[0]) * np.float32(scales[0])
        return raw.astype(np.float32)

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        rows = []
        for index in range(len(images)):
            self.set_input(images[index : index + 1])
            self.invoke()
            rows.append(self.output_logits().reshape(-1))
            self.interpreter.reset()
        return np.stack(rows)


def _run_child(tflite: bytes, images, labels, reference, litert, litert_xnnpack, captured) -> MicroResult:
    from core.latency import invoke_latency

    def said() -> str:
        captured.flush()
        captured.seek(0)
        return captured.read().decode(errors="replace")

    try:
        model = MicroModel(tflite)
        model.set_input(images[:1])
        model.invoke()
    except Exception as error:  # TFLM says why on its C++ stdout; the exception only says that it failed
        return MicroResult(False, _one_line(said(), error), flash_bytes=len(tflite))
    sys.stdout.flush()
    model.interpreter.print_allocations()
    recorded = {kind: int(value) for kind, value in _ALLOCATION.findall(said())}
    arena = recorded.get("total")
    method, checked = "recorded by TFLM's RecordingMicroAllocator", None
    if arena is not None:
        try:  # the recorded figure is enough: an interpreter with exactly that arena allocates and runs
            exact = MicroModel(tflite, arena_size=arena)
            exact.set_input(images[:1])
            exact.invoke()
            method, checked = method + "; an arena of exactly that size runs", True
        except Exception:
            method, checked = method + "; an arena of exactly that size does NOT run (alignment): allocate a little more", False
    predictions = model.predict_logits(images).argmax(axis=-1)
    latency = invoke_latency(model, images[0], runs=MICRO_LATENCY_RUNS, warmup=5)  # the lab's one latency loop
    return MicroResult(
        runs=True,
        arena_bytes=arena,
        arena_head_bytes=recorded.get("head"),
        arena_tail_bytes=recorded.get("tail"),
        arena_method=method,
        arena_checked=checked,
        flash_bytes=len(tflite),
        accuracy=float(np.mean(predictions == labels)),
        agreement=float(np.mean(predictions == reference)),
        differs_from_litert=int(np.sum(predictions != litert)),
        differs_from_litert_xnnpack=int(np.sum(predictions != litert_xnnpack)),
        images=len(images),
        invoke_us=latency.p50_us,
    )


def _measure_in_child(tflite: bytes, images, labels, reference, litert, litert_xnnpack) -> MicroResult:
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 1)  # TFLM prints its reasons and allocations from C++
        os.dup2(captured.fileno(), 2)
        return _run_child(tflite, images, labels, reference, litert, litert_xnnpack, captured)
