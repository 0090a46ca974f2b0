"""The child process of the fuzz suite: runs cases through the lab's own loaders, one JSON line each.

    python -m tests.fuzz_runner KIND FOLDER START

KIND is ``tflite`` (inspect, then load and invoke as the child of core.runtime.check_model does), ``dataset`` (a .npz
file or an IDX folder through ``core.datasets.load_local``) or ``keras`` (``core.models.from_bytes``).
Each case is a file (or folder) in FOLDER named by its index. For each case from START on, one line:
``{"index", "outcome": "refused" | "result" | "error", "message", "peak_mb"}``, where ``peak_mb`` is
this process's peak RSS during the case alone (Linux resets the peak when "5" is written to
/proc/self/clear_refs). A case that kills the process writes no line: the parent records it and
starts a new child after it.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from core.isolation import peak_memory_mb, reset_peak_memory


def _tflite(path: Path):

    from core.inspect import ModelFormatError, inspect_tflite
    from core.runtime import footprint

    data = path.read_bytes()
    try:
        inspect_tflite(data)  # the server's own look, before the probe
    except ModelFormatError as error:
        return "refused", str(error)
    try:  # what core.runtime.check_model's child does
        found = footprint(data)
    except Exception as error:  # check_model reports any of these as one line: a refusal
        return "refused", f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return "result", f"{found.outputs} outputs"


def _dataset(path: Path):
    from core.datasets import DatasetError, load_local

    try:
        dataset = load_local(path)
    except DatasetError as error:
        return "refused", str(error)
    return "result", f"{dataset.train_size} train / {dataset.test_size} test"


def _keras(path: Path):
    from core.models import ModelFileError, from_bytes

    try:
        model = from_bytes(path.read_bytes(), path.name)
    except ModelFileError as error:
        return "refused", str(error)
    return "result", f"{model.count_params()} parameters"


RUNNERS = {"tflite": _tflite, "dataset": _dataset, "keras": _keras}


def main() -> int:
    kind, folder, start = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    run = RUNNERS[kind]
    cases = sorted(folder.iterdir(), key=lambda p: int(p.name.split(".")[0].split("-")[0]))
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the libraries print must not mix with the case lines
    if kind == "keras":
        import keras  # noqa: F401  (imported once, before the first case's peak is measured)
    for path in cases:
        index = int(path.name.split(".")[0].split("-")[0])
        if index < start:
            continue
        reset_peak_memory()
        try:
            outcome, message = run(path)
        except Exception as error:  # a traceback is a failure of the lab: the test reports it
            outcome, message = "error", "".join(traceback.format_exception(error))[-1500:]
        out.write(
            json.dumps({"index": index, "outcome": outcome, "message": message, "peak_mb": round(peak_memory_mb(), 1)}) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
