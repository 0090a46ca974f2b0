import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from core import datasets
from core.datasets import DatasetError
from tests.conftest import mnist_small


def test_mnist_small_loads_from_its_idx_folder():
    data = datasets.load_local(mnist_small())
    assert (data.train_size, data.test_size) == (8000, 2000)
    assert data.x_train.shape == (8000, 28, 28) and data.x_train.dtype == np.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert set(np.unique(data.y_test)) == set(range(10))


def test_offline_digits_are_28x28_and_framed_like_mnist():
    data = datasets.load_offline_digits()
    assert data.train_size + data.test_size == 1797
    assert data.x_train.shape[1:] == (28, 28)
    mean = data.x_train.mean(axis=0)
    border = np.concatenate([mean[0], mean[-1], mean[:, 0], mean[:, -1]])
    assert border.max() < 0.01  # an empty border, as in MNIST
    ys, xs = np.indices(mean.shape)
    assert abs((ys * mean).sum() / mean.sum() - 14) < 1 and abs((xs * mean).sum() / mean.sum() - 14) < 1


def _write_idx(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    datasets.save_idx(folder, datasets.Dataset("t", images, labels, images, labels, datasets.DIGIT_CLASSES, "test"))


@pytest.fixture
def idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path, rng.random((5, 28, 28)).astype(np.float32), np.arange(5))
    return tmp_path


def test_idx_round_trip_plain_and_gz(idx_folder, tmp_path):
    data = datasets.load_local(idx_folder)
    assert data.train_size == 5 and list(data.y_test) == [0, 1, 2, 3, 4]
    plain = tmp_path / "plain"
    datasets.save_idx(plain, data, gz=False)
    assert datasets.load_local(plain).x_test.shape == (5, 28, 28)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "train-images-idx3-ubyte.gz").unlink(), "train-images-idx3-ubyte: not among the files"),
        (lambda d: _rewrite(d, "train-labels-idx1-ubyte.gz", lambda b: (2051).to_bytes(4, "big") + b[4:]), "is not IDX labels"),
        (lambda d: _rewrite(d, "t10k-images-idx3-ubyte.gz", lambda b: b[:-10]), "the file ends early"),
        (
            lambda d: _rewrite(d, "t10k-images-idx3-ubyte.gz", lambda b: b[:4] + b[4:8] + (32).to_bytes(4, "big") + b[12:]),
            "32×28",
        ),
        (lambda d: _rewrite(d, "t10k-labels-idx1-ubyte.gz", lambda b: b[:-1] + bytes([12])), "labels must lie in 0–9"),
        (lambda d: (d / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bnot gzip"), "cannot be read"),
        (lambda d: _rewrite(d, "train-labels-idx1-ubyte.gz", lambda b: b[:7]), "too short"),
    ],
    ids=["missing", "magic", "truncated", "dims", "label-range", "bad-gzip", "short"],
)
def test_a_bad_idx_file_gets_a_message_naming_it(idx_folder, damage, message):
    damage(idx_folder)
    with pytest.raises(DatasetError, match=message):
        datasets.load_local(idx_folder)


def _rewrite(folder: Path, name: str, change) -> None:
    path = folder / name
    path.write_bytes(gzip.compress(change(gzip.decompress(path.read_bytes()))))


def test_npz_archive_and_its_errors(tmp_path):
    rng = np.random.default_rng(1)
    images = (rng.random((4, 28, 28)) * 255).astype(np.uint8)
    good = tmp_path / "good.npz"
    np.savez(good, x_train=images, y_train=np.arange(4), x_test=images, y_test=np.arange(4))
    assert datasets.load_local(good).x_train.max() <= 1.0
    missing = tmp_path / "missing.npz"
    np.savez(missing, x_train=images, y_train=np.arange(4))
    with pytest.raises(DatasetError, match="missing.npz: missing arrays x_test, y_test"):
        datasets.load_local(missing)
    shapes = tmp_path / "shapes.npz"
    np.savez(shapes, x_train=images[:, :20], y_train=np.arange(4), x_test=images, y_test=np.arange(4))
    with pytest.raises(DatasetError, match="N×28×28"):
        datasets.load_local(shapes)
    mismatch = tmp_path / "mismatch.npz"
    np.savez(mismatch, x_train=images, y_train=np.arange(3), x_test=images, y_test=np.arange(4))
    with pytest.raises(DatasetError, match="4 train images but 3 train labels"):
        datasets.load_local(mismatch)
    floats = tmp_path / "floats.npz"
    np.savez(floats, x_train=images.astype(np.float32) * 3, y_train=np.arange(4), x_test=images, y_test=np.arange(4))
    with pytest.raises(DatasetError, match="lie in"):
        datasets.load_local(floats)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="junk.npz: not an .npz archive"):
        datasets.load_local(tmp_path / "junk.npz")
    with pytest.raises(DatasetError, match="no such file"):
        datasets.load_local(tmp_path / "nothing")


# -- the download route, without the network: a file:// origin and a server on loopback ------------


def _origin_with_mnist_npz(folder: Path) -> tuple[Path, str]:
    rng = np.random.default_rng(2)
    images = (rng.random((6, 28, 28)) * 255).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mnist.npz"
    np.savez(path, x_train=images, y_train=np.arange(6) % 10, x_test=images[:3], y_test=np.arange(3))
    return path, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mnist_source(monkeypatch, tmp_path):
    """The real MNIST source entry, with the checksum of a file we serve ourselves."""
    path, checksum = _origin_with_mnist_npz(tmp_path / "origin")
    real = datasets.REMOTE_SOURCES["mnist"]
    monkeypatch.setitem(
        datasets.REMOTE_SOURCES,
        "mnist",
        datasets.RemoteSource(
            real.name, (("mnist.npz", checksum),), real.origin, real.cache_subdir, real.class_names, real.credit
        ),
    )
    return path.parent


def test_download_from_a_file_origin_is_verified_and_cached(mnist_source, tmp_path):
    cache = tmp_path / "keras-home"
    seen = []
    data = datasets.fetch("mnist", origin=mnist_source.as_uri(), cache_dir=cache, progress=lambda *a: seen.append(a))
    assert data.train_size == 6 and (cache / "datasets" / "mnist.npz").exists()
    assert seen and seen[-1][0] == "mnist.npz"
    (mnist_source / "mnist.npz").unlink()  # the cached, verified copy is reused
    assert datasets.fetch("mnist", origin=mnist_source.as_uri(), cache_dir=cache).test_size == 3


def test_download_from_a_loopback_server(mnist_source, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mnist_source))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        origin = f"http://127.0.0.1:{server.server_port}/"
        data = datasets.fetch("mnist", origin=origin, cache_dir=tmp_path / "cache")
        assert data.train_size == 6 and origin in data.source
    finally:
        server.shutdown()


def test_a_checksum_mismatch_is_refused_and_nothing_is_cached(mnist_source, tmp_path):
    (mnist_source / "mnist.npz").write_bytes(b"tampered")
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="checksum mismatch"):
        datasets.fetch("mnist", origin=mnist_source.as_uri(), cache_dir=cache)
    assert not list((cache / "datasets").glob("*"))


def test_the_real_fashion_mnist_entry_carries_zalandos_checksums():
    source = datasets.REMOTE_SOURCES["fashion-mnist"]
    assert [name for name, _ in source.files] == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    assert all(checksum.startswith("md5:") and len(checksum) == 36 for _, checksum in source.files)


def test_an_unreachable_origin_falls_back_to_the_offline_digits_with_a_notice(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    loaded = datasets.load("fashion-mnist", origin=(tmp_path / "nowhere").as_uri())
    assert loaded.dataset.name == "digits"
    assert "could not be downloaded" in loaded.notice and "offline digits" in loaded.notice
    with pytest.raises(DatasetError, match="could not download"):
        datasets.load("fashion-mnist", origin=(tmp_path / "nowhere").as_uri(), fallback=False)
