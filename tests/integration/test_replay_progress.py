"""``replay_dead_letters`` reports what it reads and re-publishes, for the progress bars."""

from __future__ import annotations

import pytest

from payscore.config import Settings
from payscore.core.schema import payment_to_json
from payscore.stream.replay import READING, SENDING, ReplayFilter, replay_dead_letters
from tests.integration.test_replay import _letter, _payment, _put_dead_letters

pytestmark = pytest.mark.integration


def test_progress_counts_every_record_read_and_sent(kafka_bootstrap, new_topic, db_url):
    source, dlq_topic = new_topic(3), new_topic(2)
    letters = [_letter(source, i, payment_to_json(_payment(i))) for i in range(7)]
    letters.append(_letter(source, 7, b"old", attempt=3))  # parked (default 3), sent too
    letters.append(_letter(source, 8, b"x", kind="json"))  # not selected: read, not sent
    _put_dead_letters(kafka_bootstrap, dlq_topic, letters)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, database_url=db_url)
    settings = settings.model_copy(update={"dlq_topic": dlq_topic, "input_topic": source})
    heard: list[tuple[str, int, int | None]] = []
    result = replay_dead_letters(
        settings,
        ReplayFilter(kinds=frozenset({"scoring_error"})),
        progress=lambda *event: heard.append(event),
    )
    assert (result.replayed, result.parked) == (7, 1)
    reading = [e for e in heard if e[0] == READING]
    assert reading[0] == (READING, 0, 9) and reading[-1] == (READING, 9, 9)
    assert [done for _, done, _ in reading] == sorted(done for _, done, _ in reading)
    assert heard[-1] == (SENDING, 8, 8)
