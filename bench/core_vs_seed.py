"""Wall time of the seed notebook's procedure against ``python -m core run`` with all five
variants, on the same data and machine, each in a fresh process (each pays TensorFlow's import).

    python bench/core_vs_seed.py [--repeat 2] [--data tiled|mnist|DIR]

Target (issue 2): core run ≤ 1.2× the seed procedure's time on a 60,000/10,000 dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.data import write_tiled_idx  # noqa: E402


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", default="tiled")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data_dir = str(write_tiled_idx(Path(folder) / "mnist-tiled")) if args.data == "tiled" else args.data
        seed_times, core_times = [], []
        for _ in range(args.repeat):
            seconds, out = timed([sys.executable, "bench/seed_procedure.py", data_dir])
            seed_times.append(seconds)
            seed = json.loads(out.strip().splitlines()[-1])
            report = Path(folder) / "report.json"
            seconds, _ = timed(
                [sys.executable, "-m", "core", "run", "--data-dir", data_dir, "--epochs", "1", "--json", str(report)]
            )
            core_times.append(seconds)
            core = json.loads(report.read_text())
    seed_s, core_s = min(seed_times), min(core_times)
    print(
        f"data: {data_dir if args.data != 'tiled' else 'mnist-small tiled to 60,000 / 10,000'}; {os.cpu_count()} cores; best of {args.repeat}"
    )
    print(
        f"seed procedure (1 epoch, float32 + dynamic, image-by-image evaluation): {seed_s:6.1f} s  "
        f"(float {seed['float_accuracy']:.4f}, dynamic {seed['dynamic_accuracy']:.4f})"
    )
    print(
        f"core run, all five variants, batched evaluation + 1,000-run latency each: {core_s:6.1f} s  "
        f"({', '.join(r['name'] + ' ' + format(r['accuracy'], '.4f') for r in core['variants'])})"
    )
    print("core stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in core["timings_s"].items()))
    print(f"all runs (s): seed {', '.join(f'{t:.1f}' for t in seed_times)}; core {', '.join(f'{t:.1f}' for t in core_times)}")
    print(f"ratio core/seed: {core_s / seed_s:.2f}  (target ≤ 1.20)")


if __name__ == "__main__":
    main()
