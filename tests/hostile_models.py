""".tflite files that a person could bring, built here in milliseconds as flatbuffers (no TensorFlow):
each is small on disk and would cost the server far more than its size once an interpreter runs it.

Every model takes the lab's images ([batch, 28, 28] float32) and is made of plain builtin ops
(RESHAPE, TILE, BROADCAST_TO, MEAN, PAD), so LiteRT loads and runs each of them for real.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

FLOAT32, INT32 = schema.TensorType.FLOAT32, schema.TensorType.INT32


class _Graph:
    def __init__(self):
        self.tensors: list = []
        self.buffers: list = [schema.BufferT()]  # buffer 0 is the empty one, by convention
        self.codes: list[int] = []
        self.operators: list = []

    def tensor(self, shape, dtype=FLOAT32, data: np.ndarray | None = None, signature=None, name: str = "") -> int:
        tensor = schema.TensorT()
        tensor.shape = list(shape) if shape is not None else None
        tensor.shapeSignature = list(signature) if signature is not None else None
        tensor.type = dtype
        tensor.name = name or f"t{len(self.tensors)}"
        tensor.buffer = 0
        if data is not None:
            buffer = schema.BufferT()
            buffer.data = list(np.ascontiguousarray(data).tobytes())
            self.buffers.append(buffer)
            tensor.buffer = len(self.buffers) - 1
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def constant(self, values, dtype=INT32) -> int:
        array = np.asarray(values, np.int32 if dtype == INT32 else np.float32)
        return self.tensor(array.shape, dtype, array)

    def op(self, code: int, inputs: list[int], outputs: list[int], options_type=0, options=None) -> None:
        if code not in self.codes:
            self.codes.append(code)
        operator = schema.OperatorT()
        operator.opcodeIndex = self.codes.index(code)
        operator.inputs, operator.outputs = inputs, outputs
        operator.builtinOptionsType, operator.builtinOptions = options_type, options
        self.operators.append(operator)

    def mean(self, source: int, axes: list[int], output_shape, keep_dims: bool = False, signature=None) -> int:
        options = schema.ReducerOptionsT()
        options.keepDims = keep_dims
        out = self.tensor(output_shape, signature=signature)
        self.op(schema.BuiltinOperator.MEAN, [source, self.constant(axes)], [out], schema.BuiltinOptions.ReducerOptions, options)
        return out

    def reshape(self, source: int, new_shape: list[int], output_shape, signature=None) -> int:
        out = self.tensor(output_shape, signature=signature)
        self.op(schema.BuiltinOperator.RESHAPE, [source, self.constant(new_shape)], [out])
        return out

    def tile(self, source: int, multiples: list[int], output_shape, signature=None) -> int:
        out = self.tensor(output_shape, signature=signature)
        self.op(schema.BuiltinOperator.TILE, [source, self.constant(multiples)], [out])
        return out

    def to_bytes(self, inputs: list[int], outputs: list[int]) -> bytes:
        subgraph = schema.SubGraphT()
        subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = self.tensors, inputs, outputs, self.operators
        subgraph.name = "main"
        model = schema.ModelT()
        model.version = 3
        model.description = "hostile test model"
        model.buffers = self.buffers
        model.subgraphs = [subgraph]
        codes = []
        for code in self.codes:
            entry = schema.OperatorCodeT()
            entry.builtinCode = code
            entry.deprecatedBuiltinCode = min(code, 127)
            entry.version = 2 if code == schema.BuiltinOperator.BROADCAST_TO else 1  # BROADCAST_TO starts at 2
            codes.append(entry)
        model.operatorCodes = codes
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _image_input(graph: _Graph, batch: int = 1, shape=(28, 28)) -> int:
    return graph.tensor([batch, *shape], signature=[-1, *shape], name="images")


def big_declared_input(side: int = 20_000) -> bytes:
    """An input of side×side floats (1.6 GB at 20,000), declared in the file."""
    graph = _Graph()
    images = graph.tensor([1, side, side], signature=[-1, side, side], name="images")
    pooled = graph.mean(images, [1, 2], [1], signature=[-1])
    out = graph.tile(graph.reshape(pooled, [-1, 1], [1, 1], signature=[-1, 1]), [1, 10], [1, 10], signature=[-1, 10])
    return graph.to_bytes([images], [out])


def broadcast_to_huge(side: int = 20_000, declared: bool = False) -> bytes:
    """A fixed 28×28 input whose graph broadcasts one number to a side×side intermediate, then averages
    it back to 10 outputs. With ``declared=False`` the file says nothing of the intermediate's shape:
    only running it shows its size."""
    graph = _Graph()
    images = graph.tensor([1, 28, 28], name="images")
    pooled = graph.mean(images, [1, 2], [1, 1], keep_dims=False)
    huge = graph.tensor([side, side] if declared else [], name="huge")
    graph.op(schema.BuiltinOperator.BROADCAST_TO, [pooled, graph.constant([side, side])], [huge])
    column = graph.mean(huge, [0, 1], [], keep_dims=False)
    out = graph.tile(graph.reshape(column, [1, 1], [1, 1]), [1, 10], [1, 10])
    return graph.to_bytes([images], [out])


def batch_bomb(copies: int = 1_000) -> bytes:
    """[batch, 28, 28] -> [batch, 784 × copies] (TILE) -> mean to [batch, 10]: ~3 MB per image at 1,000
    copies, so a batch of 500 would want 1.5 GB while one image is harmless."""
    graph = _Graph()
    images = _image_input(graph)
    flat = graph.reshape(images, [-1, 784], [1, 784], signature=[-1, 784])
    tiled = graph.tile(flat, [1, copies], [1, 784 * copies], signature=[-1, 784 * copies])
    grouped = graph.reshape(
        tiled, [-1, 10, 784 * copies // 10], [1, 10, 784 * copies // 10], signature=[-1, 10, 784 * copies // 10]
    )
    out = graph.mean(grouped, [2], [1, 10], signature=[-1, 10])
    return graph.to_bytes([images], [out])


def huge_output(copies: int = 100_000) -> bytes:
    """An output of 784 × copies floats per image (~313 MB at 100,000)."""
    graph = _Graph()
    images = _image_input(graph)
    flat = graph.reshape(images, [-1, 784], [1, 784], signature=[-1, 784])
    out = graph.tile(flat, [1, copies], [1, 784 * copies], signature=[-1, 784 * copies])
    return graph.to_bytes([images], [out])


def outputs(count: int) -> bytes:
    """A model answering with ``count`` scores per image (the mean of the image, tiled)."""
    graph = _Graph()
    images = _image_input(graph)
    pooled = graph.mean(images, [1, 2], [1], signature=[-1])
    column = graph.reshape(pooled, [-1, 1], [1, 1], signature=[-1, 1])
    out = graph.tile(column, [1, count], [1, count], signature=[-1, count]) if count > 1 else column
    return graph.to_bytes([images], [out])


def fitting() -> bytes:
    """A harmless model of the right shape: 10 scores per image."""
    return outputs(10)
