"""``payscore bench``: how fast the real pipeline runs against the configured broker and database.

``run`` runs the four measurements and builds the report; ``scratch`` makes and removes the
scratch databases and topics and measures the database ceiling; ``probe`` times the pipeline;
``paced`` runs the offered load.
"""

from payscore.bench.run import BenchOptions, BenchReport, run_bench

__all__ = ["BenchOptions", "BenchReport", "run_bench"]
