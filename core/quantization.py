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

from core.inspect import BITS, inspect_tflite, validate_flatbuffer

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
    """Every tensor of the first subgraph that carries a scale (raises core.inspect.ModelFormatError)."""
    found = []
    for tensor in inspect_tflite(tflite).tensors:
        if not tensor.scales:
            continue
        per_channel = len(tensor.scales) > 1
        found.append(
            TensorQuantization(
                tensor.index,
                tensor.name,
                tensor.dtype,
                tensor.shape,
                tensor.is_weight,
                tensor.scales,
                tensor.zero_points or (0,) * len(tensor.scales),
                tensor.quantized_dimension if per_channel else None,
            )
        )
    return found


def stored_integers(tflite: bytes, tensor: TensorQuantization) -> np.ndarray:
    """A weight's integers as the file stores them, shaped as the tensor (int4/int2 unpacked, low
    bits first, as LiteRT packs them)."""
    if not tensor.is_weight:
        raise ValueError(f"{tensor.name} is an activation: its integers exist only while the model runs")
    model = validate_flatbuffer(tflite)
    raw = model.subgraphs[0].tensors[tensor.index]
    buffer = model.buffers[raw.buffer]
    data = bytes(tflite[buffer.offset : buffer.offset + buffer.size]) if buffer.offset else bytes(bytearray(buffer.data))
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
    """A quantized weight laid over the float32 weight it replaces."""

    tensor: TensorQuantization
    float_values: np.ndarray  # the float32 model's weight
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
    restored = dequantize(tensor, integers)
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
    found = {}
    for tensor in inspect_tflite(float_tflite).tensors:
        if tensor.is_weight and tensor.dtype == "float32":
            quant = TensorQuantization(tensor.index, tensor.name, "float32", tensor.shape, True, (1.0,), (0,), None)
            found[tensor.name] = _float_values(float_tflite, quant)
    return found


def _float_values(tflite: bytes, tensor: TensorQuantization) -> np.ndarray:
    model = validate_flatbuffer(tflite)
    buffer = model.buffers[model.subgraphs[0].tensors[tensor.index].buffer]
    data = bytes(tflite[buffer.offset : buffer.offset + buffer.size]) if buffer.offset else bytes(bytearray(buffer.data))
    return np.frombuffer(data, dtype="<f4").reshape(tensor.shape)


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
