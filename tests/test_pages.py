"""Every page in process with AppTest, with a real model and real converted variants in session state."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from core import models
from tests.conftest import ROOT
from ui import state

TIMEOUT = 180


def page(path: str, session: dict | None = None) -> AppTest:
    """Open the app as a person does (app.py with its navigation), then move to the page."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for key, value in (session or {}).items():
        at.session_state[key] = value
    at.run()
    at.switch_page(path)
    return at.run()


def settle(at: AppTest, timeout: float = TIMEOUT) -> AppTest:
    """Rerun the app (as the page's polling fragment would) until the session's jobs have ended."""
    deadline = time.monotonic() + timeout
    while "lab_jobs" in at.session_state and at.session_state["lab_jobs"]:
        assert time.monotonic() < deadline, f"jobs still running after {timeout} s: {dict(at.session_state['lab_jobs'])}"
        time.sleep(0.3)
        at.run()
    return at


def texts(at: AppTest) -> str:
    parts = [
        e.value
        for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader")
        for e in getattr(at, kind)
    ]
    return "\n".join(str(p) for p in parts)


def home_until_loaded(at: AppTest, timeout: float = TIMEOUT) -> AppTest:
    """Rerun Home, as its polling fragment does, until the session's dataset is there."""
    deadline = time.monotonic() + timeout
    while "lab_dataset" not in at.session_state:
        assert time.monotonic() < deadline, f"the dataset was not loaded after {timeout} s"
        time.sleep(0.1)
        at.run()
    return at


def test_home_on_a_fresh_session_falls_back_to_offline_digits_and_points_to_model(tmp_path, monkeypatch):
    import dataclasses

    from core import datasets
    from ui.resources import _load_dataset

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # nothing cached
    # The network edge, faked: MNIST's origin is unreachable, as it is on a machine without network.
    unreachable = dataclasses.replace(datasets.REMOTE_SOURCES["mnist"], origin=(tmp_path / "nowhere").as_uri())
    monkeypatch.setitem(datasets.REMOTE_SOURCES, "mnist", unreachable)
    _load_dataset.clear()
    at = home_until_loaded(AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run())
    _load_dataset.clear()  # the fallback must not stay cached for the tests after this one
    assert not at.exception
    assert "TFLite Quantization Lab" in at.title[0].value
    assert at.session_state["lab_dataset"].name == "digits"
    assert any("offline digits" in w.value for w in at.warning)
    assert [m.label for m in at.metric] == ["Dataset", "Model", "Variants converted"]


def test_home_draws_at_once_while_the_dataset_is_still_downloading(tmp_path, monkeypatch):
    """Home's first run does not wait for the dataset (issue 14, item 9): a download that has not
    answered yet leaves one line in place of the session's figures, and the page is all there."""
    import dataclasses
    import http.server
    import threading

    from core import datasets
    from ui.resources import _load_dataset

    answer = threading.Event()

    class Stalled(http.server.BaseHTTPRequestHandler):  # the network edge: an origin that is slow to answer
        def do_GET(self):
            answer.wait(60)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalled)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    stalled = dataclasses.replace(datasets.REMOTE_SOURCES["mnist"], origin=f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setitem(datasets.REMOTE_SOURCES, "mnist", stalled)
    _load_dataset.clear()
    try:
        started = time.monotonic()
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=20).run()
        drawn = time.monotonic() - started
        assert not at.exception
        assert "Loading the dataset" in texts(at) and not at.metric
        assert len(at.get("page_link")) == 5, "every step is linked while the dataset loads"
        assert "lab_dataset" not in at.session_state
        assert drawn < 15, f"Home waited {drawn:.1f} s for the download"
        answer.set()  # the origin answers (404): the offline digits stand in
        home_until_loaded(at)
        assert at.session_state["lab_dataset"].name == "digits" and len(at.metric) == 3
    finally:
        answer.set()
        server.shutdown()
        _load_dataset.clear()


def test_the_server_draws_home_without_numpy():
    """What app.py and Home import is light: NumPy, the datasets and the job service are imported
    where they are used (the dataset's loader thread, the first job), not by Home's first run."""
    import subprocess
    import sys

    code = (
        "import sys; import streamlit\n"
        "import ui.jobs, ui.layout, ui.resources, ui.state\n"
        "heavy = sorted(m for m in ('numpy', 'core.datasets', 'core.job_service') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    found = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "", f"imported before Home is drawn: {found.stdout.strip()}"


def test_home_with_a_model_and_variants_shows_the_session(lab_state):
    at = page("pages/home.py", lab_state)
    assert not at.exception
    assert "Seed CNN (test)" in [m.value for m in at.metric][1]


def test_model_page_without_a_model_offers_training(lab_state):
    at = page("pages/model.py", {k: lab_state[k] for k in ("lab_dataset", "lab_uploaded_dataset")})
    assert not at.exception
    assert at.button(key="train") is not None
    assert at.selectbox(key="dataset_select").value == "upload"
    assert "Current model" not in texts(at)


def test_model_page_shows_layers_and_parameters(lab_state):
    at = page("pages/model.py", lab_state)
    assert not at.exception
    assert "20,410" in [m.value for m in at.metric]
    table = [m.value for m in at.markdown if m.value.startswith("| layer")][0]
    assert len(table.splitlines()) == 2 + 5  # header, rule, and the seed CNN's reshape, conv, pool, flatten, dense


def test_model_page_trains_in_the_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    at = page("pages/model.py", {"lab_dataset": state.DatasetChoice("digits", requested="digits")})
    at.number_input(key="epochs").set_value(2)
    at.button(key="train").click().run()
    assert not at.exception and at.button(key="train").disabled  # submitted: the run returned at once
    settle(at)
    assert not at.exception and not at.error
    trained = at.session_state["lab_model"]
    assert trained.keras_bytes[:2] == b"PK" and trained.keras_accuracy > 0.5 and len(trained.history) == 2
    assert trained.label == "Seed CNN, 2 epochs, augmented on digits" and trained.augmented


def test_quantize_page_lists_the_registry_and_converts_in_the_worker(lab_state):
    from core import variants

    session = {**lab_state, "lab_variants": {}}
    at = page("pages/quantize.py", session)
    assert not at.exception
    assert {f"pick_{name}" for name in variants.VARIANTS} <= {c.key for c in at.checkbox}
    for name in ("float16", "int16x8", "dynamic"):
        at.checkbox(key=f"pick_{name}").uncheck()
    at.slider(key="calibration").set_value(50)
    at.button(key="convert").click().run()
    settle(at)
    assert not at.exception and not at.error
    converted = at.session_state["lab_variants"]
    assert list(converted) == ["float32", "int8"] and converted["int8"].calibration == 50
    assert "Converted" in texts(at)


def test_quantize_page_without_a_model_points_back():
    at = page("pages/quantize.py")
    assert not at.exception
    assert "no model" in texts(at)


def test_compare_page_draws_every_chart_and_offers_exports(lab_state):
    at = page("pages/compare.py", lab_state)
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) >= 9  # size, accuracy, latency, trade-off, confusion, 2 × layer error, 2 × anatomy
    table = at.dataframe[0].value
    assert list(table["variant"]) == list(lab_state["lab_variants"])
    assert (table["agreement"] >= 0.97).all()
    assert at.session_state["lab_latency"]  # measured once, kept for the session
    assert "change their answer" in texts(at)
    assert "not 4×" in texts(at)  # the anatomy explains dynamic range's size


def test_compare_page_remeasures_with_other_threads_and_without_xnnpack(lab_state):
    at = page("pages/compare.py", lab_state)
    at.toggle(key="xnnpack").set_value(False).run()
    assert not at.exception
    assert any(key[:3] == (1, False, 1000) for key in at.session_state["lab_latency"])


def test_draw_page_shows_a_hint_on_a_blank_canvas(lab_state):
    at = page("pages/draw.py", lab_state)
    assert not at.exception
    assert any("Draw a digit" in i.value for i in at.info)


def test_draw_page_without_variants_points_to_quantize(lab_state):
    at = page("pages/draw.py", {**lab_state, "lab_variants": {}})
    assert not at.exception
    assert "No converted variants" in texts(at)


def test_quantize_page_runs_quantization_aware_training_and_a_litert_recipe(lab_state):
    session = {**lab_state, "lab_variants": {}}
    at = page("pages/quantize.py", session)
    for name in ("dynamic", "float16", "int8", "int16x8"):
        at.checkbox(key=f"pick_{name}").uncheck()
    at.checkbox(key="pick_qat_int8").check()
    at.checkbox(key="pick_dynamic_wi4_afp32").check()
    at.run()
    assert at.number_input(key="qat_epochs").value == 1
    at.button(key="convert").click().run()
    settle(at)
    assert not at.exception and not at.error and not at.warning
    assert list(at.session_state["lab_variants"]) == ["float32", "qat_int8", "dynamic_wi4_afp32"]


def test_quantize_page_says_plainly_when_qat_cannot_handle_the_model(lab_state):
    import keras

    inputs = keras.Input(shape=(28, 28))
    functional = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    model = state.LabModel(
        label="functional.keras",
        keras_bytes=models.to_bytes(functional),
        summary=models.summarize(functional),
        keras_accuracy=0.1,
    )
    at = page("pages/quantize.py", {**lab_state, "lab_model": model, "lab_variants": {}})
    for name in ("dynamic", "float16", "int8", "int16x8"):
        at.checkbox(key=f"pick_{name}").uncheck()
    at.checkbox(key="pick_qat_int8").check().run()
    at.button(key="convert").click().run()
    settle(at)
    assert not at.exception
    assert any("needs a Sequential model" in w.value for w in at.warning)
    assert list(at.session_state["lab_variants"]) == ["float32"]  # the rest still converted


# -- uploads: every bad file gets a message, a good one is used -----------------------------------


def upload_model(lab_state, name: str, data: bytes) -> AppTest:
    at = page("pages/model.py", {k: lab_state[k] for k in ("lab_dataset", "lab_uploaded_dataset")})
    at.file_uploader(key="model_upload").set_value((name, data, "application/octet-stream")).run()
    at.button(key="use_model").click().run()
    settle(at)
    assert not at.exception
    return at


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("broken.tflite", lambda t: t["float32"][:500], "This model cannot be used: "),
        ("text.tflite", lambda t: b"hello, not a model", "identifier"),
        ("garbage.keras", lambda t: b"garbage", "not a .keras file"),
        ("garbage.h5", lambda t: b"PK\x03\x04 not hdf5", "not an HDF5"),
    ],
)
def test_a_bad_model_upload_gets_a_clear_message_and_changes_nothing(lab_state, tflites, name, make, message):
    at = upload_model(lab_state, name, make(tflites))
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert "lab_model" not in at.session_state


def test_a_keras_model_with_a_lambda_layer_is_refused(lab_state, tmp_path):
    import keras

    model = keras.Sequential(
        [keras.Input(shape=(28, 28)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.save(tmp_path / "lambda.keras")
    at = upload_model(lab_state, "lambda.keras", (tmp_path / "lambda.keras").read_bytes())
    assert any("Lambda" in e.value for e in at.error), [e.value for e in at.error]


def test_an_uploaded_tflite_is_compared_as_it_is(lab_state, tflites):
    at = upload_model(lab_state, "mine.tflite", tflites["int8"])
    assert not at.error
    assert list(at.session_state["lab_variants"]) == ["uploaded"]
    at.switch_page("pages/compare.py").run()
    assert not at.exception and at.dataframe[0].value["variant"].tolist() == ["uploaded"]


def test_an_uploaded_keras_model_is_loaded_in_the_worker(lab_state, keras_model):
    at = upload_model(lab_state, "seed.keras", models.to_bytes(keras_model))
    assert not at.error
    assert at.session_state["lab_model"].summary.parameters == 20410


def test_dataset_upload_accepts_idx_files_and_refuses_a_bad_npz(lab_state, tmp_path):
    from core import datasets

    at = page("pages/model.py", {"lab_dataset": state.DatasetChoice("digits", requested="digits")})
    at.selectbox(key="dataset_select").set_value("upload").run()
    at.file_uploader(key="dataset_upload").set_value(("bad.npz", b"not a zip", "application/octet-stream")).run()
    at.button(key="use_dataset").click().run()
    assert not at.exception and any("bad.npz: not an .npz archive" in e.value for e in at.error)

    digits = datasets.load_offline_digits()
    datasets.save_idx(tmp_path, digits)
    files = [(path.name, path.read_bytes(), "application/gzip") for path in sorted(tmp_path.iterdir())]
    at.file_uploader(key="dataset_upload").set_value(files).run()
    at.button(key="use_dataset").click().run()
    assert not at.exception and not at.error
    assert at.session_state["lab_dataset"].name == "upload"
    assert at.session_state["lab_uploaded_dataset"].train_size == digits.train_size
    assert at.session_state["lab_uploaded_dataset"].name == "your IDX files"


def test_the_training_suggestion_follows_the_dataset(lab_state, tmp_path, dataset):
    """The offline digits are trained 30 epochs, augmented; MNIST-style data of 8,000 images 2
    epochs, not augmented: switching datasets sets the suggestion anew, over what was shown."""
    from core import datasets

    at = page("pages/model.py", {"lab_dataset": state.DatasetChoice("digits", requested="digits")})
    assert at.number_input(key="epochs").value == 30 and at.checkbox(key="augment").value is True
    at.number_input(key="epochs").set_value(12).run()
    datasets.save_idx(tmp_path, dataset)  # mnist-small
    files = [(path.name, path.read_bytes(), "application/gzip") for path in sorted(tmp_path.iterdir())]
    at.selectbox(key="dataset_select").set_value("upload").run()
    at.file_uploader(key="dataset_upload").set_value(files).run()
    at.button(key="use_dataset").click().run()
    assert not at.exception
    assert at.number_input(key="epochs").value == 2 and at.checkbox(key="augment").value is False
    at.selectbox(key="dataset_select").set_value("digits").run()
    assert at.number_input(key="epochs").value == 30 and at.checkbox(key="augment").value is True


def test_compare_page_shows_the_litert_quantizers_own_validation_beside_ours(lab_state, conversions):
    variants = {
        name: state.ConvertedVariant(name, conversions[name].tflite, conversions[name].seconds)
        for name in ("float32", "dynamic_wi4_afp32")
    }
    at = page("pages/compare.py", {**lab_state, "lab_variants": variants})
    assert not at.exception
    assert "LiteRT Quantizer's own validation" in texts(at)


def test_deploy_page_measures_every_variant_under_tflite_micro_and_offers_the_c_source(lab_state):
    at = page("pages/deploy.py", lab_state)
    assert not at.exception
    table = [m.value for m in at.markdown if m.value.startswith("| variant")][0]
    assert "`int8`" in table and "`dynamic`" in table and "Arduino Nano 33 BLE Sense" in table
    int8_row = next(line for line in table.splitlines() if "`int8`" in line)
    assert "| yes |" in int8_row and "fits" in int8_row
    assert " KB ✓ |" in int8_row, "the recorded arena was tried at exactly its size, and the table says so"
    reasons = "\n".join(m.value for m in at.markdown if "(`dynamic`)" in m.value and "`" in m.value)
    assert "Hybrid" in reasons or "not supported" in reasons  # TFLite Micro's own words
    assert at.get("plotly_chart") and at.get("download_button")
    assert "resolver.AddConv2D();" in at.code[0].value
    at.number_input(key="custom_ram").set_value(8).run()  # a board far too small: 8 KB of RAM
    at.number_input(key="custom_flash").set_value(16).run()
    table = [m.value for m in at.markdown if m.value.startswith("| variant")][0]
    assert "Your board" in table and "too big**]: short" in next(line for line in table.splitlines() if "`int8`" in line)


def test_inside_page_shows_every_quantized_tensor_a_weight_and_the_sweep(lab_state):
    at = page("pages/inside.py", lab_state)
    assert not at.exception
    assert at.selectbox(key="inside_variant").value == "dynamic"
    table = [m.value for m in at.markdown if m.value.startswith("| tensor")][0]
    assert "scales," in table and "weight, int8" in table
    assert "real = scale[c] × (q − 0)" in at.code[0].value  # dynamic's first kernel: one scale per channel
    assert {m.label for m in at.metric} == {"Clipped", "SNR", "Levels"}
    assert float([m.value for m in at.metric if m.label == "SNR"][0].split()[0]) > 30
    assert len(at.get("plotly_chart")) == 5  # scales per channel, levels, rounding error, clipping against rounding, the sweep
    at.selectbox(key="inside_variant").set_value("int8").run()
    assert not at.exception
    table = [m.value for m in at.markdown if m.value.startswith("| tensor")][0]
    assert "activation, int8" in table


def test_inside_page_of_float32_alone_says_there_is_nothing_to_look_inside(lab_state):
    float_only = {"float32": lab_state["lab_variants"]["float32"]}
    at = page("pages/inside.py", {**lab_state, "lab_variants": float_only})
    assert not at.exception
    assert any("Only float32 is converted" in i.value for i in at.info)


def test_inside_keeps_the_worst_layer_of_int8_float_and_the_new_variant_is_on_every_page(lab_state):
    at = page("pages/inside.py", lab_state)
    at.selectbox(key="keep_base").set_value("int8").run()
    table = [m.value for m in at.markdown if m.value.startswith("| layer")][0]
    assert "(conv)" in table and "(dense)" in table
    worst = at.multiselect(key="keep_layers").value
    assert len(worst) == 1
    at.button(key="keep_build").click().run()
    settle(at)
    assert not at.exception and not at.error
    name = f"int8_float-{worst[0]}"
    assert name in at.session_state["lab_variants"], list(at.session_state["lab_variants"])
    assert any(name in s.value for s in at.success)
    session = {**lab_state, "lab_variants": at.session_state["lab_variants"]}
    for path in ("pages/compare.py", "pages/draw.py", "pages/deploy.py"):
        other = page(path, session)
        assert not other.exception, path
        assert name in texts(other) or any(name in str(getattr(e, "value", "")) for e in other.selectbox), path
        if path == "pages/compare.py":  # and in the report Compare exports
            assert name in [row["name"] for row in other.session_state["lab_report"]["variants"]]
    # Every quantized layer float is refused in one line, before anything is queued.
    at.multiselect(key="keep_layers").set_value(at.multiselect(key="keep_layers").options).run()
    at.button(key="keep_build").click().run()
    assert any("nothing would be quantized" in e.value for e in at.error)


def test_inside_automatic_shows_each_step_of_its_search(lab_state):
    at = page("pages/inside.py", lab_state)
    at.selectbox(key="keep_base").set_value("int8").run()
    at.slider(key="keep_drop").set_value(0.0).run()
    at.button(key="keep_auto").click().run()
    settle(at)
    assert not at.exception and not at.error
    steps = [m.value for m in at.markdown if m.value.startswith("| step")]
    assert steps and "(int8)" in steps[0]
    assert len(at.get("plotly_chart")) >= 6  # the search's steps drawn too
    assert at.session_state["lab_keep_float_steps"]
    assert any("automatic search chose" in m.value for m in list(at.success) + list(at.warning))


def test_inside_offers_no_keep_float_for_a_brought_tflite(lab_state):
    brought = state.ConvertedVariant("uploaded", lab_state["lab_variants"]["int8"].tflite, 0.0, brought=True)
    at = page("pages/inside.py", {**lab_state, "lab_variants": {"uploaded": brought}})
    assert not at.exception
    assert not [b for b in at.button if b.key == "keep_build"]


def test_inside_lays_an_activation_over_the_float_models_own_output(lab_state):
    at = page("pages/inside.py", lab_state)
    at.selectbox(key="inside_variant").set_value("int8").run()
    box = at.selectbox(key="inside_weight")
    activation = next(i for i, label in enumerate(box.options) if "conv2d" in label and "(activation)" in label)
    box.set_value(activation).run()
    assert not at.exception
    assert {m.label for m in at.metric} >= {"Clipped", "SNR", "Levels"}
    assert float([m.value for m in at.metric if m.label == "SNR"][0].split()[0]) > 20
    assert any("test images" in c.value and "calibration" in c.value for c in at.caption)
