"""The third runtime: LiteRT.js, Google's LiteRT compiled to WebAssembly, in the visitor's own browser.

This module is the server's side of it, as ``core/runtime.py`` is LiteRT's and ``core/micro.py``
TFLite Micro's. The browser side is ``static/qlab/device.js`` (a Streamlit component,
``ui/device.py``) with LiteRT.js 2.5.3 vendored under ``static/litertjs/`` by
``scripts/vendor_litertjs.py``.

* :func:`twin` turns any variant's .tflite into the *browser twin* LiteRT.js 2.5.3 runs. That
  release refuses a dynamic batch dimension and int8 inputs and outputs, so the twin is the same
  graph, edited in its flatbuffer, with the same weights and the same kernels:

  - the batch is fixed at one, and each RESHAPE whose new shape was computed at run time from the
    batch (SHAPE, STRIDED_SLICE, PACK) gets that shape as a constant; the ops left unused go;
  - an int8 (or int16) input gets a float32 input and a QUANTIZE op in front of it, an int8
    output a DEQUANTIZE op after it, with the tensor's own scale and zero point.

  Same kernels, different edges: the quantized integers inside are computed as the server
  computes them. :func:`twin` reports each change it made.
* :func:`parse_report` reads what the browser sent back (latencies, answers, device facts): a
  message from a page is untrusted, so every size, type and count is checked and bounded.
* :func:`agreement` holds the browser's answers against the server's LiteRT on the same twin.

Nothing here imports TensorFlow or Streamlit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

VERSION = "2.5.3"  # @litertjs/core and @litertjs/wasm-utils, vendored by scripts/vendor_litertjs.py
STATIC_URL = "app/static/litertjs/"  # where Streamlit serves static/litertjs (server.enableStaticServing)
WASM_BUILDS = {
    "litert_wasm_internal": "relaxed SIMD",
    "litert_wasm_compat_internal": "compat (no relaxed SIMD)",
}
INTEGER = {schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8, schema.TensorType.INT16: np.int16}
# What 2.5.3 takes at a model's edges: float32, int32 and uint8 ("Element type INT8 is not supported").
ACCEPTED_IO = (schema.TensorType.FLOAT32, schema.TensorType.INT32, schema.TensorType.UINT8)
_SHAPE_OPS = {schema.BuiltinOperator.SHAPE, schema.BuiltinOperator.STRIDED_SLICE, schema.BuiltinOperator.PACK}


class TwinError(ValueError):
    """The file cannot be turned into a browser twin; the message says why, in one line."""


@dataclass(frozen=True)
class Twin:
    tflite: bytes = field(repr=False)
    changes: tuple[str, ...]  # what was edited, in words; () when the file runs in LiteRT.js as it is

    @property
    def same_file(self) -> bool:
        return not self.changes

    @property
    def float_edges(self) -> bool:
        """Whether the twin added float32 edges around an integer input or output."""
        return any("QUANTIZE" in change for change in self.changes)


def _opcode(model, builtin: int) -> int:
    for index, code in enumerate(model.operatorCodes):
        if flatbuffer_utils.get_builtin_code_from_operator_code(code) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _new_tensor(model, graph, name: str, tensor_type: int, shape: list[int], data: bytes | None = None) -> int:
    tensor = schema.TensorT()
    tensor.name = name.encode()
    tensor.type = tensor_type
    tensor.shape = list(shape)
    tensor.shapeSignature = list(shape)
    tensor.buffer = 0
    if data is not None:
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, np.uint8).copy()
        model.buffers.append(buffer)
        tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _op(model, builtin: int, inputs: list[int], outputs: list[int]):
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model, builtin)
    op.inputs, op.outputs = list(inputs), list(outputs)
    if builtin == schema.BuiltinOperator.QUANTIZE:
        op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.QuantizeOptions, schema.QuantizeOptionsT()
    elif builtin == schema.BuiltinOperator.DEQUANTIZE:
        op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.DequantizeOptions, schema.DequantizeOptionsT()
    return op


def _fix_batch(graph) -> bool:
    """Batch one wherever the file left it open (-1 first in a shape signature)."""
    changed = False
    for tensor in graph.tensors:
        signature = list(tensor.shapeSignature) if tensor.shapeSignature is not None else []
        if signature and signature[0] == -1:
            tensor.shapeSignature = [1, *signature[1:]]
            if tensor.shape is not None and len(tensor.shape):
                tensor.shape = [1, *list(tensor.shape)[1:]]
            changed = True
        if signature and -1 in signature[1:]:
            raise TwinError(f"tensor {tensor.name.decode(errors='replace')} has an unknown size besides the batch: {signature}")
    return changed


def _constant_reshapes(model, graph) -> int:
    """Each RESHAPE fed a shape computed at run time gets it as a constant: the output's own static shape."""
    count = 0
    for op in graph.operators:
        code = flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
        if code != schema.BuiltinOperator.RESHAPE or len(op.inputs) < 2:
            continue
        shape_input = graph.tensors[op.inputs[1]]
        if model.buffers[shape_input.buffer].data is not None and len(model.buffers[shape_input.buffer].data):
            continue  # already a constant
        out_shape = [int(d) for d in graph.tensors[op.outputs[0]].shape]
        if any(d < 1 for d in out_shape):
            raise TwinError(f"a RESHAPE's output has no static shape: {out_shape}")
        op.inputs = [
            op.inputs[0],
            _new_tensor(
                model,
                graph,
                f"twin_shape_{count}",
                schema.TensorType.INT32,
                [len(out_shape)],
                np.asarray(out_shape, np.int32).tobytes(),
            ),
        ]
        count += 1
    return count


def _drop_unused_shape_ops(model, graph) -> int:
    """SHAPE, STRIDED_SLICE and PACK ops whose outputs nothing reads any more."""
    dropped = 0
    while True:
        read = {index for op in graph.operators for index in op.inputs} | set(graph.outputs)
        keep = [
            op
            for op in graph.operators
            if not (
                flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex]) in _SHAPE_OPS
                and not any(index in read for index in op.outputs)
            )
        ]
        if len(keep) == len(graph.operators):
            return dropped
        dropped += len(graph.operators) - len(keep)
        graph.operators = keep


def _float_edges(model, graph) -> list[str]:
    changes = []
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise TwinError(
            f"the lab runs models with one input and one output; this one has {len(graph.inputs)} and {len(graph.outputs)}"
        )
    old_in, old_out = graph.inputs[0], graph.outputs[0]
    renamed = {}
    tensor = graph.tensors[old_in]
    if tensor.type in INTEGER:
        new = _new_tensor(model, graph, tensor.name.decode() + "_float", schema.TensorType.FLOAT32, list(tensor.shape))
        graph.operators.insert(0, _op(model, schema.BuiltinOperator.QUANTIZE, [new], [old_in]))
        graph.inputs = [new]
        renamed[old_in] = new
        changes.append(
            f"float32 input → QUANTIZE → {flatbuffer_utils.type_to_name(tensor.type).lower()} (scale and zero point of the file's own input)"
        )
    elif tensor.type not in ACCEPTED_IO:
        raise TwinError(
            f"LiteRT.js {VERSION} takes float32, int32 or uint8 inputs, not {flatbuffer_utils.type_to_name(tensor.type)}"
        )
    tensor = graph.tensors[old_out]
    if tensor.type in INTEGER:
        new = _new_tensor(model, graph, tensor.name.decode() + "_float", schema.TensorType.FLOAT32, list(tensor.shape))
        graph.operators.append(_op(model, schema.BuiltinOperator.DEQUANTIZE, [old_out], [new]))
        graph.outputs = [new]
        renamed[old_out] = new
        changes.append(f"{flatbuffer_utils.type_to_name(tensor.type).lower()} output → DEQUANTIZE → float32")
    elif tensor.type not in ACCEPTED_IO:
        raise TwinError(
            f"LiteRT.js {VERSION} gives float32, int32 or uint8 outputs, not {flatbuffer_utils.type_to_name(tensor.type)}"
        )
    for signature in model.signatureDefs or []:
        for entry in (signature.inputs or []) + (signature.outputs or []):
            entry.tensorIndex = renamed.get(entry.tensorIndex, entry.tensorIndex)
    return changes


def twin(tflite: bytes) -> Twin:
    """The browser twin of a .tflite (see the module's docstring); raises TwinError in one line."""
    try:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    except Exception as error:  # a malformed flatbuffer raises anything from struct to IndexError
        raise TwinError(f"not a .tflite flatbuffer ({type(error).__name__})") from error
    if len(model.subgraphs) != 1:
        raise TwinError(f"the twin takes one subgraph; this file has {len(model.subgraphs)}")
    graph = model.subgraphs[0]
    changes = []
    if _fix_batch(graph):
        changes.append("batch fixed at 1")
        if reshapes := _constant_reshapes(model, graph):
            dropped = _drop_unused_shape_ops(model, graph)
            changes.append(
                f"{reshapes} RESHAPE{'s' if reshapes != 1 else ''} given its static shape ({dropped} shape ops dropped)"
            )
    changes += _float_edges(model, graph)
    if not changes:
        return Twin(bytes(tflite), ())
    return Twin(bytes(flatbuffer_utils.convert_object_to_bytearray(model)), tuple(changes))


def twin_or_error(tflite: bytes) -> tuple[Twin | None, str]:
    """The twin, or None and its one-line reason: what the conversion job stores per variant."""
    try:
        return twin(tflite), ""
    except TwinError as error:
        return None, str(error)


# -- what the browser sends back ------------------------------------------------------------------

REPORT_VERSION = 1
MAX_VARIANTS = 64  # rows in one report
MAX_SAMPLES = 100  # latency samples per variant (each the mean of a batch of runs)
MAX_RUNS_PER_SAMPLE = 1 << 16
MAX_ERROR_CHARS = 300
MAX_TEXT_CHARS = 300
AGREEMENT_IMAGES = 32  # test images every twin answers, in the browser and on the server
ACCELERATORS = ("wasm", "webgpu")


class DeviceReportError(ValueError):
    """A message from the page that is not a report this server asked for; one line."""


@dataclass(frozen=True)
class DeviceFacts:
    user_agent: str
    mobile: bool
    cores: int
    webgpu: bool
    wasm_build: str  # one of WASM_BUILDS
    touch: int

    @property
    def device_class(self) -> str:
        agent = self.user_agent
        if "iPad" in agent or ("Android" in agent and "Mobile" not in agent):
            return "tablet"
        return "phone" if self.mobile or "iPhone" in agent else "laptop or desktop"

    @property
    def browser(self) -> str:
        """The user agent's family: 'Chrome on Android'. Versions and the rest are not kept."""
        agent = self.user_agent
        name = next(
            (
                label
                for token, label in (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Safari/", "Safari"))
                if token in agent
            ),
            "another browser",
        )
        system = next(
            (
                label
                for token, label in (
                    ("Android", "Android"),
                    ("iPhone", "iOS"),
                    ("iPad", "iPadOS"),
                    ("Windows", "Windows"),
                    ("Mac OS", "macOS"),
                    ("CrOS", "ChromeOS"),
                    ("Linux", "Linux"),
                )
                if token in agent
            ),
            "another system",
        )
        return f"{name} on {system}"


@dataclass(frozen=True, eq=False)
class DeviceRow:
    """One twin in the browser: its latency per accelerator, its answers, or its refusal."""

    name: str
    error: str = ""  # LiteRT.js's refusal, one line
    latency: dict = field(default_factory=dict)  # accelerator -> core.latency.LatencyStats
    runs_per_sample: int = 0
    outputs: np.ndarray | None = None  # AGREEMENT_IMAGES × classes, NaN where the browser had none
    accelerator_errors: dict = field(default_factory=dict)  # accelerator -> one line (WebGPU absent, refused)

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True, eq=False)
class DeviceReport:
    run_id: str
    facts: DeviceFacts
    rows: dict  # name -> DeviceRow


def _text(value, what: str, limit: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(value, str):
        raise DeviceReportError(f"{what} is not text")
    return value[:limit].replace("\n", " ")


def _number(value, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise DeviceReportError(f"{what} is not a number from {low:g} to {high:g}")
    return float(value)


def _facts(message) -> DeviceFacts:
    if not isinstance(message, dict):
        raise DeviceReportError("the device facts are not an object")
    build = message.get("wasm_build")
    if build not in WASM_BUILDS:
        raise DeviceReportError(f"unknown WebAssembly build {str(build)[:40]!r}")
    for flag in ("mobile", "webgpu"):
        if not isinstance(message.get(flag), bool):
            raise DeviceReportError(f"device fact {flag} is not true or false")
    return DeviceFacts(
        user_agent=_text(message.get("user_agent"), "the user agent"),
        mobile=message["mobile"],
        cores=int(_number(message.get("cores"), "the core count", 0, 1024)),
        webgpu=message["webgpu"],
        wasm_build=build,
        touch=int(_number(message.get("touch", 0), "the touch points", 0, 64)),
    )


def _latency(name: str, accelerator: str, entry) -> tuple:
    from core.latency import stats

    if not isinstance(entry, dict):
        raise DeviceReportError(f"{name}: its {accelerator} timing is not an object")
    if "error" in entry:
        return None, _text(entry["error"], f"{name}'s {accelerator} error", MAX_ERROR_CHARS), 0
    samples = entry.get("per_run_us")
    if not isinstance(samples, list) or not 1 <= len(samples) <= MAX_SAMPLES:
        raise DeviceReportError(f"{name}: 1 to {MAX_SAMPLES} latency samples expected")
    values = np.array([_number(v, f"{name}'s latency", 1e-3, 1e8) for v in samples])
    runs = int(_number(entry.get("runs_per_sample"), f"{name}'s runs per sample", 1, MAX_RUNS_PER_SAMPLE))
    return stats(f"{name} (LiteRT.js {accelerator})", values), "", runs


def _outputs(name: str, value, images: int, classes: int) -> np.ndarray:
    if not isinstance(value, list) or len(value) != images:
        raise DeviceReportError(f"{name}: answers to {images} images expected")
    rows = []
    for row in value:
        if not isinstance(row, list) or len(row) != classes:
            raise DeviceReportError(f"{name}: {classes} scores per image expected")
        # JSON has no NaN or infinity: the page sends null for them.
        rows.append([np.nan if v is None else _number(v, f"{name}'s score", -3.4e38, 3.4e38) for v in row])
    return np.asarray(rows, dtype=np.float32)


def parse_report(message, run_id: str, names, images: int, classes: int) -> DeviceReport:
    """The page's report for ``run_id``, checked: only the variants asked for, every size bounded.
    Raises DeviceReportError (one line) for anything else."""
    if not isinstance(message, dict):
        raise DeviceReportError("the report is not an object")
    if message.get("version") != REPORT_VERSION:
        raise DeviceReportError(f"report version {str(message.get('version'))[:20]!r}, expected {REPORT_VERSION}")
    if message.get("run_id") != run_id:
        raise DeviceReportError("the report is for another measurement")
    rows = message.get("rows")
    names = list(names)
    if not isinstance(rows, dict) or len(rows) > min(MAX_VARIANTS, len(names)):
        raise DeviceReportError(f"at most {min(MAX_VARIANTS, len(names))} variants expected")
    parsed = {}
    for name, row in rows.items():
        if name not in names:
            raise DeviceReportError(f"{str(name)[:40]!r} was not asked for")
        if not isinstance(row, dict):
            raise DeviceReportError(f"{name}: its row is not an object")
        if "error" in row:
            parsed[name] = DeviceRow(name, error=_text(row["error"], f"{name}'s error", MAX_ERROR_CHARS) or "refused")
            continue
        latency, errors, runs = {}, {}, 0
        timings = row.get("latency")
        if not isinstance(timings, dict) or not set(timings) <= set(ACCELERATORS) or "wasm" not in timings:
            raise DeviceReportError(f"{name}: timings per accelerator (wasm, webgpu) expected")
        for accelerator, entry in timings.items():
            found, error, used = _latency(name, accelerator, entry)
            if found is None:
                errors[accelerator] = error
            else:
                latency[accelerator] = found
                runs = runs or used
        if "wasm" not in latency:
            parsed[name] = DeviceRow(name, error=errors.get("wasm", "refused"))
            continue
        parsed[name] = DeviceRow(name, "", latency, runs, _outputs(name, row.get("outputs"), images, classes), errors)
    return DeviceReport(run_id, _facts(message.get("device")), parsed)


# -- the browser against the server ---------------------------------------------------------------

FLOAT_TOLERANCE = 1e-3  # float kernels: XNNPACK's WASM and x86 builds sum in different orders


@dataclass(frozen=True)
class Agreement:
    exact: bool  # every score bit for bit the server's
    within_tolerance: bool
    max_abs_diff: float
    answers_differ: int  # images whose top answer differs
    images: int
    integer: bool  # held to exactness (integer arithmetic) or to FLOAT_TOLERANCE
    step: float | None = None  # one step of the integer output (its scale), where the twin dequantizes one

    @property
    def ok(self) -> bool:
        return self.exact if self.integer else self.within_tolerance

    @property
    def steps(self) -> float | None:
        """The largest difference in output steps (integer variants)."""
        return self.max_abs_diff / self.step if self.step else None

    def describe(self) -> str:
        if self.exact:
            return f"exact on {self.images} images"
        if self.ok:
            return f"within {FLOAT_TOLERANCE:g} (max {self.max_abs_diff:.1e}), same answer on {self.images - self.answers_differ} of {self.images}"
        size = (
            f"{self.steps:.0f} output step{'s' if round(self.steps) != 1 else ''}" if self.steps else f"{self.max_abs_diff:.2g}"
        )
        return f"up to {size} apart, same answer on {self.images - self.answers_differ} of {self.images}" + (
            " (integer arithmetic: expected exact)" if self.integer else ""
        )


def agreement(browser: np.ndarray, server: np.ndarray, integer: bool, step: float | None = None) -> Agreement:
    """The browser's scores on the agreement images against the server's LiteRT on the same twin."""
    browser, server = np.asarray(browser, np.float32), np.asarray(server, np.float32)
    if browser.shape != server.shape:
        return Agreement(False, False, math.inf, len(server), len(server), integer, step)
    both = np.isfinite(browser) & np.isfinite(server)
    same_nonfinite = (~np.isfinite(browser) & ~np.isfinite(server)) | both
    diff = float(np.abs(browser[both] - server[both]).max()) if both.any() else 0.0
    exact = bool(np.array_equal(browser, server, equal_nan=True))
    scale = 1.0 + float(np.abs(server[both]).max()) if both.any() else 1.0
    differ = int((np.nan_to_num(browser, nan=-np.inf).argmax(1) != np.nan_to_num(server, nan=-np.inf).argmax(1)).sum())
    within = bool(same_nonfinite.all() and diff <= FLOAT_TOLERANCE * scale)
    return Agreement(exact, within, diff, differ, len(server), integer, step)


def output_step(tflite: bytes) -> float | None:
    """The scale of the integer tensor a file's output is dequantized from (one output step), if any."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    for op in graph.operators:
        code = flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
        if code == schema.BuiltinOperator.DEQUANTIZE and list(op.outputs) == list(graph.outputs):
            quantization = graph.tensors[op.inputs[0]].quantization
            if quantization is not None and quantization.scale is not None and len(quantization.scale) == 1:
                return float(quantization.scale[0])
    return None


@dataclass(frozen=True)
class DeviceUnavailable:
    """The page could not load LiteRT.js at all (no WebAssembly, a refused build): its one line."""

    reason: str


@dataclass(frozen=True)
class SideBySide:
    """One variant on this server (LiteRT) and on the visitor's device (LiteRT.js)."""

    name: str
    server_us: float | None  # p50 of single-image invokes (core.latency), the variant's own file
    device_us: float | None  # p50 per run in the browser (WebAssembly), the twin
    webgpu_us: float | None = None
    refusal: str = ""  # LiteRT.js's one line when it refused the twin
    webgpu_note: str = ""  # why there is no WebGPU figure
    agreement: Agreement | None = None

    @property
    def device_over_server(self) -> float | None:
        return self.device_us / self.server_us if self.device_us and self.server_us else None


def side_by_side(server_us: dict, report: DeviceReport, server_outputs: dict, integer) -> list[SideBySide]:
    """Rows for every variant the server timed: ``server_us`` name -> p50 µs, ``server_outputs`` name
    -> (the server's scores on the twin for the agreement images, its output step or None: see
    :func:`server_answers`), ``integer(name)`` whether it is held to exactness."""
    rows = []
    for name, server in server_us.items():
        row = report.rows.get(name)
        if row is None:
            rows.append(SideBySide(name, server, None, refusal="no browser twin"))
        elif not row.ok:
            rows.append(SideBySide(name, server, None, refusal=row.error))
        else:
            gpu = row.latency.get("webgpu")
            found = server_outputs.get(name)
            rows.append(
                SideBySide(
                    name,
                    server,
                    row.latency["wasm"].p50_us,
                    gpu.p50_us if gpu else None,
                    webgpu_note=row.accelerator_errors.get("webgpu", "" if report.facts.webgpu else "no WebGPU in this browser"),
                    agreement=agreement(row.outputs, found[0], integer(name), found[1]) if found is not None else None,
                )
            )
    return rows


def speed_ratio(rows: list[SideBySide], numerator: str, denominator: str, column: str) -> float | None:
    """e.g. int8's time over float32's on one column (server_us, device_us, webgpu_us): < 1 is faster."""
    found = {row.name: getattr(row, column) for row in rows}
    top, bottom = found.get(numerator), found.get(denominator)
    return top / bottom if top and bottom else None


def server_answers(twin_tflite: bytes, images: np.ndarray) -> tuple[np.ndarray, float | None]:
    """This server's LiteRT (XNNPACK, as LiteRT.js uses) on a twin, one image at a time as the
    browser runs it: the scores the browser's are held against, and the twin's output step."""
    from core.runtime import LiteModel

    model = LiteModel(twin_tflite)
    scores = np.concatenate([model.predict_logits(image[None]) for image in images[:AGREEMENT_IMAGES]])
    return scores, output_step(twin_tflite)
