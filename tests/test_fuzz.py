"""A deterministic fuzz suite (seed 0): mutated and truncated files through the lab's own loaders,
and the decompression bombs of the hardening issue. Every case must end in a clear refusal or a
result: never a traceback, never unbounded memory (each case's peak RSS is measured in a child
process). A case that crashes LiteRT's C++ must be one the app's probe refuses in its own child.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core import datasets, models
from core.runtime import RuntimeModelError, check_model
from tests import hostile
from tests.conftest import ROOT

SEED = 0
TFLITE_CASES = 520
DATASET_CASES = 160  # 80 .npz + 80 IDX folders
KERAS_CASES = 60
PEAK_MB = {"tflite": 600, "dataset": 600, "keras": 1600}  # per case; keras includes TensorFlow's ~0.75 GB


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: flip bits, overwrite a run, truncate, cut a chunk out, duplicate a chunk, or write
    a huge 32-bit number (lengths and offsets are where parsers trust the file)."""
    data = bytearray(data)
    how = rng.integers(6)
    if how == 0:
        for _ in range(int(rng.integers(1, 17))):
            data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
    elif how == 1:
        start = int(rng.integers(len(data)))
        length = int(rng.integers(1, 64))
        data[start : start + length] = rng.integers(0, 256, min(length, len(data) - start), dtype=np.uint8).tobytes()
    elif how == 2:
        data = data[: int(rng.integers(0, len(data)))]
    elif how == 3:
        start = int(rng.integers(len(data)))
        del data[start : start + int(rng.integers(1, 256))]
    elif how == 4:
        start = int(rng.integers(len(data)))
        data[start:start] = data[start : start + int(rng.integers(1, 256))]
    else:
        start = int(rng.integers(max(1, len(data) - 4)))
        data[start : start + 4] = int(rng.choice([0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 2**24])).to_bytes(4, "little")
    return bytes(data)


def run_cases(kind: str, folder: Path, count: int) -> list[dict]:
    """All cases through tests.fuzz_runner; a child that dies is recorded and replaced."""
    results: list[dict] = []
    start = 0
    while start < count:
        child = subprocess.run(
            [sys.executable, "-m", "tests.fuzz_runner", kind, str(folder), str(start)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        lines = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
        results += lines
        start = (lines[-1]["index"] + 1) if lines else start
        if child.returncode != 0 and start < count:
            results.append({"index": start, "outcome": "crashed", "message": f"exit {child.returncode}", "peak_mb": 0})
            start += 1
        elif child.returncode != 0 or (not lines and start < count):
            pytest.fail(f"the fuzz runner stopped at case {start}: {child.stderr[-1500:]}")
    return results


README_ROWS = {"tflite": f"{TFLITE_CASES} `.tflite`", "dataset": f"{DATASET_CASES} datasets", "keras": f"{KERAS_CASES} `.keras`"}


def readme_figures(kind: str) -> dict[str, float]:
    """The README's row for this kind of case: {"refused": 326, "ran": 194, "crashed": 0, "peak": 48, …}."""
    import re

    row = next(
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| ") and line.split("|")[1].strip() == README_ROWS[kind]
    )
    ended = row.split("|")[3]
    figures = {word: float(number) for number, word in re.findall(r"(\d+) (refused|ran|loaded|crashed|tracebacks)", ended)}
    figures["peak"] = float(re.search(r"peak ≤ (\d+) MB", ended).group(1))
    return figures


def check_against_readme(kind: str, tally: Counter, peak_mb: float) -> None:
    """The README's figures are this suite's: no more crashes or tracebacks than it says (0), the
    refusals within 5% of its counts (mutations of freshly trained models end a little differently
    from run to run), and the peak within 30% of its figure."""
    stated = readme_figures(kind)
    assert tally["crashed"] <= stated.get("crashed", 0) and stated.get("tracebacks", 0) == 0
    assert abs(tally["refused"] - stated["refused"]) <= 0.05 * sum(tally.values()), (dict(tally), stated)
    assert peak_mb <= 1.3 * stated["peak"], f"{kind}: peak {peak_mb:.0f} MB, the README says ≤ {stated['peak']:.0f} MB"


def check(kind: str, results: list[dict], count: int) -> Counter:
    assert len(results) == count, f"{len(results)} of {count} cases reported"
    errors = [r for r in results if r["outcome"] == "error"]
    assert not errors, f"{len(errors)} {kind} cases raised a traceback; the first: {errors[0]['message']}"
    heavy = [r for r in results if r["peak_mb"] > PEAK_MB[kind]]
    assert not heavy, f"{kind} cases over {PEAK_MB[kind]} MB: {heavy[:3]}"
    refusals = [r["message"] for r in results if r["outcome"] == "refused"]
    assert all(message and "\n" not in message.strip() for message in refusals), "every refusal is one line"
    tally = Counter(r["outcome"] for r in results)
    peak = max(r["peak_mb"] for r in results)
    print(f"\nfuzz {kind}: {count} cases: {dict(tally)}; max peak {peak:.0f} MB")
    check_against_readme(kind, tally, peak)
    return tally


def test_mutated_tflite_files_are_refused_or_run(tflites, tmp_path):
    rng = np.random.default_rng(SEED)
    sources = [tflites["float32"], tflites["int8"], tflites["dynamic"]]
    for index in range(TFLITE_CASES):
        (tmp_path / f"{index:04d}.tflite").write_bytes(mutate(sources[index % len(sources)], rng))
    results = run_cases("tflite", tmp_path, TFLITE_CASES)
    tally = check("tflite", results, TFLITE_CASES)
    assert tally["refused"] > 0 and tally["result"] > 0  # both kinds of ending are exercised
    for crash in [r for r in results if r["outcome"] == "crashed"][:3]:  # the app's probe refuses what crashes LiteRT
        with pytest.raises(RuntimeModelError):
            check_model((tmp_path / f"{crash['index']:04d}.tflite").read_bytes())


def test_mutated_npz_and_idx_datasets_are_refused_or_loaded(tmp_path):
    rng = np.random.default_rng(SEED)
    digits = datasets.load_offline_digits()
    small = datasets.Dataset(
        "small",
        digits.x_train[:300],
        digits.y_train[:300],
        digits.x_test[:60],
        digits.y_test[:60],
        digits.class_names,
        digits.source,
    )
    npz_path = datasets.save_npz(tmp_path / "source" / "small.npz", small)
    idx_folder = tmp_path / "source" / "idx"
    datasets.save_idx(idx_folder, small, gz=True)
    cases = tmp_path / "cases"
    cases.mkdir()
    for index in range(DATASET_CASES):
        if index % 2 == 0:
            (cases / f"{index:04d}.npz").write_bytes(mutate(npz_path.read_bytes(), rng))
        else:
            folder = cases / f"{index:04d}"
            folder.mkdir()
            victim = sorted(idx_folder.iterdir())[int(rng.integers(4))]
            for part in idx_folder.iterdir():
                data = part.read_bytes()
                if part == victim:  # the compressed file, or what it holds, mutated
                    data = (
                        mutate(data, rng)
                        if rng.integers(2)
                        else hostile.gzip_of(mutate(__import__("gzip").decompress(data), rng), 0)
                    )
                (folder / part.name).write_bytes(data)
    tally = check("dataset", run_cases("dataset", cases, DATASET_CASES), DATASET_CASES)
    assert tally["refused"] > 0


def test_mutated_keras_files_are_refused_or_loaded(keras_model, tmp_path):
    rng = np.random.default_rng(SEED)
    source = models.to_bytes(keras_model)
    for index in range(KERAS_CASES):
        (tmp_path / f"{index:04d}-model.keras").write_bytes(mutate(source, rng))
    tally = check("keras", run_cases("keras", tmp_path, KERAS_CASES), KERAS_CASES)
    assert tally["refused"] > 0


BOMBS = {
    "idx_gz_8gib": ("dataset", "idx", "the number of images is 10,956,549, over the limit of 70,000"),
    "idx_gz_2gib_zeros": ("dataset", "idx", "magic number 0"),
    "idx_500k_blank": ("dataset", "idx", "the number of images is 500,000, over the limit of 70,000"),
    "npz_3m_images": ("dataset", "npz", "over the limit"),
    "keras_config_3gib": ("keras", "keras", "config.json's expanded size is 3,221,225,473 bytes"),
    "keras_12_entries_255mib": ("keras", "keras", "the archive's expanded size"),
}


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_the_bombs_are_refused_before_they_expand(bomb, tmp_path, keras_model):
    kind, shape, message = BOMBS[bomb]
    data = getattr(hostile, bomb)()
    if shape == "idx":  # the bomb as the images file of an otherwise good IDX folder
        folder = tmp_path / "0000"
        digits = datasets.load_offline_digits()
        datasets.save_idx(folder, digits)
        (folder / "train-images-idx3-ubyte.gz").write_bytes(data)
    else:
        (tmp_path / f"0000.{shape}").write_bytes(data)
    [result] = run_cases(kind, tmp_path, 1)
    assert result["outcome"] == "refused" and message in result["message"], result
    assert result["peak_mb"] < PEAK_MB[kind], result
