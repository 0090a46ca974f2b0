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

# A model's memory, which its file size does not tell (a 33 KB file can broadcast to gigabytes).
# Every tensor of the model for one image, weights included: first summed from the shapes the file
# declares, then as LiteRT allocated them after running one image in a bounded child process. The
# seed CNN needs ~0.5 MB, the wide one ~2 MB.
MAX_MODEL_TENSOR_BYTES = 32 * MB
# The child that first runs a person's model (the probe) may use this much on top of its imports;
# past it, its allocation fails there, never in the server.
PROBE_MEMORY_MB = 256
# One image through the model may take at most this long (the seed CNN: ~0.01 ms; Draw runs every
# variant on every stroke).
MAX_INVOKE_MS = 100
# One interpreter's tensors at the batch it runs: the batch is cut down to stay within this (the
# seed CNN still runs batches of 500: ~50 KB per image).
INTERPRETER_BYTES = 64 * MB
MAX_BATCH = 500
# The interpreters one session keeps open in the server (Draw's, one per variant); past this the
# oldest is released first.
SESSION_INTERPRETER_BYTES = 64 * MB
# Measurements of a person's own .tflite (evaluation on the test set, timing, LiteRT's answers for
# TFLite Micro's comparison) run in a bounded child process, never in the server's thread.
MEASURE_MEMORY_MB = 768
MEASURE_TIMEOUT_S = 180
# A C export is text of ~6 bytes per model byte: no microcontroller has more flash than this.
MAX_C_EXPORT_BYTES = 16 * MB

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
