"""The webhook benchmark runs end to end (a tiny run; no timing asserted)."""

from __future__ import annotations

from benchmarks.webhooks import run_benchmark


def test_a_tiny_benchmark_run_measures_every_endpoint_without_errors() -> None:
    result = run_benchmark(requests=30, concurrency=2)
    assert [m.name for m in result.measurements] == ["bare", "verify", "webhook"]
    assert all(m.requests == 30 and m.errors == 0 for m in result.measurements)
    assert result.ratio > 0
    assert "webhook / bare" in result.table()
