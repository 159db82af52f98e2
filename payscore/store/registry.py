"""The model registry: every trained model, and which one decides (champion) or shadows it
(challenger). The artifact stays a file, checked as at load (``core.artifact.verified``)
before a model takes either role; the registry row points at it by path and digest.

Statuses: ``candidate`` (registered, not in service), ``challenger``, ``champion`` (at most
one), ``retired``. ``promote`` records the champion it replaced, so ``rollback`` walks back
the chain. See docs/model.md, "The model registry".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from payscore.core.artifact import Trust, describe, verified
from payscore.errors import InputError, PayscoreError
from payscore.store.engine import database_error
from payscore.store.schema import models

CANDIDATE, CHALLENGER, CHAMPION, RETIRED = "candidate", "challenger", "champion", "retired"
MAX_NAME_CHARS = 64
_m = models.c


class RegistryError(PayscoreError):
    """A registry change that cannot be made (unknown version, nothing to roll back to)."""


@dataclass(frozen=True)
class ModelRecord:
    """One registered model."""

    version: str
    status: str
    artifact_path: str
    artifact_digest: str
    trained_at: datetime
    trained_by: str
    registered_at: datetime
    status_at: datetime
    status_by: str
    replaced: str | None
    periods: dict[str, Any]
    metrics: dict[str, float]
    thresholds: dict[str, float]
    features: list[str]


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _record(row: Any) -> ModelRecord:
    m = row._mapping
    return ModelRecord(
        m["version"],
        m["status"],
        m["artifact_path"],
        m["artifact_digest"],
        m["trained_at"],
        m["trained_by"],
        m["registered_at"],
        m["status_at"],
        m["status_by"],
        m["replaced"],
        json.loads(m["periods_json"]),
        json.loads(m["metrics_json"]),
        json.loads(m["thresholds_json"]),
        json.loads(m["features_json"]),
    )


def _who(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise InputError(f"a user name of 1 to {MAX_NAME_CHARS} characters is needed")
    return name


def register(db: Engine, path: str | Path, trained_by: str) -> tuple[ModelRecord, bool]:
    """Record the artifact at ``path`` (its JSON sidecar is read, nothing unpickled) as a
    candidate; returns the record and whether it was new (a version is registered once)."""
    shown = describe(path)
    meta = shown["metadata"]
    trained = meta.get("trained_at")
    try:
        trained_at = datetime.fromisoformat(trained).astimezone(timezone.utc).replace(tzinfo=None)
    except (TypeError, ValueError):
        trained_at = _now()
    now = _now()
    row = {
        "version": shown["version"],
        "status": CANDIDATE,
        "artifact_path": str(Path(shown["path"]).resolve()),
        "artifact_digest": shown["digest"],
        "trained_at": trained_at,
        "trained_by": _who(trained_by),
        "registered_at": now,
        "status_at": now,
        "status_by": _who(trained_by),
        "replaced": None,
        "periods_json": json.dumps(meta.get("training_period", {}), sort_keys=True),
        "metrics_json": json.dumps(meta.get("metrics", {}), sort_keys=True),
        "thresholds_json": json.dumps(meta.get("thresholds", {}), sort_keys=True),
        "features_json": json.dumps(list(shown["feature_names"])),
    }
    try:
        with db.begin() as conn:
            found = _find(conn, row["version"])
            if found is not None:
                return found, False
            conn.execute(insert(models), row)
            return _get(conn, row["version"]), True
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e


def list_models(db: Engine) -> list[ModelRecord]:
    """Every registered model, newest first."""
    query = select(models).order_by(_m.registered_at.desc(), _m.version)
    try:
        with db.connect() as conn:
            return [_record(r) for r in conn.execute(query)]
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e


def champion(db: Engine) -> ModelRecord | None:
    return holder(db, CHAMPION)


def holder(db: Engine, status: str) -> ModelRecord | None:
    """The model in a role (``CHAMPION`` or ``CHALLENGER``), None if none holds it."""
    try:
        with db.connect() as conn:
            return _with_status(conn, status)
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e


def promote(db: Engine, version: str, by: str, trust: Trust | None = None) -> ModelRecord | None:
    """Make ``version`` the champion once its file passes the load checks; the champion it
    replaces is retired and returned (None if there was none)."""
    return _change(db, version, CHAMPION, _who(by), trust)


def set_challenger(
    db: Engine, version: str, by: str, trust: Trust | None = None
) -> ModelRecord | None:
    """Make ``version`` the challenger (scored beside the champion, never deciding); the
    previous challenger goes back to candidate and is returned."""
    return _change(db, version, CHALLENGER, _who(by), trust)


def rollback(db: Engine, by: str) -> tuple[ModelRecord, ModelRecord]:
    """Retire the champion and restore the one it replaced (its file checked again);
    returns (restored, retired)."""
    by = _who(by)
    try:
        with db.begin() as conn:
            current = _with_status(conn, CHAMPION, lock=True)
            if current is None:
                raise RegistryError("no champion to roll back")
            if current.replaced is None:
                raise RegistryError(
                    f"champion {current.version} replaced no earlier champion: "
                    "nothing to roll back to"
                )
            previous = _get(conn, current.replaced)
            _check_file(previous, None)
            _set(conn, current.version, RETIRED, by)
            _set(conn, previous.version, CHAMPION, by)
            return _get(conn, previous.version), _get(conn, current.version)
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e


def _change(
    db: Engine, version: str, status: str, by: str, trust: Trust | None
) -> ModelRecord | None:
    try:
        with db.begin() as conn:
            target = _get(conn, version)
            if target.status == status:
                raise RegistryError(f"model {version} is already the {status}")
            if status == CHALLENGER and target.status == CHAMPION:
                raise RegistryError(f"model {version} is the champion; it cannot be challenger")
            _check_file(target, trust)
            before = _with_status(conn, status, lock=True)
            if before is not None:
                _set(conn, before.version, RETIRED if status == CHAMPION else CANDIDATE, by)
            replaced = before.version if status == CHAMPION and before is not None else None
            values = {"replaced": replaced} if status == CHAMPION else {}
            _set(conn, version, status, by, **values)
            return None if before is None else _get(conn, before.version)
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e


def _check_file(record: ModelRecord, trust: Trust | None) -> None:
    """The registered file must still pass the load checks and still be this version."""
    ok = verified(record.artifact_path, trust)  # ModelError: one line naming the failure
    if ok.digest != record.artifact_digest or ok.sidecar.get("version") != record.version:
        raise RegistryError(
            f"the file {record.artifact_path} is no longer model {record.version} (its digest "
            "changed since it was registered); refusing it"
        )


def _find(conn: Connection, version: str) -> ModelRecord | None:
    row = conn.execute(select(models).where(_m.version == version)).first()
    return None if row is None else _record(row)


def _get(conn: Connection, version: str) -> ModelRecord:
    found = _find(conn, version[:MAX_NAME_CHARS])
    if found is None:
        raise RegistryError(f"unknown model version {version!r} (`payscore models list`)")
    return found


def _with_status(conn: Connection, status: str, lock: bool = False) -> ModelRecord | None:
    query = select(models).where(_m.status == status).order_by(_m.status_at.desc())
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return None if row is None else _record(row)


def _set(conn: Connection, version: str, status: str, by: str, **values: Any) -> None:
    conn.execute(
        update(models)
        .where(_m.version == version)
        .values(status=status, status_at=_now(), status_by=by, **values)
    )
