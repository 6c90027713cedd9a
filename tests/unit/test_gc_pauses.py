"""The worker's garbage-collector pauses reach /metrics, and the bench reads them back."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, generate_latest

from fraudtools.bench import parse_metrics, stage_figures
from service.metrics import GcPauses


def test_every_collection_is_timed_and_the_bench_counts_it():
    registry = CollectorRegistry()
    pauses = GcPauses()
    before = parse_metrics(generate_latest(registry).decode())
    pauses.install(registry)
    pauses.install(registry)  # a restarted app installs it again: still one collector
    try:
        gc.collect()
        gc.collect()
        after = parse_metrics(generate_latest(registry).decode())
    finally:
        pauses.uninstall(registry)
    figures = stage_figures(before, after)["gc"]
    assert figures["pauses"] >= 2  # a young collection may slip in between
    assert figures["ms_total"] > 0
    assert 0 <= figures["over_10ms"] <= figures["pauses"]
    full = after['fraud_gc_pause_seconds_count{generation="2"}']
    assert full >= 2  # the two asked for (the collector may add one of its own)
    buckets = [
        v for k, v in after.items() if k.startswith('fraud_gc_pause_seconds_bucket{generation="2"')
    ]
    assert buckets == sorted(buckets) and buckets[-1] == full  # cumulative; +Inf holds them all
