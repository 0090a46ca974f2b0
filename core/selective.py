"""Selective quantization: keep some layers of a quantized variant in float32.

A *layer* here is an op that carries weights (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED), named
after the Keras layer its kernel came from (``conv2d_1``, ``dense_1``). A selective variant is
named from its base variant and the layers it keeps float (``int8_float-dense_1``, see
:func:`core.variants.keep_float_name`); it is built by the base variant's own method:

* the LiteRT Quantizer's recipes get one more entry per kept layer, scoped by a regex on the
  layer's output tensor (the scope the quantizer matches) with its ``no_quantize`` algorithm:
  the recipe's own mechanism for per-operation configs, and no TensorFlow needed;
* the converter's ``int8`` is converted again by TensorFlow's ``QuantizationDebugger`` with those
  layers' output tensors as ``denylisted_nodes``: the converter's own calibration and kernels,
  which the LiteRT Quantizer would not reproduce. The debugger's model keeps float32 input and
  output (it ignores ``inference_input_type``): the page says so.

:func:`automatic` is NNCF's accuracy control on our terms: rank the layers by their measured error
(lowest SNR first), then keep them float one at a time, measuring each step, until accuracy is
within ``max_drop`` of float32.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core import variants as registry
from core.progress import Progress, ProgressFn, ignore


class SelectionError(ValueError):
    """A keep-float choice that cannot be built; the message is one line for the page."""


@dataclass(frozen=True)
class Layer:
    name: str  # the Keras layer's name, as a person knows it
    op: str
    output: str  # the op's output tensor in the float32 .tflite
    kernel: str  # its kernel's tensor name (the converters keep it)
    weights: int  # how many weights its kernel holds


def _short_name(tensor_name: str) -> str:
    """'seed_1/dense_1/MatMul' -> 'dense_1' (the Keras layer between the model and the op)."""
    parts = tensor_name.split(";")[0].split("/")
    return parts[1] if len(parts) >= 3 else ""


def layers(float_tflite: bytes) -> list[Layer]:
    """The float32 model's layers with weights, in execution order."""
    from core.inspect import inspect_tflite
    from core.quantization import KERNEL_INPUT  # the ops with a kernel, and its input slot

    inspection = inspect_tflite(float_tflite)
    found: list[Layer] = []
    for op in inspection.operators:
        slot = KERNEL_INPUT.get(op.op, (None,))[0]
        if slot is None or len(op.inputs) <= slot or not op.outputs:
            continue
        kernel, output = inspection.tensors[op.inputs[slot]], inspection.tensors[op.outputs[0]]
        if not kernel.is_weight:
            continue
        name = _short_name(kernel.name) or _short_name(output.name) or f"{op.op.lower()}_{len(found)}"
        name = re.sub(r"[^A-Za-z0-9_]", "_", name)
        if any(layer.name == name for layer in found):
            name = f"{name}_{len(found)}"
        found.append(Layer(name, op.op, output.name, kernel.name, int(np.prod(kernel.shape))))
    return found


def resolve(float_tflite: bytes, names: tuple[str, ...]) -> list[Layer]:
    """The chosen layers, checked: each exists, and at least one layer stays quantized."""
    known = layers(float_tflite)
    by_name = {layer.name: layer for layer in known}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise SelectionError(f"no layer named {', '.join(unknown)}; this model's layers are {', '.join(by_name) or 'none'}")
    if not names:
        raise SelectionError("choose at least one layer to keep float")
    if len(set(names)) >= len(known):
        raise SelectionError("that keeps every layer float: nothing would be quantized (use float32 itself)")
    return [by_name[name] for name in names]


def recipe_with(recipe_name: str, kept: list[Layer]) -> list[dict]:
    """The LiteRT Quantizer's recipe, with the kept layers scoped out: its scope is the op's output
    names joined by ';' with a trailing ';' (litert_quantizer.utils.tfl_flatbuffer_utils.get_op_scope)."""
    from litert_quantizer import recipe

    entries = list(getattr(recipe, recipe_name)())
    for layer in kept:
        entries.append({"regex": "^" + re.escape(layer.output) + ";$", "operation": "*", "algorithm_key": "no_quantize"})
    return entries


def denylisted_nodes(kept: list[Layer]) -> list[str]:
    return [layer.output for layer in kept]


# -- automatic: the fewest float layers within a drop of float32 -----------------------------------


@dataclass(frozen=True)
class Step:
    kept: tuple[str, ...]  # the layers kept float after this step
    layer: str  # the layer this step added ("" for the base variant itself)
    snr_db: float | None  # that layer's measured SNR in the base variant
    size_bytes: int
    accuracy: float


@dataclass(frozen=True)
class Automatic:
    base: str
    max_drop_pp: float
    float_accuracy: float
    steps: tuple[Step, ...]
    variant: str  # the chosen variant's name (the base itself when it is already within the drop)
    tflite: bytes
    met: bool  # whether the chosen variant is within the drop

    def to_dict(self) -> dict:
        return {
            "base": self.base,
            "max_drop_pp": self.max_drop_pp,
            "float_accuracy": round(self.float_accuracy, 6),
            "variant": self.variant,
            "met": self.met,
            "steps": [
                {
                    "kept": list(step.kept),
                    "layer": step.layer,
                    "snr_db": None if step.snr_db is None or np.isnan(step.snr_db) else round(step.snr_db, 2),
                    "size_bytes": step.size_bytes,
                    "accuracy": round(step.accuracy, 6),
                }
                for step in self.steps
            ],
        }


def quantized_layers(float_tflite: bytes, base_tflite: bytes) -> list[Layer]:
    """The layers whose kernel the base variant stores quantized, found by the kernel's tensor name
    (a recipe may leave some float: the Hadamard ones leave the convolutions)."""
    from core.inspect import inspect_tflite

    stored = {tensor.name: tensor for tensor in inspect_tflite(base_tflite).tensors if tensor.is_weight}
    return [
        layer
        for layer in layers(float_tflite)
        if layer.kernel in stored and stored[layer.kernel].dtype.startswith(("int", "uint"))
    ]


def ranked_layers(float_tflite: bytes, base_tflite: bytes, images: np.ndarray) -> list[tuple[Layer, float | None]]:
    """The base variant's quantized layers, worst first, by the SNR of their output against float32."""
    from core.layer_errors import layer_errors

    errors = {error.tensor: error.snr_db for error in layer_errors(float_tflite, base_tflite, images)}
    found = [(layer, errors.get(layer.output)) for layer in quantized_layers(float_tflite, base_tflite)]
    # None (identical outputs: no error at all) ranks last; NaN (an output that is not a number any
    # more, as 2-bit weights can give) ranks first.
    return sorted(found, key=lambda item: float("inf") if item[1] is None else -float("inf") if np.isnan(item[1]) else item[1])


def _snr_text(snr: float | None) -> str:
    return "–" if snr is None else "broken" if np.isnan(snr) else f"{snr:.1f}"


def accuracy_of(tflite: bytes, images: np.ndarray, labels: np.ndarray) -> float:
    from core.runtime import LiteModel

    return float(np.mean(LiteModel(tflite).predict_logits(images).argmax(axis=-1) == labels))


def automatic(
    build: Callable[[str], bytes],
    base: str,
    float_tflite: bytes,
    images: np.ndarray,
    labels: np.ndarray,
    max_drop_pp: float,
    progress: ProgressFn = ignore,
    error_images: int = 200,
) -> Automatic:
    """Keep the worst layers float, one at a time, until accuracy on ``images`` is within
    ``max_drop_pp`` percentage points of float32. ``build(name)`` converts one variant (the base or
    a selective one) and returns its bytes; every step is measured, not estimated."""
    if not 0 <= max_drop_pp <= 100:
        raise SelectionError(f"the allowed drop is in percentage points, 0 to 100; got {max_drop_pp}")
    if not registry.can_keep_float(base):
        raise SelectionError(f"{base} cannot keep layers float (the converter's int8 and the LiteRT Quantizer's recipes can)")
    float_accuracy = accuracy_of(float_tflite, images, labels)
    progress(Progress("keep_float", 0.05, f"measuring {base}"))
    current = build(base)
    accuracy = accuracy_of(current, images, labels)
    steps = [Step((), "", None, len(current), accuracy)]
    ranked = ranked_layers(float_tflite, current, images[:error_images])
    kept: list[str] = []
    name = base
    for layer, snr in ranked[:-1]:  # the last layer stays quantized: all float is float32 itself
        if (float_accuracy - accuracy) * 100 <= max_drop_pp:
            break
        kept.append(layer.name)
        name = registry.keep_float_name(base, kept)
        progress(Progress("keep_float", 0.1 + 0.85 * len(kept) / len(ranked), f"keeping {layer.name} float"))
        current = build(name)
        accuracy = accuracy_of(current, images, labels)
        steps.append(Step(tuple(kept), layer.name, snr, len(current), accuracy))
    met = (float_accuracy - accuracy) * 100 <= max_drop_pp
    return Automatic(base, max_drop_pp, float_accuracy, tuple(steps), name, current, met)


def format_steps(result: Automatic) -> str:
    lines = [
        f"automatic keep-float for {result.base}: within {result.max_drop_pp:g} pp of float32 ({result.float_accuracy:.2%})",
        f"{'step':<5} {'layer kept float':<18} {'its SNR (dB)':>12} {'bytes':>9} {'accuracy':>9} {'drop (pp)':>9}",
    ]
    for index, step in enumerate(result.steps):
        snr = _snr_text(step.snr_db)
        lines.append(
            f"{index:<5} {step.layer or '(' + result.base + ')':<18} {snr:>12} {step.size_bytes:>9,} "
            f"{step.accuracy:>9.2%} {(result.float_accuracy - step.accuracy) * 100:>9.2f}"
        )
    verdict = (
        "within the bound"
        if result.met
        else "NOT within the bound: no layer is left to keep float without leaving nothing quantized"
    )
    lines.append(f"chosen: {result.variant}: {verdict}")
    return "\n".join(lines)
