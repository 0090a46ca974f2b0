"""A model's memory is known before the server runs it: the file's declared tensors, then one image in a
bounded child process; batches are cut to the measured per-image memory; outputs must be the classes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from core import limits
from core import variants as registry
from core.isolation import IsolationError, run_isolated
from core.runtime import LiteModel, RuntimeModelError, check_model
from tests import hostile_models
from tests.conftest import ROOT

HOSTILE = {
    "big declared input": (
        hostile_models.big_declared_input,
        "the memory its tensors declare for one image is 1,600,000,072 bytes",
    ),
    "broadcast, shape hidden": (hostile_models.broadcast_to_huge, "running one image needs more memory than its bound of 256 MB"),
    "broadcast, shape declared": (
        lambda: hostile_models.broadcast_to_huge(declared=True),
        "declare for one image is 1,600,003,228 bytes",
    ),
    "huge output": (hostile_models.huge_output, "declare for one image is 313,606,288 bytes, over the limit of 33,554,432 bytes"),
    "1,000 outputs": (lambda: hostile_models.outputs(1000), "gives 1,000 scores per image, but the dataset has 10 classes"),
    "1 output": (lambda: hostile_models.outputs(1), "gives 1 score per image, but the dataset has 10 classes"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_model_is_refused_with_one_line_naming_file_limit_and_number(case):
    build, expected = HOSTILE[case]
    data = build()
    assert len(data) < 4096, "a few KB on disk"
    with pytest.raises(RuntimeModelError) as refused:
        check_model(data, "hostile.tflite", classes=10)
    message = str(refused.value)
    assert expected in message and message.startswith("hostile.tflite") and "\n" not in message


def test_the_hidden_broadcast_is_stopped_by_the_childs_memory_bound_not_by_the_file():
    data = hostile_models.broadcast_to_huge()
    from core.inspect import inspect_tflite

    assert inspect_tflite(data).tensor_bytes < limits.MAX_MODEL_TENSOR_BYTES, "the file hides the 1.6 GB intermediate"
    started = time.perf_counter()
    with pytest.raises(RuntimeModelError, match="needs more memory than its bound"):
        check_model(data, "broadcast.tflite")
    assert time.perf_counter() - started < 30


def test_a_model_of_megabytes_per_image_is_accepted_and_runs_in_batches_within_the_interpreter_bound():
    data = hostile_models.batch_bomb()
    found = check_model(data, "bomb.tflite", classes=10)
    assert found.outputs == 10 and 6_000_000 < found.tensor_bytes < 7_000_000
    assert found.max_batch == 20, found
    model = LiteModel(data)
    assert model.max_batch == found.max_batch
    logits = model.predict_logits(np.random.default_rng(0).random((75, 28, 28), dtype=np.float32))
    assert logits.shape == (75, 10)
    assert model.memory_bytes <= limits.INTERPRETER_BYTES, "no allocation past the bound for 75 images"
    with pytest.raises(RuntimeModelError, match="over this model's memory bound of 20 images"):
        model.set_input(np.zeros((21, 28, 28), np.float32))


def test_a_model_of_batch_one_only_runs_one_image_at_a_time():
    data = hostile_models.broadcast_to_huge(side=100)  # a fixed [1, 28, 28] input whose graph cannot take two
    model = LiteModel(data)
    assert model.max_batch == 1
    assert model.predict_logits(np.zeros((3, 28, 28), np.float32)).shape == (3, 10)


@pytest.mark.parametrize("name", list(registry.VARIANTS))
def test_every_built_in_variant_passes_the_checks_with_room_to_spare(tflites, dataset, name):
    found = check_model(tflites[name], name, classes=len(dataset.class_names))
    assert found.tensor_bytes < limits.MAX_MODEL_TENSOR_BYTES / 16, found
    assert found.invoke_ms < limits.MAX_INVOKE_MS / 10, found
    if registry.get(name).rotates_weights:  # the Hadamard recipes fix the batch at one (their inserted RESHAPE)
        assert found.max_batch == 1, found
    else:
        assert found.max_batch == limits.MAX_BATCH, "the lab's own models keep their batches of 500"


def test_isolation_bounds_memory_and_time_and_reports_crashes_in_one_line():
    ok = run_isolated(np.zeros, 1000, timeout_s=60, memory_mb=200, what="a small call")
    assert ok.value.shape == (1000,) and 0 < ok.peak_mb < 400
    with pytest.raises(IsolationError, match="^a big call needs more memory than its bound of 200 MB$"):
        run_isolated(np.ones, 100_000_000, timeout_s=60, memory_mb=200, what="a big call")  # 800 MB
    started = time.perf_counter()
    with pytest.raises(IsolationError, match="^a slow call took longer than 1 s and was stopped$"):
        run_isolated(time.sleep, 30, timeout_s=1, what="a slow call")
    assert time.perf_counter() - started < 10
    with pytest.raises(IsolationError, match="^a crash crashed: its process was killed by SIGABRT"):
        run_isolated(os.abort, timeout_s=60, what="a crash")
    with pytest.raises(IsolationError, match="invalid literal for int"):
        run_isolated(int, "x", timeout_s=60, what="a raise")


FILES = {
    "big-input.tflite": hostile_models.big_declared_input,
    "broadcast.tflite": hostile_models.broadcast_to_huge,
    "huge-output.tflite": hostile_models.huge_output,
    "thousand.tflite": lambda: hostile_models.outputs(1000),
    "one.tflite": lambda: hostile_models.outputs(1),
}


@pytest.mark.parametrize("command", ["inspect", "run"])
@pytest.mark.parametrize("file_name", list(FILES))
def test_the_cli_refuses_the_same_files_with_exit_2_and_one_line(tmp_path, command, file_name):
    path = tmp_path / file_name
    path.write_bytes(FILES[file_name]())
    argv = ["inspect", str(path)] if command == "inspect" else ["run", "--dataset", "digits", "--model", str(path)]
    child = subprocess.run([sys.executable, "-m", "core", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert child.returncode == 2, child.stderr
    errors = [line for line in child.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and file_name in errors[0], child.stderr
    assert "Traceback" not in child.stderr


def test_the_cli_compares_an_accepted_tflite_as_it_is(tmp_path):
    path = tmp_path / "bomb.tflite"
    path.write_bytes(hostile_models.batch_bomb())
    child = subprocess.run(
        [sys.executable, "-m", "core", "run", "--dataset", "digits", "--model", str(path), "--runs", "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr
    assert "bomb.tflite: a .tflite, compared as it is" in child.stdout and "uploaded" in child.stdout


def test_a_session_holds_interpreters_within_its_budget_releasing_the_oldest_first():
    from core.live import LiveModels

    draw = LiveModels()
    data = hostile_models.batch_bomb()
    released = []
    for index in range(12):  # ~6 MB each at one image: the 64 MB budget holds 10
        model = LiteModel(data)
        model.predict_logits(np.zeros((1, 28, 28), np.float32))
        released += draw.hold(f"copy{index}", str(index), model)
    assert draw.held_bytes() <= limits.SESSION_INTERPRETER_BYTES
    assert released == ["copy0", "copy1"], released
    assert list(draw.models) == [f"copy{index}" for index in range(2, 12)]


def test_a_keras_upload_whose_outputs_are_not_the_classes_is_refused_in_its_worker():
    import keras

    from core import datasets, models
    from core.jobs import LoadModelRequest, run_request

    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(1000)])
    digits = datasets.DatasetRef.of(datasets.load_offline_digits())
    with pytest.raises(RuntimeModelError, match="^thousand.keras gives 1,000 scores per image, but the dataset has 10 classes"):
        run_request(LoadModelRequest("thousand.keras", models.to_bytes(model), digits))
