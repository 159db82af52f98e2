"""Add a rule of your own and score payments with it through the library.

A rule is data: Rule(code, kind, params, action). The kind names an evaluator in
payscore.core.rules.RULE_KINDS; a new kind is one entry there. Here the new kind
"night_amount_above" sends payments above 100 made at night (UTC hour 0-6) to REVIEW with
the reason code NIGHT_LARGE. Rules that compare one feature with a limit need no code at all:
Rule(code, "feature_above", {"feature": ..., "limit": ...}, REVIEW). See docs/rules.md.

    python examples/custom_rule.py                        # the model of model_path, if any
    python examples/custom_rule.py --model path/to/model.joblib

Without a model it trains one on examples/data/payments.csv first (about 10 s).
Thresholds and the stock rules come from your settings (payscore.toml, PAYSCORE_* variables).
`payscore consume` and `payscore score` build the stock policy only: a custom rule runs where
your own code builds the Scorer, as below.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from payscore.config import load_settings
from payscore.core.model import load_artifact, save_artifact
from payscore.core.rules import REVIEW, RULE_KINDS, Columns, Rule, RuleKind
from payscore.core.schema import InvalidMessage, parse_payment
from payscore.core.scoring import Scorer, engine_for
from payscore.errors import ConfigError
from payscore.pipeline import build_scorer

SAMPLE = Path(__file__).resolve().parent / "data" / "payments.csv"


def _evaluate(params: dict, columns: Columns) -> np.ndarray:
    # One boolean per payment for the whole batch: numpy, no loop over payments.
    return (columns["is_night"] > 0) & (columns["amount"] > params["limit"])


def _check(rule: Rule) -> None:
    # Runs when the Rule is created, so a bad parameter fails at startup, not mid-stream.
    limit = rule.params.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0:
        raise ConfigError("limit", f"rule {rule.code}", f"must be a positive number, got {limit!r}")


RULE_KINDS["night_amount_above"] = RuleKind(
    features=lambda params: ("is_night", "amount"),  # engine columns the rule reads
    evaluate=_evaluate,
    check=_check,
)
NIGHT_LARGE = Rule("NIGHT_LARGE", "night_amount_above", {"limit": 100}, REVIEW)

# Four payments as they would arrive on the topic (docs/messages.md).
MESSAGES = [
    ("night-large", "c-1", "02:30:00+00:00", "120.00"),  # night and above 100: fires
    ("day-large", "c-2", "14:30:00+00:00", "120.00"),  # daytime: does not fire
    ("night-small", "c-3", "03:10:00+00:00", "42.50"),  # night but small: does not fire
    ("night-paris", "c-4", "08:45:00+02:00", "115.00"),  # 06:45 UTC, night in UTC: fires
]


def model_path(requested: str | None, configured: str) -> Path:
    """The model to use; trains a small one on the sample data when there is none."""
    path = Path(requested or configured)
    if path.exists():
        return path
    if requested:
        raise SystemExit(f"no model at {path}")
    from payscore.core.training import train_from_csv

    print(f"no model at {path}: training one on {SAMPLE.name} (about 10 s)")
    artifact, _ = train_from_csv(SAMPLE)
    path = Path(tempfile.mkdtemp(prefix="payscore-rule-")) / "model.joblib"
    save_artifact(artifact, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model artifact (default: the model_path setting)")
    args = parser.parse_args()

    settings = load_settings().settings
    artifact = load_artifact(model_path(args.model, settings.model_path))
    # The scorer `payscore consume` builds from these settings: the stock policy.
    without = build_scorer(settings, artifact)
    policy = replace(without.policy, rules=(*without.policy.rules, NIGHT_LARGE))
    # engine_for makes a fresh feature engine computing every column the model and rules
    # read; each scorer owns its engine's state, so the two do not share one.
    with_rule = Scorer(artifact, engine_for(artifact, policy), policy)

    payments = []
    for tx, customer, time_of_day, amount in MESSAGES:
        raw = json.dumps(
            {
                "transaction_id": tx,
                "customer_id": customer,
                "terminal_id": "t-1",
                "amount": amount,
                "currency": "EUR",
                "event_time": f"2018-07-10T{time_of_day}",
            }
        ).encode()
        payment = parse_payment(raw)  # the consumer's own gate
        if isinstance(payment, InvalidMessage):
            raise SystemExit(f"{tx}: {payment.message}")
        payments.append(payment)

    print(f"rules: {', '.join(rule.code for rule in policy.rules)}")
    print(f"{'payment':<12} {'score':>6}  {'stock rules':<12} {'with NIGHT_LARGE':<17} reasons")
    decided = zip(with_rule.score_batch(payments), without.score_batch(payments), strict=True)
    for d, before in decided:
        reasons = ",".join(d.reasons) or "-"
        print(f"{d.transaction_id:<12} {d.score:.4f}  {before.status:<12} {d.status:<17} {reasons}")


if __name__ == "__main__":
    main()
