"""``python -m core``: the lab's comparison without a browser.

    python -m core run [--dataset mnist|fashion-mnist|digits] [--data-dir DIR] [--model FILE]
                       [--epochs N] [--variants float32,dynamic,...] [--threads N]
                       [--json PATH] [--save-dir DIR]
    python -m core inspect FILE [--json]
    python -m core export-c FILE.tflite [--out DIR] [--name NAME] [--arena BYTES]
    python -m core variants

Exit codes: 0 done, 2 bad input (one line on stderr saying what), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from core import variants as registry
from core.datasets import DATASET_NAMES
from core.progress import Progress


class BadInput(Exception):
    pass


@contextmanager
def libraries_quiet(quiet: bool = True):
    """While TensorFlow, absl, the converter and LiteRT work, what they print (C++ log lines on
    stderr, the converter's own line on stdout, Python warnings) goes to a scratch file: the CLI's
    output is its own lines. Yields the stream for those (the real stderr). --verbose keeps it all."""
    if not quiet:
        yield sys.stderr
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    own = os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace")
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fd in (1, 2):
            os.dup2(sink.fileno(), fd)
        try:
            yield own
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            own.close()


class ProgressPrinter:
    """One line per stage on stderr; redrawn in place on a terminal."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty, self.last, self.stage = stream, stream.isatty(), 0.0, ""

    def __call__(self, report: Progress) -> None:
        now = time.monotonic()
        final = report.fraction >= 1.0 or report.metrics.get("epoch_end")
        if report.stage == self.stage and not final and now - self.last < (0.1 if self.tty else 2.0):
            return
        self.last, self.stage = now, report.stage
        bar = "#" * int(report.fraction * 20)
        line = f"[{report.stage:<9}] [{bar:<20}] {report.message}"
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="TFLite Quantization Lab, headless.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train (or load) a model, convert variants, evaluate and time them")
    run.add_argument("--dataset", choices=DATASET_NAMES, default="mnist")
    run.add_argument("--data-dir", help="a folder of IDX files or a keras-format .npz")
    run.add_argument("--origin", help="download from this base URL instead of keras's (file:// works)")
    run.add_argument("--model", help="a .keras or .h5 model to use instead of training, or a .tflite to compare as it is")
    run.add_argument("--architecture", default="seed", help="seed or wide (when training)")
    run.add_argument("--epochs", type=int, default=1)
    run.add_argument(
        "--augment", action="store_true", help="move each training image a little every epoch (shifts, rotations, stroke width)"
    )
    run.add_argument(
        "--variants",
        default=",".join(registry.POST_TRAINING),
        help=f"comma-separated, from: {', '.join(registry.VARIANTS)}; or 'all'",
    )
    run.add_argument(
        "--keep-float",
        metavar="LAYER[,LAYER]",
        help="also build every chosen variant that can (int8, the LiteRT Quantizer's recipes) with these layers in float32",
    )
    run.add_argument(
        "--max-drop",
        type=float,
        metavar="PP",
        help="also find, per such variant, the fewest float layers that keep accuracy within PP points of float32",
    )
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--calibration", type=int, default=200, help="representative images for int8/int16x8")
    run.add_argument("--runs", type=int, default=1000, help="timed single-image invokes per variant")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--qat-epochs", type=int, default=1, help="fine-tuning epochs for qat_int8")
    run.add_argument(
        "--keras-latency", action="store_true", help="also time Keras model.predict and model(x) on one image (~1 s more)"
    )
    run.add_argument("--json", dest="json_path", help="write the JSON report here")
    run.add_argument("--save-dir", help="write the Keras model and every .tflite here")
    run.add_argument("--mcu", action="store_true", help="also run every variant under TFLite Micro: arena, flash, boards it fits")
    run.add_argument("--verbose", action="store_true", help="also show what TensorFlow, the converter and LiteRT print")
    inspect = commands.add_parser("inspect", help="describe a .tflite (or .keras/.h5) file")
    inspect.add_argument("file")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.add_argument("--verbose", action="store_true", help="also show what TensorFlow prints (Keras files)")
    inspect.add_argument("--classes", type=int, default=10, help="the classes its outputs must be (the lab's datasets have 10)")
    inspect.add_argument(
        "--tensors", action="store_true", help="every quantized tensor: its type, bits, scale(s) and zero point(s), from the file"
    )
    inspect.add_argument(
        "--reference", help="the float32 .tflite the quantized weights replace: adds each weight's clipped fraction and SNR"
    )
    export = commands.add_parser("export-c", help="a .tflite as a .h/.cc pair for TensorFlow Lite Micro")
    export.add_argument("file")
    export.add_argument("--out", default=".", help="the folder to write NAME_model_data.h and .cc to")
    export.add_argument("--name", help="the C name (default: the file's name)")
    export.add_argument("--arena", type=int, help="the tensor arena size; default: measured by TFLite Micro")
    commands.add_parser("variants", help="list the variants the lab knows")
    what_if = commands.add_parser("sweep", help="what-if: a float32 .tflite's kernels rounded to 8…2 bits, scored on a dataset")
    what_if.add_argument("file", help="a float32 .tflite")
    what_if.add_argument("--dataset", choices=DATASET_NAMES, default="digits")
    what_if.add_argument("--data-dir", help="a folder of IDX files or a keras-format .npz")
    what_if.add_argument("--ranges", default="min-max,mse", help="comma-separated, from: min-max, percentile, mse")
    worker = commands.add_parser("worker", help="serve the job queue of one or more app servers (Celery on Redis)")
    worker.add_argument(
        "--queue",
        default=os.environ.get("QLAB_QUEUE_URL", ""),
        help="redis://[:password@]host:port/db or rediss://… (default: $QLAB_QUEUE_URL)",
    )
    worker.add_argument(
        "--processes", type=int, default=1, help="jobs at once on this machine (one TensorFlow process each, ~0.8 GB)"
    )
    worker.add_argument("--name", default="qlab", help="a name for this worker in logs")
    worker.add_argument("--max-jobs", type=int, default=25, help="jobs per process before it is replaced (its memory goes back)")
    return parser


def _worker(args) -> int:
    if not args.queue:
        raise BadInput("give the queue: --queue redis://host:6379/0 (or set QLAB_QUEUE_URL)")
    if args.processes < 1:
        raise BadInput(f"--processes must be at least 1, got {args.processes}")
    from redis.exceptions import RedisError

    from core.queue_backend import run_worker, safe_url

    try:
        run_worker(args.queue, args.processes, args.name, args.max_jobs)
    except RedisError as error:
        raise BadInput(f"the queue at {safe_url(args.queue)} cannot be reached: {str(error).splitlines()[0]}") from None
    return 0


def _run(args) -> int:
    from core.pipeline import RunConfig, run
    from core.report import format_micro_table, format_table, to_json

    try:
        names = tuple(registry.parse_names(args.variants))
    except ValueError as error:
        raise BadInput(str(error)) from error
    if args.max_drop is not None and not 0 <= args.max_drop <= 100:
        raise BadInput("--max-drop is in percentage points, 0 to 100")
    keep_float = tuple(part.strip() for part in (args.keep_float or "").split(",") if part.strip())
    if args.keep_float:
        try:
            registry.selective("int8", keep_float)  # the names' form, checked before anything trains
        except ValueError as error:
            raise BadInput(f"--keep-float: {error}") from error
    if args.epochs < 0 or args.qat_epochs < 0 or args.threads < 1 or args.runs < 1 or args.calibration < 1:
        raise BadInput("--epochs and --qat-epochs must be ≥ 0 and --threads, --runs, --calibration ≥ 1")
    for path in filter(None, (args.data_dir, args.model)):
        if not os.path.exists(path):
            raise BadInput(f"{path}: no such file or folder")
    config = RunConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        origin=args.origin,
        model_path=args.model,
        preset=args.architecture,
        epochs=args.epochs,
        augment=args.augment,
        variants=names,
        threads=args.threads,
        calibration=args.calibration,
        runs=args.runs,
        seed=args.seed,
        keras_latency=args.keras_latency,
        mcu=args.mcu,
        extra={"qat_epochs": args.qat_epochs},
        keep_float=keep_float,
        max_drop_pp=args.max_drop,
    )
    with libraries_quiet(not args.verbose) as progress_stream:
        result = run(config, ProgressPrinter(progress_stream))
    if result.notice:
        print(f"notice: {result.notice}", file=sys.stderr)
    report = result.report
    ds, model = report["dataset"], report["model"]
    print(f"dataset {ds['name']}: {ds['train_size']:,} train / {ds['test_size']:,} test ({ds['source']})")
    if model["parameters"] is None:
        print(f"model {model['architecture']}: a .tflite, compared as it is")
    else:
        print(
            f"model {model['architecture']}: {model['parameters']:,} parameters, {model['epochs']} epoch(s), "
            f"Keras test accuracy {model['keras_accuracy']:.4f}"
        )
    print(format_table(report))
    if result.searches:
        from core.selective import format_steps

        for found in result.searches.values():
            print(format_steps(found))
    if args.mcu:
        print(format_micro_table(report))
    if "keras_latency_us" in report:
        keras = report["keras_latency_us"]
        print(
            f"Keras on one image: model.predict p50 {keras['keras_predict']['p50']:,.0f} µs, "
            f"model(x) p50 {keras['keras_call']['p50']:,.0f} µs"
        )
    print("timings (s): " + ", ".join(f"{key} {value:.2f}" for key, value in report["timings_s"].items()))
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(to_json(report))
        print(f"report written to {args.json_path}")
    if args.save_dir:
        folder = Path(args.save_dir)
        folder.mkdir(parents=True, exist_ok=True)
        if result.keras_model_bytes:
            (folder / "model.keras").write_bytes(result.keras_model_bytes)
        for name, data in result.tflites.items():
            (folder / f"{name}.tflite").write_bytes(data)
        print(f"{'model.keras and ' if result.keras_model_bytes else ''}{len(result.tflites)} .tflite files written to {folder}")
    return 0


def _inspect(args) -> int:
    from core.inspect import ModelFormatError, format_inspection, inspect_tflite
    from core.runtime import RuntimeModelError, check_model

    path = Path(args.file)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    data = path.read_bytes()
    if path.suffix.lower() in (".keras", ".h5"):
        return _inspect_keras(data, path.name, args.json, args.verbose)
    try:
        inspection = inspect_tflite(data)
        # What the lab checks before it runs a model: its memory and run time in a bounded child, its outputs.
        found = check_model(data, path.name, classes=args.classes)
    except ModelFormatError as error:
        raise BadInput(f"{path.name}: {error}") from error
    except RuntimeModelError as error:
        raise BadInput(str(error)) from error
    reference = None
    if args.reference:
        reference_path = Path(args.reference)
        if not reference_path.is_file():
            raise BadInput(f"{reference_path}: no such file")
        reference = reference_path.read_bytes()
        try:
            inspect_tflite(reference)
        except ModelFormatError as error:
            raise BadInput(f"{reference_path.name}: {error}") from error
    if args.json:
        print(json.dumps({**inspection.to_dict(), "footprint": asdict(found)}, indent=2))
    else:
        print(format_inspection(inspection))
        print(
            f"one image: {found.tensor_bytes:,} bytes of tensors, {found.invoke_ms:.3f} ms, batches of up to {found.max_batch} "
            f"(probe peak {found.peak_mb:.0f} MB)"
        )
    if args.tensors or reference is not None:
        from core.quantization import format_tensors

        print()
        print(format_tensors(data, reference))
    return 0


def _inspect_keras(data: bytes, name: str, as_json: bool, verbose: bool = False) -> int:
    from core.isolation import IsolationError, run_isolated
    from core.jobs import LoadModelRequest, run_request

    try:  # Keras (and TensorFlow) load in a process of their own, as the app's load job does
        with libraries_quiet(not verbose):
            loaded = run_isolated(run_request, LoadModelRequest(name, data), timeout_s=300, what=f"loading {name}", imports=())
    except IsolationError as error:
        raise BadInput(str(error)) from error
    summary = loaded.value.summary
    if as_json:
        print(
            json.dumps(
                {
                    "name": summary.name,
                    "parameters": summary.parameters,
                    "input_shape": list(summary.input_shape),
                    "layers": [
                        dict(zip(("name", "type", "output_shape", "parameters"), layer, strict=False)) for layer in summary.layers
                    ],
                },
                indent=2,
            )
        )
    else:
        print(f"{summary.name}: {summary.parameters:,} parameters, input {summary.input_shape}")
        for layer in summary.layers:
            print(f"  {layer[0]:<24} {layer[1]:<18} {layer[2]:<20} {layer[3]:>9,}")
    return 0


def _export_c(args) -> int:
    from core.export_c import to_c
    from core.inspect import ModelFormatError

    path = Path(args.file)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    data = path.read_bytes()
    try:
        to_c(data, "check")  # a malformed file is refused before TFLM sees it
    except ModelFormatError as error:
        raise BadInput(f"{path.name}: {error}") from error
    arena = args.arena
    if arena is None:
        from core.micro import measure_arena

        result = measure_arena(data)
        if not result.runs:
            raise BadInput(f"{path.name}: TFLite Micro cannot run it: {result.reason}")
        arena = result.arena_bytes
    source = to_c(data, args.name or path.stem, arena)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / source.header_name).write_text(source.header)
    (folder / source.source_name).write_text(source.source)
    print(
        f"{folder / source.header_name} and {source.source_name}: {len(data):,} bytes, arena {arena:,} bytes, "
        f"{len(source.resolver_lines)} operators ({' '.join(source.resolver_lines)})"
    )
    return 0


def _sweep(args) -> int:
    """The what-if table: accuracy against bits, per granularity and clipping range (core.quantization.sweep)."""
    import time

    from core.datasets import load
    from core.inspect import ModelFormatError
    from core.quantization import RANGES, format_sweep, kernels, sweep

    path = Path(args.file)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    ranges = tuple(part.strip() for part in args.ranges.split(",") if part.strip())
    if not ranges or set(ranges) - set(RANGES):
        raise BadInput(f"--ranges takes {', '.join(RANGES)}; got {args.ranges!r}")
    data = path.read_bytes()
    try:
        if not kernels(data):
            raise BadInput(f"{path.name}: no float32 convolution or dense kernel to round (is it the float32 variant?)")
    except ModelFormatError as error:
        raise BadInput(f"{path.name}: {error}") from error
    loaded = load(args.dataset, args.data_dir)
    if loaded.notice:
        print(f"notice: {loaded.notice}", file=sys.stderr)
    dataset = loaded.dataset
    with libraries_quiet(True):
        start = time.perf_counter()
        points = sweep(data, dataset.x_test, dataset.y_test, ranges=ranges)
        seconds = time.perf_counter() - start
    print(f"{path.name}'s kernels rounded, scored on {dataset.test_size:,} test images of {dataset.name} (accuracy):")
    print(format_sweep(points))
    print(f"{len(points)} models in {seconds:.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ log lines are not for students
    args = _parser().parse_args(argv)
    try:
        if args.command == "variants":
            for variant in registry.VARIANTS.values():
                print(f"{variant.name:<22} {variant.explanation}")
            return 0
        if args.command == "export-c":
            return _export_c(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "worker":
            return _worker(args)
        return _run(args) if args.command == "run" else _inspect(args)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the known failures of data, models and converters, in one line
        from core.convert import ConversionError
        from core.datasets import DatasetError
        from core.models import ModelFileError

        if isinstance(error, (DatasetError, ModelFileError, ConversionError, ValueError)):
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
