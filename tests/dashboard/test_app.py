"""The Streamlit page through AppTest: figures, filters, review labels and friendly failures."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select
from streamlit.testing.v1 import AppTest

import payscore.dashboard
from payscore.config import Settings
from payscore.dashboard import queries as q
from payscore.dashboard.figures import STATUS_MARKS, bin_name, choose_bin, utc_now
from payscore.errors import InputError
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.labels import LabelWriteError, record_analyst_label
from payscore.store.schema import fraud_labels, label_events, metadata
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


def _run(range_choice: str = "All time", tab: str = "Overview") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.sidebar.selectbox(key="range").select(range_choice).run()
    if tab != "Overview":
        _open(at, tab)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _open(at: AppTest, tab: str) -> AppTest:
    """Switch to ``tab`` the way a click does: only the open tab is computed."""
    at.session_state["tab"] = tab
    return at.run()


def _headline(at: AppTest) -> dict[str, tuple[str, str | None]]:
    """The overview's headline figures, label -> (value, the line under it), read from the
    markup the page shows (``inline.headline_html``)."""
    out: dict[str, tuple[str, str | None]] = {}
    for md in at.markdown:
        if 'class="ps-headline"' in md.value:
            for figure in ET.fromstring(md.value).findall("div"):
                label, value, *note = (d.text or "" for d in figure.findall("div"))
                out[label] = (value, note[0] if note else None)
    return out


def _metrics(at: AppTest) -> dict[str, str]:
    """Label -> value of every figure shown: Streamlit's metrics and the overview's headline."""
    return {m.label: m.value for m in at.metric} | {k: v for k, (v, _) in _headline(at).items()}


def test_headline_matches_seed(seeded_url: tuple[str, Seeded]) -> None:
    _, s = seeded_url
    at = _run()
    metrics = _metrics(at)
    counts = Counter(r["status"] for r in s.rows)
    total = len(s.rows)
    assert metrics["Payments decided"] == f"{total:,}"
    deltas = {label: note for label, (_, note) in _headline(at).items()}
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
    assert _metrics(_open(at, "Model"))["Version"] == s.model["version"]


def test_status_filter_changes_the_table(seeded_url: tuple[str, Seeded]) -> None:
    _, s = seeded_url
    at = _run(tab="Decisions")
    latest = at.dataframe[0].value
    assert len(latest) == 200 and set(latest["status"]) == {"APPROVED", "REVIEW", "DECLINED"}
    # Each status marked by its shape on screen (no styled cells).
    assert list(latest["mark"]) == [STATUS_MARKS[v] for v in latest["status"]]
    assert list(latest.columns).index("mark") + 1 == list(latest.columns).index("status")
    at.selectbox(key="f_status").select("DECLINED").run()
    latest = at.dataframe[0].value
    declined = [r for r in s.rows if r["status"] == "DECLINED"]
    assert len(latest) == len(declined) and set(latest["status"]) == {"DECLINED"}
    at.text_input(key="f_reason").input("50%").run()
    assert list(at.dataframe[0].value["transaction_id"]) == ["sp-pct"]
    assert at.selectbox(key="f_status").value == "DECLINED"  # filters survive reruns


ANALYST_PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def analyst_entry() -> str:
    """alice's dashboard_users entry; a low bcrypt cost keeps the tests quick."""
    import bcrypt

    hashed = bcrypt.hashpw(ANALYST_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"alice:{hashed}"


@pytest.fixture
def labelling(
    seeded_url: tuple[str, Seeded], analyst_entry: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Seeded]:
    monkeypatch.setenv("PAYSCORE_DASHBOARD_LABELLING", "true")
    monkeypatch.setenv("PAYSCORE_DASHBOARD_USERS", analyst_entry)
    return seeded_url


def _sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.sidebar.text_input[0].input(name)
    at.sidebar.text_input[1].input(password)
    next(b for b in at.sidebar.button if b.label == "Sign in").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _label_controls(at: AppTest) -> list[str]:
    keys = {"review_tx", "review_note", "mark_fraud", "mark_legit"}
    found = [w.key for w in [*at.selectbox, *at.text_input, *at.button] if w.key in keys]
    return sorted(found)


def _history(at: AppTest) -> Any:
    return next(d.value for d in at.dataframe if "verdict" in d.value.columns)


def test_labelling_is_off_by_default(seeded_url: tuple[str, Seeded]) -> None:
    at = _run(tab="Review queue")
    assert _label_controls(at) == []
    assert not [b for b in at.sidebar.button if b.label == "Sign in"]  # no sign-in either
    assert any("Labelling is off" in i.value for i in at.info)


def test_no_label_controls_without_signing_in(labelling: tuple[str, Seeded]) -> None:
    at = _run(tab="Review queue")
    assert _label_controls(at) == []
    assert any("Sign in" in i.value for i in at.info)
    assert [b.label for b in at.sidebar.button if b.label == "Sign in"] == ["Sign in"]
    # The read-only views need no sign-in.
    assert _metrics(_open(at, "Overview"))["Payments decided"] != "0"


def test_a_wrong_password_is_refused(labelling: tuple[str, Seeded]) -> None:
    at = _sign_in(_run(tab="Review queue"), "alice", "not the password")
    assert "Wrong analyst name or password." in [e.value for e in at.sidebar.error]
    assert _label_controls(at) == []
    at = _sign_in(_run(tab="Review queue"), "mallory", ANALYST_PASSWORD)
    assert _label_controls(at) == []


def test_a_signed_in_analysts_label_records_who_and_shows_in_history(
    labelling: tuple[str, Seeded],
) -> None:
    url, s = labelling
    at = _sign_in(_run(tab="Review queue"), "alice", ANALYST_PASSWORD)
    assert _label_controls(at) == ["mark_fraud", "mark_legit", "review_note", "review_tx"]
    assert not at.text_input(key="review_note").value  # no free-text analyst name any more
    first = at.selectbox(key="review_tx").value
    waiting = sorted(
        (r for r in s.rows if r["status"] == "REVIEW" and r["transaction_id"] not in s.labels),
        key=lambda r: r["event_time"],
    )
    assert first == waiting[0]["transaction_id"]  # oldest first
    at.text_input(key="review_note").input("card reported stolen")
    at.button(key="mark_fraud").click().run()
    assert not at.exception
    assert f"{first} marked fraud by alice" in at.success[0].value
    assert first not in list(at.selectbox(key="review_tx").options)  # it left the queue
    with make_engine(Settings(database_url=url)).connect() as conn:
        row = conn.execute(select(fraud_labels).where(fraud_labels.c.transaction_id == first)).one()
        events = conn.execute(
            select(label_events.c.source, label_events.c.labelled_by).where(
                label_events.c.transaction_id == first
            )
        ).all()
    assert (row.is_fraud, row.source, row.labelled_by, row.note) == (
        True,
        "analyst",
        "alice",
        "card reported stolen",
    )
    assert [tuple(e) for e in events] == [("analyst", "alice")]
    assert abs((utc_now() - row.known_at).total_seconds()) < 120
    # The history opens on the payment just labelled.
    assert at.text_input(key="history_tx").value == first
    history = _history(at)
    assert list(
        history[["verdict", "source", "labelled_by"]].itertuples(index=False, name=None)
    ) == [("fraud", "analyst", "alice")]
    assert any("Counts: **fraud** (analyst by alice" in m.value for m in at.markdown)


def test_history_of_a_payment_with_a_chargeback(seeded_url: tuple[str, Seeded]) -> None:
    _, s = seeded_url
    tx, label = next((t, lab) for t, lab in s.labels.items() if lab["source"] == "stream")
    at = _run(tab="Review queue")
    at.text_input(key="history_tx").input(tx).run()
    history = _history(at)
    verdict = "fraud" if label["is_fraud"] else "legitimate"
    assert list(history[["verdict", "source"]].itertuples(index=False, name=None)) == [
        (verdict, "stream")
    ]


def test_customer_profile(seeded_url: tuple[str, Seeded]) -> None:
    at = _run(tab="Customer")
    at.text_input(key="customer_query").input("C-PROFILE").run()
    metrics = _metrics(at)
    assert metrics["Payments"] == "13" and metrics["Last hour"] == "3"
    at.text_input(key="customer_query").input("nobody").run()
    assert any("No decisions for customer 'nobody'" in i.value for i in at.info)


def test_only_the_open_tab_runs_queries(seeded_url: tuple[str, Seeded]) -> None:
    """A tab that is not shown runs no query: counted at the database driver."""
    from sqlalchemy import Engine, event

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        at = _run()
        overview = list(statements)
        statements.clear()
        _open(at, "Model")
        model = list(statements)
        statements.clear()
        _open(at, "Customer")
        at.text_input(key="customer_query").input("C-PROFILE").run()
        customer = list(statements)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert not at.exception
    assert any("scored_transactions" in q for q in overview)
    assert not any("model_versions" in q or "label_events" in q for q in overview)
    assert any("model_versions" in q for q in model)
    assert not any("scored_transactions" in q for q in model)
    assert any("customer_id = " in q for q in customer)
    assert not any("model_versions" in q or "dead_letters" in q for q in customer)


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
    assert not _metrics(at)


@pytest.mark.parametrize("dropped", [(), ("model_versions",)])
def test_older_schema_still_opens(dropped: tuple[str, ...], seeded_url: tuple[str, Seeded]) -> None:
    """A database made by an older payscore lacks the newest tables (rules, models,
    snapshots): the page shows its figures; only a table it reads is required, by name."""
    url, s = seeded_url
    engine = make_engine(Settings(database_url=url))
    with engine.begin() as conn:
        present = set(inspect(conn).get_table_names())
        unread = present - {t.name for t in q.DASHBOARD_TABLES}
        assert {"policy_rules", "models", "feature_snapshots"} <= unread
        for table in reversed(metadata.sorted_tables):
            if table.name in unread or table.name in dropped:
                table.drop(conn)
    engine.dispose()
    at = _run("All time")
    warnings = [w.value for w in at.warning]
    if not dropped:
        assert not any("initdb" in w for w in warnings), warnings
        assert _metrics(at)["Payments decided"] == f"{len(s.rows):,}"
    else:
        assert any("lacks tables the dashboard reads: model_versions." in w for w in warnings), (
            warnings
        )
        assert not _metrics(at)


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
    with pytest.raises(InputError, match="already has a verdict by carol"):
        record_analyst_label(writer, tx, True, "dave")


def test_cli_passes_settings_by_environment_not_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import SecretStr

    from payscore.cli.dashboard import app_path, child_env, streamlit_command

    monkeypatch.setenv("PAYSCORE_CONFIG", "elsewhere.toml")
    settings = Settings(
        database_url="mysql://reader@db.example/payscore",
        database_password=SecretStr("s3cret-pw"),
        dashboard_labelling=True,
        dashboard_users=SecretStr("alice:$2b$04$" + "a" * 53),
    )
    command = streamlit_command("127.0.0.1", 8765)
    env = child_env(settings, refresh=15)
    assert app_path().is_file() and str(app_path()) in command
    assert ["--server.port", "8765"] == command[command.index("--server.port") :][:2]
    # Streamlit's forced collection after every run is off (gcfreeze.py says why).
    gc_option = command.index("--runner.postScriptGC")
    assert command[gc_option : gc_option + 2] == ["--runner.postScriptGC", "false"]
    assert not any("s3cret" in part for part in command)
    assert env["PAYSCORE_DATABASE_PASSWORD"] == "s3cret-pw"
    assert env["PAYSCORE_DATABASE_URL"] == "mysql://reader@db.example/payscore"
    assert env["PAYSCORE_DASHBOARD_REFRESH"] == "15"
    assert env["PAYSCORE_DASHBOARD_USERS"] == "alice:$2b$04$" + "a" * 53
    assert env["PAYSCORE_DASHBOARD_LABELLING"] == "true"
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
