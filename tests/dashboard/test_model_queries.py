"""The Model tab's SQL on MariaDB: the registry roles, and the champion's and challenger's
scores of a range with which payments count as labelled (recomputed from the seed)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import Engine

from payscore.config import Settings
from payscore.core.metrics import evaluate
from payscore.core.protocol import LABEL_DELAY_DAYS
from payscore.dashboard import model_queries as mq
from payscore.dashboard.figures import TimeRange, utc_now
from payscore.store.engine import make_engine
from tests.dashboard.model_seed import CHALLENGER, CHAMPION, RETIRED, ModelWorld, seed_models

pytestmark = pytest.mark.integration


@pytest.fixture
def seeded(db_url: str) -> Iterator[tuple[Engine, ModelWorld]]:
    writer = make_engine(Settings(database_url=db_url))
    world = seed_models(writer, utc_now(), n=1_500)
    writer.dispose()
    reader = make_engine(Settings(database_url=db_url), read_only=True)
    yield reader, world
    reader.dispose()


def test_roles_scores_and_labels_match_the_seed(seeded: tuple[Engine, ModelWorld]) -> None:
    engine, world = seeded
    with engine.connect() as conn:
        champion, challenger = mq.in_role(conn, "champion"), mq.in_role(conn, "challenger")
        assert champion is not None and champion.version == CHAMPION
        assert challenger is not None and challenger.version == CHALLENGER
        assert champion.thresholds == {"review": 0.6, "decline": 0.9}
        assert [m.version for m in mq.recent_models(conn)] == [RETIRED]
        horizon = mq.labels_horizon(conn, LABEL_DELAY_DAYS)
        frame = mq.scored(conn, TimeRange.last(3600), CHAMPION, CHALLENGER, horizon)
        # Another pair, or a range before the decisions, holds nothing.
        assert mq.scored(conn, TimeRange.last(3600), CHAMPION, "other", horizon).empty
        assert mq.scored(conn, TimeRange.last(3600), CHALLENGER, None, horizon).empty
        capped = mq.scored(conn, TimeRange(None, None), CHAMPION, None, horizon, limit=10)
    assert len(capped) == 11  # one more than the limit: the page says it is capped
    assert len(frame) == len(world.rows)
    labelled = frame[frame["labelled"] == 1]
    assert len(labelled) == len(world.labelled)
    assert labelled["is_fraud"].sum() == world.rows["is_fraud"].sum()
    days = labelled["event_time"].dt.floor("D").to_numpy()
    got = evaluate(
        labelled["is_fraud"].to_numpy(),
        labelled["challenger_score"].to_numpy(),
        days,
        labelled["customer_id"].to_numpy(),
    )
    assert got == pytest.approx(world.challenger)
    assert np.isclose(sorted(frame["score"]), sorted(world.rows["score"])).all()
