"""One reader of payment files: train --data, score and produce --from accept and reject the
same rows (by file line), with the consumer's rules, and say which line and column is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from payscore.core import backtest, paymentfile, training
from payscore.core.simulator import generate_world, write_csv
from payscore.errors import InputError
from payscore.stream import sources

HEADER = "transaction_id,customer_id,terminal_id,amount,currency,event_time,is_fraud"
WHEN = "2018-04-02T00:00:00+00:00"

# (transaction id, the row's text, the field its rejection names; None: accepted)
CATALOGUE = [
    ("b01", "b01,c,t,5.00,EUR,2018-04-02T00:00:00,0", "event_time"),  # naive time
    ("b02", "b02,c,t,5.00,EUR,9999-01-01T00:00:00+00:00,0", "event_time"),  # year 9999
    ("b03", f"b03,c,t,inf,EUR,{WHEN},0", "amount"),
    ("b04", f"b04,c,t,1e308,EUR,{WHEN},0", "amount"),
    ("b05", f"b05,c,t,NaN,EUR,{WHEN},0", "amount"),
    ("b06", f"b06,c,t,12.345,EUR,{WHEN},0", "amount"),  # more than 2 decimals
    ("b07", f"b07,c,t,1000000.01,EUR,{WHEN},0", "amount"),  # above the message cap
    ("b08", f"b08,c,t,-5.00,EUR,{WHEN},0", "amount"),
    ("b09", f"b09,c,t,0.00,EUR,{WHEN},0", "amount"),
    ("b10", f"b10,,t,5.00,EUR,{WHEN},0", "customer_id"),  # empty required value
    ("b11", f"b11,c,{'t' * 65},5.00,EUR,{WHEN},0", "terminal_id"),  # longer than 64
    ("b12", f"b12,caf\udce9,t,5.00,EUR,{WHEN},0", "customer_id"),  # a Latin-1 byte
    ("b13", f"b13,c,t,5.00,EUR,{WHEN},maybe", "is_fraud"),
    ("b14", f"b14,c,t,5.00,eur,{WHEN},0", "currency"),
    ("b15", "b15,c,t,5.00,EUR,2018-13-45T00:00:00+00:00,0", "event_time"),
    ("b16", f"b16,c,t,5.00,EUR,{WHEN},0,surplus", None),  # more values than columns
    ("b17", "b17,c,t,5.00", "currency"),  # fewer values than columns
    ("b18", f" b18,c,t,5.00,EUR,{WHEN},0", "transaction_id"),  # leading space
    ("g19", f"g19,c,t,5.00,EUR,{WHEN},", "ok"),  # blank is_fraud: a payment without label
    ("g20", "g20,c,t,7.5,EUR,2018-04-02T01:00:00+02:00,1", "ok"),
]


def write_catalogue(path: Path, good_rows: int = 300) -> dict[str, int]:
    """Good simulated rows, then the catalogue, then a duplicate of the first good id.
    Returns each transaction id's file line (the duplicate under "dup")."""
    df = generate_world(n_customers=20, n_terminals=40, n_days=10)
    df = df[df["TX_AMOUNT"] > 0].head(good_rows)
    write_csv(df, path)
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER
    extra = [text for _, text, _ in CATALOGUE] + [lines[1]]
    with path.open("w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        f.write("\n".join([*lines, *extra]) + "\n")
    where = {line.split(",")[0]: n for n, line in enumerate(lines[1:], start=2)}
    where.update({tx: len(lines) + 1 + i for i, (tx, _, _) in enumerate(CATALOGUE)})
    where["dup"] = len(lines) + len(CATALOGUE) + 1
    return where


@pytest.fixture
def catalogue(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "payments.csv"
    return path, write_catalogue(path)


Seen = tuple[list[int], list[int], dict[str, bool], list[str]]


def _train_path(path: Path, where: dict[str, int]) -> Seen:
    read = training.read_history(path)
    h = read.history
    labels = {tx: bool(y) for tx, y in zip(h.transaction_ids, h.labels, strict=True) if y >= 0}
    accepted = sorted(where[tx] for tx in h.transaction_ids)
    return accepted, [r.line for r in read.rejected], labels, [r.kind for r in read.rejected]


def _score_path(path: Path, where: dict[str, int]) -> Seen:
    read = backtest.read_input(path)
    accepted = sorted(where[p.transaction_id] for p in read.payments)
    return accepted, [r.line for r in read.rejected], read.labels, [r.kind for r in read.rejected]


def _produce_path(path: Path, where: dict[str, int]) -> Seen:
    source = sources.read_payments_file(path)
    items = list(source)
    accepted = sorted(where[i.payment.transaction_id] for i in items)
    labels = {i.payment.transaction_id: i.is_fraud for i in items if i.is_fraud is not None}
    return accepted, [r.line for r in source.rejected], labels, [r.kind for r in source.rejected]


def test_train_score_and_produce_accept_and_reject_the_same_lines(catalogue) -> None:
    path, where = catalogue
    train, score, produce = (
        _train_path(path, where),
        _score_path(path, where),
        _produce_path(path, where),
    )
    assert train == score == produce

    accepted, rejected, labels, kinds = score
    expected_bad = [where[tx] for tx, _, field in CATALOGUE if field != "ok"] + [where["dup"]]
    assert rejected == expected_bad
    assert where["g19"] in accepted and where["g20"] in accepted
    assert len(accepted) + len(rejected) == where["dup"] - 1  # every line but the header
    assert "g19" not in labels and labels["g20"] is True
    assert kinds.count("duplicate") == 1 and kinds.count("encoding") == 1


def test_each_rejection_names_its_line_and_column(catalogue) -> None:
    path, where = catalogue
    rejected = {r.line: r for r in backtest.read_input(path).rejected}
    for tx, _, field in CATALOGUE:
        if field == "ok":
            continue
        r = rejected[where[tx]]
        assert r.field == field, (tx, r)
        if field is not None:
            assert r.message.startswith(field) or field in r.message, (tx, r)
    assert "9999" not in rejected[where["b02"]].message  # the rule, not pandas' advice
    assert "between 1971 and 2099" in rejected[where["b02"]].message
    assert rejected[where["b16"]].message == "row has 8 values; the header has 7"
    first = next(tx for tx, line in where.items() if line == 2)
    assert rejected[where["dup"]].message == f"transaction_id {first!r} already seen on line 2"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "is empty"),
        (HEADER.encode() + b"\n", "holds no payments"),
        (
            HEADER.encode() + b"\nx,c,t,inf,EUR,2018-04-02T00:00:00Z,0\ny,c,t,1,EUR,2018,0\n",
            r"no usable payments; all 2 rows rejected \(2 schema\)",
        ),
    ],
)
def test_nothing_usable_is_one_clear_error(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        training.train_on_file(training.read_history(path))


def test_a_file_in_another_encoding_is_one_error_not_a_codec_message(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.replace("currency", "devis\xe9").encode("latin-1") + b"\n")
    with pytest.raises(InputError, match=r"line 1 is not UTF-8 text \(byte \d+\)") as e:
        training.read_history(path)
    assert "codec" not in str(e.value)


def test_training_needs_an_is_fraud_column(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(HEADER.removesuffix(",is_fraud") + f"\na,c,t,1.00,EUR,{WHEN}\n")
    with pytest.raises(InputError, match="no is_fraud column"):
        training.read_history(path)


def test_progress_reports_counts_up_to_the_rows_read(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    rows = [f"t{i},c,t,1.00,EUR,{WHEN},0" for i in range(4_500)]
    path.write_text("\n".join([HEADER, *rows, "bad,c,t,inf,EUR,{WHEN},0"]) + "\n")
    calls: list[tuple[str, int, int | None]] = []
    read = backtest.read_input(path, progress=lambda *a: calls.append(a))
    assert len(read.payments) == 4_500 and len(read.rejected) == 1
    assert calls == [
        ("reading payments", 2_000, 4_501),
        ("reading payments", 4_000, 4_501),
        ("reading payments", 4_501, 4_501),
    ]
    assert paymentfile.count_lines(path) == 4_502  # the header too


def test_plural() -> None:
    assert paymentfile.plural(1, "row") == "1 row"
    assert paymentfile.plural(0, "row") == "0 rows"
    assert paymentfile.plural(1234, "row") == "1,234 rows"
