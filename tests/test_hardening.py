"""The hardening issue's table, row by row through the app's upload widgets; models that do not
belong to the dataset in use; one report schema for the CLI and the app; limits in one place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from core import datasets, limits, models
from core.report import schema_errors
from tests.conftest import ROOT
from tests.test_pages import page, settle
from ui import state


def test_the_upload_limit_is_the_one_streamlit_enforces():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == limits.UPLOAD_MB


@pytest.fixture(scope="module")
def upload_rows(tmp_path_factory):
    """Every row of the table, in a fresh process that plays the server (no TensorFlow in it)."""
    folder = tmp_path_factory.mktemp("rows") / "idx"
    before = files_outside_temp()
    child = subprocess.run(
        [sys.executable, "-m", "tests.upload_rows", str(folder)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert child.returncode == 0, child.stderr[-2000:]
    after = files_outside_temp()
    return {row["row"]: row for row in map(json.loads, child.stdout.splitlines())}, before, after


def files_outside_temp() -> dict[str, tuple[int, int]]:
    """Every file under the repository and the home folder's caches, with its size and mtime (not
    `git status`, which says nothing outside a git checkout). Python's own bytecode caches aside."""
    found = {}
    roots = [ROOT, Path.home() / ".keras", Path.home() / ".streamlit"]
    for root in roots:
        for folder, subfolders, names in os.walk(root):
            subfolders[:] = [name for name in subfolders if name not in ("__pycache__", ".git", "test-artifacts")]
            for name in names:
                path = Path(folder) / name
                try:
                    stat = path.stat()
                except OSError:
                    continue
                found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    assert len(found) > 50, "the walk saw the repository"
    return found


ROWS = {
    "IDX .gz expanding to 8 GiB": "the number of images is 10,956,549, over the limit of 70,000",
    "IDX .gz expanding to 2 GiB of zeros": "magic number 0 is not IDX images",
    "valid IDX header, 500,000 blank images": "the number of images is 500,000, over the limit of 70,000",
    ".npz holding 3,000,000 images": "huge.npz x_train: the expanded size is 2,352,000,128 bytes, over the limit",
    ".keras whose config.json expands to 3 GiB": "config.json's expanded size is 3,221,225,473 bytes, over the limit of 4,194,304",
    ".keras with 12 entries of 255 MiB": "the archive's expanded size is 3,208,642,564 bytes, over the limit",
    "a dataset upload named ..": "not among the files",
    "a model upload named ..": "refused by the uploader's file types",
    "random bytes as .npz": "random.npz: not an .npz archive",
    "random bytes starting with PK as .keras": "random.keras: not a .keras file",
    "an .npz whose labels are all one class": "one-class: the training labels hold 1 class (0); the lab needs at least 2",
    # A model's memory: declared in the file, or found by running one image in a bounded child.
    "a model whose input is 20,000×20,000": "big-input.tflite: the memory its tensors declare for one image is 1,600,000,072 bytes, "
    "over the limit of 33,554,432 bytes",
    "a 28×28 model that broadcasts to 20,000×20,000, shape hidden": "broadcast.tflite: LiteRT cannot run this model: running one image "
    "needs more memory than its bound of 256 MB",
    "a 28×28 model that broadcasts to 40,000×40,000, shape hidden": "broadcast-40k.tflite: LiteRT cannot run this model: running one "
    "image needs more memory than its bound of 256 MB",
    "a 28×28 model that broadcasts to 20,000×20,000, shape declared": "broadcast-declared.tflite: the memory its tensors declare for one "
    "image is 1,600,003,228 bytes",
    "a model whose output is 78,400,000 scores": "huge-output.tflite: the memory its tensors declare for one image is 313,606,288 bytes",
    "a model with 1,000 outputs": "thousand.tflite gives 1,000 scores per image, but the dataset has 10 classes",
    "a model with 1 output": "one.tflite gives 1 score per image, but the dataset has 10 classes",
}


@pytest.mark.parametrize("row", list(ROWS))
def test_every_hostile_upload_gets_one_clear_line_and_the_server_stays_small(upload_rows, row):
    found = upload_rows[0][row]
    assert not found["exception"], found["exception"]
    assert len(found["errors"]) == 1 and ROWS[row] in found["errors"][0], found["errors"]
    assert not found["jobs"], "refused before anything was queued"
    assert found["dataset"] == "digits", "the session's dataset is unchanged"
    assert found["peak_mb"] < 600, f"the server's peak RSS while refusing it: {found['peak_mb']} MB"
    assert not any("/tmp" in text for text in found["said"] + found["errors"])


def test_a_valid_small_npz_is_used_without_showing_a_temp_path(upload_rows):
    found = upload_rows[0]["a valid 20-image .npz"]
    assert not found["errors"] and not found["exception"] and found["dataset"] == "upload"
    assert not any("/tmp" in text or "tmp" in text.split("/")[:2] for text in found["said"])
    assert any("your upload: twenty-images.npz" in text for text in found["said"])


def test_a_model_of_megabytes_per_image_runs_in_small_batches_on_every_page_and_the_server_stays_small(upload_rows):
    found = upload_rows[0]["a model of ~3 MB per image in a batch"]
    assert found["model"] == "batch-bomb.tflite" and not found["errors"] and not found["exception"]
    assert any("batches of at most 20 images" in text for text in found["said"]), found["said"]
    for path, seen in found["pages"].items():
        assert not seen["exception"] and not seen["errors"], (path, seen)
    assert found["pages"]["pages/compare.py"]["dataframes"], "Compare scored and timed it (in its bounded child)"
    assert set(found["pages"]) == {f"pages/{name}.py" for name in ("quantize", "inside", "compare", "draw", "deploy")}
    assert found["peak_mb"] < 600, f"the server's peak RSS through every page: {found['peak_mb']} MB"


def test_nothing_is_written_outside_temp_folders(upload_rows):
    _, before, after = upload_rows
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    assert not changed, f"written outside temp folders: {changed[:5]}"


# -- a model and the dataset it meets --------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_elsewhere(keras_model, conversions, dataset):
    """A model trained on `dataset` (mnist-small or the digits), while the session now uses other data."""
    model = state.LabModel(
        label="Seed CNN (test)",
        keras_bytes=models.to_bytes(keras_model),
        summary=models.summarize(keras_model, "seed"),
        keras_accuracy=0.9,
        dataset_name="the training set",
        dataset_digest="0" * 32,
        class_names=dataset.class_names,
    )
    variants = {
        name: state.ConvertedVariant(name, conversions[name].tflite, conversions[name].seconds) for name in ("float32", "int8")
    }
    return {"lab_dataset": state.DatasetChoice("digits", requested="digits"), "lab_model": model, "lab_variants": variants}


@pytest.mark.parametrize("path", ["pages/model.py", "pages/quantize.py", "pages/compare.py", "pages/draw.py"])
def test_after_a_dataset_switch_every_page_says_the_model_was_trained_on_other_data(trained_elsewhere, path):
    at = page(path, trained_elsewhere)
    assert not at.exception
    assert any("The dataset changed since this model was made" in w.value for w in at.warning), [w.value for w in at.warning]
    if path == "pages/compare.py":
        assert not at.dataframe, "no silent score: nothing is scored until the person asks for it"
        at.toggle(key="evaluate_other_data").set_value(True).run()
        assert not at.exception and at.dataframe
        assert any("the model was trained on the training set" in c.value for c in at.caption)


@pytest.mark.parametrize("path", ["pages/quantize.py", "pages/compare.py"])
def test_a_model_never_meets_a_dataset_with_other_classes(trained_elsewhere, path):
    fashion = state.LabModel(
        label="Fashion model",
        keras_bytes=trained_elsewhere["lab_model"].keras_bytes,
        summary=None,
        keras_accuracy=0.8,
        dataset_name="fashion-mnist",
        dataset_digest="1" * 32,
        class_names=datasets.FASHION_CLASSES,
    )
    at = page(path, {**trained_elsewhere, "lab_model": fashion})
    assert not at.exception
    assert any("cannot be scored or used on it" in e.value for e in at.error)
    assert not at.dataframe and not any(c.key == "convert" for c in at.button)


def test_the_apps_exported_json_follows_the_core_run_schema(lab_state):
    at = page("pages/compare.py", lab_state)
    assert not at.exception
    from core.report import to_json

    def no_nan(constant):
        raise ValueError(f"{constant} is not JSON")

    report = json.loads(to_json(at.session_state["lab_report"]), parse_constant=no_nan)
    assert schema_errors(report) == []
    assert report["model"]["epochs"] == 1 and report["model"]["parameters"] == 20410
    assert report["timings_s"]["evaluate"] >= 0 and all(row["throughput_ips"] > 0 for row in report["variants"])


def test_an_uploaded_tflite_exports_null_not_nan(lab_state, tflites):
    model = state.LabModel(
        label="mine.tflite", keras_bytes=None, summary=None, keras_accuracy=float("nan"), uploaded_tflite=tflites["int8"]
    )
    variants = {"uploaded": state.ConvertedVariant("uploaded", tflites["int8"], 0.0)}
    at = page("pages/compare.py", {**lab_state, "lab_model": model, "lab_variants": variants})
    assert not at.exception
    from core.report import to_json

    report = json.loads(to_json(at.session_state["lab_report"]))
    assert report["model"]["keras_accuracy"] is None and report["model"]["parameters"] is None
    assert schema_errors(report) == []


def test_a_model_job_lands_with_the_class_names_of_its_data(lab_state):
    at = page("pages/model.py", {"lab_dataset": state.DatasetChoice("digits", requested="digits")})
    at.number_input(key="epochs").set_value(1)
    at.button(key="train").click().run()
    settle(at)
    trained = at.session_state["lab_model"]
    assert trained.class_names == datasets.DIGIT_CLASSES and trained.dataset_digest == datasets.load_offline_digits().digest


def test_the_apps_export_carries_tflite_micro_after_deploy_with_the_fields_core_run_writes(lab_state):
    """One builder (core.report.build_report) for the app's export and `core run --json`: after Deploy has
    measured the variants, Compare's export carries each one's `tflm` object."""
    at = page("pages/deploy.py", lab_state)
    assert not at.exception
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    from core.micro import MicroResult
    from core.report import to_json

    report = json.loads(to_json(at.session_state["lab_report"]))
    assert schema_errors(report) == []
    assert all(set(row["tflm"]) == set(MicroResult.__dataclass_fields__) for row in report["variants"]), report["variants"][0]
    assert any(row["tflm"]["runs"] for row in report["variants"]) and not all(row["tflm"]["runs"] for row in report["variants"])
    assert any("TensorFlow Lite Micro's results from the Deploy page" in c.value for c in at.caption)


def test_a_malformed_secrets_file_is_said_not_swallowed(tmp_path):
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text("[jobs\nworkers = =\n")
    code = "import ui.jobs as jobs; print(jobs._secrets_overrides()); print(jobs.settings_problem)"
    child = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.returncode == 0, child.stderr
    said = child.stdout.splitlines()
    assert said[-2] == "{}" and said[-1].startswith(
        ".streamlit/secrets.toml cannot be read, so the job settings are the defaults"
    )
