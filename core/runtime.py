"""The one boundary to the LiteRT interpreter (``ai_edge_litert``). Nothing else in the lab touches
interpreter details.

:class:`LiteModel` takes images as the lab holds them (N×28×28 float32 in [0, 1]) and returns
float logits, whatever the model wants inside:

* quantized input/output (int8, uint8, int16): inputs are quantized and outputs dequantized with
  each tensor's scale and zero point;
* unknown dimensions (``shape_signature`` with -1 for batch, height or width): the shape is filled
  in from the data, so nobody sets input shapes by hand;
* a channel axis (N×28×28×1) or a flat input (N×784) is added to match the model's rank;
* thread count and XNNPACK (the default CPU delegate) on or off;
* bounded memory: a LiteModel measures its own tensors (at one and two images) and cuts every
  batch to stay within ``limits.INTERPRETER_BYTES`` (:attr:`LiteModel.max_batch`).

A file a person brings is run here only after :func:`check_model` has run it once in a bounded
child process: a file's size says nothing of the memory its interpreter allocates.

This module never imports TensorFlow. A LiteRT interpreter is not thread-safe: give each
Streamlit session (each thread) its own LiteModel.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from core import limits

INTEGER_TYPES = (np.int8, np.uint8, np.int16)


class Runtime(Protocol):
    """What a runtime module's model answers, whatever runs it: LiteRT (:class:`LiteModel`, here),
    TensorFlow Lite Micro (``core.micro.MicroModel``). The lab's measurements (core.latency,
    core.compare) call only these, so a new runtime is a new module, not edits across pages."""

    threads: int
    xnnpack: bool
    max_batch: int  # the largest batch it runs at once
    memory_bytes: int  # what its tensors (or its arena) take now

    def set_input(self, images: np.ndarray) -> None: ...

    def invoke(self) -> None: ...

    def output_logits(self) -> np.ndarray: ...

    def predict_logits(self, images: np.ndarray) -> np.ndarray: ...


class RuntimeModelError(ValueError):
    """The .tflite cannot be run by the lab; the message says why."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    index: int
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    scale: float  # 0.0 when the tensor is not quantized
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    @classmethod
    def from_details(cls, details: dict) -> TensorInfo:
        params = details.get("quantization_parameters") or {}
        scales = np.asarray(params.get("scales", []), dtype=np.float64)
        zeros = np.asarray(params.get("zero_points", []), dtype=np.int64)
        scale, zero = details.get("quantization", (0.0, 0))
        if scales.size == 1:
            scale, zero = float(scales[0]), int(zeros[0]) if zeros.size else 0
        return cls(
            name=details["name"],
            index=int(details["index"]),
            shape=tuple(int(d) for d in details["shape"]),
            shape_signature=tuple(int(d) for d in details.get("shape_signature", details["shape"])),
            dtype=np.dtype(details["dtype"]).name,
            scale=float(scale),
            zero_point=int(zero),
        )


def quantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    dtype = np.dtype(info.dtype)
    if not info.quantized or dtype.kind == "f":
        return values.astype(dtype)
    limits = np.iinfo(dtype)
    return np.clip(np.round(values / info.scale) + info.zero_point, limits.min, limits.max).astype(dtype)


def dequantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    if info.quantized and np.dtype(info.dtype) in INTEGER_TYPES:
        return (values.astype(np.float32) - info.zero_point) * np.float32(info.scale)
    return values.astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def to_probabilities(scores: np.ndarray) -> np.ndarray:
    """A model's outputs as probabilities: softmax of logits, or as they are if the model already
    ends in a softmax (non-negative rows summing to 1)."""
    already = np.all(scores >= 0) and np.allclose(scores.sum(axis=-1), 1.0, atol=2e-2)
    return scores if already else softmax(scores)


class LiteModel:
    """A .tflite classifier ready to run on the lab's images."""

    def __init__(self, tflite: bytes, threads: int = 1, xnnpack: bool = True, preserve_all_tensors: bool = False):
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if preserve_all_tensors:
            # Intermediate tensors are only kept when no delegate rewrites the graph.
            resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            with warnings.catch_warnings():  # the debugging warning for preserved tensors: we asked for them
                warnings.simplefilter("ignore", UserWarning)
                self.interpreter = Interpreter(
                    model_content=bytes(tflite),
                    num_threads=threads,
                    experimental_op_resolver_type=resolver,
                    experimental_preserve_all_tensors=preserve_all_tensors,
                )
        except (ValueError, RuntimeError) as error:
            raise RuntimeModelError(f"LiteRT cannot load this model ({str(error).strip().splitlines()[0]})") from error
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeModelError(
                f"the lab runs models with one input and one output; this one has {len(inputs)} and {len(outputs)}"
            )
        self.threads, self.xnnpack = threads, xnnpack
        self.input = TensorInfo.from_details(inputs[0])
        self.output = TensorInfo.from_details(outputs[0])
        self._allocated: tuple[int, ...] | None = None
        self.memory_bytes = 0  # every tensor at the batch last allocated
        self.max_batch = self._largest_batch()

    # -- memory -----------------------------------------------------------------------------------
    def allocated_bytes(self) -> int:
        """Every tensor's bytes at the current allocation, as LiteRT sized them."""
        return sum(
            int(np.prod(d["shape"], dtype=np.int64)) * np.dtype(d["dtype"]).itemsize
            for d in self.interpreter.get_tensor_details()
        )

    def _bytes_at(self, batch: int) -> int:
        self._ensure_shape(self._shape_for(np.zeros((batch, 28, 28), np.float32))[1])
        return self.memory_bytes

    def _largest_batch(self) -> int:
        """The largest batch whose tensors stay within limits.INTERPRETER_BYTES, from what one more
        image adds; 1 for a model that runs one image only."""
        one = self._bytes_at(1)
        try:
            two = self._bytes_at(2)
            # Some graphs resize but then fail to run at two: the LiteRT Quantizer's Hadamard recipes
            # insert a RESHAPE to a fixed batch of one. One invoke on zeros tells.
            self.interpreter.set_tensor(self.input.index, np.zeros(self._allocated, self.input.dtype))
            self.interpreter.invoke()
        except (ValueError, RuntimeError):  # a fixed batch of one (its graph cannot be resized)
            self._allocated = None
            self._bytes_at(1)
            return 1
        per_image = max(two - one, 1)
        return int(min(limits.MAX_BATCH, max(1, (limits.INTERPRETER_BYTES - one) // per_image + 1)))

    # -- shapes ---------------------------------------------------------------------------------
    def _shape_for(self, images: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        """Reshape N×28×28 images to the model's rank; return them and the input shape to use."""
        signature = self.input.shape_signature
        rank = len(signature)
        if rank == 4:
            images = images[..., None] if images.ndim == 3 else images
        elif rank == 2:
            images = images.reshape(len(images), -1)
        elif rank != 3:
            raise RuntimeModelError(f"input of rank {rank} ({signature}) does not take images")
        shape = images.shape
        for axis, (want, have) in enumerate(zip(signature, shape, strict=False)):
            if axis > 0 and want not in (-1, have):
                raise RuntimeModelError(f"the model's input is {signature}, the images are {shape}")
        return images, shape

    def _ensure_shape(self, shape: tuple[int, ...]) -> None:
        if self._allocated == shape:
            return
        if shape[0] > getattr(self, "max_batch", shape[0]):
            raise RuntimeModelError(f"a batch of {shape[0]} is over this model's memory bound of {self.max_batch} images")
        if (self._allocated or tuple(self.input.shape)) != shape or self._allocated is None:
            self.interpreter.resize_tensor_input(self.input.index, list(shape), strict=False)
        self.interpreter.allocate_tensors()
        self._allocated = shape
        self.memory_bytes = self.allocated_bytes()

    # -- running ----------------------------------------------------------------------------------
    def set_input(self, images: np.ndarray) -> None:
        """Quantize and place a batch (resizing the interpreter when the batch size changes)."""
        images, shape = self._shape_for(np.asarray(images, dtype=np.float32))
        self._ensure_shape(shape)
        self.interpreter.set_tensor(self.input.index, quantize(images, self.input))

    def invoke(self) -> None:
        self.interpreter.invoke()

    def output_logits(self) -> np.ndarray:
        return dequantize(self.interpreter.get_tensor(self.output.index), self.output)

    def predict_logits(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Float logits (or probabilities, if the model ends in softmax) for N images."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 2:
            images = images[None]
        batch_size = max(1, min(batch_size, self.max_batch))
        parts = []
        for start in range(0, len(images), batch_size):
            self.set_input(images[start : start + batch_size])
            self.invoke()
            parts.append(self.output_logits().reshape(len(images[start : start + batch_size]), -1))
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def predict_probabilities(self, images: np.ndarray) -> np.ndarray:
        return to_probabilities(self.predict_logits(images))

    def signature_input(self) -> tuple[str, str]:
        """(signature key, input name) of the model's first signature, as the LiteRT Quantizer
        wants its calibration and validation data keyed."""
        signatures = self.interpreter.get_signature_list()
        key = next(iter(signatures))
        return key, signatures[key]["inputs"][0]

    # -- inspection of a run --------------------------------------------------------------------------
    def tensor_details(self) -> list[dict]:
        return self.interpreter.get_tensor_details()

    def tensor(self, index: int) -> np.ndarray:
        return self.interpreter.get_tensor(index)

    def ops(self) -> list[dict]:
        return self.interpreter._get_ops_details()  # the only way LiteRT exposes the op graph


@dataclass(frozen=True)
class Footprint:
    """What one image through a model costs, measured by running it."""

    tensor_bytes: int  # every tensor for one image, as LiteRT sized them after an invoke
    max_batch: int  # the largest batch within limits.INTERPRETER_BYTES
    invoke_ms: float  # one image, the fastest of a few invokes after the first
    outputs: int  # scores per image
    peak_mb: float = 0.0  # the probe child's peak resident memory


def footprint(tflite: bytes) -> Footprint:
    """Run one image through the model in this process and measure it (the probe's child calls this)."""
    model = LiteModel(tflite)
    model.set_input(np.zeros((1, 28, 28), np.float32))
    times, started = [], time.perf_counter()
    for _ in range(4):
        start = time.perf_counter()
        model.invoke()
        times.append(time.perf_counter() - start)
        if time.perf_counter() - started > 1.0:
            break
    outputs = int(np.prod(model.output_logits().shape[1:], dtype=np.int64))
    return Footprint(model.allocated_bytes(), model.max_batch, 1000 * min(times[1:] or times), outputs)


PROBE_TIMEOUT_S = 60


def check_model(tflite: bytes, name: str = "the model", classes: int | None = None) -> Footprint:
    """Everything the lab checks before a person's .tflite may run in the server; one line
    (RuntimeModelError, or ModelFormatError for a malformed file) naming the file, the limit and the
    number when it may not:

    1. the flatbuffer is well formed, and the tensors it declares fit limits.MAX_MODEL_TENSOR_BYTES;
    2. one image runs in a child process whose memory is capped at limits.PROBE_MEMORY_MB (a crash,
       an allocation past the bound or a hang ends the child only), which measures what LiteRT
       really allocated (shapes computed at run time included) and how long it took;
    3. its scores per image match the dataset's ``classes``, when given.
    """
    from core.inspect import inspect_tflite
    from core.isolation import IsolationError, run_isolated

    declared = inspect_tflite(tflite).tensor_bytes
    if declared > limits.MAX_MODEL_TENSOR_BYTES:
        raise RuntimeModelError(
            limits.refusal(name, "the memory its tensors declare for one image", declared, limits.MAX_MODEL_TENSOR_BYTES, "bytes")
        )
    try:
        isolated = run_isolated(
            footprint,
            bytes(tflite),
            timeout_s=PROBE_TIMEOUT_S,
            memory_mb=limits.PROBE_MEMORY_MB,
            what="running one image",
            imports=("numpy", "ai_edge_litert.interpreter"),
        )
    except IsolationError as error:
        raise RuntimeModelError(f"{name}: LiteRT cannot run this model: {error}") from error
    found = replace(isolated.value, peak_mb=isolated.peak_mb)
    check_footprint(found, name, classes)
    return found


def check_footprint(found: Footprint, name: str, classes: int | None = None) -> None:
    if found.tensor_bytes > limits.MAX_MODEL_TENSOR_BYTES:
        raise RuntimeModelError(
            limits.refusal(
                name, "the memory its tensors take for one image", found.tensor_bytes, limits.MAX_MODEL_TENSOR_BYTES, "bytes"
            )
        )
    if found.invoke_ms > limits.MAX_INVOKE_MS:
        raise RuntimeModelError(
            f"{name}: one image takes {found.invoke_ms:,.0f} ms to run, over the limit of {limits.MAX_INVOKE_MS:,} ms"
        )
    if classes is not None:
        check_outputs(found.outputs, classes, name)


def check_outputs(outputs: int, classes: int, name: str) -> None:
    """A model's scores per image must be the dataset's classes (one line when they cannot be)."""
    if outputs != classes:
        raise RuntimeModelError(
            f"{name} gives {outputs:,} score{'s' if outputs != 1 else ''} per image, but the dataset has {classes} "
            "classes: its answers cannot be these classes"
        )
