"""The worker's garbage-collector pauses reach /metrics, and the bench reads them back."""

from __future__ import annotations

import gc

from prometheus_client import generate_latest

from fraudtools.bench import parse_metrics, stage_figures
from service import metrics


def test_every_collection_is_timed_and_the_bench_counts_it():
    before = parse_metrics(generate_latest().decode())
    on_gc = metrics.time_gc_pauses()
    try:
        gc.collect()
        gc.collect()
    finally:
        gc.callbacks.remove(on_gc)
    after = parse_metrics(generate_latest().decode())
    figures = stage_figures(before, after)["gc"]
    assert figures["pauses"] >= 2  # a young collection may slip in between
    assert figures["ms_total"] > 0
    assert 0 <= figures["over_10ms"] <= 2
    assert after['fraud_gc_pause_seconds_count{generation="2"}'] - before.get(
        'fraud_gc_pause_seconds_count{generation="2"}', 0
    ) == 2
