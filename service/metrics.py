"""Prometheus metrics of the worker, served on ``/metrics`` beside ``/health``."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_SIZE",
    "DEAD_LETTERS",
    "DECISIONS",
    "DEGRADED",
    "EVENT_TO_DECISION_SECONDS",
    "GC_FROZEN",
    "GC_PAUSE_SECONDS",
    "LABELS",
    "MODEL_INFO",
    "RECORDED_LATE",
    "STAGE_SECONDS",
    "STATE_UNAVAILABLE",
    "UNRECORDED_DROPPED",
    "time_gc_pauses",
]

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

DECISIONS = Counter("fraud_decisions_total", "Decisions emitted", ["action"])
DEAD_LETTERS = Counter(
    "fraud_dead_letters_total", "Events sent to the dead-letter topic", ["topic"]
)
LABELS = Counter("fraud_labels_total", "Fraud labels recorded")
DEGRADED = Counter("fraud_degraded_decisions_total", "Decisions made without state (fail-open)")
RECORDED_LATE = Counter(
    "fraud_recorded_late_total", "Degraded transactions recorded in Redis once it was back"
)
UNRECORDED_DROPPED = Counter(
    "fraud_unrecorded_dropped_total", "Degraded transactions never recorded (backlog full)"
)
STATE_UNAVAILABLE = Counter("fraud_state_unavailable_total", "Batches held because Redis was down")
STAGE_SECONDS = Histogram(
    "fraud_stage_seconds", "Time per batch in each stage", ["stage"], buckets=_FAST
)
EVENT_TO_DECISION_SECONDS = Histogram(
    "fraud_event_to_decision_seconds",
    "From the Kafka record's timestamp to its decision being sent",
    buckets=_FAST + (2.5, 5.0, 10.0),
)
BATCH_SIZE = Histogram(
    "fraud_batch_size", "Events per micro-batch", buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
)
MODEL_INFO = Gauge("fraud_model_info", "The model in service (value 1)", ["version"])
GC_PAUSE_SECONDS = Histogram(
    "fraud_gc_pause_seconds",
    "Pauses of Python's garbage collector (every decision in flight waits them out)",
    ["generation"],
    buckets=_FAST,
)
GC_FROZEN = Gauge("fraud_gc_frozen_objects", "Objects kept out of the collector's scans")


def time_gc_pauses() -> Callable[[str, dict[str, Any]], None]:
    """Observe every collection's duration in :data:`GC_PAUSE_SECONDS`; returns the
    callback installed in ``gc.callbacks``."""
    started = 0.0
    pauses = [GC_PAUSE_SECONDS.labels(str(g)) for g in range(3)]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            pauses[info["generation"]].observe(time.perf_counter() - started)

    gc.callbacks.append(on_gc)
    return on_gc
