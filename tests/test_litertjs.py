"""The browser runtime's server side (core.litertjs): every variant's browser twin against its own
file in this server's LiteRT, the checks on what a page sends back, agreement, the class board, and
the vendored LiteRT.js. The twins in a real browser: tests/test_browser_device.py."""

from __future__ import annotations

import copy
import hashlib
import tomllib
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from core import litertjs
from core import variants as registry
from core.class_board import BoardEntry, ClassBoard, entry_from
from core.runtime import LiteModel
from tests import hostile_models

ROOT = Path(__file__).resolve().parents[1]
PHONE = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36"


def edges(tflite: bytes) -> tuple[list, list]:
    """(input, output) of a file as LiteRT reads it: (dtype, shape signature)."""
    model = LiteModel(tflite)
    details = model.interpreter.get_input_details()[0], model.interpreter.get_output_details()[0]
    return [(d["dtype"], list(d["shape_signature"])) for d in details[:1]], [
        (d["dtype"], list(d["shape_signature"])) for d in details[1:]
    ]


@pytest.mark.parametrize("name", list(registry.VARIANTS))
def test_every_variants_twin_runs_batch_one_with_edges_litertjs_takes_and_answers_as_its_own_file(tflites, dataset, name):
    found = litertjs.twin(tflites[name])
    ((in_type, in_shape),) = edges(found.tflite)[0]
    ((out_type, out_shape),) = edges(found.tflite)[1]
    assert in_shape[0] == 1 and out_shape[0] == 1 and -1 not in in_shape + out_shape
    assert in_type in (np.float32, np.uint8) and out_type in (np.float32, np.uint8)
    # The registry says which twins get float32 edges; the twin says what it did.
    assert found.float_edges == registry.VARIANTS[name].browser_float_edges, found.changes
    ((original_type, _),) = edges(tflites[name])[0]
    assert found.float_edges == (original_type in (np.int8, np.int16))
    # Same weights, same kernels: on this server an integer twin answers as its own file bit for bit;
    # a float one as closely as float sums taken one image at a time instead of 32 at once allow.
    images = dataset.x_test[:32]
    own = LiteModel(tflites[name]).predict_logits(images)
    twin_scores, step = litertjs.server_answers(found.tflite, images)
    if registry.VARIANTS[name].integer_arithmetic:
        np.testing.assert_array_equal(twin_scores, own)
    else:
        np.testing.assert_allclose(twin_scores, own, rtol=1e-4, atol=1e-4)
    assert (step is not None) == (
        registry.VARIANTS[name].browser_float_edges or registry.VARIANTS[name].converter.builtin_ops == "int16x8"
    )
    # A twin's twin is itself: nothing left to change.
    assert litertjs.twin(found.tflite).same_file


def test_a_file_that_is_not_a_tflite_or_has_two_inputs_gets_one_line_and_no_twin():
    twin, why = litertjs.twin_or_error(b"not a flatbuffer at all" * 10)
    assert twin is None and "not a .tflite" in why and "\n" not in why
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(hostile_models.fitting()))
    graph = model.subgraphs[0]
    graph.inputs = [graph.inputs[0], graph.inputs[0]]
    twin, why = litertjs.twin_or_error(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    assert twin is None and "one input and one output" in why


def test_a_hostile_models_reshapes_get_static_shapes_and_its_shape_ops_go():
    found = litertjs.twin(hostile_models.fitting())
    assert "batch fixed at 1" in found.changes
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(found.tflite))
    codes = {
        flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
        for op in model.subgraphs[0].operators
    }
    assert schema.BuiltinOperator.SHAPE not in codes
    image = np.random.default_rng(0).random((1, 28, 28), np.float32)
    np.testing.assert_allclose(
        LiteModel(found.tflite).predict_logits(image), LiteModel(hostile_models.fitting()).predict_logits(image)
    )


# -- what a page sends back ---------------------------------------------------------------------------


def report(names=("float32", "int8"), images=2, classes=10, **changes) -> dict:
    message = {
        "version": litertjs.REPORT_VERSION,
        "run_id": "0:abc",
        "device": {
            "user_agent": PHONE,
            "mobile": True,
            "cores": 8,
            "webgpu": False,
            "wasm_build": "litert_wasm_internal",
            "touch": 5,
        },
        "rows": {
            name: {
                "latency": {"wasm": {"per_run_us": [150.0 + i for i in range(20)], "runs_per_sample": 16}},
                "outputs": [[0.1] * classes for _ in range(images)],
            }
            for name in names
        },
    }
    message.update(changes)
    return message


def parse(message, names=("float32", "int8")):
    return litertjs.parse_report(message, "0:abc", names, 2, 10)


def test_a_good_report_is_read_into_latencies_answers_and_anonymous_facts():
    found = parse(report())
    assert set(found.rows) == {"float32", "int8"}
    row = found.rows["int8"]
    assert row.ok and row.latency["wasm"].p50_us == pytest.approx(159.5) and row.runs_per_sample == 16
    assert row.outputs.shape == (2, 10)
    assert found.facts.device_class == "phone" and found.facts.browser == "Chrome on Android"


def hostile(message_edit):
    message = report()
    message_edit(message)
    return message


HOSTILE = {
    "not an object": lambda m: m.clear() or m.update({"version": "x"}),
    "another run": lambda m: m.update(run_id="1:abc"),
    "another version": lambda m: m.update(version=2),
    "a variant not asked for": lambda m: m["rows"].update({"../../etc": m["rows"]["int8"]}),
    "too many samples": lambda m: m["rows"]["int8"]["latency"]["wasm"].update(per_run_us=[1.0] * (litertjs.MAX_SAMPLES + 1)),
    "a latency that is text": lambda m: m["rows"]["int8"]["latency"]["wasm"].update(per_run_us=["1e3"] * 5),
    "a latency that is true": lambda m: m["rows"]["int8"]["latency"]["wasm"].update(per_run_us=[True] * 5),
    "a negative latency": lambda m: m["rows"]["int8"]["latency"]["wasm"].update(per_run_us=[-1.0] * 5),
    "runs per sample out of bounds": lambda m: m["rows"]["int8"]["latency"]["wasm"].update(runs_per_sample=1e12),
    "an unknown accelerator": lambda m: m["rows"]["int8"]["latency"].update(npu={"per_run_us": [1.0]}),
    "answers to too many images": lambda m: m["rows"]["int8"].update(outputs=[[0.1] * 10] * 3),
    "too many scores": lambda m: m["rows"]["int8"].update(outputs=[[0.1] * 11] * 2),
    "a huge score": lambda m: m["rows"]["int8"].update(outputs=[[1e39] * 10] * 2),
    "an unknown build": lambda m: m["device"].update(wasm_build="../../threaded"),
    "cores as text": lambda m: m["device"].update(cores="8"),
    "webgpu as a number": lambda m: m["device"].update(webgpu=1),
    "a user agent that is a list": lambda m: m["device"].update(user_agent=["x"] * 1000),
}


@pytest.mark.parametrize("what", list(HOSTILE))
def test_a_forged_or_broken_report_is_refused_in_one_line(what):
    with pytest.raises(litertjs.DeviceReportError) as refused:
        parse(hostile(HOSTILE[what]))
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_a_report_cannot_grow_past_its_bounds():
    many = [f"v{i}" for i in range(litertjs.MAX_VARIANTS + 1)]
    with pytest.raises(litertjs.DeviceReportError):
        parse(report(names=many), names=many)
    long_text = report()
    long_text["device"]["user_agent"] = "A" * 100_000 + "\nsecond line"
    long_text["rows"]["int8"] = {"error": "refused\n" + "B" * 100_000}
    found = parse(long_text)
    assert len(found.facts.user_agent) <= litertjs.MAX_TEXT_CHARS and "\n" not in found.facts.user_agent
    assert not found.rows["int8"].ok and len(found.rows["int8"].error) <= litertjs.MAX_ERROR_CHARS
    # JSON has no NaN: the page sends null, which stays a missing score, not a number.
    nulls = report()
    nulls["rows"]["int8"]["outputs"][0][3] = None
    assert np.isnan(parse(nulls).rows["int8"].outputs[0, 3])


def test_webgpu_refusing_a_twin_keeps_its_webassembly_timing_and_says_why():
    message = report()
    message["rows"]["int8"]["latency"]["webgpu"] = {"error": "WebGPU: no adapter"}
    row = parse(message).rows["int8"]
    assert row.ok and "webgpu" not in row.latency and row.accelerator_errors["webgpu"] == "WebGPU: no adapter"


# -- agreement ---------------------------------------------------------------------------------------


def test_agreement_is_exact_for_integer_arithmetic_and_within_a_tolerance_for_float():
    server = np.random.default_rng(0).random((32, 10), np.float32)
    assert litertjs.agreement(server.copy(), server, integer=True).ok
    one_step = server.copy()
    one_step[3, 4] += 1 / 256
    integer = litertjs.agreement(one_step, server, integer=True, step=1 / 256)
    assert not integer.ok and integer.steps == pytest.approx(1, rel=1e-3) and "1 output step" in integer.describe()
    close = server + 1e-5
    assert litertjs.agreement(close, server, integer=False).ok and not litertjs.agreement(close, server, integer=True).ok
    assert not litertjs.agreement(server + 0.1, server, integer=False).ok
    assert not litertjs.agreement(server[:5], server, integer=False).ok  # a short answer is no agreement


def test_side_by_side_gives_every_server_variant_a_row_and_the_int8_over_float32_ratio():
    parsed = parse(report())
    server_outputs = {name: (row.outputs, None) for name, row in parsed.rows.items()}
    rows = litertjs.side_by_side(
        {"float32": 10.0, "int8": 35.0, "dynamic": 12.0}, parsed, server_outputs, lambda name: name == "int8"
    )
    assert [row.name for row in rows] == ["float32", "int8", "dynamic"]
    assert rows[2].refusal == "no browser twin" and rows[0].agreement.exact
    assert litertjs.speed_ratio(rows, "int8", "float32", "server_us") == pytest.approx(3.5)
    assert litertjs.speed_ratio(rows, "int8", "float32", "device_us") == pytest.approx(1.0)
    assert rows[0].webgpu_note == "no WebGPU in this browser"


# -- the class board ---------------------------------------------------------------------------------


def test_the_class_board_is_anonymous_bounded_and_each_token_replaces_only_its_own_entry():
    entry = entry_from(parse(report()))
    assert entry.browser == "Chrome on Android" and entry.device_class == "phone"
    assert PHONE not in repr(entry) and "Pixel" not in repr(entry)
    board = ClassBoard(max_entries=3)
    for token in "abcd":
        board.put(token, entry)
    assert len(board) == 3 and not board.has("a")  # the oldest went first
    board.put("b", BoardEntry("laptop or desktop", "Firefox on Linux", 4, "litert_wasm_internal", 100.0, 25.0, 0.0))
    assert len(board) == 3 and [e.int8_over_float32 for e in board.entries()][-1] == 0.25
    board.remove("c")
    assert len(board) == 2 and board.has("b") and board.has("d")
    without_int8 = parse(report(names=("float32",)), names=("float32",))
    assert entry_from(without_int8) is None


@pytest.mark.parametrize(
    "agent, device_class, browser",
    [
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Version/18.0 Mobile/15E148 Safari/604.1",
            "phone",
            "Safari on iOS",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Safari/604.1",
            "tablet",
            "Safari on iPadOS",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0 Safari/537.36",
            "laptop or desktop",
            "Chrome on Linux",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36 Edg/131.0",
            "laptop or desktop",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.0; rv:133.0) Gecko/20100101 Firefox/133.0",
            "laptop or desktop",
            "Firefox on macOS",
        ),
    ],
)
def test_a_device_is_named_by_its_class_and_browser_family_only(agent, device_class, browser):
    facts = litertjs.DeviceFacts(agent, "Mobile" in agent or "iPhone" in agent, 4, False, "litert_wasm_internal", 0)
    assert (facts.device_class, facts.browser) == (device_class, browser)


# -- LiteRT.js, served by the app itself --------------------------------------------------------------


def test_litertjs_is_vendored_as_pinned_and_served_by_the_app_with_no_cdn():
    from scripts import vendor_litertjs

    assert vendor_litertjs.VERSION == litertjs.VERSION
    assert vendor_litertjs.check() == []
    assert set(litertjs.WASM_BUILDS) == {
        name.removesuffix(".wasm") for name in vendor_litertjs.expected() if name.endswith(".wasm")
    }
    index = (vendor_litertjs.TARGET / "index.js").read_bytes()
    assert vendor_litertjs.BARE_IMPORT not in index and vendor_litertjs.LOCAL_IMPORT in index
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["enableStaticServing"] is True
    for script in (ROOT / "static" / "qlab").glob("*.js"):
        text = script.read_text()
        assert "http://" not in text and "https://" not in text, f"{script.name} loads something from outside the app"


def test_the_check_finds_a_changed_vendored_file(tmp_path):
    from scripts import vendor_litertjs

    for name in vendor_litertjs.expected():
        (tmp_path / name).write_bytes((vendor_litertjs.TARGET / name).read_bytes())
    assert vendor_litertjs.check(tmp_path) == []
    changed = bytearray((tmp_path / "wasm-utils.js").read_bytes())
    changed[10] ^= 1
    (tmp_path / "wasm-utils.js").write_bytes(bytes(changed))
    (tmp_path / "litert_wasm_internal.wasm").unlink()
    problems = vendor_litertjs.check(tmp_path)
    assert len(problems) == 2 and any("missing" in line for line in problems)
    assert hashlib.sha256(bytes(changed)).hexdigest() in " ".join(problems)


def test_copy_of_a_report_is_not_shared_between_parses():
    message = report()
    first = parse(copy.deepcopy(message))
    message["rows"]["int8"]["outputs"][0][0] = 0.9
    assert first.rows["int8"].outputs[0, 0] == pytest.approx(0.1)
