"""Every limit on what a person brings to the lab, in one place.

Each limit is checked before anything of that size is allocated: headers are read first, and
compressed data is decompressed as a stream with a cap. A refusal is one line that names the
file, the limit and the number found (:func:`refusal`). The README's table of limits is this file.
"""

from __future__ import annotations

import re

MB = 1024 * 1024

# Streamlit refuses a larger upload before our code sees it: .streamlit/config.toml sets
# server.maxUploadSize to this (a test holds the two together).
UPLOAD_MB = 64

# A dataset file: at most this many images (MNIST's training set has 60,000) of 28×28 pixels.
MAX_IMAGES = 70_000
# What one compressed file (.gz) or one .npz member may expand to: 70,000 float32 images.
MAX_EXPANDED_BYTES = MAX_IMAGES * 28 * 28 * 4 + 4096
# An .npz holds the four arrays and nothing much else.
MAX_NPZ_MEMBERS = 8

# A .keras file is a zip: a config.json, a metadata.json and a weights file.
MAX_KERAS_ENTRIES = 32
MAX_KERAS_EXPANDED = 256 * MB
MAX_KERAS_CONFIG = 4 * MB

# A .tflite file is read whole; its size is the upload's.
MAX_TFLITE_BYTES = UPLOAD_MB * MB

_UNSAFE = re.compile(r"[^A-Za-z0-9._ +()\-]+")


def refusal(file_name: str, what: str, number: int, limit: int, unit: str = "") -> str:
    """One line: the file, what is over, the number and the limit."""
    suffix = f" {unit}" if unit else ""
    return f"{file_name}: {what} is {number:,}{suffix}, over the limit of {limit:,}{suffix}"


def safe_name(name: str, default: str = "upload") -> str:
    """An upload's name as it may appear in a path or a message: no folders, no '..', no control
    characters, at most 100 characters."""
    base = str(name).replace("\\", "/").split("/")[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    return base[:100] or default
