"""``payscore bench --recovery``: what it measures, on the embedded SQLite (no services)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from payscore.bench.recovery import AFTER, report_lines, run_recovery
from payscore.config import load_settings


def test_a_child_process_imports_only_what_a_rebuild_needs() -> None:
    # The children are timed from their own start: importing the pipeline's model (and so
    # scikit-learn) through the bench package once added 4-7 s to every "ready" figure.
    probe = "import sys, payscore.bench.recovery; print('sklearn' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_recovery_is_timed_from_the_assignment_and_from_the_process_start(
    tmp_path: Path,
) -> None:
    settings = load_settings(overrides={"database_url": f"sqlite:///{tmp_path / 'x.db'}"})
    steps: list[str] = []
    (f,) = run_recovery(settings.settings, [1_000], steps.append)
    assert f.full_rows == 1_000  # the full replay read every stored payment
    assert f.snapshot_rows == AFTER  # the snapshot path only those stored after it
    for rebuild, ready in (
        (f.full_rebuild_s, f.full_ready_s),
        (f.snapshot_rebuild_s, f.snapshot_ready_s),
    ):
        assert 0 < rebuild < ready  # the process start and imports come on top
    assert f.snapshot_bytes > 0 and f.compaction_s > 0
    row = report_lines([f])[-1]
    ratio = f"{f.snapshot_rebuild_s / f.full_rebuild_s:.2f}"
    assert row.startswith("| 1,000 |") and f"| {ratio} |" in row
    assert f"{f.snapshot_rebuild_s:.1f} / {f.snapshot_ready_s:.1f} s" in row
    assert steps[-1] == row  # each size is reported as soon as it is measured
