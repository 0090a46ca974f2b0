"""Our latency against LiteRT's own benchmark tool, on the same files and threads, in one run.

    python bench/latency_vs_litert.py [--models DIR] [--threads 1] [--runs 1000] [--repeat 3]

Without --models, it first builds every variant of the seed CNN on mnist-small (or the offline
digits) with `python -m core run --variants all --save-dir`. For each .tflite:

* ``litert-benchmark`` as a user runs it (a subprocess; CompiledModel API, CPU), whose JSON gives
  the median rounded to 0.01 ms;
* the same tool's code in this process with its rounding turned off, for a median in µs;
* ours: ``core.latency.invoke_latency`` (Interpreter API, XNNPACK on, one real test image).

Each is run --repeat times, alternating, and the best (lowest) median kept, as noise on a shared
machine only ever adds time. It prints the medians and the ratio ours / LiteRT's per variant, and
flags any variant off by more than 25%.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
ROOT = Path(__file__).resolve().parents[1]
MNIST_SMALL = ROOT.parent / "shared" / "data" / "mnist-small"


def build_models(folder: Path) -> None:
    data = ["--data-dir", str(MNIST_SMALL)] if MNIST_SMALL.exists() else ["--dataset", "digits"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "run",
            *data,
            "--epochs",
            "1",
            "--variants",
            "all",
            "--runs",
            "100",
            "--save-dir",
            str(folder),
        ],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )


class ToolFailed(RuntimeError):
    pass


def tool_as_run(path: Path, threads: int, runs: int) -> float:
    """litert-benchmark itself; its JSON median, in µs (the tool rounds to 0.01 ms)."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        done = subprocess.run(
            [
                "litert-benchmark",
                "--model",
                str(path),
                "--num_threads",
                str(threads),
                "--num_runs",
                str(runs),
                "--warmup_runs",
                "50",
                "--result_json",
                str(result),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            said = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("INFO")]
            raise ToolFailed(said[-1] if said else f"exit code {done.returncode}")
        return json.loads(result.read_text())["latency"]["median_ms"] * 1000


def tool_unrounded(path: Path, threads: int, runs: int) -> float:
    """The tool's own procedure (benchmark_litert_model.run_benchmark), with its rounding turned off."""
    import logging

    from ai_edge_litert.tools import benchmark_litert_model as tool

    logging.getLogger().setLevel(logging.ERROR)
    tool.round = lambda value, digits=None: value  # the module's own results dict rounds to 0.01 ms
    args = argparse.Namespace(
        model=str(path),
        signature=None,
        use_cpu=True,
        no_cpu=False,
        use_gpu=False,
        use_npu=False,
        require_full_delegation=False,
        dispatch_library_path=None,
        compiler_plugin_path=None,
        runtime_path=None,
        num_runs=runs,
        warmup_runs=50,
        num_threads=threads,
        result_json=None,
        verbose=False,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its result block; the table below is ours
        return tool.run_benchmark(args)["latency"]["median_ms"] * 1000


def ours(path: Path, threads: int, runs: int, image) -> float:
    from core.latency import invoke_latency
    from core.runtime import LiteModel

    return invoke_latency(LiteModel(path.read_bytes(), threads=threads), image, path.stem, runs=runs).p50_us


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", help="a folder of .tflite files (default: build every variant)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from core import datasets

    image = (datasets.load_local(MNIST_SMALL) if MNIST_SMALL.exists() else datasets.load_offline_digits()).x_test[0]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.models) if args.models else Path(scratch)
        if not args.models:
            build_models(folder)
        files = sorted(folder.glob("*.tflite"))
        print(f"{len(files)} models, {args.threads} thread(s), {args.runs} runs after 50 warm-up, best median of {args.repeat}")
        header = (
            f"{'variant':<22} {'litert-benchmark (its JSON)':>27} {'LiteRT tool, µs':>15} {'ours, µs':>9} {'ours / LiteRT':>13}"
        )
        print(header + "\n" + "-" * len(header))
        flagged = []
        for path in files:
            printed, exact, mine = [], [], []
            try:
                for _ in range(args.repeat):
                    printed.append(tool_as_run(path, args.threads, args.runs))
                    exact.append(tool_unrounded(path, args.threads, args.runs))
                    mine.append(ours(path, args.threads, args.runs, image))
            except ToolFailed as failure:
                mine = [ours(path, args.threads, args.runs, image)]
                print(f"{path.stem:<22} {'the tool fails':>27} {'–':>15} {min(mine):>9.1f} {'–':>13}  ({failure})")
                continue
            ratio = min(mine) / min(exact)
            mark = "  <- off by more than 25%" if abs(ratio - 1) > 0.25 else ""
            if mark:
                flagged.append(path.stem)
            print(f"{path.stem:<22} {min(printed) / 1000:>24.2f} ms {min(exact):>15.1f} {min(mine):>9.1f} {ratio:>13.2f}{mark}")
    print("off by more than 25%: " + (", ".join(flagged) if flagged else "none"))
    print(
        "(ours is the Interpreter API's invoke() alone; the tool times CompiledModel.run_by_name, whose Python call with a dict "
        "of tensor buffers costs a few µs more per run: a near-constant offset that matters only on the ~10 µs float models)"
    )


if __name__ == "__main__":
    main()
