"""A .tflite as C source for a microcontroller, laid out as TFLite Micro's examples lay it out.

``to_c(tflite, name)`` returns a header and a source file: an aligned ``const unsigned char``
array of the model's bytes and its length (the model sits in flash), the tensor arena size to
allocate (measured by TFLite Micro, see core.micro), and the op resolver the model needs: one
``Add…()`` line per operator it uses, in a function that compiles once TFLM's
``micro_mutable_op_resolver.h`` is included. That function is not compiled here (no package ships
TFLM's headers): its method names are checked against the header's own list
(tests/data/tflm_resolver_methods.txt). core returns the text; the caller saves it.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

from core import limits
from core.inspect import inspect_tflite

ALIGNMENT = 16  # TFLM reads the flatbuffer in place: the array must be aligned (its examples use 16)
BYTES_PER_LINE = 12


@dataclass(frozen=True)
class CSource:
    name: str  # a C identifier, e.g. "int8"
    header_name: str  # e.g. "int8_model_data.h"
    source_name: str
    header: str
    source: str
    resolver_lines: tuple[str, ...]  # e.g. ("resolver.AddConv2D();", …)
    arena_bytes: int | None

    def zip_bytes(self) -> bytes:
        """The .h and the .cc in one zip, as the app offers them for download."""
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            bundle.writestr(self.header_name, self.header)
            bundle.writestr(self.source_name, self.source)
        return archive.getvalue()

    def usage(self) -> str:
        """The lines a firmware writes to run the model: the arena and the resolver."""
        return "\n".join(
            [
                f"constexpr int kTensorArenaSize = {self.arena_bytes};  // measured by TFLite Micro",
                "alignas(16) static uint8_t tensor_arena[kTensorArenaSize];",
                f"static tflite::MicroMutableOpResolver<{len(self.resolver_lines)}> resolver;",
                *self.resolver_lines,
            ]
        )


def c_identifier(name: str) -> str:
    identifier = re.sub(r"\W+", "_", name).strip("_") or "model"
    return f"m_{identifier}" if identifier[0].isdigit() else identifier


# Where TFLM's method name is not the plain CamelCase of the builtin's name.
IRREGULAR = {
    "PADV2": "AddPadV2",
    "BATCH_MATMUL": "AddBatchMatMul",
    "CUMSUM": "AddCumSum",
    "REVERSE_V2": "AddReverseV2",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}


def resolver_method(op_name: str) -> str:
    """LiteRT's builtin name -> TFLM's MicroMutableOpResolver method: CONV_2D -> AddConv2D."""
    if op_name in IRREGULAR:
        return IRREGULAR[op_name]
    return "Add" + "".join(part.capitalize() if not part[0].isdigit() else part.upper() for part in op_name.split("_"))


def to_c(tflite: bytes, name: str, arena_bytes: int | None = None) -> CSource:
    """The model as a .h/.cc pair (raises core.inspect.ModelFormatError on a malformed file, ValueError on one
    larger than limits.MAX_C_EXPORT_BYTES)."""
    if len(tflite) > limits.MAX_C_EXPORT_BYTES:
        raise ValueError(limits.refusal(name, "the model's size", len(tflite), limits.MAX_C_EXPORT_BYTES, "bytes"))
    inspection = inspect_tflite(tflite)
    identifier = c_identifier(name)
    ops = sorted(inspection.operator_counts)
    methods = [resolver_method(op) for op in ops]
    guard = f"{identifier.upper()}_MODEL_DATA_H_"
    camel = "".join(part.capitalize() for part in identifier.split("_"))
    arena = arena_bytes if arena_bytes is not None else 0
    resolver_lines = tuple(f"resolver.{method}();" for method in methods)
    register = "\n".join(f"  if (resolver.{method}() != kTfLiteOk) return kTfLiteError;" for method in methods)
    header = f"""// {name}: a TensorFlow Lite model as C data for TensorFlow Lite Micro (made by TFLite Quantization Lab).
// {len(tflite):,} bytes in flash; operators: {", ".join(ops)}.
#ifndef {guard}
#define {guard}

extern const unsigned char g_{identifier}_model_data[];
extern const unsigned int g_{identifier}_model_data_len;

// The tensor arena to allocate, as TFLite Micro's RecordingMicroAllocator measured it on this model
// ({"0 = not measured" if arena_bytes is None else "bytes"}).
constexpr int k{camel}TensorArenaSize = {arena};

// The operators this model needs. Include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
// before this header to use it:
//   tflite::MicroMutableOpResolver<{len(methods)}> resolver;
//   Register{camel}Ops(resolver);
#ifdef TENSORFLOW_LITE_MICRO_MICRO_MUTABLE_OP_RESOLVER_H_
inline TfLiteStatus Register{camel}Ops(tflite::MicroMutableOpResolver<{len(methods)}>& resolver) {{
{register}
  return kTfLiteOk;
}}
#endif

#endif  // {guard}
"""
    rows = [
        ", ".join(f"0x{byte:02x}" for byte in tflite[start : start + BYTES_PER_LINE])
        for start in range(0, len(tflite), BYTES_PER_LINE)
    ]
    body = ",\n    ".join(rows)
    source = f"""// {name}: the .tflite's {len(tflite):,} bytes (made by TFLite Quantization Lab).
#include "{identifier}_model_data.h"

alignas({ALIGNMENT}) const unsigned char g_{identifier}_model_data[] = {{
    {body}
}};
const unsigned int g_{identifier}_model_data_len = {len(tflite)};
"""
    return CSource(
        identifier, f"{identifier}_model_data.h", f"{identifier}_model_data.cc", header, source, resolver_lines, arena_bytes
    )
