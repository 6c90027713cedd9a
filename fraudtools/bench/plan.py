"""How much one benchmark run does: the full and the quick plan."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DECISION_EXTRA", "FULL", "MAX_RATE_TRIES", "QUICK", "Plan"]


@dataclass(frozen=True)
class Plan:
    """How much of everything one run does."""

    limit: int  # transactions through the pass-through
    throughput: int  # the backlog of the throughput phase
    rates: tuple[int, ...]  # offered rates of the latency phases
    seconds: float  # length of each latency phase
    max_rate_cap: int  # the highest rate a "highest sustained" phase may offer
    baseline: int  # the backlog of the batch-size-1 worker
    two_workers: int  # the backlog of the two-worker phase
    warm: int  # transactions that warm a phase up (not measured)
    drain: float  # longest wait for a latency phase's last decisions
    decision_layer: int = 20_000  # transactions of each in-process decision-layer run
    decision_rounds: int = 5  # rounds of the decision layer's variants
    replay_days: int = 30  # days of the reference data training's replay is timed on
    java_records: int = 5_000  # records of Kafka's EndToEndLatency (java_hop_ms)


FULL = Plan(limit=200_000, throughput=200_000, rates=(500, 1_000, 2_000, 5_000), seconds=15,
            max_rate_cap=10_000, baseline=10_000, two_workers=100_000, warm=400, drain=30,
            decision_layer=20_000, decision_rounds=5, replay_days=30, java_records=5_000)
QUICK = Plan(limit=30_000, throughput=30_000, rates=(500, 1_000, 2_000, 5_000), seconds=5,
             max_rate_cap=10_000, baseline=3_000, two_workers=30_000, warm=200, drain=15,
             decision_layer=10_000, decision_rounds=3, replay_days=10, java_records=2_000)
#: Fractions of the measured throughput tried, in order, for the highest sustained rate.
MAX_RATE_TRIES = (0.9, 0.7)
#: What a decision adds to its transaction's JSON (the limit pads its output by as much).
DECISION_EXTRA = (',"score":0.123456,"action":"approve","model_version":"{version}",'
                  '"decided_at":"2026-11-29T14:03:11.482+00:00","duplicate":false,'
                  '"degraded":false')
