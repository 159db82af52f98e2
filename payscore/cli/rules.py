"""``payscore rules list|add|disable|enable|show|history|test``: live rules in the database.

A thin shell over ``store/policy.py``: every change is checked (core/policy.py), stored with a
new policy version and an audit row, and picked up by a running ``consume`` within
``policy_poll_seconds``. The actor recorded is ``--actor``, else the operating-system user.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from payscore.cli.common import DatabaseUrl, console, settings_from
from payscore.errors import InputError

if TYPE_CHECKING:
    from payscore.config import Settings
    from payscore.store.policy import PolicyStore

Actor = Annotated[
    str | None,
    typer.Option("--actor", help="Who makes the change, for the audit trail (default: OS user)."),
]
Reason = Annotated[str, typer.Option("--reason", help="Why, for the audit trail.")]


def register(app: typer.Typer) -> None:
    app.info.name = "rules"
    app.callback()(rules)
    app.command("list")(list_cmd)
    app.command("show")(show)
    app.command("add")(add)
    app.command("disable")(disable)
    app.command("enable")(enable)
    app.command("history")(history)
    app.command("test")(test_cmd)


def rules() -> None:
    """Manage live rules: list, add, disable, enable, show, history, and test one on history.

    Changes are versioned and audited in the database; a running consume applies them at a
    batch boundary within policy_poll_seconds, without a restart (docs/rules.md).
    """


def actor_of(actor: str | None) -> str:
    """``--actor``, else the operating-system user running the command."""
    from payscore.store.policy import check_actor

    if actor is None:
        try:
            actor = getpass.getuser()
        except (OSError, KeyError) as e:
            raise InputError("cannot tell who you are; pass --actor") from e
    return check_actor(actor)


def open_store(ctx: typer.Context, database_url: str | None) -> tuple[Settings, PolicyStore]:
    from payscore.store.engine import make_engine
    from payscore.store.policy import PolicyStore

    settings = settings_from(ctx, database_url=database_url)
    return settings, PolicyStore(make_engine(settings))


def with_store(ctx: typer.Context, database_url: str | None, fn: Any) -> Any:
    """``fn(settings, store)`` with a store on the configured database, disposed after."""
    settings, store = open_store(ctx, database_url)
    try:
        return fn(settings, store)
    finally:
        store.engine.dispose()


def parse_param(text: str) -> tuple[str, Any]:
    """``name=value``; the value is read as JSON when it parses (5000, ["a","b"]), else text."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise InputError(f"--param {text!r}: write name=value")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def read_rule_file(path: str) -> dict[str, Any]:
    """One rule as a TOML or JSON table (by the file's suffix)."""
    from payscore.livepolicy import MAX_RULE_TEXT_BYTES, rule_table

    p = Path(path)
    try:
        if p.stat().st_size > MAX_RULE_TEXT_BYTES:
            raise InputError(f"{path}: larger than {MAX_RULE_TEXT_BYTES} bytes")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from e
    return rule_table(text, "json" if p.suffix.lower() == ".json" else "toml", path)


def rule_from(
    file: str | None,
    code: str | None,
    kind: str | None,
    action: str | None,
    params: list[str],
    description: str | None,
) -> Any:
    """The checked RuleSpec from a file, or from flags (flags override the file's keys)."""
    from payscore.core.policy import parse_rule

    data: dict[str, Any] = read_rule_file(file) if file else {}
    for key, value in (
        ("code", code),
        ("kind", kind),
        ("action", action),
        ("description", description),
    ):
        if value is not None:
            data[key] = value
    if params:
        data["params"] = {**data.get("params", {}), **dict(parse_param(p) for p in params)}
    return parse_rule(data, file or "flags")


def _params(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _print(text: str) -> None:
    console.print(text, highlight=False, markup=False, soft_wrap=True)  # the team's words


def list_cmd(ctx: typer.Context, database_url: DatabaseUrl = None) -> None:
    """List the stored rules (enabled and disabled) and the current policy version."""
    _, store = open_store(ctx, database_url)
    try:
        rows, version = store.rules(), store.version()
    finally:
        store.engine.dispose()
    _print(f"policy version {version}")
    for r in rows:
        state = "enabled " if r.enabled else "disabled"
        _print(f"{r.id:>4} {state} {r.code} {r.kind} {r.action} {_params(r.params)}")
    if not rows:
        _print("no stored rules (the stock rules from settings apply)")


def show(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="Rule code or id."),
    database_url: DatabaseUrl = None,
) -> None:
    """Show one rule: kind, action, parameters, state and the version of its last change."""
    _, store = open_store(ctx, database_url)
    try:
        r = store.rule(key)
    finally:
        store.engine.dispose()
    _print(
        json.dumps(
            {
                "id": r.id,
                **r.as_dict(),
                "version": r.version,
                "updated_at": r.updated_at.isoformat(),
            },
            indent=2,
            sort_keys=True,
        )
    )


def add(
    ctx: typer.Context,
    file: str = typer.Option(None, "--file", "-f", help="The rule as a TOML or JSON table."),
    code: str = typer.Option(None, "--code", help="Reason code, e.g. BLOCKED_CUSTOMER."),
    kind: str = typer.Option(None, "--kind", help="Rule kind (docs/rules.md)."),
    action: str = typer.Option(None, "--action", help="APPROVE, REVIEW or DECLINE."),
    param: Annotated[
        list[str] | None, typer.Option("--param", help="name=value (value as JSON or text).")
    ] = None,
    description: str = typer.Option(None, "--description", help="What the rule is for."),
    reason: Reason = "",
    actor: Actor = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a rule (from flags or a file), enabled; a malformed rule is refused, nothing stored."""
    from payscore.livepolicy import stock_codes

    spec = rule_from(file, code, kind, action, param or [], description)
    who = actor_of(actor)
    settings, store = open_store(ctx, database_url)
    try:
        stored, version = store.add_rule(spec, who, reason, reserved=stock_codes(settings))
    finally:
        store.engine.dispose()
    _print(f"added rule {stored.id} {stored.code}; policy version {version}")


def _toggle_command(enabled: bool, doc: str) -> Any:
    word = "enabled" if enabled else "disabled"

    def command(
        ctx: typer.Context,
        key: str = typer.Argument(..., help="Rule code or id."),
        reason: Reason = "",
        actor: Actor = None,
        database_url: DatabaseUrl = None,
    ) -> None:
        who = actor_of(actor)
        stored, version = with_store(
            ctx, database_url, lambda _, store: store.set_enabled(key, enabled, who, reason)
        )
        _print(f"{word} rule {stored.code}; policy version {version}")

    command.__doc__ = doc
    return command


disable = _toggle_command(False, "Disable a rule: it stays stored and audited, and stops firing.")
enable = _toggle_command(True, "Enable a disabled rule again.")


def history(
    ctx: typer.Context,
    key: str = typer.Argument(None, help="A rule code or list name (default: every change)."),
    limit: int = typer.Option(
        50, "--limit", min=1, max=1000, help="At most this many, newest first."
    ),
    database_url: DatabaseUrl = None,
) -> None:
    """The audit trail: version, when, who, what, why, before and after."""
    _, store = open_store(ctx, database_url)
    try:
        entries = store.history(key, limit)
    finally:
        store.engine.dispose()
    for e in entries:
        _print(
            f"v{e.version} {e.at.isoformat(timespec='seconds')} {e.actor} {e.change} "
            f"{e.subject} reason={e.reason!r}"
        )
        _print(f"    before {json.dumps(e.before, sort_keys=True)}")
        _print(f"    after  {json.dumps(e.after, sort_keys=True)}")
    if not entries:
        _print("no changes recorded")


def test_cmd(
    ctx: typer.Context,
    file: str = typer.Argument(None, help="A rule file (TOML or JSON) to try."),
    rule_id: str = typer.Option(None, "--id", help="Try a stored rule (code or id) instead."),
    review_threshold: float = typer.Option(
        None, "--review-threshold", min=0.0, max=1.0, help="Try this review threshold instead."
    ),
    days: int = typer.Option(30, "--days", min=1, max=366, help="Replay the last N days."),
    model: str = typer.Option(None, "--model", help="Model artifact. Env: PAYSCORE_MODEL_PATH."),
    database_url: DatabaseUrl = None,
) -> None:
    """What-if: replay stored history through the engine with a rule or threshold changed.

    Reports per day and in total: payments flagged, labelled fraud among them, extra review
    load, and the overlap with what the current policy already flags.
    """
    from payscore.cli.whatif import run_whatif

    chosen = sum(x is not None for x in (file, rule_id, review_threshold))
    if chosen != 1:
        raise InputError("give exactly one of RULE-FILE, --id or --review-threshold")
    run_whatif(ctx, file, rule_id, review_threshold, days, model, database_url)
