"""``payscore train``: train the fraud model, print its test metrics, save the artifact."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from payscore.cli.common import DatabaseUrl, console, err_console, settings_from
from payscore.cli.display import progress_bar, report_rejects
from payscore.errors import InputError

_DATE_HELP = "A date, YYYY-MM-DD (UTC), both ends included; derived from the data if not given."


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def _train_from_db(
    settings: Any, given: dict[str, Any], progress: Any, baseline: bool, budget: float | None
) -> Any:
    """Periods from the stored span, then the stored history read in chunks from where the
    replay must start (``Periods.replay_from``)."""
    from payscore.core import training
    from payscore.core.protocol_dates import resolve_periods
    from payscore.store.engine import make_engine, shown_url
    from payscore.store.history import iter_stored, stored_span

    db = make_engine(settings, read_only=True)
    try:
        progress("reading the stored payments' dates", 0, None)
        span = stored_span(db)
        if not span.payments:
            raise InputError(f"no stored payments in {shown_url(db.url)}: nothing to train on")
        periods = resolve_periods(span.first_time, span.last_time, given)
        since, until = periods.replay_from(), periods.kept()[1]
        total = stored_span(db, since, until).payments
        return training.train_on_stored(
            iter_stored(db, since, until),
            periods,
            total,
            progress,
            baseline=baseline,
            source=f"database {shown_url(db.url)}",
            review_budget=budget,
        )
    finally:
        db.dispose()


def _register(settings: Any, path: str) -> None:
    """Record the saved model in the registry (status candidate). The file is what training
    produced, so a registry that cannot be reached is a note, not a failure."""
    from payscore.cli.models import user
    from payscore.errors import PayscoreError
    from payscore.store import registry
    from payscore.store.engine import database_url, make_engine, shown_url

    url = database_url(settings)
    later = f"`payscore models register {path}` registers it later"
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).is_file():
            err_console.print(
                f"note: not registered: no database at {url.database} (`payscore initdb` "
                f"creates it); {later}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            return
    db = make_engine(settings)
    try:
        record, _ = registry.register(db, path, user())
    except PayscoreError as e:
        err_console.print(
            f"note: not registered: {e}; {later}", highlight=False, markup=False, soft_wrap=True
        )
        return
    finally:
        db.dispose()
    console.print(
        f"registered model {record.version} ({record.status}) in {shown_url(url)}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _period_lines(period: dict[str, Any]) -> list[str]:
    """The periods used, with "(derived)" where a bound came from the data."""
    derived = set(period.get("derived", []))
    lines = []
    for part in ("train", "validation", "test"):
        dates = period.get(part) or []
        if not dates:
            lines.append(f"{part:<10} none")
            continue
        marks = [" (derived)" if f"{part}_{end}" in derived else "" for end in ("start", "end")]
        lines.append(f"{part:<10} {dates[0]}{marks[0]} .. {dates[1]}{marks[1]}")
    if "warm_up_until" in period:
        lines.append(f"warm-up    payments before {period['warm_up_until']}: state only")
    return lines + [f"note: {note}" for note in period.get("notes", [])]


def _budget_line(chosen: dict[str, Any]) -> str:
    share = chosen["fraud_share_caught"]
    caught = "no frauds there to catch" if share is None else f"catches {share:.1%} of its frauds"
    return (
        f"review budget {chosen['cards_per_day']:g} cards a day: review threshold "
        f"{chosen['review_threshold']:.4f}, {chosen['expected_cards_per_day']:.1f} cards a day "
        f"to review over the {chosen['days']} validation days, {caught} "
        f"({chosen['frauds']:,} fraudulent payments; reviewed or declined)"
    )


def train(
    ctx: typer.Context,
    data: str = typer.Option(
        None,
        "--data",
        help="Labelled payments (CSV or JSON lines, as for score) to train on instead of the "
        "simulated world; bad rows are skipped and listed (see docs/model.md).",
    ),
    rejects: str = typer.Option(
        None, "--rejects", help="With --data: CSV to write rejected rows to (line, kind, ...)."
    ),
    output: str = typer.Option(
        None,
        "--output",
        "-o",
        help="Where to write the artifact. Default: the model_path setting "
        "(env PAYSCORE_MODEL_PATH).",
    ),
    baseline: bool = typer.Option(
        False, "--baseline", help="Train the handbook's random-forest baseline instead."
    ),
    from_db: bool = typer.Option(
        False,
        "--from-db",
        help="Train on the payments and labels stored in the configured database "
        "(database_url), replayed as the consumer saw them.",
    ),
    database_url: DatabaseUrl = None,
    train_start: str = typer.Option(None, "--train-start", help=_DATE_HELP),
    train_end: str = typer.Option(None, "--train-end", help=_DATE_HELP),
    validation_start: str = typer.Option(
        None, "--validation-start", help=_DATE_HELP + " Sets the thresholds only."
    ),
    validation_end: str = typer.Option(None, "--validation-end", help=_DATE_HELP),
    test_start: str = typer.Option(None, "--test-start", help=_DATE_HELP),
    test_end: str = typer.Option(None, "--test-end", help=_DATE_HELP),
    world: int = typer.Option(
        0,
        "--world",
        help="Train on simulated world N instead of the handbook world (0): every seed "
        "shifted, the same periods (see docs/model.md, Other worlds).",
    ),
    review_budget: float = typer.Option(
        None,
        "--review-budget",
        help="Cards a day the fraud team can review: the review threshold is chosen on the "
        "validation period so the expected daily review load is this (docs/model.md).",
    ),
) -> None:
    """Train the fraud model (simulated world by default) and print its test metrics."""
    # Heavy (scikit-learn, pandas, numba): only when the command runs, never for --help.
    from payscore.core import paymentfile, simulator, training
    from payscore.core.budget import check_budget
    from payscore.core.model import save_artifact
    from payscore.core.protocol_dates import FLAGS, parse_date

    settings = settings_from(ctx, model_path=output, database_url=database_url)
    budget = None if review_budget is None else check_budget(review_budget)
    if data and from_db:
        raise typer.BadParameter("give one source: --data FILE or --from-db", param_hint="--data")
    if world and (data or from_db):
        raise typer.BadParameter(
            "a simulated world is a source too: not with --data or --from-db", param_hint="--world"
        )
    if not 0 <= world <= simulator.MAX_WORLD:
        raise typer.BadParameter(f"must be from 0 to {simulator.MAX_WORLD}", param_hint="--world")
    if data and not Path(data).is_file():  # fail before the progress display starts
        raise InputError(f"--data: no such file {data}")
    if rejects is not None:
        if not data:
            raise typer.BadParameter(
                "needs --data (the simulated world has no bad rows)", param_hint="--rejects"
            )
        paymentfile.check_output(rejects)
    texts = {
        "train_start": train_start,
        "train_end": train_end,
        "validation_start": validation_start,
        "validation_end": validation_end,
        "test_start": test_start,
        "test_end": test_end,
    }
    given: dict[str, date | None] = {
        k: None if v is None else parse_date(FLAGS[k], v) for k, v in texts.items()
    }
    started = time.perf_counter()
    rejected = None
    with progress_bar(err_console) as progress:
        if data:
            labelled = training.read_history(data, progress)
            rejected = labelled.rejected
            report_rejects(err_console, rejected, rejects)
            artifact, metrics = training.train_on_file(
                labelled, progress, baseline=baseline, given=given, review_budget=budget
            )
        elif from_db:
            artifact, metrics = _train_from_db(settings, given, progress, baseline, budget)
        elif any(given.values()) or world or budget is not None:
            artifact, metrics = training.train_default_model(
                progress, baseline=baseline, given=given, world=world, review_budget=budget
            )
        else:  # the handbook's periods
            artifact, metrics = training.train_default_model(progress, baseline=baseline)
    digest = save_artifact(artifact, settings.model_path, key=settings.model_key)
    elapsed = time.perf_counter() - started

    meta = artifact.metadata
    period = meta["training_period"]
    for line in _period_lines(period):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    table = Table(title=f"Test period {period['test'][0]} .. {period['test'][1]}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("AUC ROC", f"{metrics['auc_roc']:.4f}")
    table.add_row("Average precision", f"{metrics['average_precision']:.4f}")
    table.add_row("Card Precision@100", f"{metrics['card_precision_at_100']:.4f}")
    console.print(table)
    console.print(
        f"model {meta['model_type']} trained on {period['train_payments']:,} payments "
        f"({period['train'][0]} .. {period['train'][1]}); thresholds review "
        f"{meta['thresholds']['review']:.4f}, decline {meta['thresholds']['decline']:.4f}",
        highlight=False,
        markup=False,  # the artifact's own words, not styles
    )
    if "review_budget" in meta:
        console.print(
            _budget_line(meta["review_budget"]), highlight=False, markup=False, soft_wrap=True
        )
    if rejected is not None:
        console.print(
            f"{paymentfile.plural(len(rejected), 'row')} of {data} rejected (not trained on)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    console.print(
        f"saved {settings.model_path} (version {artifact.version}) in {elapsed:.0f} s",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    signed = "signed with model_key" if settings.model_key is not None else "not signed"
    console.print(f"digest {digest} ({signed})", highlight=False, markup=False, soft_wrap=True)
    _register(settings, settings.model_path)
    if settings.model_sha256 is not None and settings.model_sha256.lower() != digest:
        err_console.print(
            "note: model_sha256 pins another model; set it to this digest to load this one",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
