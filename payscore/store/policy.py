"""Live rules and lists in the database: versioned, audited, read whole by the consumer.

Every change runs in one transaction that (1) takes the next policy version, locking the
newest ``policy_versions`` row so concurrent changes commit in version order, (2) changes the
rule or the list entries, (3) appends one ``policy_audit`` row per change with who, when, why,
before and after. A reader (``load``) sees one version and exactly the rules and lists of it,
because it reads them in one transaction. See docs/rules.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from payscore.core.policy import (
    MAX_REASON_CHARS,
    RuleSpec,
    StoredList,
    check_list_name,
    check_list_values,
    list_names,
    resolve,
)
from payscore.core.rules import Rule
from payscore.errors import InputError
from payscore.store.engine import begin_write, database_error
from payscore.store.schema import (
    policy_audit,
    policy_list_entries,
    policy_lists,
    policy_rules,
    policy_versions,
)

MAX_ACTOR_CHARS = 64
MAX_SHOWN = 1000  # history rows and list values printed at most
_r, _l, _e, _a, _v = (
    policy_rules.c,
    policy_lists.c,
    policy_list_entries.c,
    policy_audit.c,
    policy_versions.c,
)


@dataclass(frozen=True)
class StoredRule:
    id: int
    code: str
    kind: str
    action: str
    params: dict[str, Any]
    enabled: bool
    description: str
    version: int
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "kind": self.kind,
            "action": self.action,
            "params": self.params,
            "description": self.description,
            "enabled": self.enabled,
        }


@dataclass(frozen=True)
class AuditEntry:
    version: int
    at: datetime
    actor: str
    change: str
    subject: str
    reason: str
    before: Any
    after: Any


@dataclass(frozen=True)
class LoadedPolicy:
    """The enabled stored rules, stored lists filled in, as of ``version`` (0: none ever)."""

    version: int
    rules: tuple[Rule, ...]


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def check_actor(actor: str) -> str:
    if (
        not isinstance(actor, str)
        or not 0 < len(actor) <= MAX_ACTOR_CHARS
        or not actor.isprintable()
    ):
        raise InputError(f"the actor must be 1-{MAX_ACTOR_CHARS} printable characters")
    return actor


def _check_reason(reason: str) -> str:
    if len(reason) > MAX_REASON_CHARS or not reason.isprintable():
        raise InputError(f"the reason must be at most {MAX_REASON_CHARS} printable characters")
    return reason


class PolicyStore:
    """Reads and changes the stored rules and lists through one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- reading ---------------------------------------------------------------------------

    def version(self) -> int:
        """The current policy version: what a running consumer polls (one indexed read)."""
        return self._read(lambda conn: _version(conn))

    def load(self) -> LoadedPolicy:
        """The enabled rules with their lists, all of one version (one read transaction)."""

        def read(conn: Connection) -> LoadedPolicy:
            version = _version(conn)
            lists = _lists(conn)
            rows = conn.execute(
                select(policy_rules).where(_r.enabled.is_(True)).order_by(_r.id)
            ).mappings()
            rules = tuple(resolve(_row_rule(row), lists) for row in rows)
            return LoadedPolicy(version, rules)

        return self._read(read)

    def rules(self) -> list[StoredRule]:
        return self._read(
            lambda conn: [
                _stored(r) for r in conn.execute(select(policy_rules).order_by(_r.id)).mappings()
            ]
        )

    def rule(self, key: str) -> StoredRule:
        """A rule by code or by id."""
        return self._read(lambda conn: _find(conn, key))

    def history(self, subject: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Audit rows, newest first; ``subject`` a rule code or a list name."""
        query = select(policy_audit).order_by(_a.id.desc()).limit(min(limit, MAX_SHOWN))
        if subject is not None:
            query = query.where(
                (_a.subject == subject) | _a.subject.startswith(f"{subject}:", autoescape=True)
            )
        return self._read(
            lambda conn: [
                AuditEntry(
                    r.version,
                    r.at,
                    r.actor,
                    r.change,
                    r.subject,
                    r.reason,
                    _loads(r.before_json),
                    _loads(r.after_json),
                )
                for r in conn.execute(query)
            ]
        )

    def lists(self) -> dict[str, StoredList]:
        """Every stored list with its values, by name."""
        return self._read(lambda conn: _lists(conn))

    def stored_list(self, name: str) -> StoredList:
        def read(conn: Connection) -> StoredList:
            lists = _lists(conn, name)
            if name not in lists:
                raise InputError(f"no list named {name!r}")
            return lists[name]

        return self._read(read)

    def list_summaries(self) -> list[tuple[str, str, int]]:
        """(name, field, number of values) of every list."""
        query = (
            select(_l.name, _l.field, func.count(_e.value))
            .select_from(policy_lists.outerjoin(policy_list_entries, _e.list_name == _l.name))
            .group_by(_l.name, _l.field)
            .order_by(_l.name)
        )
        return self._read(lambda conn: [tuple(r) for r in conn.execute(query)])

    # -- changing --------------------------------------------------------------------------

    def add_rule(
        self, spec: RuleSpec, actor: str, reason: str = "", reserved: Iterable[str] = ()
    ) -> tuple[StoredRule, int]:
        """Store a checked rule, enabled. ``reserved`` codes (the stock rules) are refused."""
        rule = spec.rule
        if rule.code in set(reserved):
            raise InputError(f"rule code {rule.code} is taken by a stock rule from settings")

        def change(conn: Connection, version: int, now: datetime) -> StoredRule:
            missing = sorted(list_names(rule.kind, rule.params) - set(_lists(conn)))
            if missing:
                raise InputError(f"rule {rule.code}: no list named {missing[0]!r} (lists add)")
            if conn.execute(select(_r.id).where(_r.code == rule.code)).first():
                raise InputError(f"a rule with code {rule.code} exists already")
            values = {
                "code": rule.code,
                "kind": rule.kind,
                "action": rule.action,
                "params_json": json.dumps(dict(rule.params), sort_keys=True),
                "enabled": True,
                "description": spec.description,
                "version": version,
                "updated_at": now,
            }
            conn.execute(insert(policy_rules), values)
            stored = _find(conn, rule.code)
            _audit(conn, version, now, actor, "rule.add", rule.code, reason, None, stored.as_dict())
            return stored

        return self._change(actor, reason, f"add rule {rule.code}", change)

    def set_enabled(
        self, key: str, enabled: bool, actor: str, reason: str = ""
    ) -> tuple[StoredRule, int]:
        word = "enable" if enabled else "disable"

        def change(conn: Connection, version: int, now: datetime) -> StoredRule:
            before = _find(conn, key, lock=True)
            if before.enabled == enabled:
                raise InputError(f"rule {before.code} is already {word}d; nothing changed")
            conn.execute(
                update(policy_rules)
                .where(_r.id == before.id)
                .values(enabled=enabled, version=version, updated_at=now)
            )
            after = _find(conn, key)
            _audit(
                conn,
                version,
                now,
                actor,
                f"rule.{word}",
                before.code,
                reason,
                before.as_dict(),
                after.as_dict(),
            )
            return after

        return self._change(actor, reason, f"{word} rule {key}", change)

    def add_entries(
        self, name: str, field: str | None, values: Sequence[str], actor: str, reason: str = ""
    ) -> tuple[list[str], int]:
        """Add values to a list, creating it (``field`` required then). Returns those added."""
        check_list_name(name)

        def change(conn: Connection, version: int, now: datetime) -> list[str]:
            lists = _lists(conn, name)
            if name in lists:
                stored = lists[name]
                if field is not None and field != stored.field:
                    raise InputError(f"list {name} holds {stored.field} values, not {field}")
                wanted = check_list_values(stored.field, values, name)
            else:
                if field is None:
                    raise InputError(f"list {name} is new: say which payment field (--field)")
                wanted = check_list_values(field, values, name)
                conn.execute(
                    insert(policy_lists), {"name": name, "field": field, "created_at": now}
                )
                stored = StoredList(name, field)
            added = [v for v in wanted if v not in stored.values]
            if not added:
                raise InputError(f"list {name} already holds every value given; nothing changed")
            conn.execute(
                insert(policy_list_entries),
                [
                    {"list_name": name, "value": v, "added_at": now, "added_by": actor}
                    for v in added
                ],
            )
            for v in added:
                _audit(
                    conn,
                    version,
                    now,
                    actor,
                    "list.add",
                    f"{name}:{v}",
                    reason,
                    None,
                    {"list": name, "field": stored.field, "value": v},
                )
            return added

        return self._change(actor, reason, f"add {len(values)} to list {name}", change)

    def remove_entries(
        self, name: str, values: Sequence[str], actor: str, reason: str = ""
    ) -> tuple[list[str], int]:
        check_list_name(name)

        def change(conn: Connection, version: int, now: datetime) -> list[str]:
            lists = _lists(conn, name)
            if name not in lists:
                raise InputError(f"no list named {name!r}")
            stored = lists[name]
            gone = [v for v in dict.fromkeys(values) if v in stored.values]
            if not gone:
                raise InputError(f"list {name} holds none of the values given; nothing changed")
            conn.execute(
                delete(policy_list_entries).where((_e.list_name == name) & _e.value.in_(gone))
            )
            for v in gone:
                _audit(
                    conn,
                    version,
                    now,
                    actor,
                    "list.remove",
                    f"{name}:{v}",
                    reason,
                    {"list": name, "field": stored.field, "value": v},
                    None,
                )
            return gone

        return self._change(actor, reason, f"remove {len(values)} from list {name}", change)

    # -- internals -------------------------------------------------------------------------

    def _read(self, fn: Any) -> Any:
        try:
            with self.engine.connect() as conn, conn.begin():
                if conn.dialect.name == "sqlite":  # autocommit connections: one snapshot
                    conn.exec_driver_sql("BEGIN")
                return fn(conn)
        except SQLAlchemyError as e:
            raise database_error(e, self.engine.url) from e

    def _change(self, actor: str, reason: str, summary: str, fn: Any) -> tuple[Any, int]:
        """One transaction: next version (serialised by a row lock), the change, its audit."""
        check_actor(actor)
        _check_reason(reason)
        now = _now()
        try:
            with self.engine.begin() as conn:
                begin_write(conn)  # SQLite: all or nothing, one writer at a time
                newest = conn.execute(
                    select(_v.version).order_by(_v.version.desc()).limit(1).with_for_update()
                ).scalar()
                version = int(newest or 0) + 1
                conn.execute(
                    insert(policy_versions),
                    {
                        "version": version,
                        "created_at": now,
                        "actor": actor,
                        "summary": summary[:255],
                    },
                )
                result = fn(conn, version, now)
        except IntegrityError as e:  # another change took this version at the same moment
            raise InputError(
                "another change to rules or lists was made at the same time; "
                "nothing stored, try again"
            ) from e
        except SQLAlchemyError as e:
            raise database_error(e, self.engine.url) from e
        return result, version


def _version(conn: Connection) -> int:
    return int(conn.execute(select(func.max(_v.version))).scalar() or 0)


def _lists(conn: Connection, name: str | None = None) -> dict[str, StoredList]:
    lists_q = select(_l.name, _l.field)
    entries_q = select(_e.list_name, _e.value)
    if name is not None:
        lists_q = lists_q.where(_l.name == name)
        entries_q = entries_q.where(_e.list_name == name)
    values: dict[str, set[str]] = {}
    for list_name, value in conn.execute(entries_q):
        values.setdefault(list_name, set()).add(value)
    return {n: StoredList(n, f, frozenset(values.get(n, ()))) for n, f in conn.execute(lists_q)}


def _find(conn: Connection, key: str, lock: bool = False) -> StoredRule:
    query = select(policy_rules)
    query = query.where(_r.id == int(key)) if key.isdigit() else query.where(_r.code == key)
    row = conn.execute(query.with_for_update() if lock else query).mappings().first()
    if row is None:
        raise InputError(f"no rule {key!r} (payscore rules list shows them)")
    return _stored(row)


def _stored(row: Any) -> StoredRule:
    return StoredRule(
        int(row["id"]),
        row["code"],
        row["kind"],
        row["action"],
        json.loads(row["params_json"]),
        bool(row["enabled"]),
        row["description"],
        int(row["version"]),
        row["updated_at"],
    )


def _row_rule(row: Any) -> Rule:
    return Rule(row["code"], row["kind"], json.loads(row["params_json"]), row["action"])


def _audit(
    conn: Connection,
    version: int,
    now: datetime,
    actor: str,
    change: str,
    subject: str,
    reason: str,
    before: Any,
    after: Any,
) -> None:
    conn.execute(
        insert(policy_audit),
        {
            "version": version,
            "at": now,
            "actor": actor,
            "change": change,
            "subject": subject[:130],
            "reason": reason,
            "before_json": None if before is None else json.dumps(before, sort_keys=True),
            "after_json": None if after is None else json.dumps(after, sort_keys=True),
        },
    )


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
