import subprocess
import sys

import numpy as np
import pytest

from core import models
from core.runtime import LiteModel
from core.worker import WorkerError, run_job
from tests.conftest import ROOT


def test_train_then_convert_in_the_worker_returns_plain_values(dataset):

    reports = []
    small = type(dataset)(dataset.name, dataset.x_train[:1000], dataset.y_train[:1000], dataset.x_test[:300],
                          dataset.y_test[:300], dataset.class_names, dataset.source)  # fmt: skip
    trained = run_job("train", reports.append, dataset=small, config=models.TrainConfig(epochs=1))
    assert trained["model_bytes"][:2] == b"PK" and trained["keras_accuracy"] > 0.5
    assert trained["summary"].parameters == 20410
    assert any(r.metrics.get("epoch_end") for r in reports) and any("batch" in r.metrics for r in reports)
    converted = run_job("convert", model_bytes=trained["model_bytes"], names=["float32", "int8"],
                        calibration=small.x_train[:50])  # fmt: skip
    assert set(converted["converted"]) == {"float32", "int8"} and converted["failures"] == {}
    logits = LiteModel(converted["converted"]["int8"][0]).predict_logits(small.x_test[:10])
    assert logits.shape == (10, 10) and np.isfinite(logits).all()


@pytest.mark.parametrize("how, message", [("raise", "failing on purpose"), ("exit", "exited with code 3"),
                                          ("abort", "killed by signal 6")])  # fmt: skip
def test_every_failure_in_the_worker_reaches_the_caller_as_a_clear_error(how, message):
    with pytest.raises(WorkerError, match=message):
        run_job("fail", how=how)


def test_a_bad_model_file_comes_back_as_a_message():
    with pytest.raises(WorkerError, match="not a .keras file"):
        run_job("load_keras", data=b"garbage", file_name="x.keras", dataset=None)


def test_the_worker_keeps_tensorflow_out_of_the_caller():
    code = (
        "import sys; from core.worker import run_job; from core import models, datasets;"
        "d = datasets.load_offline_digits();"
        "r = run_job('train', dataset=d, config=models.TrainConfig(epochs=0));"
        "assert r['model_bytes']; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF leaked'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
