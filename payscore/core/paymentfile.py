"""Payment files (CSV or JSON lines): the one reader behind ``train --data``, ``score`` and
``produce --from``.

Every row passes ``parse_payment``, the consumer's own gate, so a file row is accepted exactly
when the same payment sent as a message would be. A repeated transaction id and an unreadable
``is_fraud`` are rejected too. Rejected rows never stop the reading: each becomes a
``RejectedRow`` with its file line number, field and reason; only a file that cannot be read
at all (missing, too big, not UTF-8, no payment header) is an ``InputError``. See
docs/messages.md.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from payscore.core.schema import MAX_MESSAGE_BYTES, InvalidMessage, Payment, parse_payment
from payscore.errors import InputError

Progress = Callable[[str, int, int | None], None]
"""Called as ``progress(stage, done, total)``; ``total`` is None when it is not known."""

# 256 MiB (about 3.5M payments; ~1.3 KB each when held as Payment objects): score holds the
# payments to sort them, train holds their columns; the whole handbook world (1.75M payments,
# ~130 MB of CSV) fits.
MAX_INPUT_BYTES = 256 << 20
PAYMENT_COLUMNS = tuple(Payment.model_fields)
REQUIRED_COLUMNS = tuple(name for name, f in Payment.model_fields.items() if f.is_required())
LABEL_COLUMN = "is_fraud"
_TRUE = {"1", "true", "yes", "y", "t", "1.0"}
_FALSE = {"0", "false", "no", "n", "f", "0.0"}
_JSON_SUFFIXES = {".jsonl", ".ndjson", ".json"}
_REPORT_EVERY = 2_000  # rows between progress calls


@dataclass(frozen=True)
class RejectedRow:
    """A row that was not accepted: its file line, and why (as a dead letter would say)."""

    line: int
    kind: str  # an InvalidMessage kind ("too_large", "encoding", "json", "schema"), "duplicate"
    field: str | None
    message: str


@dataclass(frozen=True)
class Row:
    """An accepted row: its file line, the payment, and its label (None when blank/absent)."""

    line: int
    payment: Payment
    is_fraud: bool | None


def parse_label(value: Any) -> bool | None:
    """``is_fraud`` as a bool: 1/0, true/false, yes/no (any case); None when unreadable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def check_file(path: str | Path, max_bytes: int = MAX_INPUT_BYTES) -> Path:
    """The path, if it is a readable file within ``max_bytes``; else an InputError."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file {str(p)!r} does not exist or is not a file")
    size = p.stat().st_size
    if size > max_bytes:
        raise InputError(
            f"{p} is {size:,} bytes; the limit is {max_bytes:,} (split the file into parts)"
        )
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
    if suffix in _JSON_SUFFIXES:
        return "jsonl"
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    return "jsonl" if head.startswith(b"{") else "csv"


class PaymentFile:
    """Iterating yields the accepted ``Row``s in file order; rejected rows collect in
    ``rejected`` as the reading goes. Iterate once."""

    def __init__(
        self,
        path: str | Path,
        max_bytes: int = MAX_INPUT_BYTES,
        progress: Progress | None = None,
    ) -> None:
        self.path = check_file(path, max_bytes)
        self.format = detect_format(self.path)
        self.rejected: list[RejectedRow] = []
        self.accepted = 0
        self.has_labels = False  # the file has an is_fraud column (CSV) or key (JSON lines)
        self._progress = progress

    def __iter__(self) -> Iterator[Row]:
        seen: dict[str, int] = {}
        total = None
        if self._progress is not None:  # lines, less the header: rows, unless a cell holds one
            total = count_lines(self.path) - (self.format == "csv")
        rows = _csv_rows(self) if self.format == "csv" else _jsonl_rows(self)
        read = 0
        for line, result, label in rows:
            read += 1
            if self._progress is not None and read % _REPORT_EVERY == 0:
                self._progress("reading payments", read, max(total or 0, read))
            if isinstance(result, InvalidMessage):
                self.rejected.append(RejectedRow(line, result.kind, result.field, result.message))
                continue
            flag = parse_label(label)
            if label is not None and label != "" and flag is None:
                shown = str(label)[:20]
                message = f"is_fraud: must be 0/1, true/false or yes/no, got {shown!r}"
                self.rejected.append(RejectedRow(line, "schema", LABEL_COLUMN, message))
                continue
            first = seen.get(result.transaction_id)
            if first is not None:
                message = f"transaction_id {result.transaction_id!r} already seen on line {first}"
                self.rejected.append(RejectedRow(line, "duplicate", "transaction_id", message))
                continue
            seen[result.transaction_id] = line
            self.accepted += 1
            yield Row(line, result, flag)
        if self._progress is not None:
            self._progress("reading payments", read, read)

    def nothing_usable(self) -> InputError:
        """The error when no row was accepted."""
        return nothing_usable(self.path, self.rejected)


def nothing_usable(path: str | Path, rejected: Sequence[RejectedRow]) -> InputError:
    """ "x.csv: no usable payments; all 3 rows rejected (2 schema, 1 duplicate)"."""
    if not rejected:
        return InputError(f"{path} holds no payments")
    kinds = Counter(r.kind for r in rejected)
    detail = ", ".join(f"{n:,} {kind}" for kind, n in kinds.most_common())
    return InputError(
        f"{path}: no usable payments; all {plural(len(rejected), 'row')} rejected ({detail})"
    )


def plural(n: int, word: str) -> str:
    """ "1 row", "2 rows", "1,000 rows"."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


Line = tuple[int, Payment | InvalidMessage, Any]


def count_lines(path: Path) -> int:
    """Lines in the file (an upper bound of its rows), for a progress total."""
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def _check_utf8_start(path: Path) -> None:
    """A header that is not UTF-8 means the whole file is in another encoding: say so once,
    instead of rejecting every row."""
    with path.open("rb") as f:
        first = f.readline(1 << 16)
    if first.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{path}: not a payments file: it is UTF-16 text; save it as UTF-8")
    complete = first.endswith(b"\n") or len(first) < 1 << 16
    try:  # an incomplete line may end inside a character: not an error
        codecs.getincrementaldecoder("utf-8")().decode(first, final=complete)
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: not a payments file: line 1 is not UTF-8 text (byte {e.start + 1}); "
            "save the file as UTF-8"
        ) from None


def _csv_rows(file: PaymentFile) -> Iterator[Line]:
    path = file.path
    _check_utf8_start(path)
    # utf-8-sig: spreadsheets often start a CSV with a byte-order mark. surrogateescape: a row
    # with bad bytes is rejected on its own (kind "encoding"), not the whole file.
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames or []
        except csv.Error as e:
            raise InputError(f"{path}: cannot read the CSV header: {e}") from e
        if not header:
            raise InputError(f"{path} is empty: no header and no payments")
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise InputError(
                f"{path}: not a payments file; the header lacks column(s) {', '.join(missing)} "
                "(columns are the message field names, see docs/messages.md)"
            )
        file.has_labels = LABEL_COLUMN in header
        try:
            for row in reader:
                label = row.get(LABEL_COLUMN) if file.has_labels else None
                yield reader.line_num, _parse_row(row, len(header)), label
        except csv.Error as e:
            raise InputError(f"{path}, line {reader.line_num}: malformed CSV: {e}") from e


def _parse_row(row: Mapping[Any, Any], columns: int) -> Payment | InvalidMessage:
    extra = row.get(None)
    if extra:
        return InvalidMessage(
            "schema", None, f"row has {columns + len(extra)} values; the header has {columns}"
        )
    # A blank optional cell is null; a blank required one is then "is required".
    body = {name: value for name in PAYMENT_COLUMNS if (value := row.get(name))}
    try:  # any byte that is not UTF-8, in any column, rejects the row, as it would a message
        "".join(v for v in row.values() if isinstance(v, str)).encode("utf-8")
    except UnicodeEncodeError:
        name = next(k for k, v in row.items() if isinstance(v, str) and not _is_utf8(v))
        return InvalidMessage("encoding", name, f"{name}: not valid UTF-8")
    return parse_payment(json.dumps(body).encode("utf-8"))


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _jsonl_rows(file: PaymentFile) -> Iterator[Line]:
    too_long = InvalidMessage(
        "too_large", None, f"line is longer than the {MAX_MESSAGE_BYTES:,}-byte message limit"
    )
    with file.path.open("rb") as f:
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
                file.has_labels = True
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
