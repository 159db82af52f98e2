"""The metrics-cost benchmark pairs each "off" run with its round's "on" run (pure logic)."""

from __future__ import annotations

from payscore.bench.metrics_cost import MetricsCost, Run, report


def test_ratios_pair_runs_by_round_whatever_the_order() -> None:
    cost = MetricsCost(count=100, scrape_every_s=1.0)
    # Round 1 off then on; round 2 on then off, as the benchmark alternates them.
    cost.runs += [Run(False, 1000.0, 100.0, 100), Run(True, 900.0, 110.0, 100)]
    cost.runs += [Run(True, 2000.0, 50.0, 100), Run(False, 1000.0, 100.0, 100)]
    assert cost.rate_ratios() == [0.9, 2.0]
    assert cost.cpu_ratios() == [1.1, 0.5]
    cost.scrape_cpu_ms += [0.5, 0.7, 0.6]
    text = report(cost)
    assert "CPU on/off: median 0.800, range 0.500 to 1.100" in text
    assert "one /metrics rendering: 0.60 ms CPU" in text
    assert "0.060 % of one core" in text
