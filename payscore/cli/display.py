"""What long commands show while they work and when rows are bad: rich progress bars drawn
from the core's plain ``progress(stage, done, total)`` callbacks, and the rejected-rows list."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from payscore.errors import InputError

if TYPE_CHECKING:
    from payscore.core.paymentfile import Progress as ProgressCallback
    from payscore.core.paymentfile import RejectedRow

SHOWN_REJECTS = 10


class _CountColumn(ProgressColumn):
    """ "12,000/50,000 payments  8,412/s"; blank for a stage without counts (a model fit)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        if task.total is None and not task.completed:
            return Text("")
        done = f"{int(task.completed):,}"
        if task.total is not None:
            done += f"/{int(task.total):,}"
        speed = task.finished_speed or task.speed
        rate = f"  {speed:,.0f}/s" if speed else ""
        return Text(f"{done} {self.unit}{rate}", style="progress.download")


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


@contextmanager
def progress_bar(console: Console, unit: str = "payments") -> Iterator[ProgressCallback]:
    """A ``progress(stage, done, total)`` callback drawing one bar per stage on ``console``.

    Only on a terminal: in tests, CI logs and pipes the callback does nothing, so the output
    holds results, not bar redraws. The bars vanish when the block ends.
    """
    if not console.is_terminal:
        yield _noop
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),  # room on an 80-column terminal for counts and rate
        _CountColumn(unit),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int | None) -> None:
            task = tasks.get(stage)
            if task is None:
                for earlier in tasks.values():
                    bar.update(earlier, visible=False)
                task = tasks[stage] = bar.add_task(stage, total=total)
            bar.update(task, completed=done, total=total)

        yield update


def report_rejects(
    console: Console, rejected: Sequence[RejectedRow], path: str | None, flag: str = "--rejects"
) -> None:
    """The first rejected rows on ``console`` (line, kind, reason) and, with a path, all of
    them in a CSV (line, kind, field, message)."""
    from payscore.core.paymentfile import plural

    for r in rejected[:SHOWN_REJECTS]:
        console.print(
            f"line {r.line}: {r.kind}: {r.message}", highlight=False, markup=False, soft_wrap=True
        )
    if len(rejected) > SHOWN_REJECTS:
        more = len(rejected) - SHOWN_REJECTS
        hint = "" if path else f" (use {flag} FILE to keep them all)"
        console.print(
            f"... and {plural(more, 'more rejected row')}{hint}", highlight=False, markup=False
        )
    if path is None:
        return
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("line", "kind", "field", "message"))
            writer.writerows((r.line, r.kind, r.field or "", r.message) for r in rejected)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from e
