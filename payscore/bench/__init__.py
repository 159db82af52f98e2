"""``payscore bench``: how fast the real pipeline runs against the configured broker and database.

``run`` runs the four measurements and builds the report; ``scratch`` makes and removes the
scratch databases and topics and measures the database ceiling; ``probe`` times the pipeline;
``paced`` runs the offered load.

The run's names are imported on first use: a benchmark child timed from its own start
(``python -m payscore.bench.recovery``) would otherwise import the pipeline, the model and
scikit-learn first (4-7 s on the 2-core test machine), which it never uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from payscore.bench.run import BenchOptions, BenchReport, run_bench

__all__ = ["BenchOptions", "BenchReport", "run_bench"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from payscore.bench import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
