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

from dataclasses import dataclass, field

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

    @property
    def needs_calibration(self) -> bool:
        return self.converter.calibrate or self.recipe.startswith("static_")

    @property
    def needs_training_data(self) -> bool:
        return self.method == METHOD_QAT

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
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}") from None


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
            min_agreement=0.97 if "wi4" in _name else 0.98,
            run_cost=_cost,
        )
    )

LITERT_QUANTIZER = tuple(name for name, variant in VARIANTS.items() if variant.method == METHOD_LITERT_QUANTIZER)
