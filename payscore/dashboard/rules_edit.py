"""The Rules tab's changes: who may make them, the what-if before an activation, the writes.

Every action checks again that editing is on and who is signed in (hiding a form is not a
permission), and writes through ``PolicyStore`` on the dashboard's write engine, so the audit
trail names the signed-in analyst. A new rule and an enable are first tried on history
(``livepolicy.replay``, as ``payscore rules test``) and stored only when the analyst confirms
that report; nothing is written before. No widgets here: the page is ``rules_view.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from payscore.config import Settings
from payscore.dashboard.auth import labelling_off_reason
from payscore.errors import InputError
from payscore.livepolicy import replay, rule_from_text, stock_codes
from payscore.store.policy import PolicyStore

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from payscore.core.policy_whatif import WhatIf

# The replay runs inside the dashboard server and holds the days (plus the features' 37-day
# warm-up) in memory: a week by default, a month at most; `payscore rules test` goes further.
WHATIF_DAYS = 7
MAX_WHATIF_DAYS = 31
MAX_VALUES = 1000  # list values per change from the page (the CLI takes 10,000)
MAX_VALUES_TEXT = 100_000  # characters of the values box
_SPLIT = re.compile(r"[\s,]+")


def editing_off_reason(settings: Settings) -> str | None:
    """Why the page offers no rule or list changes at all, or None when it may."""
    if not settings.dashboard_policy_editing:
        return (
            "Rule and list changes are off (`dashboard_policy_editing = false`): this tab is "
            "read-only; `payscore rules` and `payscore lists` make changes."
        )
    no_sign_in = labelling_off_reason(settings)
    if no_sign_in is not None:
        return f"Rule and list changes need the analyst sign-in. {no_sign_in}"
    return None


@dataclass(frozen=True)
class Pending:
    """A change tried on history, stored only when the analyst confirms it."""

    action: str  # "add" or "enable"
    code: str  # the rule's code
    text: str  # add: the rule as written (parsed again on confirming); enable: ""
    fmt: str
    reason: str
    days: int
    report: WhatIf
    first: date
    last: date
    version: int | None  # the policy version the report compared with


def split_values(text: str) -> list[str]:
    """List values from a text box: one per line, or separated by commas or spaces."""
    if len(text) > MAX_VALUES_TEXT:
        raise InputError(f"at most {MAX_VALUES_TEXT:,} characters of values")
    values = [v for v in _SPLIT.split(text) if v]
    if not values:
        raise InputError("give at least one value")
    if len(values) > MAX_VALUES:
        raise InputError(f"at most {MAX_VALUES:,} values per change (payscore lists add: more)")
    return values


def whatif_days(days: Any) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_WHATIF_DAYS:
        raise InputError(f"the what-if covers 1 to {MAX_WHATIF_DAYS} days")
    return days


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InputError("say why, for the audit trail")
    return reason


class Editor:
    """Rule and list changes for the signed-in analyst; each call checks permission itself."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        write_engine: Callable[[], Engine],
        signed_in: Callable[[], str | None],
        whatif: Callable[..., Any] = replay,
    ) -> None:
        self.settings, self._engine, self._signed_in = settings, write_engine, signed_in
        self._whatif = whatif

    def analyst(self) -> str:
        """The signed-in analyst allowed to change rules now; else a refusal."""
        off = editing_off_reason(self.settings())
        if off is not None:
            raise InputError(off)
        who = self._signed_in()
        if who is None:
            raise InputError("sign in before changing rules or lists")
        return who

    def _store(self) -> PolicyStore:
        return PolicyStore(self._engine())

    # -- tried on history, then confirmed ------------------------------------------------

    def try_rule(self, text: str, fmt: str, reason: str, days: int) -> Pending:
        """Check a new rule (the CLI's parser) and replay it; nothing is stored."""
        self.analyst()
        spec = rule_from_text(text, fmt)
        settings = self.settings()
        self._addable(spec.rule.code, settings)
        return self._tried("add", spec.rule.code, text, fmt, reason, days, rule=spec.rule)

    def try_enable(self, key: str, reason: str, days: int) -> Pending:
        """Replay a disabled stored rule as if enabled; nothing is stored."""
        self.analyst()
        stored = self._store().rule(key)
        if stored.enabled:
            raise InputError(f"rule {stored.code} is already enabled; nothing changed")
        return self._tried("enable", stored.code, "", "", reason, days, rule_key=stored.code)

    def _tried(
        self, action: str, code: str, text: str, fmt: str, reason: str, days: int, **change: Any
    ) -> Pending:
        reason, days = _reason(reason), whatif_days(days)
        report, _, first, last, version = self._whatif(self.settings(), days, **change)
        return Pending(action, code, text, fmt, reason, days, report, first, last, version)

    def confirm(self, pending: Pending) -> str:
        """Store the change the analyst saw tried, if the policy is still the one it was tried
        against; returns what was done."""
        who = self.analyst()
        store = self._store()
        now = store.version()
        if (pending.version or 0) != now:
            raise InputError(
                f"the policy changed since the what-if (version {pending.version or 0}, now "
                f"{now}); nothing stored, try it again"
            )
        if pending.action == "add":
            spec = rule_from_text(pending.text, pending.fmt)
            if spec.rule.code != pending.code:
                raise InputError("the rule is not the one tried; nothing stored")
            stored, version = store.add_rule(
                spec, who, pending.reason, reserved=stock_codes(self.settings())
            )
            return f"Rule {stored.code} added (id {stored.id}) by {who}; policy version {version}."
        if pending.action == "enable":
            stored, version = store.set_enabled(pending.code, True, who, pending.reason)
            return f"Rule {stored.code} enabled by {who}; policy version {version}."
        raise InputError(f"unknown change {pending.action!r}")

    # -- changes without a what-if --------------------------------------------------------

    def disable(self, key: str, reason: str) -> str:
        who = self.analyst()
        stored, version = self._store().set_enabled(key, False, who, _reason(reason))
        return f"Rule {stored.code} disabled by {who}; policy version {version}."

    def add_entries(self, name: str, field: str | None, values: str, reason: str) -> str:
        who = self.analyst()
        added, version = self._store().add_entries(
            name.strip(), field or None, split_values(values), who, _reason(reason)
        )
        return f"Added {len(added):,} to list {name.strip()} by {who}; policy version {version}."

    def remove_entries(self, name: str, values: str, reason: str) -> str:
        who = self.analyst()
        gone, version = self._store().remove_entries(
            name.strip(), split_values(values), who, _reason(reason)
        )
        return f"Removed {len(gone):,} from list {name.strip()} by {who}; policy version {version}."

    def _addable(self, code: str, settings: Settings) -> None:
        """Refuse before the replay what storing would refuse anyway: a taken code."""
        if code in stock_codes(settings):
            raise InputError(f"rule code {code} is taken by a stock rule from settings")
        if code in {r.code for r in self._store().rules()}:
            raise InputError(f"a rule with code {code} exists already")
