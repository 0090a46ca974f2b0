"""Hostile files, made in a second: decompression bombs, lying headers, huge counts, bad names.

A bomb is built without ever holding (or compressing) what it expands to: a deflate block of
zeros that follows a window of zeros is always the same bytes, so it is made once and repeated.
The zip files are written by hand (local headers, central directory), valid for any unzip tool.
"""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np

MiB = 1024 * 1024
CHUNK = MiB


def _deflated(prefix: bytes, zeros: int) -> tuple[bytes, int, int]:
    """Raw deflate of prefix + `zeros` zero bytes; returns (data, crc32, size)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    whole, rest = divmod(zeros, CHUNK)
    chunk = bytes(CHUNK)
    first = prefix + (chunk if whole else b"")
    parts = [compressor.compress(first) + compressor.flush(zlib.Z_SYNC_FLUSH)]
    crc = zlib.crc32(first)
    if whole > 1:
        repeated = compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)  # the same bytes for every later chunk
        parts.append(repeated * (whole - 1))
        for _ in range(whole - 1):
            crc = zlib.crc32(chunk, crc)
    if rest:
        tail = bytes(rest)
        parts.append(compressor.compress(tail) + compressor.flush(zlib.Z_SYNC_FLUSH))
        crc = zlib.crc32(tail, crc)
    parts.append(compressor.flush())
    return b"".join(parts), crc, len(prefix) + zeros


def zip_of(members: list[tuple[str, bytes, int]]) -> bytes:
    """A zip archive of (name, prefix, zeros after it) members, deflated, without zip64."""
    out, central = bytearray(), bytearray()
    for name, prefix, zeros in members:
        data, crc, size = _deflated(prefix, zeros)
        encoded = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0) + encoded + data
        central += (
            struct.pack(
                "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0, 0, 0, 0, 0, offset
            )
            + encoded
        )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0)
    return bytes(out + central + end)


def gzip_of(prefix: bytes, zeros: int) -> bytes:
    """A gzip file of prefix + zeros, as members of at most 64 MiB each (gzip reads them as one)."""
    block = 64 * MiB
    first = min(zeros, block)
    parts = [gzip.compress(prefix + bytes(first), compresslevel=9)]
    left = zeros - first
    if left >= block:
        parts.append(gzip.compress(bytes(block), compresslevel=9) * (left // block))
        left %= block
    if left:
        parts.append(gzip.compress(bytes(left), compresslevel=9))
    return b"".join(parts)


def idx_header(count: int, rows: int = 28, columns: int = 28, magic: int = 2051) -> bytes:
    return struct.pack(">IIII", magic, count, rows, columns)


def npy_header(shape: tuple, dtype: str = "|u1") -> bytes:
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


# -- the rows of the hardening issue's table ---------------------------------------------------------


def idx_gz_8gib() -> bytes:
    """IDX images, .gz of ~8 MB, expanding to 8 GiB (a header claiming the images it holds)."""
    count = (8 * 1024 * MiB) // 784
    return gzip_of(idx_header(count), count * 784)


def idx_gz_2gib_zeros() -> bytes:
    """A .gz of ~2 MB expanding to 2 GiB of zeros (magic number 0)."""
    return gzip_of(b"", 2 * 1024 * MiB)


def idx_500k_blank() -> bytes:
    """A valid IDX header promising 500,000 blank images, gzipped (~0.4 MB)."""
    return gzip_of(idx_header(500_000), 500_000 * 784)


def npz_3m_images() -> bytes:
    """An .npz of ~2.3 MB holding 3,000,000 images."""
    count = 3_000_000
    return zip_of(
        [
            ("x_train.npy", npy_header((count, 28, 28)), count * 784),
            ("y_train.npy", npy_header((count,)), count),
            ("x_test.npy", npy_header((10, 28, 28)), 7840),
            ("y_test.npy", npy_header((10,)), 10),
        ]
    )


def keras_config_3gib() -> bytes:
    """A .keras whose config.json expands to 3 GiB."""
    return zip_of(
        [
            ("metadata.json", b'{"keras_version": "3.15.0"}', 0),
            ("config.json", b"{", 3 * 1024 * MiB),
            ("model.weights.h5", b"\x89HDF\r\n\x1a\n", 0),
        ]
    )


def keras_12_entries_255mib() -> bytes:
    """A .keras with 12 entries of 255 MiB each."""
    members = [("metadata.json", b"{}", 0), ("config.json", b"{}", 0)]
    members += [(f"assets/blob{index}.bin", b"", 255 * MiB) for index in range(12)]
    return zip_of(members)


def random_bytes(size: int, seed: int = 0, prefix: bytes = b"") -> bytes:
    return prefix + np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
