"""The feature snapshot's bytes: a plain format, never pickle.

A magic line, a length-prefixed JSON header (format version, the engine's settings, each
section's size and count), then fixed sections of little-endian numbers and NUL-joined UTF-8
strings. Anything that does not add up raises ``SnapshotError``. Decoding builds millions of
small lists for a large state; it runs with the garbage collector off (``quiet_collector``).
"""

from __future__ import annotations

import gc
import json
import struct
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from payscore.core.features import SNAPSHOT_VERSION

FORMAT_VERSION = 2
MAGIC = b"PAYSCORE-FEATURE-STATE\n"
MAX_HEADER_BYTES = 65_536
_SEP = "\x00"
# (name, kind): "s" NUL-joined strings, else a numpy dtype; order is the format. A terminal's
# payments name their customers by index into ``terminal_customer_names`` (each card once).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("customer_keys", "s"),
    ("customer_partitions", "<i4"),
    ("customer_counts", "<u4"),
    ("customer_times", "<f8"),
    ("customer_amounts", "<f8"),
    ("terminal_keys", "s"),
    ("terminal_counts", "<u4"),
    ("terminal_times", "<f8"),
    ("terminal_txids", "s"),
    ("terminal_customer_names", "s"),
    ("terminal_customer_refs", "<u4"),
    ("terminal_amounts", "<f8"),
    ("terminal_fraud_at", "<f8"),
    ("pending_keys", "s"),
    ("pending_fraud", "<u1"),
    ("pending_known", "<f8"),
)


class SnapshotError(ValueError):
    """A snapshot that cannot be written or trusted; the caller replays in full instead."""


@contextmanager
def quiet_collector() -> Iterator[None]:
    """No garbage collection while millions of lists are built: each full collection would
    walk all of them (a restore of 1M payments' state took 12 s with it, ~1 s without)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# ------------------------------------------------------------------------------ format


def encode(state: dict[str, Any], partitions: Mapping[str, int]) -> bytes:
    """``FeatureEngine.snapshot()`` output and each customer's partition as bytes."""
    customers, terminals = state["customers"], state["terminals"]
    cols: dict[str, Any] = {
        "customer_keys": list(customers),
        "customer_partitions": [partitions.get(k, -1) for k in customers],
        "customer_counts": [len(v[0]) for v in customers.values()],
        "customer_times": [x for v in customers.values() for x in v[0]],
        "customer_amounts": [x for v in customers.values() for x in v[1]],
        "terminal_keys": list(terminals),
        "terminal_counts": [len(v[0]) for v in terminals.values()],
        "pending_keys": [k for k, _, _ in state["pending"]],
        "pending_fraud": [1 if f else 0 for _, f, _ in state["pending"]],
        "pending_known": [k for _, _, k in state["pending"]],
    }
    for i, name in enumerate(("times", "txids", "customers", "amounts", "fraud_at")):
        cols[f"terminal_{name}"] = [x for v in terminals.values() for x in v[i]]
    names: dict[str, int] = {}
    cols["terminal_customer_refs"] = [
        names.setdefault(c, len(names)) for c in cols.pop("terminal_customers")
    ]
    cols["terminal_customer_names"] = list(names)
    cols["terminal_fraud_at"] = [np.inf if f is None else f for f in cols["terminal_fraud_at"]]
    blobs, sizes = [], []
    for name, kind in SECTIONS:
        values = cols[name]
        if kind == "s":
            joined = _SEP.join(values)
            if joined.count(_SEP) != max(len(values) - 1, 0):
                raise SnapshotError(f"a {name} value holds a NUL character")
            blob = joined.encode("utf-8", "surrogatepass")
        else:
            blob = np.asarray(values, dtype=kind).tobytes()
        blobs.append(blob)
        sizes.append([name, len(blob), len(values)])
    header = json.dumps(
        {
            "format": FORMAT_VERSION,
            "engine_version": state["version"],
            "velocity_windows": state["velocity_windows"],
            "label_delay_days": state["label_delay_days"],
            "sections": sizes,
        }
    ).encode()
    return b"".join([MAGIC, struct.pack("<I", len(header)), header, *blobs])


@dataclass
class Decoded:
    """``FeatureEngine.restore`` input and the partition of each customer in it."""

    state: dict[str, Any]
    partitions: dict[str, int]


def decode(data: bytes | bytearray, keep: Collection[int] | None = None) -> Decoded:
    """Bytes from ``encode`` back, checked throughout; with ``keep``, only the customers of
    those partitions (terminals and pending labels always whole)."""
    header, cols = _sections(data)
    keys, parts = cols["customer_keys"], cols["customer_partitions"]
    counts = cols["customer_counts"]
    if not len(keys) == len(parts) == len(counts) or len(set(keys)) != len(keys):
        raise SnapshotError("snapshot customer keys do not match their counts")
    chosen = range(len(keys)) if keep is None else np.flatnonzero(np.isin(parts, list(keep)))
    times, amounts = _grouped(cols, "customer", counts, ("times", "amounts"))
    customers = {keys[i]: [times[i], amounts[i]] for i in chosen}
    tkeys, tcounts = cols["terminal_keys"], cols["terminal_counts"]
    if len(tkeys) != len(tcounts) or len(set(tkeys)) != len(tkeys):
        raise SnapshotError("snapshot terminal keys do not match their counts")
    refs, names = cols["terminal_customer_refs"], cols["terminal_customer_names"]
    if len(refs) and int(refs.max()) >= len(names):
        raise SnapshotError("snapshot terminal customers point past their names")
    cols["terminal_customers"] = np.array(names, dtype=object)[refs]
    fraud = cols["terminal_fraud_at"].astype(object)
    fraud[np.isinf(cols["terminal_fraud_at"])] = None  # restore() reads None as "not fraud"
    cols["terminal_fraud_at"] = fraud
    lists = _grouped(
        cols, "terminal", tcounts, ("times", "txids", "customers", "amounts", "fraud_at")
    )
    terminals = {k: [column[i] for column in lists] for i, k in enumerate(tkeys)}
    pending_keys = cols["pending_keys"]
    if not len(pending_keys) == len(cols["pending_fraud"]) == len(cols["pending_known"]):
        raise SnapshotError("snapshot pending labels do not add up")
    pending = [
        [k, bool(f), known]
        for k, f, known in zip(
            pending_keys,
            cols["pending_fraud"].tolist(),
            cols["pending_known"].tolist(),
            strict=True,
        )
    ]
    state = {
        "version": SNAPSHOT_VERSION,
        "velocity_windows": header["velocity_windows"],
        "label_delay_days": header["label_delay_days"],
        "customers": customers,
        "terminals": terminals,
        "pending": pending,
    }
    return Decoded(state, {keys[i]: int(parts[i]) for i in chosen})


def _sections(data: bytes | bytearray) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and each section (strings as a list, numbers as a numpy array)."""
    view = memoryview(data)
    if bytes(view[: len(MAGIC)]) != MAGIC or len(data) < len(MAGIC) + 4:
        raise SnapshotError("not a payscore feature snapshot")
    at = len(MAGIC)
    (header_len,) = struct.unpack_from("<I", data, at)
    at += 4
    if header_len > MAX_HEADER_BYTES or at + header_len > len(data):
        raise SnapshotError("snapshot header out of bounds")
    try:
        header = json.loads(bytes(view[at : at + header_len]))
    except ValueError as e:
        raise SnapshotError(f"snapshot header is not JSON: {e}") from e
    at += header_len
    if not isinstance(header, dict):
        raise SnapshotError("snapshot header is not an object")
    if header.get("format") != FORMAT_VERSION:
        raise SnapshotError(f"snapshot format {header.get('format')!r} is not {FORMAT_VERSION}")
    if header.get("engine_version") != SNAPSHOT_VERSION:
        raise SnapshotError(f"feature state version {header.get('engine_version')!r}")
    sections = header.get("sections")
    if not isinstance(sections, list) or [s[0] for s in sections] != [n for n, _ in SECTIONS]:
        raise SnapshotError("snapshot sections are not the expected ones")
    cols: dict[str, Any] = {}
    for (name, kind), (_, size, count) in zip(SECTIONS, sections, strict=True):
        if not (isinstance(size, int) and isinstance(count, int)) or size < 0 or count < 0:
            raise SnapshotError(f"snapshot section {name} is malformed")
        if at + size > len(data):
            raise SnapshotError(f"snapshot section {name} runs past the end")
        chunk = view[at : at + size]
        at += size
        values: Any
        if kind == "s":
            values = str(chunk, "utf-8", "surrogatepass").split(_SEP) if count else []
        else:
            if size % np.dtype(kind).itemsize:
                raise SnapshotError(f"snapshot section {name} has a partial value")
            values = np.frombuffer(chunk, dtype=kind)
        if len(values) != count:
            raise SnapshotError(f"snapshot section {name}: {len(values)} values, not {count}")
        cols[name] = values
    if at != len(data):
        raise SnapshotError("snapshot has trailing bytes")
    return header, cols


def _grouped(
    cols: dict[str, Any], prefix: str, counts: np.ndarray, names: tuple[str, ...]
) -> list[list[list[Any]]]:
    """Each named column cut into one list per key, by the keys' counts."""
    total = int(counts.sum(dtype=np.int64))
    arrays = [cols[f"{prefix}_{n}"] for n in names]
    if any(len(values) != total for values in arrays):
        raise SnapshotError(f"snapshot {prefix} columns do not add up")
    ends = np.cumsum(counts, dtype=np.int64).tolist()
    starts = [0, *ends[:-1]] if ends else []
    out = []
    for values in arrays:
        flat = values.tolist() if isinstance(values, np.ndarray) else values
        out.append([flat[a:b] for a, b in zip(starts, ends, strict=True)])
    return out
