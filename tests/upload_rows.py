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

import numpy as np

from core.isolation import peak_memory_mb, reset_peak_memory
from tests import hostile, hostile_models

ROOT = Path(__file__).resolve().parents[1]


def rows(folder: Path) -> list[tuple[str, str, list[tuple[str, bytes]]]]:
    """(row, widget, files): widget is "dataset" or "model"."""
    from core import datasets

    digits = datasets.load_offline_digits()
    datasets.save_idx(folder, digits)
    good = {path.name: path.read_bytes() for path in folder.iterdir()}

    def idx_with(images: bytes) -> list[tuple[str, bytes]]:
        return [("train-images-idx3-ubyte.gz", images)] + [
            (name, data) for name, data in good.items() if not name.startswith("train-images")
        ]

    small = datasets.Dataset(
        "small", digits.x_train[:20], digits.y_train[:20], digits.x_test[:10], digits.y_test[:10], digits.class_names, ""
    )
    small_npz = datasets.save_npz(folder.parent / "twenty-images.npz", small).read_bytes()
    one_class = datasets.Dataset(
        "ones", digits.x_train[:5], np.zeros(5, np.int64), digits.x_test[:5], np.zeros(5, np.int64), digits.class_names, ""
    )
    one_class_npz = datasets.save_npz(folder.parent / "one-class.npz", one_class).read_bytes()
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
        ("a valid 20-image .npz", "dataset", [("twenty-images.npz", small_npz)]),
        ("an .npz whose labels are all one class", "dataset", [("one-class.npz", one_class_npz)]),
        *model_rows(),
    ]


def model_rows() -> list[tuple[str, str, list[tuple[str, bytes]]]]:
    """The .tflite rows of the issue on bounding uploaded models, each a file of a few KB."""
    return [
        (row, "model", [(file_name, build())])
        for row, file_name, build in (
            ("a model whose input is 20,000×20,000", "big-input.tflite", hostile_models.big_declared_input),
            (
                "a 28×28 model that broadcasts to 20,000×20,000, shape hidden",
                "broadcast.tflite",
                hostile_models.broadcast_to_huge,
            ),
            (
                "a 28×28 model that broadcasts to 40,000×40,000, shape hidden",
                "broadcast-40k.tflite",
                lambda: hostile_models.broadcast_to_huge(40_000),
            ),
            (
                "a 28×28 model that broadcasts to 20,000×20,000, shape declared",
                "broadcast-declared.tflite",
                lambda: hostile_models.broadcast_to_huge(declared=True),
            ),
            ("a model whose output is 78,400,000 scores", "huge-output.tflite", hostile_models.huge_output),
            ("a model with 1,000 outputs", "thousand.tflite", lambda: hostile_models.outputs(1000)),
            ("a model with 1 output", "one.tflite", lambda: hostile_models.outputs(1)),
            ("a model of ~3 MB per image in a batch", "batch-bomb.tflite", hostile_models.batch_bomb),
        )
    ]


# Accepted rows go on through every page that runs a model; each page's lines and peak are recorded.
PAGES = ("pages/quantize.py", "pages/inside.py", "pages/compare.py", "pages/draw.py", "pages/deploy.py")
ACCEPTED = {"a model of ~3 MB per image in a batch"}


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
        reset_peak_memory()
        if widget == "dataset":
            at.selectbox(key="dataset_select").set_value("upload").run()
            at.file_uploader(key="dataset_upload").set_value(
                [(name, data, "application/octet-stream") for name, data in files]
            ).run()
            at.button(key="use_dataset").click().run()
        else:
            name, data = files[0]
            at.file_uploader(key="model_upload").set_value((name, data, "application/octet-stream")).run()
            if not any(button.key == "use_model" for button in at.button):
                # The uploader itself takes only .keras, .h5 and .tflite: the file never reached the page.
                out.write(
                    json.dumps(
                        {
                            "row": row,
                            "errors": ["refused by the uploader's file types"],
                            "exception": [],
                            "said": [],
                            "jobs": False,
                            "dataset": at.session_state["lab_dataset"].name,
                            "peak_mb": round(peak_memory_mb(), 1),
                        }
                    )
                    + "\n"
                )
                continue
            at.button(key="use_model").click().run()
        said = [
            element.value
            for kind in ("error", "warning", "info", "caption", "markdown", "success")
            for element in getattr(at, kind)
        ]
        record = {
            "row": row,
            "errors": [e.value for e in at.error],
            "exception": [str(e.value) for e in at.exception],
            "said": said,
            "jobs": bool(at.session_state["lab_jobs"]) if "lab_jobs" in at.session_state else False,
            "dataset": at.session_state["lab_dataset"].name,
            "peak_mb": round(peak_memory_mb(), 1),
            "model": at.session_state["lab_model"].label if "lab_model" in at.session_state else None,
            "pages": {},
        }
        if row in ACCEPTED:
            for path in PAGES:
                at.switch_page(path).run()
                record["pages"][path] = {
                    "errors": [e.value for e in at.error],
                    "exception": [str(e.value) for e in at.exception],
                    "dataframes": len(at.dataframe),
                }
            record["peak_mb"] = round(peak_memory_mb(), 1)
        out.write(json.dumps(record) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
