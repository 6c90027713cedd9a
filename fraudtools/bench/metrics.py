"""Figures of a run: the worker's Prometheus text per stage, latency percentiles, the
progress line."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

__all__ = ["STAGES", "parse_metrics", "percentiles", "progress", "stage_figures"]

#: The worker's stages, as its ``fraud_stage_seconds`` metric labels them.
STAGES = ("decode", "redis", "features", "model", "emit")

_METRIC = re.compile(r'^(fraud_[a-z_]+?)(?:\{([^}]*)\})? ([0-9.eE+-]+|NaN)$')


def progress(message: str) -> None:
    """A progress line on stdout: ``[bench HH:MM:SS] message``."""
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99, max and mean, rounded to 0.01 (NaN for no values)."""
    if not len(values_ms):
        return {k: float("nan") for k in ("p50", "p95", "p99", "max", "mean")}
    p50, p95, p99, top = np.percentile(values_ms, [50, 95, 99, 100])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2),
            "max": round(float(top), 2), "mean": round(float(np.mean(values_ms)), 2)}


def parse_metrics(text: str) -> dict[str, float]:
    """The worker's Prometheus text as ``{"name{labels}": value}`` (fraud_* series only)."""
    out = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            out[f"{m[1]}{{{m[2] or ''}}}"] = float(m[3])
    return out


def stage_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Per-stage time of the worker between two scrapes: mean per batch and per event."""
    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    events = delta("fraud_batch_size_sum{}")
    batches = delta("fraud_batch_size_count{}")
    per_batch: dict[str, float | None] = {}
    per_event: dict[str, float | None] = {}
    for stage in STAGES:
        seconds = delta(f'fraud_stage_seconds_sum{{stage="{stage}"}}')
        count = delta(f'fraud_stage_seconds_count{{stage="{stage}"}}')
        per_batch[stage] = round(seconds / count * 1000, 4) if count else None
        per_event[stage] = round(seconds / events * 1000, 4) if events else None
    e2d_n = delta("fraud_event_to_decision_seconds_count{}")
    gc_pauses = gc_long = gc_seconds = 0.0
    for generation in range(3):
        labels = f'generation="{generation}"'
        n = delta(f"fraud_gc_pause_seconds_count{{{labels}}}")
        gc_pauses += n
        gc_long += n - delta(f'fraud_gc_pause_seconds_bucket{{{labels},le="0.01"}}')
        gc_seconds += delta(f"fraud_gc_pause_seconds_sum{{{labels}}}")
    return {
        "events": int(events),
        "batches": int(batches),
        "mean_batch_size": round(events / batches, 1) if batches else None,
        "ms_per_batch": per_batch,
        "ms_per_event": per_event,
        "ms_per_event_total": round(sum(v for v in per_event.values() if v), 4),
        "worker_record_to_decision_ms_mean": (
            round(delta("fraud_event_to_decision_seconds_sum{}") / e2d_n * 1000, 2)
            if e2d_n else None),
        # the worker's garbage-collector pauses: how many, over 10 ms, and their total
        "gc": {"pauses": int(gc_pauses), "over_10ms": int(gc_long),
               "ms_total": round(gc_seconds * 1000, 1)},
    }
