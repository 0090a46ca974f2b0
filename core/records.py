"""Job records as typed JSON, for the queue backend: nothing that crosses Redis is ever unpickled.

A record is one of the frozen dataclasses named in :data:`RECORD_TYPES` (requests, results, the
dataset reference, progress), or plain values inside one: ``None``, bools, numbers, strings,
tuples, lists and string-keyed dicts. :func:`encode` writes it as JSON with the class's *name*;
:func:`decode` rebuilds it only from that list of names, through the class's own constructor (so
a request's ``__post_init__`` checks run again on the worker). Anything else is refused.

``bytes`` (a .keras file, a .tflite file, a browser twin) do not go inline: :func:`encode` puts
each in ``blobs`` under its digest and writes ``{"$blob": digest}``; the caller stores the blobs
(Redis, with a time to live) and :func:`decode` fetches them back by digest and checks them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable

from core import jobs, litertjs, models
from core.datasets import DatasetRef
from core.progress import Progress

RECORD_TYPES = {
    cls.__name__: cls
    for cls in (
        jobs.TrainRequest,
        jobs.ConvertRequest,
        jobs.LoadModelRequest,
        jobs.KeepFloatRequest,
        jobs.TrainOutcome,
        jobs.ConvertedFile,
        jobs.ConvertOutcome,
        jobs.KeepFloatOutcome,
        litertjs.Twin,
        models.ModelSummary,
        DatasetRef,
        Progress,
    )
}
INLINE_BYTES = 256  # shorter byte strings are written inline (base64) rather than as a blob
MAX_DEPTH = 32


class RecordError(ValueError):
    """A record that is not one of ours, or whose blobs are missing or altered."""


def encode(value, blobs: dict[str, bytes]) -> str:
    """``value`` as typed JSON; its byte strings go into ``blobs`` by digest."""
    return json.dumps(_plain(value, blobs, 0), allow_nan=True, separators=(",", ":"))


def decode(text: str | bytes, fetch: Callable[[str], bytes | None]):
    """The record ``text`` names; ``fetch(digest)`` gives a blob's bytes (None when gone)."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise RecordError(f"not a job record: {error}") from None
    return _value(data, fetch, 0)


def _plain(value, blobs: dict, depth: int):
    if depth > MAX_DEPTH:
        raise RecordError("the record nests too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if len(data) <= INLINE_BYTES:
            return {"$bytes": base64.b64encode(data).decode()}
        digest = jobs.digest_bytes(data)
        blobs[digest] = data
        return {"$blob": digest, "size": len(data)}
    if isinstance(value, (tuple, list)):
        return {"$tuple" if isinstance(value, tuple) else "$list": [_plain(item, blobs, depth + 1) for item in value]}
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise RecordError("a record's dict keys must be strings")
        return {"$dict": {key: _plain(item, blobs, depth + 1) for key, item in value.items()}}
    if (
        dataclasses.is_dataclass(value)
        and type(value).__name__ in RECORD_TYPES
        and RECORD_TYPES[type(value).__name__] is type(value)
    ):
        fields = {field.name: _plain(getattr(value, field.name), blobs, depth + 1) for field in dataclasses.fields(value)}
        return {"$record": type(value).__name__, "fields": fields}
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # a NumPy scalar
        return _plain(value.item(), blobs, depth)
    raise RecordError(f"{type(value).__name__} is not a job record type")


def _value(data, fetch, depth: int):
    if depth > MAX_DEPTH:
        raise RecordError("the record nests too deeply")
    if data is None or isinstance(data, (bool, str, int, float)):
        return data
    if not isinstance(data, dict) or len(data) == 0:
        raise RecordError("not a job record")
    if "$bytes" in data:
        try:
            return base64.b64decode(str(data["$bytes"]), validate=True)
        except ValueError:
            raise RecordError("not a job record: bad inline bytes") from None
    if "$blob" in data:
        digest = str(data["$blob"])
        blob = fetch(digest)
        if blob is None:
            raise RecordError("a file this job needs has expired from the queue's store")
        if jobs.digest_bytes(blob) != digest:
            raise RecordError("a file in the queue's store does not match its digest")
        return blob
    if "$tuple" in data:
        return tuple(_value(item, fetch, depth + 1) for item in _list(data["$tuple"]))
    if "$list" in data:
        return [_value(item, fetch, depth + 1) for item in _list(data["$list"])]
    if "$dict" in data:
        items = data["$dict"]
        if not isinstance(items, dict):
            raise RecordError("not a job record")
        return {str(key): _value(item, fetch, depth + 1) for key, item in items.items()}
    if "$record" in data:
        cls = RECORD_TYPES.get(data["$record"])
        fields = data.get("fields")
        if cls is None or not isinstance(fields, dict):
            raise RecordError(f"{data['$record']!r} is not a job record type")
        names = {field.name for field in dataclasses.fields(cls)}
        if not set(fields) <= names:
            raise RecordError(f"{cls.__name__} has no field {sorted(set(fields) - names)[0]!r}")
        try:
            return cls(**{name: _value(item, fetch, depth + 1) for name, item in fields.items()})
        except (TypeError, ValueError) as error:
            raise RecordError(f"{cls.__name__}: {error}") from None
    raise RecordError("not a job record")


def _list(items) -> list:
    if not isinstance(items, list):
        raise RecordError("not a job record")
    return items
