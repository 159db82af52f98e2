"""Which terminal holds each payment of a restored feature state, without a dict of them all.

A late fraud label names only its transaction, so the engine keeps an index from transaction
to terminal. Building a dict of every payment was half of a restore's time (4 s of 8 at 5M
payments). This index sorts the transaction ids' string hashes once instead (1.2-1.7 s at 5M,
two 8-byte numbers a payment) and searches them on a lookup. The hashing and the sort run in a
thread of their own, started with the restore: numpy's sort releases the interpreter lock, so
it overlaps the rest of the restore instead of adding to it; the first lookup waits for it.
Its entries are never removed: the engine confirms a payment is still in its terminal's
history before using it, and drops the whole index once every restored payment has aged out.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np


class RestoredTxIndex:
    """Payment -> terminal for the payments of a restored state, fixed at restore.

    ``txids`` are the payments in terminal order: ``counts[i]`` of them for ``keys[i]``, one
    terminal after the other (``StateColumns``). Where an id occurs more than once the last
    occurrence wins, as it does in a dict built from the same order."""

    __slots__ = ("_txids", "_keys", "_ends", "_hashes", "_order", "_built", "newest")

    def __init__(
        self, txids: list[str], keys: list[str], counts: Sequence[int], newest: float
    ) -> None:
        """``txids`` must not change afterwards: the index is built from it in a thread."""
        self._txids, self._keys = txids, keys
        self._ends = np.cumsum(np.asarray(counts, dtype=np.int64))
        self.newest = newest  # the newest event time among these payments (epoch seconds)
        self._built = threading.Thread(target=self._build, name="restored-tx-index", daemon=True)
        self._built.start()

    def _build(self) -> None:
        hashes = np.fromiter(map(hash, self._txids), dtype=np.int64, count=len(self._txids))
        order = np.argsort(hashes)
        self._hashes, self._order = hashes[order], order

    def __len__(self) -> int:
        return len(self._txids)

    def terminal_of(self, txid: str) -> str | None:
        """The terminal the payment was restored in, or None if it was not restored."""
        self._built.join()  # at once after the first lookup
        h = hash(txid)
        hashes, n = self._hashes, len(self._hashes)
        i = int(np.searchsorted(hashes, h))
        found = -1
        while i < n and hashes[i] == h:
            pos = int(self._order[i])
            if pos > found and self._txids[pos] == txid:
                found = pos
            i += 1
        if found < 0:
            return None
        return self._keys[int(np.searchsorted(self._ends, found, side="right"))]
