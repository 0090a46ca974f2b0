"""The CLI end to end, as a user runs it (a real process, real files)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, mnist_small


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def mnist_small_report(tmp_path_factory):
    data = mnist_small()
    out = tmp_path_factory.mktemp("run")
    result = cli(
        "run",
        "--data-dir",
        str(data),
        "--epochs",
        "1",
        "--json",
        str(out / "report.json"),
        "--save-dir",
        str(out / "models"),
        "--keras-latency",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((out / "report.json").read_text()), result, out


def test_run_on_mnist_small_meets_the_issue_targets(mnist_small_report):
    report, result, _ = mnist_small_report
    rows = {row["name"]: row for row in report["variants"]}
    assert list(rows) == ["float32", "dynamic", "float16", "int8", "int16x8"]
    reference = rows["float32"]
    assert reference["accuracy"] >= 0.90
    for name, row in rows.items():
        assert abs(row["accuracy"] - reference["accuracy"]) <= 0.01, name
        assert row["agreement"] >= 0.98, name
    assert rows["dynamic"]["size_bytes"] <= 0.35 * reference["size_bytes"]
    assert rows["int8"]["size_bytes"] <= 0.35 * reference["size_bytes"]
    assert rows["float16"]["size_bytes"] <= 0.60 * reference["size_bytes"]
    assert "float32" in result.stdout and "p50" in result.stdout
    keras = report["keras_latency_us"]
    assert keras["keras_predict"]["p50"] > rows["float32"]["latency_us"]["p50"]


def test_the_json_report_has_every_documented_field(mnist_small_report):
    report, _, _ = mnist_small_report
    assert set(report["dataset"]) >= {"name", "source", "train_size", "test_size"}
    assert report["dataset"]["train_size"] == 8000 and report["dataset"]["test_size"] == 2000
    assert set(report["model"]) >= {"architecture", "epochs", "parameters", "keras_accuracy"}
    for row in report["variants"]:
        assert set(row) >= {"name", "size_bytes", "accuracy", "agreement", "latency_us", "throughput_ips", "convert_s"}
        assert set(row["latency_us"]) == {"p50", "p90", "p99"}
        assert row["latency_us"]["p50"] <= row["latency_us"]["p90"] <= row["latency_us"]["p99"]
    assert set(report["timings_s"]) >= {"load", "train", "convert", "evaluate", "benchmark", "total"}
    assert set(report["environment"]) >= {"python", "tensorflow", "litert", "threads"}
    from core.report import schema_errors

    assert schema_errors(report) == []
    for row in report["variants"]:
        assert row["throughput_ips"] > 0  # measured for ≥ 0.5 s and ≥ 1,000 images


def test_save_dir_holds_the_model_and_every_tflite_and_inspect_reads_them(mnist_small_report):
    _, _, out = mnist_small_report
    files = sorted(p.name for p in (out / "models").iterdir())
    assert files == ["dynamic.tflite", "float16.tflite", "float32.tflite", "int16x8.tflite", "int8.tflite", "model.keras"]
    result = cli("inspect", str(out / "models" / "int8.tflite"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["inputs"][0]["dtype"] == "int8"
    keras = cli("inspect", str(out / "models" / "model.keras"))
    assert keras.returncode == 0 and "20,410 parameters" in keras.stdout


def test_inspect_does_not_import_tensorflow(mnist_small_report):
    _, _, out = mnist_small_report
    code = (
        "import sys; from core.cli import main; main(['inspect', sys.argv[1]]);"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(out / "models" / "float32.tflite")], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "content, message",
    [(b"", "too short"), (b"hello world, not a model", "identifier"), ("truncated", "corrupt")],
)
def test_inspect_of_a_bad_file_is_exit_2_and_one_line(tmp_path, content, message, tflites):
    path = tmp_path / "bad.tflite"
    path.write_bytes(tflites["float32"][:300] if content == "truncated" else content)
    result = cli("inspect", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_bad_arguments_are_exit_2_with_a_message(tmp_path):
    unknown = cli("run", "--variants", "float32,int7")
    assert unknown.returncode == 2 and "unknown variant 'int7'" in unknown.stderr
    missing = cli("run", "--data-dir", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "bad.npz").write_bytes(b"zip? no")
    bad = cli("run", "--data-dir", str(tmp_path / "bad.npz"))
    assert bad.returncode == 2 and "bad.npz: not an .npz archive" in bad.stderr and "Traceback" not in bad.stderr
    nofile = cli("inspect", str(tmp_path / "absent.tflite"))
    assert nofile.returncode == 2 and "no such file" in nofile.stderr


def test_run_with_a_loaded_keras_model_and_a_subset_of_variants(mnist_small_report, tmp_path):
    _, _, out = mnist_small_report
    result = cli(
        "run",
        "--data-dir",
        str(mnist_small()),
        "--model",
        str(out / "models" / "model.keras"),
        "--variants",
        "float32,int8",
        "--runs",
        "200",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert [row["name"] for row in report["variants"]] == ["float32", "int8"]
    assert report["model"]["epochs"] == 0 and report["variants"][0]["accuracy"] >= 0.90


def test_run_keeps_a_layer_float_and_searches_for_the_fewest_within_a_drop(mnist_small_report, tmp_path):
    """python -m core run --model model.keras --variants float32,int8,dynamic_wi2c_afp32 --keep-float dense_1 --max-drop 100"""
    _, _, out = mnist_small_report
    inspect = cli("inspect", str(out / "models" / "float32.tflite"), "--json")
    dense = next(
        name.split("/")[1]
        for name in (t["name"] for t in json.loads(inspect.stdout)["tensors"])
        if "/dense" in name and name.count("/") >= 2
    )
    result = cli(
        "run",
        "--data-dir",
        str(mnist_small()),
        "--model",
        str(out / "models" / "model.keras"),
        "--variants",
        "float32,int8,dynamic_wi2c_afp32",
        "--keep-float",
        dense,
        "--max-drop",
        "100",
        "--runs",
        "100",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    names = [row["name"] for row in report["variants"]]
    assert f"int8_float-{dense}" in names and f"dynamic_wi2c_afp32_float-{dense}" in names, names
    search = report["keep_float_search"]
    assert set(search) == {"int8", "dynamic_wi2c_afp32"}
    assert all(found["met"] and found["variant"] == base and len(found["steps"]) == 1 for base, found in search.items())
    assert "automatic keep-float for int8" in result.stdout
    bad = cli("run", "--keep-float", "a layer", "--variants", "float32")
    assert bad.returncode == 2 and "--keep-float" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("run", "--max-drop", "200")
    assert bad.returncode == 2 and "--max-drop" in bad.stderr


def test_every_variant_with_tflite_micro_qat_litert_quantizer_and_layer_errors(tmp_path):
    """python -m core run --data-dir …/mnist-small --epochs 1 --variants all --mcu --json out.json"""
    data = mnist_small()
    result = cli(
        "run",
        "--data-dir",
        str(data),
        "--epochs",
        "1",
        "--runs",
        "300",
        "--json",
        str(tmp_path / "r.json"),
        "--variants",
        "all",
        "--mcu",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Running Calibration" not in result.stderr  # the quantizer's progress bars stay out of the CLI
    for chatter in ("I0000", "cudart", "absl", "UserWarning", "experimental", "fully_quantize"):
        assert chatter not in result.stdout + result.stderr, chatter  # the CLI's own lines only
    assert "TensorFlow Lite Micro" in result.stdout and "refused by TFLite Micro" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    for row in report["variants"]:
        tflm = row["tflm"]
        assert set(tflm) >= {"runs", "reason", "arena_bytes", "flash_bytes", "accuracy", "agreement", "differs_from_litert"}
        assert tflm["runs"] or tflm["reason"], row["name"]
    tflm = {row["name"]: row["tflm"] for row in report["variants"]}
    for name in ("int8", "qat_int8"):
        assert tflm[name]["runs"] and 4 * 1024 <= tflm[name]["arena_bytes"] <= 64 * 1024, tflm[name]
        assert tflm[name]["differs_from_litert"] == 0 and tflm[name]["flash_bytes"] == next(
            row["size_bytes"] for row in report["variants"] if row["name"] == name
        )
    for name in ("dynamic", "dynamic_wi8_afp32", "dynamic_wi4_afp32", "float16", "weight_only_wi4_afp32"):
        assert not tflm[name]["runs"] and tflm[name]["reason"], name
    assert "Hybrid models are not supported" in tflm["dynamic_wi8_afp32"]["reason"]
    rows = {row["name"]: row for row in json.loads((tmp_path / "r.json").read_text())["variants"]}
    assert rows["qat_int8"]["accuracy"] >= rows["int8"]["accuracy"]
    assert rows["dynamic_wi4_afp32"]["size_bytes"] <= 0.65 * rows["dynamic"]["size_bytes"]
    for name, row in rows.items():
        if name == "float32":
            assert not row.get("layer_errors")
            continue
        assert row["layer_errors"], name
        for layer in row["layer_errors"]:
            assert set(layer) >= {"tensor", "op", "rmse", "snr_db"}


def test_export_c_compiles_and_holds_the_model_byte_for_byte(mnist_small_report, tmp_path):
    """The exported .cc, compiled with the system C++ compiler, gives back the .tflite exactly."""
    import shutil

    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on this machine")
    _, _, out = mnist_small_report
    model = out / "models" / "int8.tflite"
    result = cli("export-c", str(model), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    header = (tmp_path / "int8_model_data.h").read_text()
    assert "constexpr int kInt8TensorArenaSize = " in header and "AddConv2D()" in header and "AddFullyConnected()" in header
    arena = int(header.split("kInt8TensorArenaSize = ")[1].split(";")[0])
    assert 4 * 1024 <= arena <= 64 * 1024
    (tmp_path / "main.cc").write_text(
        '#include <cstdio>\n#include <cstdint>\n#include "int8_model_data.h"\n'
        "int main() {\n"
        "  if (reinterpret_cast<std::uintptr_t>(g_int8_model_data) % 16 != 0) return 3;\n"
        "  std::fwrite(g_int8_model_data, 1, g_int8_model_data_len, stdout);\n"
        "  return 0;\n}\n"
    )
    binary = tmp_path / "dump"
    build = subprocess.run(
        [
            compiler,
            "-std=c++17",
            "-Wall",
            "-Werror",
            "-o",
            str(binary),
            str(tmp_path / "main.cc"),
            str(tmp_path / "int8_model_data.cc"),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    dumped = subprocess.run([str(binary)], capture_output=True)
    assert dumped.returncode == 0 and dumped.stdout == model.read_bytes()


def tflm_resolver_methods() -> set[str]:
    """MicroMutableOpResolver's Add…() methods, as TFLM's header declares them (vendored: the
    header is in no package, so the exported resolver function cannot be compiled here)."""
    lines = (Path(__file__).parent / "data" / "tflm_resolver_methods.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_every_builtin_tflite_micro_runs_gets_the_resolver_method_its_header_declares():
    """For each builtin operator TFLite Micro's runtime registers (its Register_… symbols), the
    export's Add…() name is one MicroMutableOpResolver declares. This found CUMSUM -> AddCumsum,
    where TFLM's method is AddCumSum."""
    import re

    import tflite_micro

    from core.export_c import resolver_method
    from core.inspect import OPERATORS

    runtime = Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "_runtime.so"
    registered = {name.decode() for name in re.findall(rb"Register_([A-Z0-9_]+?)Ev", runtime.read_bytes())}
    builtins = registered & set(OPERATORS.values())
    assert {"CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE", "SOFTMAX"} <= builtins and len(builtins) > 80
    methods = tflm_resolver_methods()
    assert {op: resolver_method(op) for op in sorted(builtins) if resolver_method(op) not in methods} == {}


def test_the_exported_resolver_registers_each_operator_of_the_model_once(mnist_small_report):
    from core.export_c import to_c

    _, _, out = mnist_small_report
    data = (out / "models" / "int8.tflite").read_bytes()
    lines = to_c(data, "int8").resolver_lines
    called = [line.removeprefix("resolver.").removesuffix("();") for line in lines]
    assert len(set(called)) == len(called) and set(called) <= tflm_resolver_methods()
    # The operators as LiteRT's own interpreter lists them (not as core.inspect read them).
    from core.export_c import resolver_method
    from core.runtime import LiteModel

    ops = {op["op_name"] for op in LiteModel(data, xnnpack=False).ops()}
    assert set(called) == {resolver_method(op) for op in ops}, ops


def test_export_c_of_a_bad_file_or_a_model_tflm_refuses_is_exit_2_and_one_line(mnist_small_report, tmp_path):
    _, _, out = mnist_small_report
    bad = tmp_path / "bad.tflite"
    bad.write_bytes((out / "models" / "int8.tflite").read_bytes()[:300])
    result = cli("export-c", str(bad), "--out", str(tmp_path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "bad.tflite" in result.stderr
    refused = cli("export-c", str(out / "models" / "dynamic.tflite"), "--out", str(tmp_path))
    assert refused.returncode == 2 and "TFLite Micro cannot run it" in refused.stderr
