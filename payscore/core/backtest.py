"""Backtesting: score a file of payments with the production Scorer, offline.

Input is CSV (a header of Payment field names, optionally ``is_fraud``) or JSON lines (one
message per line, as on the topic). Every row passes ``parse_payment``; rows it rejects, and
repeated transaction ids, are reported with their line number instead of stopping the run.
Valid payments are scored in event-time order (stable), in batches, by ``Scorer.score_batch``.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from payscore.core.decision import STATUSES, Decision
from payscore.core.schema import MAX_MESSAGE_BYTES, InvalidMessage, Payment, parse_payment
from payscore.errors import InputError

if TYPE_CHECKING:
    from payscore.core.scoring import Scorer

# 256 MiB (about 3.5M payments, ~1.3 KB each in memory): payments are held to sort them;
# the whole handbook world (1.75M payments, ~130 MB of CSV) fits.
MAX_INPUT_BYTES = 256 << 20
REQUIRED_COLUMNS = (
    "transaction_id",
    "customer_id",
    "terminal_id",
    "amount",
    "currency",
    "event_time",
)
PAYMENT_COLUMNS = tuple(Payment.model_fields)
LABEL_COLUMN = "is_fraud"
OUTPUT_HEADER = ("transaction_id", "score", "status", "reason_codes")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


@dataclass(frozen=True)
class Rejected:
    """An input row that was not scored: its line, and why (as a dead letter would say)."""

    line: int
    kind: str  # an InvalidMessage kind, or "duplicate"
    field: str | None
    message: str


@dataclass
class InputFile:
    """What a backtest input file held: valid payments, their labels, and rejected rows."""

    payments: list[Payment] = field(default_factory=list)
    labels: dict[str, bool] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    bad_labels: int = 0


def parse_label(value: Any) -> bool | None:
    """``is_fraud`` as a bool: 1/0, true/false, yes/no; None when blank or unreadable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def check_file(path: str | Path, max_bytes: int) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file {str(p)!r} does not exist or is not a file")
    size = p.stat().st_size
    if size > max_bytes:
        raise InputError(f"{p} is {size:,} bytes; the limit is {max_bytes:,}")
    return p


def check_output(path: str | Path) -> Path:
    """Fail before the work, not after it, when an output file cannot be created."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"cannot write {p}: it is a directory")
    if not p.absolute().parent.is_dir():
        raise InputError(f"cannot write {p}: directory {p.absolute().parent} does not exist")
    return p


def detect_format(path: Path) -> str:
    """ "csv" or "jsonl": by suffix, else by the first non-blank byte ("{" means JSON lines)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    return "jsonl" if head.startswith(b"{") else "csv"


def read_input(path: str | Path, max_bytes: int = MAX_INPUT_BYTES) -> InputFile:
    """Read and validate every row of a CSV or JSON-lines file, streaming."""
    p = check_file(path, max_bytes)
    out = InputFile()
    seen: dict[str, int] = {}
    rows = _csv_rows(p) if detect_format(p) == "csv" else _jsonl_rows(p)
    for line, result, label in rows:
        if isinstance(result, InvalidMessage):
            out.rejected.append(Rejected(line, result.kind, result.field, result.message))
            continue
        first = seen.get(result.transaction_id)
        if first is not None:
            message = f"transaction_id {result.transaction_id!r} already seen on line {first}"
            out.rejected.append(Rejected(line, "duplicate", "transaction_id", message))
            continue
        seen[result.transaction_id] = line
        out.payments.append(result)
        if label is not None:
            flag = parse_label(label)
            if flag is None:
                out.bad_labels += 1
            else:
                out.labels[result.transaction_id] = flag
    return out


Row = tuple[int, Payment | InvalidMessage, Any]


def _csv_rows(path: Path) -> Iterator[Row]:
    # utf-8-sig: spreadsheets often start a CSV with a byte-order mark.
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames or []
        except csv.Error as e:
            raise InputError(f"{path}: cannot read the CSV header: {e}") from e
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise InputError(
                f"{path}: not a payments file; the header lacks {', '.join(missing)} "
                "(columns are the message field names, see docs/messages.md)"
            )
        has_label = LABEL_COLUMN in header
        try:
            for row in reader:
                yield reader.line_num, _parse_row(row), row.get(LABEL_COLUMN) if has_label else None
        except csv.Error as e:
            raise InputError(f"{path}, line {reader.line_num}: malformed CSV: {e}") from e


def _parse_row(row: Mapping[str, Any]) -> Payment | InvalidMessage:
    body = {}
    for name in PAYMENT_COLUMNS:
        value = row.get(name)
        if not isinstance(value, str) or value == "":
            continue  # blank optional field -> null; blank required field -> "is required"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return InvalidMessage("encoding", name, f"{name}: not valid UTF-8")
        body[name] = value
    return parse_payment(json.dumps(body).encode("utf-8"))


def _jsonl_rows(path: Path) -> Iterator[Row]:
    too_long = InvalidMessage(
        "too_large", None, f"line is longer than the {MAX_MESSAGE_BYTES:,}-byte message limit"
    )
    with path.open("rb") as f:
        for number, raw in enumerate(_bounded_lines(f), start=1):
            if raw is None:
                yield number, too_long, None
                continue
            line = raw.strip()
            if not line:
                continue
            result = parse_payment(line)
            label = None
            if b'"is_fraud"' in line and isinstance(result, Payment):
                label = json.loads(line).get(LABEL_COLUMN)
            yield number, result, label


def _bounded_lines(f: IO[bytes]) -> Iterator[bytes | None]:
    """Lines of a binary file, never reading more than a message into memory; None for a
    line too long to be a message (the rest of it is skipped)."""
    limit = MAX_MESSAGE_BYTES + 2  # room for "\r\n"
    while True:
        line = f.readline(limit)
        if not line:
            return
        if len(line) == limit and not line.endswith(b"\n"):
            rest = line
            while rest and not rest.endswith(b"\n"):
                rest = f.readline(1 << 16)
            yield None
        else:
            yield line


def read_labels(path: str | Path, max_bytes: int = MAX_INPUT_BYTES) -> dict[str, bool]:
    """A labels CSV with columns transaction_id and is_fraud."""
    p = check_file(path, max_bytes)
    labels: dict[str, bool] = {}
    with p.open("r", encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if "transaction_id" not in header or LABEL_COLUMN not in header:
            raise InputError(f"{p}: a labels file needs the columns transaction_id,is_fraud")
        try:
            for row in reader:
                flag = parse_label(row.get(LABEL_COLUMN))
                if flag is None:
                    raise InputError(f"{p}, line {reader.line_num}: is_fraud must be 0 or 1")
                labels[row["transaction_id"]] = flag
        except csv.Error as e:
            raise InputError(f"{p}, line {reader.line_num}: malformed CSV: {e}") from e
    return labels


def event_order(payments: Sequence[Payment]) -> list[Payment]:
    """Payments sorted by event time; ties keep their input order (the sort is stable)."""
    return sorted(payments, key=lambda p: p.event_time)


def feed_labels(scorer: Scorer, payments: Sequence[Payment], labels: Mapping[str, bool]) -> int:
    """Give the engine each label as known ``label_delay_days`` after its payment.

    The engine uses a label only for payments at or after the time it became known, so the
    backtest sees terminal risk as production would with chargebacks arriving that late.
    """
    delay = timedelta(days=scorer.engine.label_delay_days)
    fed = 0
    for p in payments:
        flag = labels.get(p.transaction_id)
        if flag is not None:
            scorer.engine.add_label(p.transaction_id, flag, (p.event_time + delay).timestamp())
            fed += 1
    return fed


def run_backtest(
    scorer: Scorer, payments: Sequence[Payment], batch_size: int = 500
) -> list[Decision]:
    """Score payments (already in event-time order) in batches, as the consumer would."""
    decisions: list[Decision] = []
    for start in range(0, len(payments), batch_size):
        decisions.extend(scorer.score_batch(payments[start : start + batch_size]))
    return decisions


def write_decisions(path: str | Path, decisions: Sequence[Decision]) -> int:
    """CSV of transaction_id, score, status, reason_codes (comma-separated, quoted)."""
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(OUTPUT_HEADER)
            for d in decisions:
                writer.writerow((d.transaction_id, f"{d.score:.6f}", d.status, ",".join(d.reasons)))
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from e
    return len(decisions)


def status_confusion(
    decisions: Sequence[Decision], labels: Mapping[str, bool]
) -> dict[str, dict[bool, int]]:
    """Per status, how many labelled payments were fraud (True) and genuine (False)."""
    counts = Counter(
        (d.status, labels[d.transaction_id]) for d in decisions if d.transaction_id in labels
    )
    return {s: {True: counts[(s, True)], False: counts[(s, False)]} for s in STATUSES}
