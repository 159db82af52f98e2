"""Where ``payscore produce`` gets payments: the handbook's simulated world or a file.

Each source yields ``SourceItem`` (a payment and, when known, its fraud label) in event-time
order; kept apart from ``producer.py`` so reading inputs and sending to Kafka change separately.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from payscore.core.schema import MAX_MESSAGE_BYTES, InvalidMessage, Payment, parse_payment
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


def read_payments_file(path: str | Path) -> Iterator[SourceItem]:
    """Payments from CSV (header of Payment field names) or JSON lines; optional is_fraud."""
    file = Path(path)
    try:
        handle = open(file, encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as e:
        raise InputError(f"cannot read {file}: {e.strerror or e}") from e
    with handle:
        try:
            first = handle.read(1)
            handle.seek(0)
            if file.suffix.lower() == ".csv" or (
                file.suffix.lower() not in _JSON_SUFFIXES and first not in ("{", "")
            ):
                yield from _read_csv(handle, file)
            else:
                yield from _read_jsonl(handle, file)
        except UnicodeDecodeError as e:
            raise InputError(f"{file} is not UTF-8 text (byte {e.start})") from e


_JSON_SUFFIXES = {".jsonl", ".json", ".ndjson"}


def _item(row: dict[str, Any], file: Path, line: int) -> SourceItem:
    fraud_raw = row.pop("is_fraud", None)
    raw = json.dumps(row).encode()
    parsed = parse_payment(raw)
    if isinstance(parsed, InvalidMessage):
        raise InputError(f"{file}:{line}: {parsed.message}")
    return SourceItem(parsed, _to_bool(fraud_raw, file, line))


def _to_bool(value: Any, file: Path, line: int) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes"}:
        return True
    if text in {"0", "false", "no"}:
        return False
    raise InputError(f"{file}:{line}: is_fraud must be 0/1 or true/false, got {text[:20]!r}")


def _read_csv(handle: Any, file: Path) -> Iterator[SourceItem]:
    reader = csv.DictReader(handle)
    if not reader.fieldnames or "transaction_id" not in reader.fieldnames:
        raise InputError(f"{file}: a CSV needs a header row with the payment field names")
    for row in reader:
        if None in row:
            raise InputError(f"{file}:{reader.line_num}: more values than header columns")
        clean = {k: v for k, v in row.items() if v not in ("", None)}
        yield _item(clean, file, reader.line_num)


def _read_jsonl(handle: Any, file: Path) -> Iterator[SourceItem]:
    for number, text in enumerate(handle, start=1):
        if len(text) > MAX_MESSAGE_BYTES:
            raise InputError(f"{file}:{number}: line longer than {MAX_MESSAGE_BYTES} characters")
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{file}:{number}: invalid JSON ({e.msg})") from e
        if not isinstance(row, dict):
            raise InputError(f"{file}:{number}: each line must be a JSON object")
        yield _item(row, file, number)
