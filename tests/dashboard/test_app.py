"""The Streamlit page through AppTest: figures, filters, review labels and friendly failures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import payscore.dashboard
from payscore.config import Settings
from payscore.dashboard.figures import bin_name, choose_bin, utc_now
from payscore.errors import InputError
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.labels import LabelWriteError, record_analyst_label
from payscore.store.schema import fraud_labels
from tests.dashboard.seed import Seeded, seed_small

APP = str(Path(payscore.dashboard.__file__).parent / "app.py")


@pytest.fixture
def seeded_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Seeded]]:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = make_engine(Settings(database_url=url))
    create_schema(engine)
    seeded = seed_small(engine, utc_now(), n=300)
    engine.dispose()
    _env(monkeypatch, url)
    yield url, seeded


def _env(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for key in ("PAYSCORE_CONFIG", "PAYSCORE_DASHBOARD_REFRESH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PAYSCORE_DATABASE_URL", url)
    monkeypatch.chdir(Path(url.removeprefix("sqlite:///")).parent)


def _run(range_choice: str = "All time") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.sidebar.selectbox(key="range").select(range_choice).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_headline_matches_seed(seeded_url: tuple[str, Seeded]) -> None:
    _, s = seeded_url
    at = _run()
    metrics = _metrics(at)
    counts = Counter(r["status"] for r in s.rows)
    total = len(s.rows)
    assert metrics["Payments decided"] == f"{total:,}"
    deltas = {m.label: m.delta for m in at.metric}
    for status in ("APPROVED", "REVIEW", "DECLINED"):
        # The count is the value; its rate sits under it, where both fit.
        assert metrics[status.title()] == f"{counts[status]:,}"
        assert deltas[status.title()] == f"{counts[status] / total:.2%}"
    times = [r["scored_at"] for r in s.rows]
    active = (max(times) - min(times)).total_seconds()
    assert metrics["Throughput"] == f"{total / active * 60:,.1f}/min"
    assert deltas["Throughput"] == f"over {active / 86400:.1f} days active"
    per = bin_name(choose_bin(min(times), max(times), total))
    assert f"Payments and decisions per {per}" in [h.value for h in at.subheader]
    fraud = sum(1 for lab in s.labels.values() if lab["is_fraud"])
    assert metrics["Fraud rate"] == f"{fraud / total:.2%}"
    assert metrics["Dead letters"] == f"{len(s.dead):,}"
    waiting = sum(
        1 for r in s.rows if r["status"] == "REVIEW" and r["transaction_id"] not in s.labels
    )
    assert metrics["Review backlog"] == f"{waiting:,}"
    assert metrics["Version"] == s.model["version"]


def test_status_filter_changes_the_table(seeded_url: tuple[str, Seeded]) -> None:
    _, s = seeded_url
    at = _run()
    latest = at.dataframe[0].value
    assert len(latest) == 200 and set(latest["status"]) == {"APPROVED", "REVIEW", "DECLINED"}
    at.selectbox(key="f_status").select("DECLINED").run()
    latest = at.dataframe[0].value
    declined = [r for r in s.rows if r["status"] == "DECLINED"]
    assert len(latest) == len(declined) and set(latest["status"]) == {"DECLINED"}
    at.text_input(key="f_reason").input("50%").run()
    assert list(at.dataframe[0].value["transaction_id"]) == ["sp-pct"]
    assert at.selectbox(key="f_status").value == "DECLINED"  # filters survive reruns


def test_review_action_stores_label(seeded_url: tuple[str, Seeded]) -> None:
    url, s = seeded_url
    at = _run()
    first = at.selectbox(key="review_tx").value
    waiting = sorted(
        (r for r in s.rows if r["status"] == "REVIEW" and r["transaction_id"] not in s.labels),
        key=lambda r: r["event_time"],
    )
    assert first == waiting[0]["transaction_id"]  # oldest first
    at.button(key="mark_fraud").click().run()
    assert "analyst name" in at.error[0].value  # no name, no label
    at.text_input(key="analyst").input("alice")
    at.text_input(key="review_note").input("card reported stolen")
    at.button(key="mark_fraud").click().run()
    assert not at.exception
    assert f"{first} marked fraud by alice" in at.success[0].value
    assert at.selectbox(key="review_tx").value != first  # it left the queue
    assert first not in list(at.selectbox(key="review_tx").options)
    with make_engine(Settings(database_url=url)).connect() as conn:
        row = conn.execute(select(fraud_labels).where(fraud_labels.c.transaction_id == first)).one()
    assert (row.is_fraud, row.source, row.labelled_by, row.note) == (
        True,
        "analyst",
        "alice",
        "card reported stolen",
    )
    assert abs((utc_now() - row.known_at).total_seconds()) < 120


def test_customer_profile(seeded_url: tuple[str, Seeded]) -> None:
    at = _run()
    at.text_input(key="customer_query").input("C-PROFILE").run()
    metrics = _metrics(at)
    assert metrics["Payments"] == "13" and metrics["Last hour"] == "3"
    at.text_input(key="customer_query").input("nobody").run()
    assert "No decisions for customer 'nobody'" in at.info[0].value


@pytest.mark.parametrize("case", ["missing_file", "no_schema", "bad_url"])
def test_friendly_message_without_database(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    if case == "no_schema":
        make_engine(Settings(database_url=url)).connect().close()  # an empty file
    _env(monkeypatch, url)
    if case == "bad_url":
        monkeypatch.setenv("PAYSCORE_DATABASE_URL", "postgres://nowhere/db")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    shown: list[Any] = [w.value for w in at.warning] + [e.value for e in at.error]
    expected = {
        "missing_file": "does not exist yet",
        "no_schema": "no payscore schema yet",
        "bad_url": "Configuration problem",
    }[case]
    assert any(expected in text for text in shown), shown
    assert not at.metric


def test_label_writes_are_checked(seeded_url: tuple[str, Seeded]) -> None:
    url, s = seeded_url
    tx = next(r["transaction_id"] for r in s.rows if r["transaction_id"] not in s.labels)
    reader = make_engine(Settings(database_url=url), read_only=True)
    with pytest.raises(
        LabelWriteError,
        match=r"^cannot store the label: database error: attempt to write a readonly database "
        r"\(the dashboard's database user needs INSERT",
    ):
        record_analyst_label(reader, tx, True, "carol")
    writer = make_engine(Settings(database_url=url))
    with pytest.raises(InputError, match="no decision"):
        record_analyst_label(writer, "no-such-tx", True, "carol")
    with pytest.raises(InputError, match="at most 64"):
        record_analyst_label(writer, tx, True, "x" * 65)
    record_analyst_label(writer, tx, False, "carol")
    with pytest.raises(InputError, match="already has a label"):
        record_analyst_label(writer, tx, True, "dave")


def test_cli_passes_settings_by_environment_not_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import SecretStr

    from payscore.cli.dashboard import app_path, child_env, streamlit_command

    monkeypatch.setenv("PAYSCORE_CONFIG", "elsewhere.toml")
    settings = Settings(
        database_url="mysql://reader@db.example/payscore",
        database_password=SecretStr("s3cret-pw"),
    )
    command = streamlit_command("127.0.0.1", 8765)
    env = child_env(settings, refresh=15)
    assert app_path().is_file() and str(app_path()) in command
    assert ["--server.port", "8765"] == command[command.index("--server.port") :][:2]
    assert not any("s3cret" in part for part in command)
    assert env["PAYSCORE_DATABASE_PASSWORD"] == "s3cret-pw"
    assert env["PAYSCORE_DATABASE_URL"] == "mysql://reader@db.example/payscore"
    assert env["PAYSCORE_DASHBOARD_REFRESH"] == "15"
    assert "PAYSCORE_CONFIG" not in env
    from payscore.config import load_settings

    assert load_settings(environ=env).settings == settings  # the child sees the same settings


def test_refresh_choice_comes_from_the_environment(
    seeded_url: tuple[str, Seeded], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYSCORE_DASHBOARD_REFRESH", "7")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.sidebar.selectbox(key="refresh").value == 7
    assert not at.exception
