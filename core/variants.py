"""The one registry of quantization variants.

Every variant the lab knows is defined here, once. The converter, the pages, the CLI, the JSON
report and the tests all read this registry; nothing else lists variant names.

How to read a name (the LiteRT Quantizer's scheme, ``dynamic_wi8_afp32``):

* ``w`` = weights, ``a`` = activations; the number after them is the bit width, ``fp32``/``fp16``
  a float type. So ``wi8_afp32`` = weights int8, activations float32.
* ``dynamic_`` = activations are quantized on the fly at run time (dynamic range);
  ``weight_only_`` = weights are stored quantized and dequantized before use;
  ``static_`` = activations use fixed ranges found by calibration on sample images.

The five post-training variants made by TensorFlow's own ``TFLiteConverter`` keep their short
historic names: ``float32`` (no quantization), ``dynamic`` (= dynamic_wi8_afp32 by the converter),
``float16`` (weights float16), ``int8`` (= static_wi8_ai8 with int8 input and output) and
``int16x8`` (= static_wi8_ai16).

A variant says *what* to build; ``core.convert`` knows *how*, with one builder per ``method``.
A new method (quantization-aware training, a new library) registers a builder there and its
variants here; callers never change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

# How a variant is built. Each method has one builder in core.convert.
METHOD_TFLITE_CONVERTER = "tflite_converter"
METHOD_LITERT_QUANTIZER = "litert_quantizer"
METHOD_QAT = "qat"


@dataclass(frozen=True)
class ConverterSettings:
    """Options for TensorFlow's TFLiteConverter (method ``tflite_converter``)."""

    optimize: bool = False  # tf.lite.Optimize.DEFAULT
    float16_weights: bool = False  # supported_types = [tf.float16]
    calibrate: bool = False  # needs a representative dataset
    builtin_ops: str = ""  # "" | "int8" | "int16x8": restrict ops to this integer scheme
    io_type: str = ""  # "" keeps float32 input/output; "int8" quantizes them too


@dataclass(frozen=True)
class Variant:
    """One way of turning the float model into a .tflite file."""

    name: str
    label: str
    explanation: str  # one sentence, shown in the UI
    method: str
    converter: ConverterSettings = field(default_factory=ConverterSettings)
    recipe: str = ""  # LiteRT Quantizer recipe name (method ``litert_quantizer``)
    # What we promise on the seed CNN trained on MNIST; the tests hold every variant to these.
    min_agreement: float = 0.98  # share of test images predicted as float32 predicts them
    max_size_ratio: float = 1.0  # .tflite size / float32 .tflite size
    # How costly the variant is to run on a CPU, relative to float32; the CLI converts costly
    # variants early so that their evaluation overlaps the other conversions.
    run_cost: float = 1.0
    # Where a LiteRT Quantizer recipe sits on Quantize's compact picker: (row, short label).
    ladder: tuple[str, str] = ()
    # A selective variant (core.selective): these layers of the base variant stay float32.
    base: str = ""
    keep_float: tuple[str, ...] = ()

    @property
    def needs_calibration(self) -> bool:
        return self.converter.calibrate or self.recipe.startswith("static_")

    @property
    def needs_training_data(self) -> bool:
        return self.method == METHOD_QAT

    @property
    def rotates_weights(self) -> bool:
        """A Hadamard recipe stores each weight multiplied by a Hadamard matrix: its integers replace
        the rotated weight, not the float32 one of the same name."""
        return self.recipe.endswith("_hr_afp32")

    @property
    def integer_arithmetic(self) -> bool:
        """Activations are integers too (full-integer int8, 16x8, QAT, the static recipes): the same
        file gives the same integers on every CPU, so the browser must match the server bit for bit."""
        full_integer = self.converter.builtin_ops in ("int8", "int16x8") or self.recipe.startswith("static_")
        return (full_integer or self.method == METHOD_QAT) and not self.keep_float

    @property
    def browser_float_edges(self) -> bool:
        """Its input and output are integers, which LiteRT.js 2.5.3 refuses: its browser twin
        (core.litertjs) adds float32 edges, a QUANTIZE in and a DEQUANTIZE out, around the same graph."""
        return (self.converter.io_type == "int8" and not self.keep_float) or self.recipe.startswith("static_")

    def browser_twin(self) -> str:
        """What its browser twin is, in the words the pages use."""
        if self.browser_float_edges:
            return "same kernels, different edges: float32 in and out around the same integer graph, batch fixed at 1"
        return "the same file with its batch fixed at 1"

    @property
    def is_reference(self) -> bool:
        return self.name == REFERENCE


REFERENCE = "float32"


def reference_of(names) -> str:
    """The variant every other is measured against: float32, else (an uploaded .tflite alone) the first.
    The one place that decides it."""
    names = list(names)
    if not names:
        raise ValueError("no variants to choose a reference from")
    return REFERENCE if REFERENCE in names else names[0]


# How each method is presented, in this order, wherever variants are listed by kind.
METHOD_TITLES = {
    METHOD_TFLITE_CONVERTER: "After training: TensorFlow's TFLiteConverter",
    METHOD_QAT: "During training: quantization-aware training",
    METHOD_LITERT_QUANTIZER: "After training: Google's LiteRT Quantizer recipes (on the float32 .tflite)",
}

VARIANTS: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    if variant.name in VARIANTS:
        raise ValueError(f"variant {variant.name!r} is registered twice")
    VARIANTS[variant.name] = variant
    return variant


def get(name: str) -> Variant:
    if name in VARIANTS:
        return VARIANTS[name]
    if KEEP_FLOAT_MARK in name:
        base, _, layers = name.partition(KEEP_FLOAT_MARK)
        return selective(base, tuple(layers.split("-")))
    raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")


# -- selective variants: a base variant with some layers kept float32 (core.selective) -------------

KEEP_FLOAT_MARK = "_float-"  # int8_float-conv2d_1-dense_1 = int8 with conv2d_1 and dense_1 in float32
_LAYER_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
MAX_KEPT_LAYERS = 32


def can_keep_float(name: str) -> bool:
    """Whether a variant can keep layers float: the LiteRT Quantizer's recipes (a regex-scoped
    recipe entry) and the converter's int8 (TensorFlow's QuantizationDebugger denylist)."""
    variant = VARIANTS.get(name)
    if variant is None or variant.is_reference:
        return False
    return variant.method == METHOD_LITERT_QUANTIZER or (
        variant.method == METHOD_TFLITE_CONVERTER and variant.converter.builtin_ops == "int8"
    )


def keep_float_name(base: str, layers) -> str:
    return base + KEEP_FLOAT_MARK + "-".join(layers)


def selective(base: str, layers: tuple[str, ...]) -> Variant:
    """The variant ``base`` with ``layers`` kept float32, named by :func:`keep_float_name`."""
    if not can_keep_float(base):
        keepers = ", ".join(name for name in VARIANTS if can_keep_float(name))
        raise ValueError(f"{base!r} cannot keep layers float; these can: {keepers}")
    if not layers or len(layers) > MAX_KEPT_LAYERS or not all(_LAYER_NAME.fullmatch(layer) for layer in layers):
        raise ValueError(f"keep-float layers must be 1 to {MAX_KEPT_LAYERS} names of letters, digits and _")
    if len(set(layers)) != len(layers):
        raise ValueError("a layer is named twice")
    parent = VARIANTS[base]
    how = (
        "TensorFlow's QuantizationDebugger leaves them out of the converter's int8 (its input and output stay float32)"
        if parent.method == METHOD_TFLITE_CONVERTER
        else "the LiteRT Quantizer's recipe scopes them out with a no_quantize entry"
    )
    return Variant(
        name=keep_float_name(base, layers),
        label=f"{parent.label}, {', '.join(layers)} kept float",
        explanation=f"{parent.name} with {', '.join(layers)} left in float32: {how}.",
        method=parent.method,
        converter=replace(parent.converter, io_type="") if parent.method == METHOD_TFLITE_CONVERTER else parent.converter,
        recipe=parent.recipe,
        min_agreement=parent.min_agreement,
        max_size_ratio=1.0,
        run_cost=parent.run_cost,
        base=base,
        keep_float=tuple(layers),
    )


def find(name: str) -> Variant | None:
    """The variant of that name, built-in or selective; None for a name that is neither (a brought file)."""
    try:
        return get(name)
    except ValueError:
        return None


def parse_names(text: str) -> list[str]:
    """'float32,int8' -> ['float32', 'int8'], each checked against the registry; 'all' -> every variant."""
    if text.strip() == "all":
        return list(VARIANTS)
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("no variant named")
    for name in names:
        get(name)
    return list(dict.fromkeys(names))


for _variant in (
    Variant(
        name="float32",
        label="float32",
        explanation="No quantization: the Keras model as a .tflite, the reference every other variant is measured against.",
        method=METHOD_TFLITE_CONVERTER,
        min_agreement=1.0,
        max_size_ratio=1.0,
    ),
    Variant(
        name="dynamic",
        label="Dynamic range (int8 weights)",
        explanation="Weights stored as int8; activations stay float and are quantized on the fly inside each layer.",
        method=METHOD_TFLITE_CONVERTER,
        converter=ConverterSettings(optimize=True),
        max_size_ratio=0.35,
    ),
    Variant(
        name="float16",
        label="float16 weights",
        explanation="Weights stored as float16 (half the bytes) and expanded to float32 before the math runs.",
        method=METHOD_TFLITE_CONVERTER,
        converter=ConverterSettings(optimize=True, float16_weights=True),
        max_size_ratio=0.60,
    ),
    Variant(
        name="int8",
        label="Full integer int8",
        explanation="Weights and activations int8, ranges calibrated on sample images; input and output are int8 too, as microcontrollers and NPUs need.",
        method=METHOD_TFLITE_CONVERTER,
        converter=ConverterSettings(optimize=True, calibrate=True, builtin_ops="int8", io_type="int8"),
        max_size_ratio=0.35,
        run_cost=3.0,
    ),
    Variant(
        name="int16x8",
        label="16x8 (int16 activations)",
        explanation="Weights int8 and activations int16: more precise than int8 where activations have outliers, but slower on most CPUs.",
        method=METHOD_TFLITE_CONVERTER,
        converter=ConverterSettings(optimize=True, calibrate=True, builtin_ops="int16x8"),
        max_size_ratio=0.40,
        run_cost=30.0,  # int16 kernels have no XNNPACK path: reference kernels, ~30× float32's time
    ),
):
    register(_variant)

POST_TRAINING = tuple(VARIANTS)  # the five TFLiteConverter variants, the CLI's default

# Quantization-aware training: fine-tune with the rounding simulated, then convert to full int8.
register(
    Variant(
        name="qat_int8",
        label="QAT int8 (quantization-aware training)",
        explanation="Fine-tunes the trained model with int8 rounding simulated in every layer, then converts it to full int8: "
        "it learns weights that survive the rounding.",
        method=METHOD_QAT,
        converter=ConverterSettings(optimize=True, calibrate=True, builtin_ops="int8", io_type="int8"),
        min_agreement=0.95,  # fine-tuning changes the model itself, not only its number format
        max_size_ratio=0.35,
        run_cost=3.0,
    )
)


# Google's LiteRT Quantizer, applied to the float32 .tflite by recipe (the names are its own).
# Its whole ladder was measured on the seed and the wide CNN (bench/recipe_ladder.py, README): the
# recipes registered here are those that convert and run in LiteRT on the seed CNN. Left out: the
# blockwise recipes (b32, b64), which refuse a dense layer whose input width is not a multiple of
# the block (the seed's is 1,352) and, at 8 and 2 bits, quantize nothing or do not run in XNNPACK;
# dynamic_wi8c and dynamic_wi4c, which write the same file as dynamic_wi8 and dynamic_wi4.
def _ladder(recipe: str) -> tuple[str, str]:
    """dynamic_wi4c_hr_afp32 -> ("dynamic, Hadamard-rotated", "4-bit"): its row and cell on the picker."""
    kind, rest = recipe.split("_w", 1)
    bits = rest[1 : 1 + next(i for i, c in enumerate(rest[1:]) if not c.isdigit())]
    if kind == "static":
        return "static (calibrated)", f"int{rest.rsplit('_ai', 1)[1]} activations"
    row = {"dynamic": "dynamic", "weight_only": "weight-only"}[kind]
    return (row + (", Hadamard-rotated" if "_hr" in rest else "")), f"{bits}-bit"


_MIN_AGREEMENT = {
    "dynamic_wi2c_afp32": 0.0,  # four levels ruin the seed: tested to be worse than its Hadamard twin instead
    "dynamic_wi2c_hr_afp32": 0.94,
}
for _name, _label, _explanation, _ratio, _cost in (
    (
        "dynamic_wi8_afp32",
        "LiteRT Quantizer: dynamic, int8 weights",
        "Weights int8 per channel, activations float and quantized on the fly: the LiteRT Quantizer's take on dynamic range.",
        0.35,
        1.0,
    ),
    (
        "dynamic_wi4_afp32",
        "LiteRT Quantizer: dynamic, int4 weights",
        "Weights packed as 4-bit integers (16 levels) per channel, activations float: about half the size of int8 weights.",
        0.25,
        1.0,
    ),
    (
        "dynamic_wi2c_afp32",
        "LiteRT Quantizer: dynamic, 2-bit weights",
        "Weights as 2-bit integers per channel: four levels each. The file's integers are sound, but LiteRT's hybrid convolution "
        "answers NaN with 2-bit filters, so the model answers one digit: keep the convolution float (Inside) to see what four levels really cost.",
        0.12,
        1.0,
    ),
    (
        "dynamic_wi8c_hr_afp32",
        "LiteRT Quantizer: dynamic, int8 weights, Hadamard-rotated",
        "Each layer's weights are first multiplied by a Hadamard matrix, which spreads outliers over a whole row, then stored as int8 per channel. "
        "The rotation is undone on the activations at run time, one image at a time.",
        0.32,
        2.0,
    ),
    (
        "dynamic_wi4c_hr_afp32",
        "LiteRT Quantizer: dynamic, int4 weights, Hadamard-rotated",
        "The Hadamard rotation, then 4-bit weights per channel. LiteRT's XNNPACK kernels run it well; its built-in kernels answer differently (see the ladder in the README).",
        0.20,
        2.0,
    ),
    (
        "dynamic_wi2c_hr_afp32",
        "LiteRT Quantizer: dynamic, 2-bit weights, Hadamard-rotated",
        "The Hadamard rotation, then 2-bit weights per channel: with the outliers spread out, four levels are enough to keep most answers.",
        0.14,
        2.0,
    ),
    (
        "weight_only_wi8_afp32",
        "LiteRT Quantizer: weight-only int8",
        "Weights stored as int8 and turned back into float32 before each layer runs: smaller file, float arithmetic.",
        0.35,
        1.0,
    ),
    (
        "weight_only_wi4_afp32",
        "LiteRT Quantizer: weight-only int4",
        "Weights stored as 4-bit integers and turned back into float32 before each layer runs.",
        0.25,
        1.0,
    ),
    (
        "static_wi8_ai8",
        "LiteRT Quantizer: static int8",
        "Weights and activations int8 with ranges calibrated on sample images: the LiteRT Quantizer's full-integer recipe.",
        0.35,
        3.0,
    ),
    (
        "static_wi8_ai16",
        "LiteRT Quantizer: static 16x8",
        "Weights int8 and activations int16, calibrated on sample images: the LiteRT Quantizer's 16x8 recipe.",
        0.40,
        30.0,
    ),
):
    register(
        Variant(
            name=_name,
            label=_label,
            explanation=_explanation,
            method=METHOD_LITERT_QUANTIZER,
            recipe=_name,
            max_size_ratio=_ratio,
            min_agreement=_MIN_AGREEMENT.get(_name, 0.97 if "wi4" in _name else 0.98),
            run_cost=_cost,
            ladder=_ladder(_name),
        )
    )

LITERT_QUANTIZER = tuple(name for name, variant in VARIANTS.items() if variant.method == METHOD_LITERT_QUANTIZER)
