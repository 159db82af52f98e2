"""The feature snapshot's bytes: a plain format, never pickle.

A magic line, a length-prefixed JSON header (format version, the engine's settings, each
section's size and count), then fixed sections of little-endian numbers and NUL-joined UTF-8
strings. Anything that does not add up raises ``SnapshotError``. Decoding keeps the columns as
they are (numpy arrays, split strings); ``FeatureEngine.from_columns`` converts each number column
in one call and slices it per customer and terminal, with the garbage collector off
(``quiet_collector``).
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

from payscore.core.features import SNAPSHOT_VERSION, StateColumns

FORMAT_VERSION = 3
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
    ("terminal_ratios", "<f8"),
    ("pending_keys", "s"),
    ("pending_fraud", "<u1"),
    ("pending_known", "<f8"),
)


class SnapshotError(ValueError):
    """A snapshot that cannot be written or trusted; the caller replays in full instead."""


@contextmanager
def quiet_collector() -> Iterator[None]:
    """No garbage collection while millions of objects are built: each full collection would
    walk all of them (a restore of 1M payments' state took 12 s with it, ~1 s without). What
    is alive at the end is frozen (``gc.freeze``), the restored state being long-lived: else
    the first collection after would walk every list just built (0.5 s at 1M payments). The
    consumer's ``stream/heap.settle_heap`` unfreezes, collects and freezes again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


# ------------------------------------------------------------------------------ format


def encode(cols: StateColumns, partitions: Mapping[str, int]) -> bytes:
    """``FeatureEngine.columns()`` output and each customer's partition as bytes."""
    values: dict[str, Any] = {
        name: getattr(cols, name)
        for name, _ in SECTIONS
        if name not in ("customer_partitions", "terminal_customer_names", "terminal_customer_refs")
    }
    values["customer_partitions"] = [partitions.get(k, -1) for k in cols.customer_keys]
    names: dict[str, int] = {}
    values["terminal_customer_refs"] = [
        names.setdefault(c, len(names)) for c in cols.terminal_customers
    ]
    values["terminal_customer_names"] = list(names)
    blobs, sizes = [], []
    for name, kind in SECTIONS:
        column = values[name]
        if kind == "s":
            joined = _SEP.join(column)
            if joined.count(_SEP) != max(len(column) - 1, 0):
                raise SnapshotError(f"a {name} value holds a NUL character")
            blob = joined.encode("utf-8", "surrogatepass")
        else:
            blob = np.asarray(column, dtype=kind).tobytes()
        blobs.append(blob)
        sizes.append([name, len(blob), len(column)])
    header = json.dumps(
        {
            "format": FORMAT_VERSION,
            "engine_version": SNAPSHOT_VERSION,
            "velocity_windows": list(cols.velocity_windows),
            "label_delay_days": cols.label_delay_days,
            "sections": sizes,
        }
    ).encode()
    return b"".join([MAGIC, struct.pack("<I", len(header)), header, *blobs])


@dataclass
class Decoded:
    """``FeatureEngine.from_columns`` input and the partition of each customer in it."""

    columns: StateColumns
    partitions: dict[str, int]


def decode(data: bytes | bytearray, keep: Collection[int] | None = None) -> Decoded:
    """Bytes from ``encode`` back as columns, checked throughout; with ``keep``, only the
    customers of those partitions (terminals and pending labels always whole). Numbers stay
    numpy arrays (``FeatureEngine.from_columns`` converts each in one call)."""
    header, cols = _sections(data)
    keys, parts = cols["customer_keys"], cols["customer_partitions"]
    counts = cols["customer_counts"]
    if not len(keys) == len(parts) == len(counts) or len(set(keys)) != len(keys):
        raise SnapshotError("snapshot customer keys do not match their counts")
    _add_up(cols, "customer", counts, ("times", "amounts"))
    times, amounts = cols["customer_times"], cols["customer_amounts"]
    if keep is not None:
        chosen = np.isin(parts, list(keep))
        rows = np.repeat(chosen, counts)
        keys = [k for k, c in zip(keys, chosen.tolist(), strict=True) if c]
        parts, counts = parts[chosen], counts[chosen]
        times, amounts = times[rows], amounts[rows]
    tkeys, tcounts = cols["terminal_keys"], cols["terminal_counts"]
    if len(tkeys) != len(tcounts) or len(set(tkeys)) != len(tkeys):
        raise SnapshotError("snapshot terminal keys do not match their counts")
    _add_up(
        cols,
        "terminal",
        tcounts,
        ("times", "txids", "customer_refs", "amounts", "fraud_at", "ratios"),
    )
    refs, names = cols["terminal_customer_refs"], cols["terminal_customer_names"]
    if len(refs) and int(refs.max()) >= len(names):
        raise SnapshotError("snapshot terminal customers point past their names")
    pending_keys = cols["pending_keys"]
    if not len(pending_keys) == len(cols["pending_fraud"]) == len(cols["pending_known"]):
        raise SnapshotError("snapshot pending labels do not add up")
    columns = StateColumns(
        velocity_windows=header["velocity_windows"],
        label_delay_days=header["label_delay_days"],
        customer_keys=keys,
        customer_counts=counts,
        customer_times=times,
        customer_amounts=amounts,
        terminal_keys=tkeys,
        terminal_counts=tcounts,
        terminal_times=cols["terminal_times"],
        terminal_txids=cols["terminal_txids"],
        # Each card's name once: the payments share its string, as in the running engine.
        terminal_customers=np.array(names, dtype=object)[refs].tolist(),
        terminal_amounts=cols["terminal_amounts"],
        terminal_fraud_at=cols["terminal_fraud_at"],
        terminal_ratios=cols["terminal_ratios"],
        pending_keys=pending_keys,
        pending_fraud=cols["pending_fraud"].astype(bool),
        pending_known=cols["pending_known"],
    )
    return Decoded(columns, dict(zip(keys, parts.tolist(), strict=True)))


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


def _add_up(cols: dict[str, Any], prefix: str, counts: np.ndarray, names: tuple[str, ...]) -> None:
    """``SnapshotError`` unless each named column holds as many values as the counts say."""
    total = int(counts.sum(dtype=np.int64))
    if any(len(cols[f"{prefix}_{n}"]) != total for n in names):
        raise SnapshotError(f"snapshot {prefix} columns do not add up")
