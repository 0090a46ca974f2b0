"""The one way to run a call in a fresh process (core.isolation): results, progress and every failure."""

import os
import subprocess
import sys

import pytest

from core import datasets, models
from core.isolation import IsolationError, run_isolated
from core.jobs import LoadModelRequest, run_request
from tests.conftest import ROOT


def test_a_keras_file_is_loaded_in_a_fresh_process_and_its_progress_comes_back(keras_model):
    reports = []
    digits = datasets.DatasetRef.of(datasets.load_offline_digits())
    request = LoadModelRequest("seed.keras", models.to_bytes(keras_model), digits)
    loaded = run_isolated(run_request, request, timeout_s=300, what="loading", imports=(), progress=reports.append).value
    assert loaded.model_bytes[:2] == b"PK" and loaded.summary.parameters == 20410 and loaded.keras_accuracy > 0.2
    assert reports and reports[0].stage == "load"


@pytest.mark.parametrize(
    "call, args, message",
    [(int, ("x",), "^invalid literal for int"), (os._exit, (3,), "exited with code 3$"), (os.abort, (), "killed by SIGABRT$")],
)
def test_every_failure_in_the_child_reaches_the_caller_as_one_line(call, args, message):
    with pytest.raises(IsolationError, match=message):
        run_isolated(call, *args, timeout_s=60, what="the call")


def test_a_bad_model_file_comes_back_as_a_message():
    with pytest.raises(IsolationError, match="not a .keras file"):
        run_isolated(run_request, LoadModelRequest("x.keras", b"garbage"), timeout_s=300, imports=())


def test_the_cli_looks_into_a_keras_file_in_a_child_process(tmp_path, keras_model):
    path = tmp_path / "seed.keras"
    path.write_bytes(models.to_bytes(keras_model))
    child = subprocess.run(
        [sys.executable, "-m", "core", "inspect", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0, child.stderr
    assert "20,410 parameters" in child.stdout


def test_the_job_service_keeps_tensorflow_out_of_the_caller():
    code = (
        "import sys, time; from core.job_service import JobService; from core.jobs import TrainRequest;"
        "from core import datasets;"
        "d = datasets.load_offline_digits(); s = JobService();"
        "j = s.submit(TrainRequest(datasets.DatasetRef.of(d), epochs=1), 'me');"
        "[time.sleep(0.1) for _ in iter(lambda: s.status(j.job_id).active, False)];"
        "assert s.result(j.job_id).model_bytes[:2] == b'PK', s.status(j.job_id);"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF leaked'; s.shutdown()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)
