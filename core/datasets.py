"""Datasets: MNIST and Fashion-MNIST (downloaded and cached), local IDX/npz files, and an offline
digit set that ships inside scikit-learn.

A :class:`Dataset` holds images as N×28×28 float32 in [0, 1] and integer labels. Nothing here
imports TensorFlow.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import shutil
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from core import limits
from core.images import mnist_style_all

DIGIT_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


class DatasetError(ValueError):
    """A dataset could not be loaded; the message names the file and what is wrong."""


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    x_train: np.ndarray  # N×28×28 float32 in [0, 1]
    y_train: np.ndarray  # N int64
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str  # one line: where the images came from

    @property
    def train_size(self) -> int:
        return len(self.y_train)

    @property
    def test_size(self) -> int:
        return len(self.y_test)

    def summary(self) -> dict:
        return {"name": self.name, "source": self.source, "train_size": self.train_size, "test_size": self.test_size}

    @cached_property  # a dataset is read-only once built: hash its ~200 MB once
    def digest(self) -> str:
        """A digest of the content (every image, every label, the class names), not of the name:
        the key of every cached result that depends on the data."""
        hasher = hashlib.blake2b(digest_size=16)
        hasher.update("\x1f".join(self.class_names).encode())
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            hasher.update(f"{array.dtype.str}{array.shape}".encode())
            hasher.update(np.ascontiguousarray(array).data)
        return hasher.hexdigest()


@dataclass(frozen=True)
class DatasetRef:
    """A dataset by reference, as it crosses a process boundary: a built-in name, or a file or
    folder saved once, plus the content digest it must have. Arrays never travel."""

    name: str  # "mnist", "fashion-mnist", "digits", or a label for a saved file
    digest: str
    path: str = ""  # a .npz file or IDX folder; "" for a built-in dataset
    class_names: tuple[str, ...] = DIGIT_CLASSES

    @classmethod
    def of(cls, dataset: Dataset, path: str | os.PathLike = "") -> DatasetRef:
        return cls(dataset.name, dataset.digest, str(path), dataset.class_names)

    def resolve(self) -> Dataset:
        """Load the dataset this names and check that it is the one meant."""
        if self.path:
            dataset = load_local(self.path, self.class_names)
            dataset = Dataset(
                self.name, dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test, dataset.class_names, dataset.source
            )
        elif self.name in DATASET_NAMES:
            dataset = load(self.name, fallback=False).dataset
        else:
            raise DatasetError(f"{self.name}: not a built-in dataset and no file given")
        if dataset.digest != self.digest:
            raise DatasetError(f"{self.name}: its content changed since it was chosen (digest {dataset.digest} ≠ {self.digest})")
        return dataset


def save_npz(path: Path, dataset: Dataset) -> Path:
    """Write a dataset as an uncompressed keras-format .npz that :func:`load_local` reads back
    bit for bit (the arrays as they are, float32 images in [0, 1])."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez(handle, x_train=dataset.x_train, y_train=dataset.y_train, x_test=dataset.x_test, y_test=dataset.y_test)
    return path


@dataclass(frozen=True)
class RemoteSource:
    """A dataset on the web, as keras.datasets downloads it."""

    name: str
    files: tuple[tuple[str, str], ...]  # (file name, "sha256:…" or "md5:…")
    origin: str
    cache_subdir: str
    class_names: tuple[str, ...]
    credit: str


KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
REMOTE_SOURCES = {
    "mnist": RemoteSource(
        name="mnist",
        files=(("mnist.npz", "sha256:731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),),
        origin=KERAS_ORIGIN,
        cache_subdir="datasets",
        class_names=DIGIT_CLASSES,
        credit="MNIST (LeCun, Cortes, Burges; CC BY-SA 3.0)",
    ),
    "fashion-mnist": RemoteSource(
        name="fashion-mnist",
        # The checksums Zalando publishes for the four files.
        files=(
            ("train-images-idx3-ubyte.gz", "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("train-labels-idx1-ubyte.gz", "md5:25c81989df183df01b3e8a0aad5dffbe"),
            ("t10k-images-idx3-ubyte.gz", "md5:bef4ecab320f06d8554ea6380940ec79"),
            ("t10k-labels-idx1-ubyte.gz", "md5:bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        origin=KERAS_ORIGIN,
        cache_subdir=os.path.join("datasets", "fashion-mnist"),
        class_names=FASHION_CLASSES,
        credit="Fashion-MNIST (Zalando Research; MIT)",
    ),
}
OFFLINE = "digits"
DATASET_NAMES = ("mnist", "fashion-mnist", OFFLINE)

DownloadProgressFn = Callable[[str, int, int], None]  # (file name, bytes done, bytes total or 0)


def keras_cache_dir() -> Path:
    """Where keras.utils.get_file caches downloads: $KERAS_HOME, else ~/.keras."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


class _ProgressBar:
    """What pooch's HTTP downloader drives (total, update, reset, close), reported as (file, done, total)."""

    def __init__(self, file_name: str, report: DownloadProgressFn):
        self.file_name, self.report, self.total, self.done = file_name, report, 0, 0

    def update(self, count: int) -> None:
        self.done = min(self.done + count, self.total or self.done + count)
        self.report(self.file_name, self.done, self.total)

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        pass


def _copy_file_url(url: str, output_file: str, pooch) -> None:
    """pooch's downloader for a file:// origin (a mirror on disk, and the tests' origin)."""
    shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlparse(url).path), output_file)


def download(url: str, target: Path, checksum: str, progress: DownloadProgressFn | None = None, timeout: float = 30) -> Path:
    """Download url to target with pooch, verifying the checksum ("sha256:…" or "md5:…"); a cached copy
    with the right checksum is reused, a wrong one downloaded again; a mismatch after download is discarded."""
    import pooch
    import requests

    pooch.get_logger().setLevel("WARNING")  # pooch says "Downloading …" on every fetch
    if url.startswith("file:"):
        downloader = _copy_file_url
    else:
        downloader = pooch.HTTPDownloader(timeout=timeout, progressbar=_ProgressBar(target.name, progress) if progress else False)
    try:
        found = Path(pooch.retrieve(url, known_hash=checksum, fname=target.name, path=target.parent, downloader=downloader))
    except ValueError as error:  # pooch's hash check; it has deleted the download
        raise DatasetError(f"{target.name}: checksum mismatch after download from {url}; the file was discarded") from error
    except (requests.RequestException, OSError) as error:
        raise DatasetError(f"{target.name}: could not download from {url} ({error})") from error
    if progress and url.startswith("file:"):
        progress(target.name, found.stat().st_size, found.stat().st_size)
    return found


def fetch(
    name: str, origin: str | None = None, cache_dir: Path | None = None, progress: DownloadProgressFn | None = None
) -> Dataset:
    """Download (or reuse the cached copy of) MNIST or Fashion-MNIST, as keras.datasets does."""
    source = REMOTE_SOURCES.get(name)
    if source is None:
        raise DatasetError(f"no downloadable dataset named {name!r}; choose from {', '.join(REMOTE_SOURCES)}")
    base = origin or source.origin
    folder = (cache_dir or keras_cache_dir()) / source.cache_subdir
    paths = [download(base.rstrip("/") + "/" + file, folder / file, checksum, progress) for file, checksum in source.files]
    arrays = load_npz_arrays(paths[0]) if paths[0].suffix == ".npz" else load_idx_arrays(folder)
    return _dataset(name, arrays, source.class_names, f"{source.credit}, downloaded from {base}, cached in {folder}")


def _open_maybe_gzip(path: Path):
    """The file as a stream of its (decompressed) bytes: a .gz is decompressed as it is read, so
    that nothing beyond what the reader asks for is ever expanded."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    return gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb")


def _read_exactly(stream, count: int, file_name: str) -> bytes:
    data = stream.read(count)
    if len(data) < count:
        raise DatasetError(f"{file_name}: the file ends early: {len(data):,} of {count:,} bytes")
    return data


def read_idx(path: Path, images: bool, file_name: str | None = None) -> np.ndarray:
    """Read one IDX file (.gz or not), header first: the magic number, the shape and the count
    are checked before the data is read, and no more than the header promises is decompressed."""
    name = file_name or path.name
    expected_magic, ndim = (IDX_IMAGES_MAGIC, 3) if images else (IDX_LABELS_MAGIC, 1)
    try:
        with _open_maybe_gzip(path) as stream:
            header = stream.read(4 + 4 * ndim)
            dims = _check_idx_header(header, name, images, expected_magic, ndim)
            expected = int(np.prod(dims))
            data = _read_exactly(stream, expected, name)
            if stream.read(1):
                raise DatasetError(
                    f"{name}: the file is longer than its header promises ({expected:,} bytes of data for shape {dims})"
                )
    except DatasetError:
        raise
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DatasetError(f"{name}: cannot be read ({error})") from error
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _check_idx_header(header: bytes, name: str, images: bool, expected_magic: int, ndim: int) -> list[int]:
    if len(header) < 4 + 4 * ndim:
        raise DatasetError(f"{name}: too short for an IDX header ({len(header)} bytes)")
    magic = int.from_bytes(header[0:4], "big")
    if magic != expected_magic:
        kind = "images (magic 2051)" if images else "labels (magic 2049)"
        raise DatasetError(f"{name}: magic number {magic} is not IDX {kind}")
    dims = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if images and dims[1:] != [28, 28]:
        raise DatasetError(f"{name}: images are {dims[1]}×{dims[2]}, the lab needs 28×28")
    if dims[0] > limits.MAX_IMAGES:
        raise DatasetError(
            limits.refusal(name, "the number of " + ("images" if images else "labels"), dims[0], limits.MAX_IMAGES)
        )
    return dims


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{stem}: not among the files (looked for {stem} and {stem}.gz)")


def load_idx_arrays(folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for key, stem in IDX_FILES.items():
        path = _find_idx(folder, stem)
        arrays[key] = read_idx(path, images=key.startswith("x"))
    return arrays


def load_npz_arrays(path: Path, file_name: str | None = None) -> dict[str, np.ndarray]:
    """Read x_train, y_train, x_test and y_test from a keras-format .npz, headers first: every
    member's shape, dtype and expanded size are checked before its data is read, and pickled
    (object) arrays are refused."""
    name = file_name or path.name
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DatasetError(f"{name}: not an .npz archive (an .npz is a zip of .npy arrays)") from error
    with archive:
        members = archive.infolist()
        if len(members) > limits.MAX_NPZ_MEMBERS:
            raise DatasetError(limits.refusal(name, "the number of arrays", len(members), limits.MAX_NPZ_MEMBERS))
        by_key = {info.filename.removesuffix(".npy"): info for info in members}
        missing = [key for key in IDX_FILES if key not in by_key]
        if missing:
            raise DatasetError(f"{name}: missing arrays {', '.join(missing)} (needs x_train, y_train, x_test, y_test)")
        return {key: _read_npy_member(archive, by_key[key], name, key) for key in IDX_FILES}


def _read_npy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, key: str) -> np.ndarray:
    label = f"{name} {key}"
    if info.file_size > limits.MAX_EXPANDED_BYTES:
        raise DatasetError(limits.refusal(label, "the expanded size", info.file_size, limits.MAX_EXPANDED_BYTES, "bytes"))
    try:
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(stream, max_header_size=10_000)
            if dtype.hasobject:
                raise DatasetError(f"{label}: holds pickled Python objects, which the lab does not load")
            count = shape[0] if shape else 1
            if count > limits.MAX_IMAGES:
                raise DatasetError(
                    limits.refusal(
                        label, "the number of " + ("images" if key.startswith("x") else "labels"), count, limits.MAX_IMAGES
                    )
                )
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if nbytes > limits.MAX_EXPANDED_BYTES:
                raise DatasetError(limits.refusal(label, "the array's size", nbytes, limits.MAX_EXPANDED_BYTES, "bytes"))
            data = stream.read(nbytes + 1)
    except DatasetError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError, TypeError, KeyError) as error:
        raise DatasetError(
            f"{label}: not a readable .npy array ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
        ) from error
    if len(data) != nbytes:
        raise DatasetError(f"{label}: holds {len(data):,} bytes of data where its header promises {nbytes:,}")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C")


def _images(array: np.ndarray, label: str) -> np.ndarray:
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise DatasetError(f"{label}: images must be N×28×28, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise DatasetError(f"{label}: images must be uint8 or float, got {array.dtype}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise DatasetError(f"{label}: images contain NaN or infinity")
    if array.min() < 0 or array.max() > 255:
        raise DatasetError(f"{label}: float images must lie in [0, 1] or [0, 255]")
    return array / 255.0 if array.max() > 1.0 else array


def _labels(array: np.ndarray, label: str, classes: int) -> np.ndarray:
    array = (
        np.asarray(array).reshape(-1) if np.asarray(array).ndim == 2 and np.asarray(array).shape[1] == 1 else np.asarray(array)
    )
    if array.ndim != 1:
        raise DatasetError(f"{label}: labels must be a 1-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise DatasetError(f"{label}: labels must be integers, got {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= classes):
        raise DatasetError(f"{label}: labels must lie in 0–{classes - 1}, found {array.min()}–{array.max()}")
    return array.astype(np.int64)


def _dataset(name: str, arrays: dict[str, np.ndarray], class_names: tuple[str, ...], source: str) -> Dataset:
    x_train, x_test = _images(arrays["x_train"], f"{name} x_train"), _images(arrays["x_test"], f"{name} x_test")
    y_train = _labels(arrays["y_train"], f"{name} y_train", len(class_names))
    y_test = _labels(arrays["y_test"], f"{name} y_test", len(class_names))
    for images, labels, part in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(images) != len(labels):
            raise DatasetError(f"{name}: {len(images)} {part} images but {len(labels)} {part} labels")
        if len(images) == 0:
            raise DatasetError(f"{name}: the {part} set is empty")
    for part, labels in (("training", y_train), ("test", y_test)):
        present = np.unique(labels)
        if len(present) < 2:
            # A model of one class answers it always: every variant would score 1.0000 without a word.
            raise DatasetError(
                f"{name}: the {part} labels hold {len(present)} class ({present[0] if len(present) else '–'}); "
                "the lab needs at least 2 to tell apart"
            )
    return Dataset(name, x_train, y_train, x_test, y_test, class_names, source)


def load_local(path: str | os.PathLike, class_names: tuple[str, ...] = DIGIT_CLASSES) -> Dataset:
    """A folder in the IDX layout, or a keras-format .npz (x_train, y_train, x_test, y_test)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_dir():
        return _dataset(path.name, load_idx_arrays(path), class_names, f"IDX files in {path}")
    return _dataset(path.stem, load_npz_arrays(path), class_names, f"npz archive {path}")


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8×8 digits file inside the installed scikit-learn, read without importing scikit-learn
    (its import costs ~2 s and ~60 MB, which the app's first page should not pay)."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",", dtype=np.float32)
            return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits  # the file moved: ask scikit-learn itself

    digits = load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int64)


OFFLINE_FAINT = 0.3  # grey levels of the framed offline digits below this become black, the rest are stretched


def load_offline_digits(seed: int = 0, test_share: float = 0.2) -> Dataset:
    """scikit-learn's 1,797 handwritten digits (8×8 scans), framed as MNIST frames its digits."""
    scans, labels = _sklearn_digits()
    images, _ = mnist_style_all(scans / 16.0)  # every scan holds a digit: none is blank
    # An 8×8 scan blown up to 20×20 is a blur: its strokes are ~5.3 px wide where MNIST's are ~3.0
    # (and a drawn digit's ~2.7). Dropping the faintest third of the grey levels brings them to ~4.0,
    # and the models trained on them read drawn digits better (bench/drawn_digits.py).
    images = np.clip((images - OFFLINE_FAINT) / (1 - OFFLINE_FAINT), 0.0, 1.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = int(round(len(labels) * (1 - test_share)))
    train, test = order[:cut], order[cut:]
    return Dataset(
        OFFLINE,
        images[train],
        labels[train],
        images[test],
        labels[test],
        DIGIT_CLASSES,
        "scikit-learn load_digits (UCI optical digits, 8×8 scans), brought to 28×28 the MNIST way; ships offline",
    )


@dataclass(frozen=True, eq=False)
class LoadedDataset:
    dataset: Dataset
    notice: str  # empty, or why the dataset is not the one asked for


def load(
    name: str,
    data_dir: str | os.PathLike | None = None,
    origin: str | None = None,
    fallback: bool = True,
    progress: DownloadProgressFn | None = None,
) -> LoadedDataset:
    """The dataset the CLI and the app ask for: a local path wins, then a download; offline
    digits when a download fails and fallback is allowed."""
    if data_dir:
        class_names = FASHION_CLASSES if name == "fashion-mnist" else DIGIT_CLASSES
        return LoadedDataset(load_local(data_dir, class_names), "")
    if name == OFFLINE:
        return LoadedDataset(load_offline_digits(), "")
    try:
        return LoadedDataset(fetch(name, origin=origin, progress=progress), "")
    except DatasetError as error:
        if not fallback:
            raise
        return LoadedDataset(
            load_offline_digits(),
            f"{name} could not be downloaded ({error}); using the offline digits that ship with scikit-learn instead.",
        )


def save_idx(folder: Path, dataset: Dataset, gz: bool = True) -> None:
    """Write a dataset in the IDX layout (used by tests and benchmarks to make local copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"x_train": dataset.x_train, "y_train": dataset.y_train, "x_test": dataset.x_test, "y_test": dataset.y_test}
    for key, stem in IDX_FILES.items():
        array = arrays[key]
        data = np.round(array * 255).astype(np.uint8) if key.startswith("x") else array.astype(np.uint8)
        magic = IDX_IMAGES_MAGIC if key.startswith("x") else IDX_LABELS_MAGIC
        header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in data.shape)
        payload = header + data.tobytes()
        if gz:
            with gzip.open(folder / f"{stem}.gz", "wb") as handle:
                handle.write(payload)
        else:
            (folder / stem).write_bytes(payload)
