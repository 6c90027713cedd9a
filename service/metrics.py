"""Prometheus metrics of the worker, served on ``/metrics`` beside ``/health``."""

from __future__ import annotations

import gc
import math
import time
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

__all__ = [
    "BATCH_SIZE",
    "DEAD_LETTERS",
    "DECISIONS",
    "DUPLICATE_DECISIONS",
    "LAST_DECISION",
    "CONSUMER_LAG",
    "OLDEST_UNDECIDED",
    "REDIS_MAX_MEMORY",
    "REDIS_USED_MEMORY",
    "CAPPED",
    "CHALLENGER_INFO",
    "CHALLENGER_REFUSED",
    "DEGRADED",
    "PARTIAL_STATE",
    "STATE_LOST",
    "STATE_PARTIAL",
    "EVENT_TO_DECISION_SECONDS",
    "FAULTS",
    "GC_FROZEN",
    "GC_PAUSES",
    "LABELS",
    "LABELS_WAITING",
    "LIST_CHANGES",
    "LIST_ENTRIES",
    "MODEL_FAILURES",
    "MODEL_INFO",
    "MODEL_REFUSED",
    "REASON_FAILURES",
    "RECORDED_LATE",
    "RULE_ERRORS",
    "RULE_HITS",
    "RULES_INFO",
    "RULES_REFUSED",
    "SHADOW_DECISIONS",
    "SHADOW_FAILURES",
    "STAGE_SECONDS",
    "STATE_UNAVAILABLE",
    "UNRECORDED_DROPPED",
    "HELD",
    "MISKEYED",
    "POISON",
    "GcPauses",
]

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

DECISIONS = Counter(
    "fraud_decisions_total", "Decisions the broker has acknowledged, by action", ["action"]
)
DUPLICATE_DECISIONS = Counter(
    "fraud_duplicate_decisions_total",
    "Decisions marked duplicate: true (a transaction seen before on its card), acknowledged",
)
LAST_DECISION = Gauge(
    "fraud_last_decision_timestamp_seconds",
    "When the broker last acknowledged a decision of this worker (Unix time; 0: none yet)",
)
CONSUMER_LAG = Gauge(
    "fraud_consumer_lag",
    "Records on the broker not yet fetched by this worker (end offset - position), by "
    "assigned partition",
    ["topic", "partition"],
)
OLDEST_UNDECIDED = Gauge(
    "fraud_oldest_undecided_seconds",
    "Age (by its Kafka timestamp) of the oldest record fetched and not yet decided and "
    "delivered; 0 when none waits",
)
REDIS_USED_MEMORY = Gauge(
    "fraud_redis_used_memory_bytes", "Memory the state's Redis uses, by primary", ["node"]
)
REDIS_MAX_MEMORY = Gauge(
    "fraud_redis_maxmemory_bytes", "The state's Redis memory limit (0: none), by primary",
    ["node"],
)
DEAD_LETTERS = Counter(
    "fraud_dead_letters_total",
    "Events sent to the dead-letter topic, by source topic and reason class (invalid, "
    "conflict, miskeyed, label, internal)",
    ["topic", "reason"],
)
LABELS = Counter("fraud_labels_total", "Fraud labels recorded")
CAPPED = Counter(
    "fraud_capped_total",
    "History entries dropped by a size bound (FeatureSpec card_max_entries, "
    "terminal_max_entries, terminal_max_labels), by entity: a busy card or terminal",
    ["entity"],
)
LABELS_WAITING = Gauge(
    "fraud_labels_waiting", "Labels waiting for their transaction to be recorded"
)
STATE_LOST = Counter(
    "fraud_state_lost_total", "Times the feature state was found lost (its marker gone or changed)"
)
STATE_PARTIAL = Gauge(
    "fraud_state_partial",
    "1 while the feature state is partial (lost, not rebuilt, younger than the retention)",
)
PARTIAL_STATE = Counter(
    "fraud_partial_state_decisions_total", "Decisions made on a partial feature state (degraded)"
)
DEGRADED = Counter("fraud_degraded_decisions_total", "Decisions made without state (fail-open)")
RECORDED_LATE = Counter(
    "fraud_recorded_late_total", "Degraded transactions recorded in Redis once it was back"
)
UNRECORDED_DROPPED = Counter(
    "fraud_unrecorded_dropped_total", "Degraded transactions never recorded (backlog full)"
)
CLUSTER_REFUSED = Counter(
    "fraud_redis_cluster_refused_total",
    "Commands a changing Redis Cluster refused and the store sent again (MOVED, ASK, "
    "TRYAGAIN, CLUSTERDOWN)",
    ["reply"],
)
STATE_UNAVAILABLE = Counter("fraud_state_unavailable_total", "Batches held because Redis was down")
HELD = Counter(
    "fraud_held_total",
    "Batches held because every message failed alone (a bug, not the messages)",
    ["part"],
)
MISKEYED = Counter(
    "fraud_miskeyed_total", "Records whose Kafka key is not their card id", ["topic"]
)
POISON = Counter(
    "fraud_poison_total", "Messages dead-lettered because they alone failed with an internal error"
)
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
MODEL_REFUSED = Gauge(
    "fraud_model_refused_info",
    "The last model version refused (value 1), and why",
    ["version", "reason"],
)
CHALLENGER_INFO = Gauge(
    "fraud_challenger_info",
    "The challenger scored in the shadow of the model (value 1; no series: none)",
    ["version"],
)
CHALLENGER_REFUSED = Gauge(
    "fraud_challenger_refused_info",
    "The last challenger version refused (value 1; no series once one is served or none is "
    "named), and why",
    ["version", "reason"],
)
SHADOW_DECISIONS = Counter(
    "fraud_shadow_decisions_total",
    "Transactions the challenger scored, by the action decided and the challenger's",
    ["action", "shadow_action"],
)
SHADOW_FAILURES = Counter(
    "fraud_shadow_failures_total",
    "Batches the challenger failed to score (decided without shadow, never held)",
)
REASON_FAILURES = Counter(
    "fraud_reason_failures_total",
    "Batches whose reasons failed to compute (decided without reasons, never held)",
)
RULES_INFO = Gauge(
    "fraud_rules_info", "The rules file in service (value 1; no series: no rules file)",
    ["version", "rules"],
)
RULES_REFUSED = Gauge(
    "fraud_rules_refused_info",
    "The last rules file refused (value 1; the rules in service stay), and why",
    ["version", "reason"],
)
RULE_HITS = Counter(
    "fraud_rule_hits_total", "Transactions on which a rule fired, by rule id", ["rule"]
)
RULE_ERRORS = Counter(
    "fraud_rule_errors_total",
    "Transactions on which a rule failed to evaluate (it did not fire), by rule id",
    ["rule"],
)
LIST_ENTRIES = Gauge(
    "fraud_list_entries",
    "Entries of an allow or block list in this worker's memory, not expired, by list",
    ["list"],
)
LIST_CHANGES = Counter(
    "fraud_list_changes_total",
    "List changes this worker applied to Redis from the lists topic, by list and op (add, "
    "remove; applying the same change again counts again)",
    ["list", "op"],
)
MODEL_FAILURES = Counter(
    "fraud_model_failures_total", "Batches the model failed to score (held and tried again)"
)
FAULTS = Gauge(
    "fraud_faults", "1 while the worker holds on a fault of this part (state, model)", ["part"]
)
GC_FROZEN = Gauge("fraud_gc_frozen_objects", "Objects kept out of the collector's scans")


class GcPauses:
    """``fraud_gc_pause_seconds``: every collection's pause, by generation.

    Counted in plain lists from a ``gc.callbacks`` hook and turned into a histogram only when
    ``/metrics`` is read: a metric's lock taken inside a collector callback can deadlock
    (prometheus/client_python#363; why prometheus_client dropped its own pause histogram).
    """

    BOUNDS = (*_FAST, math.inf)

    def __init__(self) -> None:
        self._counts = [[0] * len(self.BOUNDS) for _ in range(3)]  # per generation, per bucket
        self._sums = [0.0] * 3
        self._started = 0.0

    def install(self, registry: CollectorRegistry = REGISTRY) -> None:
        """Start timing collections and serve them in ``registry`` (once: a restarted app
        installs it again)."""
        if self.on_gc in gc.callbacks:
            return
        registry.register(self)
        gc.callbacks.append(self.on_gc)

    def uninstall(self, registry: CollectorRegistry = REGISTRY) -> None:
        gc.callbacks.remove(self.on_gc)
        registry.unregister(self)

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = info["generation"]
        self._sums[generation] += pause
        self._counts[generation][bisect_left(self.BOUNDS, pause)] += 1

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "fraud_gc_pause_seconds",
            "Pauses of Python's garbage collector (every decision in flight waits them out)",
            labels=["generation"],
        )
        for generation, counts in enumerate(self._counts):
            cumulative = list(accumulate(counts))
            family.add_metric(
                [str(generation)],
                [
                    (floatToGoString(b), float(n))  # type: ignore[no-untyped-call] # unannotated
                    for b, n in zip(self.BOUNDS, cumulative, strict=True)
                ],
                self._sums[generation],
            )
        yield family


GC_PAUSES = GcPauses()
