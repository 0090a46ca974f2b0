import subprocess
import sys

import pytest

from core import models
from core.worker import WorkerError, run_job
from tests.conftest import ROOT


def test_a_keras_file_is_loaded_in_a_fresh_worker_and_comes_back_as_plain_values(keras_model, dataset):
    reports = []
    loaded = run_job("load_keras", reports.append, data=models.to_bytes(keras_model), file_name="seed.keras", dataset=dataset)
    assert loaded["model_bytes"][:2] == b"PK" and loaded["keras_accuracy"] > 0.5
    assert loaded["summary"].parameters == 20410
    assert reports and reports[0].stage == "load"


@pytest.mark.parametrize(
    "how, message", [("raise", "failing on purpose"), ("exit", "exited with code 3"), ("abort", "killed by signal 6")]
)
def test_every_failure_in_the_worker_reaches_the_caller_as_a_clear_error(how, message):
    with pytest.raises(WorkerError, match=message):
        run_job("fail", how=how)


def test_a_bad_model_file_comes_back_as_a_message():
    with pytest.raises(WorkerError, match="not a .keras file"):
        run_job("load_keras", data=b"garbage", file_name="x.keras", dataset=None)


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
