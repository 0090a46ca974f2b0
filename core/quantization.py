"""Inside quantization: the real numbers of every quantized tensor, read from the .tflite itself.

For each tensor with quantization parameters, :func:`quantized_tensors` gives the mapping the file
stores, ``real = scale × (q − zero_point)``, per tensor or per channel, with its integer range.
For a weight, :func:`stored_integers` reads the integers from the file's own buffer (int4 and
int2 unpacked), and :func:`compare_weight` lays them over the float32 model's same weight: the
fraction clipped at the ends of the range, the rounding error and its SNR.

Every number comes from the files; nothing is recomputed from a formula the converter is assumed
to have used. The tests check scales, zero points and integers against LiteRT's own tensor
details. Pure NumPy and the flatbuffer schema: no TensorFlow, no interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.inspect import BITS, ModelFormatError, inspect_tflite, validate_flatbuffer

SIGNED = {"int2", "int4", "int8", "int16", "int32", "int64"}


@dataclass(frozen=True)
class TensorQuantization:
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    is_weight: bool
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    axis: int | None  # the channel axis when there is a scale per channel; None for one scale

    @property
    def bits(self) -> int:
        return BITS.get(self.dtype, 32)

    @property
    def levels(self) -> tuple[int, int]:
        """The smallest and largest integer of the type (e.g. −128, 127 for int8)."""
        if self.dtype in SIGNED:
            return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        return 0, 2**self.bits - 1

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def real_ranges(self) -> np.ndarray:
        """(channels × 2): the real values the lowest and highest integer stand for, per channel."""
        low, high = self.levels
        scales, zeros = np.asarray(self.scales, np.float64), np.asarray(self.zero_points, np.float64)
        return np.stack([scales * (low - zeros), scales * (high - zeros)], axis=1)

    def mapping(self) -> str:
        """The file's formula with the file's numbers, as Netron writes it."""
        low, high = self.levels
        if not self.per_channel:
            (scale,), (zero,) = self.scales, self.zero_points
            real_low, real_high = self.real_ranges()[0]
            return f"{real_low:.4g} ≤ {scale:.4g} × (q − {zero}) ≤ {real_high:.4g}, q in {low}…{high}"
        zeros = set(self.zero_points)
        zero = f"{zeros.pop()}" if len(zeros) == 1 else "zero_point[c]"
        return (
            f"real = scale[c] × (q − {zero}), q in {low}…{high}, one scale per channel c of axis {self.axis} "
            f"({len(self.scales)} channels; scales {min(self.scales):.4g}…{max(self.scales):.4g})"
        )


def quantized_tensors(tflite: bytes) -> list[TensorQuantization]:
    """Every tensor of the first subgraph that carries a scale. Raises core.inspect.ModelFormatError
    for a file whose numbers do not fit together (a file a person brought may hold anything)."""
    found = []
    for tensor in inspect_tflite(tflite).tensors:
        if not tensor.scales:
            continue
        per_channel = len(tensor.scales) > 1
        zeros = tensor.zero_points or (0,)
        if len(zeros) == 1:
            zeros = zeros * len(tensor.scales)
        if len(zeros) != len(tensor.scales):
            raise ModelFormatError(f"tensor {tensor.name!r} has {len(tensor.scales)} scales but {len(zeros)} zero points")
        axis = tensor.quantized_dimension
        if per_channel and not (0 <= axis < len(tensor.shape) and tensor.shape[axis] == len(tensor.scales)):
            raise ModelFormatError(
                f"tensor {tensor.name!r} of shape {list(tensor.shape)} has {len(tensor.scales)} scales along axis {axis}"
            )
        found.append(
            TensorQuantization(
                tensor.index,
                tensor.name,
                tensor.dtype,
                tensor.shape,
                tensor.is_weight,
                tensor.scales,
                zeros,
                axis if per_channel else None,
            )
        )
    return found


def stored_integers(tflite: bytes, tensor: TensorQuantization) -> np.ndarray:
    """A weight's integers as the file stores them, shaped as the tensor (int4/int2 unpacked, low
    bits first, as LiteRT packs them)."""
    if not tensor.is_weight:
        raise ValueError(f"{tensor.name} is an activation: its integers exist only while the model runs")
    data = _buffer_bytes(tflite, tensor.index)
    count = int(np.prod(tensor.shape)) if tensor.shape else 1
    if tensor.bits in (2, 4):
        packed = np.frombuffer(data, dtype=np.uint8)
        per_byte = 8 // tensor.bits
        mask = (1 << tensor.bits) - 1
        values = np.stack([(packed >> (tensor.bits * i)) & mask for i in range(per_byte)], axis=1).reshape(-1)[:count]
        values = values.astype(np.int16)
        if tensor.dtype in SIGNED:
            values = np.where(values >= 1 << (tensor.bits - 1), values - (1 << tensor.bits), values)
        return values.astype(np.int8).reshape(tensor.shape)
    dtype = np.dtype(tensor.dtype).newbyteorder("<")
    return np.frombuffer(data, dtype=dtype, count=count).reshape(tensor.shape)


def dequantize(tensor: TensorQuantization, integers: np.ndarray) -> np.ndarray:
    """``scale × (q − zero_point)`` with the file's own numbers, per channel along its axis."""
    values = np.asarray(integers, dtype=np.float64)
    scales, zeros = np.asarray(tensor.scales), np.asarray(tensor.zero_points, dtype=np.float64)
    if tensor.per_channel:
        shape = [1] * values.ndim
        shape[tensor.axis] = -1
        scales, zeros = scales.reshape(shape), zeros.reshape(shape)
    return ((values - zeros) * scales).astype(np.float32)


@dataclass(frozen=True)
class WeightComparison:
    """A quantized tensor laid over the float32 values it replaces: a weight over the float32 weight,
    an activation over the float32 model's output of that layer on test images."""

    tensor: TensorQuantization
    float_values: np.ndarray  # the float32 model's weight, or its activations on the images
    dequantized: np.ndarray  # the file's integers, scaled back
    clipped_fraction: float  # float values outside the representable range
    snr_db: float  # 10·log10(signal power / error power)
    rmse: float

    @property
    def error(self) -> np.ndarray:
        return self.dequantized - self.float_values


def compare_weight(tensor: TensorQuantization, integers: np.ndarray, float_values: np.ndarray) -> WeightComparison:
    float_values = np.asarray(float_values, dtype=np.float32)
    if float_values.shape != tuple(tensor.shape):
        raise ValueError(f"{tensor.name}: the float weight is {float_values.shape}, the quantized one {tensor.shape}")
    return _laid_over(tensor, dequantize(tensor, integers), float_values)


def compare_activation(tensor: TensorQuantization, float_values: np.ndarray) -> WeightComparison:
    """An activation's scale and zero point (the file's) applied to the float32 model's own output
    of that layer: what rounding to those integers does to it, and what falls outside and is clipped."""
    if tensor.is_weight or tensor.per_channel:
        raise ValueError(f"{tensor.name} is not an activation with one scale")
    float_values = np.asarray(float_values, dtype=np.float32)
    low, high = tensor.levels
    (scale,), (zero,) = tensor.scales, tensor.zero_points
    integers = np.clip(np.round(float_values.astype(np.float64) / scale) + zero, low, high)
    return _laid_over(tensor, dequantize(tensor, integers), float_values)


def float_activations(float_tflite: bytes, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every float32 activation of the float32 model on ``images`` (one batch, within the
    interpreter's bound), by tensor name: read as the per-layer error reads them, every
    intermediate tensor preserved."""
    from core.runtime import LiteModel

    model = LiteModel(float_tflite, preserve_all_tensors=True)
    model.set_input(np.asarray(images[: model.max_batch], np.float32))
    model.invoke()
    constants = {tensor.index for tensor in inspect_tflite(float_tflite).tensors if tensor.is_weight}
    return {
        detail["name"]: np.array(model.tensor(detail["index"]))
        for detail in model.tensor_details()
        if detail["index"] not in constants and np.dtype(detail["dtype"]) == np.float32 and detail["name"]
    }


def _laid_over(tensor: TensorQuantization, restored: np.ndarray, float_values: np.ndarray) -> WeightComparison:
    ranges = tensor.real_ranges()
    if tensor.per_channel:
        shape = [1] * float_values.ndim
        shape[tensor.axis] = -1
        low, high = ranges[:, 0].reshape(shape), ranges[:, 1].reshape(shape)
    else:
        low, high = ranges[0]
    # Half a step of slack: a value just past the end still rounds onto the last level.
    step = np.asarray(tensor.scales).reshape(np.shape(low)) / 2 if tensor.per_channel else tensor.scales[0] / 2
    clipped = float(np.mean((float_values < low - step) | (float_values > high + step)))
    error = restored.astype(np.float64) - float_values
    signal, noise = float(np.mean(float_values.astype(np.float64) ** 2)), float(np.mean(error**2))
    snr = float("inf") if noise == 0 else 10 * np.log10(signal / noise) if signal > 0 else float("-inf")
    return WeightComparison(tensor, float_values, restored, clipped, snr, float(np.sqrt(noise)))


def float_weights_by_name(float_tflite: bytes) -> dict[str, np.ndarray]:
    """The float32 model's constant float tensors by name (where a quantized weight finds the one it replaces)."""
    return {
        tensor.name: np.frombuffer(_buffer_bytes(float_tflite, tensor.index), dtype="<f4").reshape(tensor.shape)
        for tensor in inspect_tflite(float_tflite).tensors
        if tensor.is_weight and tensor.dtype == "float32"
    }


def _buffer_bytes(tflite: bytes, tensor_index: int) -> bytes:
    """A constant tensor's stored bytes: at the buffer's offset (files over 2 GB's layout) or inline."""
    model = validate_flatbuffer(tflite)
    buffer = model.buffers[model.subgraphs[0].tensors[tensor_index].buffer]
    if buffer.offset:
        return bytes(tflite[buffer.offset : buffer.offset + buffer.size])
    return bytes(bytearray(buffer.data)) if buffer.data is not None else b""


def format_tensors(tflite: bytes, float_tflite: bytes | None = None) -> str:
    """The per-tensor table of `python -m core inspect FILE --tensors [--reference float32.tflite]`."""
    tensors = quantized_tensors(tflite)
    if not tensors:
        return "nothing quantized in this model: no tensor carries a scale"
    floats = float_weights_by_name(float_tflite) if float_tflite is not None else {}
    lines = [f"{'tensor':<44} {'kind':<10} {'type':<6} {'bits':>4} {'scale(s)':<22} {'zero pt':<8} {'clipped':>8} {'SNR dB':>7}"]
    for tensor in tensors:
        scales = (
            f"{tensor.scales[0]:.4g}"
            if not tensor.per_channel
            else f"{len(tensor.scales)}× {min(tensor.scales):.3g}…{max(tensor.scales):.3g}"
        )
        zeros = sorted(set(tensor.zero_points))
        zero = str(zeros[0]) if len(zeros) == 1 else f"{zeros[0]}…{zeros[-1]}"
        clipped = snr = ""
        if tensor.is_weight and float_tflite is not None:
            match = floats.get(tensor.name)
            if match is None or match.shape != tuple(tensor.shape):
                clipped, snr = "no match", ""
            else:
                compared = compare_weight(tensor, stored_integers(tflite, tensor), match)
                clipped, snr = f"{compared.clipped_fraction:.2%}", f"{compared.snr_db:.1f}"
        kind = "weight" if tensor.is_weight else "activation"
        lines.append(
            f"{tensor.name[:44]:<44} {kind:<10} {tensor.dtype:<6} {tensor.bits:>4} {scales:<22} {zero:<8} {clipped:>8} {snr:>7}"
        )
    return "\n".join(lines)


# -- what-if: the float32 model's weights rounded to fewer bits, scored for real ------------------

GRANULARITIES = ("per-channel", "per-tensor")
RANGES = ("min-max", "percentile", "mse")  # the clipping range of each channel (or of the tensor)
KERNEL_INPUT = {"CONV_2D": (1, 0), "FULLY_CONNECTED": (1, 0), "DEPTHWISE_CONV_2D": (1, 3)}  # op -> (input slot, channel axis)


@dataclass(frozen=True)
class Kernel:
    """A float32 weight that a quantizer would round: a convolution's or a dense layer's kernel."""

    index: int
    name: str
    shape: tuple[int, ...]
    axis: int  # its output channels
    offset: int  # where its float32 values start in the file
    op: str


def kernels(float_tflite: bytes) -> list[Kernel]:
    """The kernels of the float32 model, with where their bytes are in the file (biases stay float,
    as the converter keeps them at 32 bits)."""
    inspection = inspect_tflite(float_tflite)
    model = validate_flatbuffer(float_tflite)
    raw = model.subgraphs[0].tensors
    found = {}
    for op in inspection.operators:
        if op.op not in KERNEL_INPUT or len(op.inputs) <= KERNEL_INPUT[op.op][0]:
            continue
        index = op.inputs[KERNEL_INPUT[op.op][0]]
        tensor = inspection.tensors[index]
        buffer = model.buffers[raw[index].buffer]
        if not tensor.is_weight or tensor.dtype != "float32":
            continue
        start = int(buffer.offset) if buffer.offset else _inline_start(float_tflite, raw[index].buffer)
        found[index] = Kernel(index, tensor.name, tensor.shape, KERNEL_INPUT[op.op][1], start, op.op)
    return list(found.values())


def _inline_start(tflite: bytes, buffer_index: int) -> int:
    """Where a buffer's data vector starts in the file (the object API keeps the bytes, not where
    they were): read through the flatbuffer's own tables."""
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.Model.GetRootAs(tflite, 0).Buffers(buffer_index)
    field = buffer._tab.Offset(4)  # Buffer.data, the table's first field
    return int(buffer._tab.Vector(field)) if field else 0


def clip_range(values: np.ndarray, how: str, bits: int) -> float:
    """The largest magnitude kept, for symmetric levels −(2^(b−1)−1)…2^(b−1)−1 (as weights are
    quantized): the largest |value| (min-max), its 99.9th percentile, or the one of least squared
    error over a grid of candidates (mse), which clips a few outliers to round the rest finer."""
    magnitude = np.abs(values.astype(np.float64))
    top = float(magnitude.max()) if magnitude.size else 0.0
    if how == "min-max" or top == 0.0:
        return top
    if how == "percentile":
        return float(np.percentile(magnitude, 99.9)) or top
    if how == "mse":
        best, best_error = top, np.inf
        for candidate in top * np.linspace(0.3, 1.0, 36):
            error = float(np.mean((fake_quantize(values, candidate, bits) - values) ** 2))
            if error < best_error:
                best, best_error = candidate, error
        return best
    raise ValueError(f"unknown range {how!r}; choose from {', '.join(RANGES)}")


def fake_quantize(values: np.ndarray, limit: float, bits: int) -> np.ndarray:
    """Round to 2^b − 1 symmetric levels over [−limit, limit] and back to float (clipping outside)."""
    top = 2 ** (bits - 1) - 1
    if limit <= 0:
        return np.zeros_like(values)
    scale = limit / top
    return (np.clip(np.round(values / scale), -top, top) * scale).astype(values.dtype)


def with_rounded_kernels(float_tflite: bytes, bits: int, granularity: str, how: str, found: list[Kernel] | None = None) -> bytes:
    """A copy of the float32 .tflite whose kernels hold their values rounded to ``bits`` bits, per
    channel or per tensor, with the chosen clipping range: written in place, byte for byte the same
    model otherwise. No TensorFlow: NumPy on the file's bytes. ``found``: its :func:`kernels`, when
    already read."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; choose from {', '.join(GRANULARITIES)}")
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must lie in 2–16, got {bits}")
    data = bytearray(float_tflite)
    for kernel in found if found is not None else kernels(float_tflite):
        count = int(np.prod(kernel.shape))
        values = np.frombuffer(float_tflite, dtype="<f4", count=count, offset=kernel.offset).reshape(kernel.shape).copy()
        if granularity == "per-tensor":
            rounded = fake_quantize(values, clip_range(values, how, bits), bits)
        else:
            moved = np.moveaxis(values, kernel.axis, 0)
            rounded = np.moveaxis(
                np.stack([fake_quantize(channel, clip_range(channel, how, bits), bits) for channel in moved]), 0, kernel.axis
            )
        data[kernel.offset : kernel.offset + 4 * count] = rounded.astype("<f4").tobytes()
    return bytes(data)


@dataclass(frozen=True)
class SweepPoint:
    bits: int
    granularity: str
    range: str
    accuracy: float
    agreement: float  # with the float32 model's own answers


def sweep(
    float_tflite: bytes,
    images: np.ndarray,
    labels: np.ndarray,
    bits: tuple[int, ...] = (8, 7, 6, 5, 4, 3, 2),
    granularities: tuple[str, ...] = GRANULARITIES,
    ranges: tuple[str, ...] = ("min-max", "mse"),
    progress=None,
) -> list[SweepPoint]:
    """Every combination scored by LiteRT on the images: what bits, range and granularity alone do
    to the float32 model (activations stay float, as in the weight-only and dynamic variants)."""
    from core.runtime import LiteModel

    reference = LiteModel(float_tflite).predict_logits(images).argmax(axis=-1)
    combos = [(b, g, r) for b in bits for g in granularities for r in ranges]
    found = kernels(float_tflite)
    points = []
    for done, (width, granularity, how) in enumerate(combos):
        rounded = with_rounded_kernels(float_tflite, width, granularity, how, found)
        answers = LiteModel(rounded).predict_logits(images).argmax(axis=-1)
        points.append(
            SweepPoint(width, granularity, how, float(np.mean(answers == labels)), float(np.mean(answers == reference)))
        )
        if progress is not None:
            progress((done + 1) / len(combos), f"{width} bits, {granularity}, {how}")
    return points


def format_sweep(points: list[SweepPoint]) -> str:
    columns = sorted({(p.granularity, p.range) for p in points}, key=lambda c: (GRANULARITIES.index(c[0]), RANGES.index(c[1])))
    header = f"{'bits':>4}  " + "  ".join(f"{g + ', ' + r:>22}" for g, r in columns)
    lines = [header]
    for width in sorted({p.bits for p in points}, reverse=True):
        row = {(p.granularity, p.range): p for p in points if p.bits == width}
        lines.append(f"{width:>4}  " + "  ".join(f"{row[c].accuracy:>22.4f}" if c in row else f"{'':>22}" for c in columns))
    return "\n".join(lines)


@dataclass(frozen=True)
class RangeTradeOff:
    """At one clipping range: the squared error from clipping and the one from rounding."""

    fraction: float  # the range as a share of the largest |value|
    limit: float
    clipping_mse: float  # from values beyond ±limit, pulled back to it
    rounding_mse: float  # from values within, rounded to the nearest level

    @property
    def total_mse(self) -> float:
        return self.clipping_mse + self.rounding_mse


def clipping_against_rounding(values: np.ndarray, bits: int, steps: int = 36) -> list[RangeTradeOff]:
    """How the range trades clipping for rounding: a narrower range clips more values, a wider one
    rounds every value more coarsely (the step is limit / (2^(b−1) − 1)). The least total is where
    the ``mse`` range of :func:`clip_range` sits."""
    values = np.asarray(values, dtype=np.float64).ravel()
    top = float(np.abs(values).max()) if values.size else 0.0
    found = []
    for fraction in np.linspace(0.3, 1.0, steps):
        limit = top * fraction
        rounded = fake_quantize(values, limit, bits)
        outside = np.abs(values) > limit
        error = (rounded - values) ** 2
        found.append(
            RangeTradeOff(
                float(fraction), limit, float(error[outside].sum() / values.size), float(error[~outside].sum() / values.size)
            )
        )
    return found
