"""benchmarks/_common.merge_runs: a row measured in slices is reported as one run.

The benchmark's figures are only as good as this merge: counts must add up, and percentiles must
be those of all the slices' latencies pooled, not an average of the slices' percentiles.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_COMMON = Path(__file__).resolve().parent.parent / "benchmarks" / "_common.py"


@pytest.fixture(scope="module")
def merge_runs():
    spec = importlib.util.spec_from_file_location("bench_common", _COMMON)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.merge_runs


GRID = [*range(1, 90), *(p / 10 for p in range(900, 1000)), 99.95, 99.99, 100]


def run(requests: int, seconds: float, latency_us, **errors) -> dict:
    """A wrk summary as xcap.lua prints it; ``latency_us(p)`` is the latency at percentile p."""
    counts = {k: errors.get(k, 0) for k in ("connect", "read", "write", "status", "timeout")}
    quantiles = [[p, latency_us(p)] for p in GRID]
    return {"requests": requests, "duration_us": int(seconds * 1e6), **counts, "errors": sum(counts.values()),
            "p50_us": latency_us(50), "p90_us": latency_us(90), "p99_us": latency_us(99),
            "max_us": latency_us(100), "mean_us": float(latency_us(50)), "quantiles": quantiles,
            "server_cpu_us": 100.0, "db_cpu_us": 50.0}


def test_counts_add_up_and_the_rate_is_over_all_slices(merge_runs):
    merged = merge_runs([run(3000, 2.0, lambda p: 1000, status=2), run(1000, 2.0, lambda p: 1000, read=5)])
    assert merged["requests"] == 4000
    assert merged["rps"] == pytest.approx(1000.0)
    assert (merged["status"], merged["read"], merged["errors"]) == (2, 5, 7)
    assert merged["slices"] == 2


def test_percentiles_are_those_of_the_pooled_latencies(merge_runs):
    # 900 requests at 1 ms and 100 at 30 ms: pooled, 90 % are at 1 ms and the p99 is 30 ms,
    # where averaging the slices' p99s would say 15.5 ms.
    fast, slow = run(900, 2.0, lambda p: 1000), run(100, 2.0, lambda p: 30000)
    merged = merge_runs([fast, slow])
    assert merged["p50_us"] == 1000
    assert merged["p90_us"] == 1000
    assert merged["p99_us"] == 30000
    assert merged["p99_ms"] == 30.0
    assert merged["max_us"] == 30000


def test_slices_of_one_distribution_merge_to_it(merge_runs):
    def latency(p):
        return int(500 + 40 * p + (4000 if p >= 99 else 0))

    one = run(5000, 2.0, latency)
    merged = merge_runs([one, run(5000, 2.0, latency), run(5000, 2.0, latency)])
    assert (merged["p50_us"], merged["p90_us"], merged["p99_us"]) == (one["p50_us"], one["p90_us"], one["p99_us"])


def test_cpu_per_request_is_weighted_by_requests(merge_runs):
    a, b = run(1000, 2.0, lambda p: 1000), run(3000, 2.0, lambda p: 1000)
    a["server_cpu_us"], b["server_cpu_us"] = 400.0, 200.0
    assert merge_runs([a, b])["server_cpu_us"] == pytest.approx(250.0)
