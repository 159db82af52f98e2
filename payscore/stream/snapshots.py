"""Feature-state snapshots: taken at a batch boundary, restored on assignment.

A snapshot is the engine's state when every batch in hand is written (the writer drained), so
it covers exactly the committed decisions: the stored offsets of the owned partitions, every
``scored_transactions`` row up to ``max_id``, other consumers' rows up to ``others_cursor``
and label events up to ``label_cursor``. Restoring it and replaying only the rows after those
marks gives the state a full rebuild would (docs/pipeline.md).

The bytes are a plain format, never pickle: a magic line, a length-prefixed JSON header, then
fixed sections of little-endian numbers and NUL-joined UTF-8 strings. Anything that does not
add up (sizes, counts, version, engine settings) raises ``SnapshotError`` and the consumer
falls back to the full replay.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import numpy as np
from sqlalchemy import Engine

from payscore.core.features import SNAPSHOT_VERSION, FeatureEngine
from payscore.errors import PayscoreError
from payscore.store import snapshots as store
from payscore.store.writer import stored_offsets, utcnow

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAGIC = b"PAYSCORE-FEATURE-STATE\n"
MAX_HEADER_BYTES = 65_536
_SEP = "\x00"
# (name, kind): "s" NUL-joined strings, else a numpy dtype; order is the format.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("customer_keys", "s"),
    ("customer_counts", "<u4"),
    ("customer_times", "<f8"),
    ("customer_amounts", "<f8"),
    ("terminal_keys", "s"),
    ("terminal_counts", "<u4"),
    ("terminal_times", "<f8"),
    ("terminal_txids", "s"),
    ("terminal_customers", "s"),
    ("terminal_amounts", "<f8"),
    ("terminal_fraud_at", "<f8"),
    ("pending_keys", "s"),
    ("pending_fraud", "<u1"),
    ("pending_known", "<f8"),
)


class SnapshotError(ValueError):
    """A snapshot that cannot be written or trusted; the caller replays in full instead."""


# ------------------------------------------------------------------------------ format


def encode(state: dict[str, Any]) -> bytes:
    """``FeatureEngine.snapshot()`` output as bytes (see the module docstring)."""
    customers, terminals = state["customers"], state["terminals"]
    cols: dict[str, Any] = {
        "customer_keys": list(customers),
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


def decode(data: bytes) -> dict[str, Any]:
    """Bytes from ``encode`` back into ``FeatureEngine.restore`` input, checked throughout."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise SnapshotError("not a payscore feature snapshot")
    at = len(MAGIC)
    (header_len,) = struct.unpack_from("<I", data, at)
    at += 4
    if header_len > MAX_HEADER_BYTES or at + header_len > len(data):
        raise SnapshotError("snapshot header out of bounds")
    try:
        header = json.loads(data[at : at + header_len])
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
    cols: dict[str, list[Any]] = {}
    for (name, kind), (_, size, count) in zip(SECTIONS, sections, strict=True):
        if not (isinstance(size, int) and isinstance(count, int)) or size < 0 or count < 0:
            raise SnapshotError(f"snapshot section {name} is malformed")
        if at + size > len(data):
            raise SnapshotError(f"snapshot section {name} runs past the end")
        chunk = data[at : at + size]
        at += size
        if kind == "s":
            values: list[Any] = chunk.decode("utf-8", "surrogatepass").split(_SEP) if count else []
        else:
            if size % np.dtype(kind).itemsize:
                raise SnapshotError(f"snapshot section {name} has a partial value")
            values = np.frombuffer(chunk, dtype=kind).tolist()
        if len(values) != count:
            raise SnapshotError(f"snapshot section {name}: {len(values)} values, not {count}")
        cols[name] = values
    if at != len(data):
        raise SnapshotError("snapshot has trailing bytes")
    return {
        "version": SNAPSHOT_VERSION,
        "velocity_windows": header["velocity_windows"],
        "label_delay_days": header["label_delay_days"],
        "customers": _grouped(cols, "customer", ("times", "amounts")),
        "terminals": _grouped(
            cols, "terminal", ("times", "txids", "customers", "amounts", "fraud_at")
        ),
        "pending": [
            [k, bool(f), known]
            for k, f, known in zip(
                cols["pending_keys"], cols["pending_fraud"], cols["pending_known"], strict=True
            )
        ],
    }


def _grouped(cols: dict[str, list[Any]], prefix: str, names: Sequence[str]) -> dict[str, Any]:
    keys, counts = cols[f"{prefix}_keys"], cols[f"{prefix}_counts"]
    if len(keys) != len(counts) or len(set(keys)) != len(keys):
        raise SnapshotError(f"snapshot {prefix} keys do not match their counts")
    total = sum(counts)
    lists = [cols[f"{prefix}_{n}"] for n in names]
    if any(len(values) != total for values in lists):
        raise SnapshotError(f"snapshot {prefix} columns do not add up")
    if prefix == "terminal":  # stored as inf; restore() reads None as "not fraud"
        lists[-1] = [None if f == np.inf else f for f in lists[-1]]
    ends = list(accumulate(counts))
    out = {}
    for key, end, n in zip(keys, ends, counts, strict=True):
        out[key] = [values[end - n : end] for values in lists]
    return out


# ----------------------------------------------------------------------------- keeper


@dataclass(frozen=True)
class Covers:
    """What a snapshot covers: see the module docstring."""

    offsets: dict[int, int]
    max_id: int
    others_cursor: int
    label_cursor: int

    def as_json(self) -> dict[str, Any]:
        return {
            "offsets": {str(p): o for p, o in self.offsets.items()},
            "max_id": self.max_id,
            "others_cursor": self.others_cursor,
            "label_cursor": self.label_cursor,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Covers:
        try:
            return cls(
                {int(p): int(o) for p, o in data["offsets"].items()},
                int(data["max_id"]),
                int(data["others_cursor"]),
                int(data["label_cursor"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SnapshotError(f"snapshot coverage is malformed: {e!r}") from e


@dataclass
class Restored:
    engine: FeatureEngine
    covers: Covers
    snapshot_id: int


class SnapshotKeeper:
    """Takes a snapshot at most every ``interval_s`` and finds a usable one on assignment."""

    def __init__(
        self,
        db: Engine,
        group: str,
        topic: str,
        interval_s: float,
        max_bytes: int,
        drain: Callable[[], bool],
    ) -> None:
        self.db = db
        self.group = group
        self.topic = topic
        self.interval_s = interval_s
        self.max_bytes = max_bytes
        self.drain = drain
        self._last = time.monotonic()
        self.last_size = 0  # bytes of the last snapshot written (logs, benchmark)
        self.last_pause_s = 0.0  # the poll loop's share of the last snapshot
        self._saving: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0

    def due(self) -> bool:
        return self.enabled and time.monotonic() - self._last >= self.interval_s

    def take(
        self, engine: FeatureEngine, owned: Collection[int], label_cursor: int, others_cursor: int
    ) -> int:
        """Snapshot ``engine`` once the batches in hand are written; returns the others' cursor
        it may advance to (rows up to it that are not ours are all read).

        Only the drain, the coverage reads and the copy of the state run here, on the poll
        loop; encoding and saving run in a thread (``wait`` joins it). A snapshot still being
        saved makes this one skip."""
        self._last = time.monotonic()
        if self._saving is not None and self._saving.is_alive():
            return others_cursor
        if not owned or not self.drain():
            return others_cursor
        started = time.monotonic()
        stored = stored_offsets(self.db, self.group, self.topic)
        max_id = store.newest_row_id(self.db)
        first = store.first_other_row(self.db, self.topic, owned, others_cursor, max_id)
        others_cursor = max_id if first is None else max(others_cursor, first - 1)
        covers = Covers(
            {p: stored[p] for p in owned if p in stored}, max_id, others_cursor, label_cursor
        )
        state = engine.snapshot()  # a copy: the engine moves on while it is saved
        self.last_pause_s = time.monotonic() - started
        self._saving = threading.Thread(
            target=self._save,
            args=(state, set(owned), covers, started),
            name="feature-snapshot",
            daemon=True,  # killed with the process: an unfinished save is rolled back
        )
        self._saving.start()
        return others_cursor

    def wait(self) -> None:
        """Until the snapshot being saved (if any) is saved or given up."""
        if self._saving is not None:
            self._saving.join()

    def _save(self, state: dict[str, Any], owned: set[int], covers: Covers, started: float) -> None:
        try:
            data = encode(state)
            if len(data) > self.max_bytes:
                raise SnapshotError(f"{len(data)} bytes, over snapshot_max_bytes {self.max_bytes}")
            snap_id = store.save(
                self.db,
                self.group,
                self.topic,
                owned,
                FORMAT_VERSION,
                covers.as_json(),
                data,
                utcnow(),
            )
        except (SnapshotError, PayscoreError) as e:  # the next interval tries again
            log.warning("feature snapshot not written: %s", e)
            return
        self.last_size = len(data)
        log.info(
            "feature snapshot %d written: %d customers, %d terminals, %d bytes in %.2f s "
            "(%.2f s of it on the poll loop)",
            snap_id,
            len(state["customers"]),
            len(state["terminals"]),
            len(data),
            time.monotonic() - started,
            self.last_pause_s,
        )

    def restore(self, owned: Collection[int], fresh: FeatureEngine) -> Restored:
        """The newest usable snapshot of exactly ``owned`` as an engine; ``SnapshotError``
        says why there is none (the caller logs it and replays in full)."""
        try:
            stored = store.load_newest(self.db, self.group, self.topic, owned, self.max_bytes)
        except ValueError as e:
            raise SnapshotError(str(e)) from e
        if stored is None:
            raise SnapshotError("none stored for these partitions")
        if stored.format_version != FORMAT_VERSION:
            raise SnapshotError(f"snapshot {stored.id} has format {stored.format_version}")
        covers = Covers.from_json(stored.covers)
        offsets = stored_offsets(self.db, self.group, self.topic)
        ahead = [p for p, o in covers.offsets.items() if o > offsets.get(p, -1)]
        if ahead or set(covers.offsets) - set(owned):
            raise SnapshotError(f"snapshot {stored.id} is ahead of the stored offsets")
        try:
            engine = FeatureEngine.restore(decode(stored.data))
        except (KeyError, TypeError, ValueError) as e:
            raise SnapshotError(f"snapshot {stored.id} is unreadable: {e}") from e
        if (engine.velocity_windows, engine.label_delay_days) != (
            fresh.velocity_windows,
            fresh.label_delay_days,
        ):
            raise SnapshotError(f"snapshot {stored.id} was taken with other feature settings")
        return Restored(engine, covers, stored.id)
