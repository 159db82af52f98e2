"""Where ``payscore produce`` gets payments: the handbook's simulated world or a file.

Each source yields ``SourceItem`` (a payment and, when known, its fraud label) in event-time
order; kept apart from ``producer.py`` so reading inputs and sending to Kafka change separately.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from payscore.core.paymentfile import PaymentFile, Progress, RejectedRow
from payscore.core.schema import Payment
from payscore.errors import InputError

DEFAULT_START = datetime(2018, 8, 1, tzinfo=timezone.utc)  # after the training weeks


@dataclass(frozen=True)
class SourceItem:
    payment: Payment
    is_fraud: bool | None = None


def simulated_source(
    start: datetime = DEFAULT_START, loop: bool = True, world: Any = None
) -> Iterator[SourceItem]:
    """The handbook world from ``start`` in event-time order, with its fraud labels.

    With ``loop`` the world repeats after its last day, shifted in time by the world's span and
    with transaction ids prefixed ``L<n>-`` so repeats are new payments, not duplicates.
    """
    from payscore.core import simulator

    df = simulator.load_world() if world is None else world
    since = (start.astimezone(timezone.utc) - simulator.START).total_seconds()
    # The handbook world has a few amounts that round to 0.00, which no payment may carry.
    df = df[(df["TX_TIME_SECONDS"] >= since) & (df["TX_AMOUNT"] > 0)]
    if df.empty:
        raise InputError(f"the simulated world has no payments after {start.isoformat()}")
    span = timedelta(days=simulator.N_DAYS) - timedelta(seconds=max(since, 0.0))
    frauds = df["TX_FRAUD"].to_numpy().tolist()
    lap = 0
    while True:
        for payment, fraud in zip(simulator.iter_payments(df), frauds, strict=True):
            if lap:
                payment = payment.model_copy(
                    update={
                        "transaction_id": f"L{lap}-{payment.transaction_id}",
                        "event_time": payment.event_time + lap * span,
                    }
                )
            yield SourceItem(payment, bool(fraud))
        if not loop:
            return
        lap += 1


class FileSource:
    """Payments from a CSV or JSON-lines file, read by ``core.paymentfile`` (the reader of
    ``train --data`` and ``score``): bad rows are skipped and collect in ``rejected``."""

    def __init__(self, path: str | Path, progress: Progress | None = None) -> None:
        self.file = PaymentFile(path, progress=progress)

    def __iter__(self) -> Iterator[SourceItem]:
        for row in self.file:
            yield SourceItem(row.payment, row.is_fraud)

    @property
    def rejected(self) -> list[RejectedRow]:
        return self.file.rejected


def read_payments_file(path: str | Path, progress: Progress | None = None) -> FileSource:
    """Payments from CSV (header of Payment field names) or JSON lines; optional is_fraud."""
    return FileSource(path, progress)
