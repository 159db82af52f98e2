"""The model registry on SQLite and on the real MariaDB: register, promote, challenger,
rollback, and the refusals (unknown version, tampered file, nothing to roll back to)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from payscore.config import Settings
from payscore.core.model import ModelArtifact, save_artifact
from payscore.errors import ModelError
from payscore.store import registry
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.registry import RegistryError


def artifact(path: Path, seed: int) -> str:
    """A tiny saved model with the metadata training records."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    meta = {
        "trained_at": datetime(2026, 1, seed + 1, tzinfo=timezone.utc).isoformat(),
        "training_period": {"train": ["2018-06-20", "2018-07-31"], "test": ["2018-08-08", "x"]},
        "metrics": {"auc_roc": 0.9 + seed / 100, "average_precision": 0.7},
        "thresholds": {"review": 0.1, "decline": 0.9},
    }
    art = ModelArtifact(LogisticRegression().fit(X, y), ("amount", "is_night"), meta)
    save_artifact(art, path)
    return art.version


@pytest.fixture(params=["sqlite", "mariadb"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'r.db'}"
    else:
        url = request.getfixturevalue("db_url")
    engine = make_engine(Settings(database_url=url))
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def three(tmp_path: Path) -> list[tuple[str, Path]]:
    out = []
    for seed in range(3):
        path = tmp_path / f"m{seed}.joblib"
        out.append((artifact(path, seed), path))
    return out


def test_register_records_the_sidecar_once(db: Any, three: list) -> None:
    version, path = three[0]
    record, new = registry.register(db, path, "alice")
    assert new and record.version == version and record.status == "candidate"
    assert record.trained_by == "alice" and record.artifact_path == str(path.resolve())
    assert record.metrics["auc_roc"] == 0.9 and record.thresholds["decline"] == 0.9
    assert record.periods["train"] == ["2018-06-20", "2018-07-31"]
    assert record.features == ["amount", "is_night"]
    again, new = registry.register(db, path, "bob")
    assert not new and again.trained_by == "alice"
    assert [r.version for r in registry.list_models(db)] == [version]


def test_promote_retires_the_champion_and_rollback_walks_back(db: Any, three: list) -> None:
    (a, pa), (b, pb), (c, pc) = three
    for path in (pa, pb, pc):
        registry.register(db, path, "alice")
    with pytest.raises(RegistryError, match="no champion to roll back"):
        registry.rollback(db, "alice")
    assert registry.promote(db, a, "alice") is None
    assert registry.promote(db, b, "bob").version == a  # type: ignore[union-attr]
    statuses = {r.version: r.status for r in registry.list_models(db)}
    assert statuses == {a: "retired", b: "champion", c: "candidate"}
    assert registry.set_challenger(db, c, "bob") is None
    with pytest.raises(RegistryError, match="is the champion; it cannot be challenger"):
        registry.set_challenger(db, b, "bob")
    with pytest.raises(RegistryError, match="already the champion"):
        registry.promote(db, b, "bob")
    restored, retired = registry.rollback(db, "carol")
    assert (restored.version, retired.version) == (a, b)
    assert restored.status_by == "carol"
    champ = registry.champion(db)
    assert champ is not None and champ.version == a
    with pytest.raises(RegistryError, match="replaced no earlier champion"):
        registry.rollback(db, "carol")
    # The challenger is promoted: the challenger slot empties.
    registry.promote(db, c, "bob")
    statuses = {r.version: r.status for r in registry.list_models(db)}
    assert statuses == {a: "retired", b: "retired", c: "champion"}


def test_unknown_versions_and_tampered_files_are_refused(db: Any, three: list) -> None:
    (a, pa), (b, pb), _ = three
    registry.register(db, pa, "alice")
    registry.register(db, pb, "alice")
    with pytest.raises(RegistryError, match="unknown model version 'nope'"):
        registry.promote(db, "nope", "alice")
    pa.write_bytes(pa.read_bytes() + b"x")  # damaged after registration
    with pytest.raises(ModelError, match="does not match"):
        registry.promote(db, a, "alice")
    assert registry.champion(db) is None  # nothing changed
    # Another valid model written over b's file: intact, but not the registered version.
    artifact(pb, 7)
    with pytest.raises(RegistryError, match=f"no longer model {b}"):
        registry.set_challenger(db, b, "alice")
    assert {r.status for r in registry.list_models(db)} == {"candidate"}
