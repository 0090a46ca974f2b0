"""Every hostile upload of the hardening issue's table, through the app's real upload widgets, in a
process of its own that plays the server (AppTest runs the app's scripts here): prints one JSON
line per row with what the page said and this process's peak RSS while it handled the row.

    python -m tests.upload_rows FOLDER

FOLDER receives the good IDX files the bombs travel with. Used by tests/test_hardening.py.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests import hostile
from tests.fuzz_runner import _peak_mb, _reset_peak

ROOT = Path(__file__).resolve().parents[1]


def rows(folder: Path) -> list[tuple[str, str, list[tuple[str, bytes]]]]:
    """(row, widget, files): widget is "dataset" or "model"."""
    from core import datasets

    digits = datasets.load_offline_digits()
    datasets.save_idx(folder, digits)
    good = {path.name: path.read_bytes() for path in folder.iterdir()}

    def idx_with(images: bytes) -> list[tuple[str, bytes]]:
        return [("train-images-idx3-ubyte.gz", images)] + [(name, data) for name, data in good.items() if not name.startswith("train-images")]

    one = datasets.Dataset("one", digits.x_train[:1], digits.y_train[:1], digits.x_test[:1], digits.y_test[:1], digits.class_names, "")
    one_npz = datasets.save_npz(folder.parent / "one-image.npz", one).read_bytes()
    return [
        ("IDX .gz expanding to 8 GiB", "dataset", idx_with(hostile.idx_gz_8gib())),
        ("IDX .gz expanding to 2 GiB of zeros", "dataset", idx_with(hostile.idx_gz_2gib_zeros())),
        ("valid IDX header, 500,000 blank images", "dataset", idx_with(hostile.idx_500k_blank())),
        (".npz holding 3,000,000 images", "dataset", [("huge.npz", hostile.npz_3m_images())]),
        (".keras whose config.json expands to 3 GiB", "model", [("bomb.keras", hostile.keras_config_3gib())]),
        (".keras with 12 entries of 255 MiB", "model", [("blobs.keras", hostile.keras_12_entries_255mib())]),
        ("a dataset upload named ..", "dataset", [("..", b"not a dataset")]),
        ("a model upload named ..", "model", [("..", b"not a model")]),
        ("random bytes as .npz", "dataset", [("random.npz", hostile.random_bytes(4096))]),
        ("random bytes starting with PK as .keras", "model", [("random.keras", hostile.random_bytes(4096, prefix=b"PK"))]),
        ("a valid one-image .npz", "dataset", [("one-image.npz", one_npz)]),
    ]


def main() -> int:
    from streamlit.testing.v1 import AppTest

    from ui import state

    folder = Path(sys.argv[1])
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what Streamlit or a worker prints must not mix with the rows
    for row, widget, files in rows(folder):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["lab_dataset"] = state.DatasetChoice("digits", requested="digits")
        at.run()
        at.switch_page("pages/model.py").run()
        _reset_peak()
        if widget == "dataset":
            at.selectbox(key="dataset_select").set_value("upload").run()
            at.file_uploader(key="dataset_upload").set_value([(name, data, "application/octet-stream") for name, data in files]).run()
            at.button(key="use_dataset").click().run()
        else:
            name, data = files[0]
            at.file_uploader(key="model_upload").set_value((name, data, "application/octet-stream")).run()
            if not any(button.key == "use_model" for button in at.button):
                # The uploader itself takes only .keras, .h5 and .tflite: the file never reached the page.
                out.write(json.dumps({"row": row, "errors": ["refused by the uploader's file types"], "exception": [], "said": [],
                                      "jobs": False, "dataset": at.session_state["lab_dataset"].name,
                                      "peak_mb": round(_peak_mb(), 1)}) + "\n")  # fmt: skip
                continue
            at.button(key="use_model").click().run()
        said = [element.value for kind in ("error", "warning", "info", "caption", "markdown", "success") for element in getattr(at, kind)]
        out.write(json.dumps({"row": row, "errors": [e.value for e in at.error], "exception": [str(e.value) for e in at.exception],
                              "said": said, "jobs": bool(at.session_state["lab_jobs"]) if "lab_jobs" in at.session_state else False,
                              "dataset": at.session_state["lab_dataset"].name, "peak_mb": round(_peak_mb(), 1)}) + "\n")  # fmt: skip
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
