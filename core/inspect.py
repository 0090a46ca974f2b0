"""Inspection of a .tflite file, read straight from its flatbuffer (no interpreter, no TensorFlow).

Reading the flatbuffer in pure Python means a malformed file raises a Python exception here,
which :func:`validate_flatbuffer` turns into a clear message, before any C++ interpreter sees it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as schema

TENSOR_TYPES = {value: name.lower() for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
BITS = {
    "float32": 32,
    "float16": 16,
    "bfloat16": 16,
    "int32": 32,
    "uint8": 8,
    "int64": 64,
    "bool": 8,
    "int16": 16,
    "complex64": 64,
    "int8": 8,
    "float64": 64,
    "complex128": 128,
    "uint64": 64,
    "uint32": 32,
    "uint16": 16,
    "int4": 4,
    "uint4": 4,
    "int2": 2,
    "float8_e4m3fn": 8,
    "float8_e5m2": 8,
}
OPERATORS = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


class ModelFormatError(ValueError):
    """Not a valid .tflite flatbuffer; the message names the problem."""


@dataclass(frozen=True)
class TensorSummary:
    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    bytes: int
    is_weight: bool  # a constant stored in the file
    scales: tuple[float, ...]  # quantization scale(s); empty when not quantized
    zero_points: tuple[int, ...]
    quantized_dimension: int


@dataclass(frozen=True)
class OperatorSummary:
    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Inspection:
    size_bytes: int
    weights_bytes: int  # constant tensor data
    other_bytes: int  # graph structure, metadata, padding
    inputs: tuple[TensorSummary, ...]
    outputs: tuple[TensorSummary, ...]
    operators: tuple[OperatorSummary, ...]
    tensors: tuple[TensorSummary, ...]
    description: str

    @property
    def tensor_bytes(self) -> int:
        """Every tensor of the main graph for one image, as the file declares their shapes (an
        unknown dimension counted as 1): what an interpreter allocates at the least."""
        return sum(tensor.bytes for tensor in self.tensors)

    @property
    def operator_counts(self) -> dict[str, int]:
        return dict(Counter(op.op for op in self.operators))

    def weights_by_dtype(self) -> dict[str, int]:
        totals: Counter = Counter()
        for tensor in self.tensors:
            if tensor.is_weight:
                totals[tensor.dtype] += tensor.bytes
        return dict(totals)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["operator_counts"] = self.operator_counts
        data["weights_by_dtype"] = self.weights_by_dtype()
        return data


def _parse(data: bytes):
    if len(data) < 8:
        raise ModelFormatError(f"file is {len(data)} bytes, too short to be a .tflite model")
    if data[4:8] != b"TFL3":
        raise ModelFormatError("not a .tflite flatbuffer (the file identifier 'TFL3' is missing)")
    try:
        return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as error:  # a corrupt flatbuffer fails in many ways inside the reader
        raise ModelFormatError(f"the .tflite flatbuffer is corrupt ({type(error).__name__}: {error})") from error


def validate_flatbuffer(data: bytes):
    """Parse and cross-check a .tflite; raise ModelFormatError naming the first problem."""
    model = _parse(data)
    if not model.subgraphs:
        raise ModelFormatError("the model has no subgraph")
    buffers = model.buffers or []
    for number, buffer in enumerate(buffers):
        if buffer.offset and (buffer.offset + buffer.size > len(data)):
            raise ModelFormatError(f"buffer {number} points past the end of the file")
    codes = model.operatorCodes or []
    for subgraph_number, subgraph in enumerate(model.subgraphs):
        tensors = subgraph.tensors or []
        where = f"subgraph {subgraph_number}"
        for tensor_number, tensor in enumerate(tensors):
            if not 0 <= tensor.buffer < max(len(buffers), 1):
                raise ModelFormatError(f"{where}: tensor {tensor_number} refers to buffer {tensor.buffer} of {len(buffers)}")
            if tensor.shape is not None and np.any(np.asarray(tensor.shape) < 0):
                raise ModelFormatError(f"{where}: tensor {tensor_number} has a negative dimension")
        for kind in ("inputs", "outputs"):
            for index in getattr(subgraph, kind) if getattr(subgraph, kind) is not None else []:
                if not 0 <= index < len(tensors):
                    raise ModelFormatError(f"{where}: {kind[:-1]} tensor {index} does not exist ({len(tensors)} tensors)")
        for op_number, operator in enumerate(subgraph.operators or []):
            if not 0 <= operator.opcodeIndex < len(codes):
                raise ModelFormatError(f"{where}: operator {op_number} uses opcode {operator.opcodeIndex} of {len(codes)}")
            for index in list(operator.inputs if operator.inputs is not None else []) + list(
                operator.outputs if operator.outputs is not None else []
            ):
                if not -1 <= index < len(tensors):
                    raise ModelFormatError(f"{where}: operator {op_number} refers to tensor {index} of {len(tensors)}")
    if model.subgraphs[0].inputs is None or len(model.subgraphs[0].inputs) == 0:
        raise ModelFormatError("the main subgraph has no input")
    return model


def _name(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def _op_name(code) -> str:
    builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
    name = OPERATORS.get(builtin, f"OP_{builtin}")
    return f"CUSTOM:{_name(code.customCode)}" if name == "CUSTOM" else name


def _tensor(index: int, tensor, buffers) -> TensorSummary:
    dtype = TENSOR_TYPES.get(tensor.type, f"type_{tensor.type}")
    shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))
    signature = tuple(int(d) for d in tensor.shapeSignature) if tensor.shapeSignature is not None else shape
    buffer = buffers[tensor.buffer] if 0 < tensor.buffer < len(buffers) else None
    stored = 0
    if buffer is not None:
        stored = int(buffer.size) if buffer.offset else (len(buffer.data) if buffer.data is not None else 0)
    elements = int(np.prod([max(d, 1) for d in shape])) if shape else 1
    size = stored or (elements * BITS.get(dtype, 32) + 7) // 8
    q = tensor.quantization
    scales = tuple(float(s) for s in q.scale) if q is not None and q.scale is not None else ()
    zeros = tuple(int(z) for z in q.zeroPoint) if q is not None and q.zeroPoint is not None else ()
    return TensorSummary(
        index,
        _name(tensor.name),
        shape,
        signature,
        dtype,
        size,
        stored > 0,
        scales,
        zeros,
        int(q.quantizedDimension) if q is not None else 0,
    )


def inspect_tflite(data: bytes) -> Inspection:
    model = validate_flatbuffer(data)
    buffers = model.buffers or []
    subgraph = model.subgraphs[0]
    tensors = tuple(_tensor(i, t, buffers) for i, t in enumerate(subgraph.tensors or []))
    codes = model.operatorCodes or []
    operators = tuple(
        OperatorSummary(
            i,
            _op_name(codes[op.opcodeIndex]),
            tuple(int(x) for x in (op.inputs if op.inputs is not None else [])),
            tuple(int(x) for x in (op.outputs if op.outputs is not None else [])),
        )
        for i, op in enumerate(subgraph.operators or [])
    )
    # Constants of other subgraphs count as weights too.
    weights = sum(t.bytes for t in tensors if t.is_weight)
    for other in model.subgraphs[1:]:
        weights += sum(
            _tensor(i, t, buffers).bytes for i, t in enumerate(other.tensors or []) if _tensor(i, t, buffers).is_weight
        )
    return Inspection(
        size_bytes=len(data),
        weights_bytes=weights,
        other_bytes=len(data) - weights,
        inputs=tuple(tensors[i] for i in subgraph.inputs),
        outputs=tuple(tensors[i] for i in (subgraph.outputs if subgraph.outputs is not None else [])),
        operators=operators,
        tensors=tensors,
        description=_name(model.description),
    )


def format_inspection(inspection: Inspection) -> str:
    lines = [f"size {inspection.size_bytes:,} bytes: weights {inspection.weights_bytes:,}, rest {inspection.other_bytes:,}"]
    for kind, items in (("input", inspection.inputs), ("output", inspection.outputs)):
        for t in items:
            quant = (
                f" scale={t.scales[0]:.6g} zero_point={t.zero_points[0]}"
                if len(t.scales) == 1
                else (f" per-axis({len(t.scales)})" if t.scales else "")
            )
            lines.append(f"{kind} {t.name}: shape {list(t.shape_signature)} {t.dtype}{quant}")
    lines.append("operators: " + ", ".join(f"{name}×{count}" for name, count in inspection.operator_counts.items()))
    lines.append(f"{'tensor':<48} {'dtype':<8} {'shape':<18} {'bytes':>9}  kind")
    for t in inspection.tensors:
        lines.append(
            f"{t.name[:48]:<48} {t.dtype:<8} {str(list(t.shape)):<18} {t.bytes:>9,}  {'weight' if t.is_weight else 'activation'}"
        )
    return "\n".join(lines)
