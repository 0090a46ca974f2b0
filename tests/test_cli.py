"""The CLI end to end, as a user runs it (a real process, real files)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, mnist_small_or_skip


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def mnist_small_report(tmp_path_factory):
    data = mnist_small_or_skip()
    out = tmp_path_factory.mktemp("run")
    result = cli("run", "--data-dir", str(data), "--epochs", "1", "--json", str(out / "report.json"), "--save-dir", str(out / "models"),
                 "--keras-latency")  # fmt: skip
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
    code = ("import sys; from core.cli import main; main(['inspect', sys.argv[1]]);"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code, str(out / "models" / "float32.tflite")], capture_output=True, text=True, cwd=ROOT)
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
    assert bad.returncode == 2 and "bad.npz: not a readable" in bad.stderr and "Traceback" not in bad.stderr
    nofile = cli("inspect", str(tmp_path / "absent.tflite"))
    assert nofile.returncode == 2 and "no such file" in nofile.stderr


def test_run_with_a_loaded_keras_model_and_a_subset_of_variants(mnist_small_report, tmp_path):
    _, _, out = mnist_small_report
    result = cli("run", "--data-dir", str(mnist_small_or_skip()), "--model", str(out / "models" / "model.keras"),
                 "--variants", "float32,int8", "--runs", "200", "--json", str(tmp_path / "r.json"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert [row["name"] for row in report["variants"]] == ["float32", "int8"]
    assert report["model"]["epochs"] == 0 and report["variants"][0]["accuracy"] >= 0.90


def test_issue_4_comparison_qat_litert_quantizer_and_layer_errors(tmp_path):
    """python -m core run … --variants float32,int8,qat_int8,dynamic_wi4_afp32,static_wi8_ai8 (+ dynamic for its size)."""
    data = mnist_small_or_skip()
    result = cli("run", "--data-dir", str(data), "--epochs", "1", "--runs", "300", "--json", str(tmp_path / "r.json"),
                 "--variants", "float32,int8,qat_int8,dynamic_wi4_afp32,static_wi8_ai8,dynamic")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Running Calibration" not in result.stderr  # the quantizer's progress bars stay out of the CLI
    rows = {row["name"]: row for row in json.loads((tmp_path / "r.json").read_text())["variants"]}
    assert rows["qat_int8"]["accuracy"] >= rows["int8"]["accuracy"]
    assert rows["dynamic_wi4_afp32"]["size_bytes"] <= 0.65 * rows["dynamic"]["size_bytes"]
    for name, row in rows.items():
        if name == "float32":
            assert "layer_errors" not in row
            continue
        assert row["layer_errors"], name
        for layer in row["layer_errors"]:
            assert set(layer) >= {"tensor", "op", "rmse", "snr_db"}
