"""Faults mid-stream on the real broker, Redis and worker: nothing lost, duplicates only as
redeliveries of the same decision, and features equal to an uninterrupted run's.

These tests restart the broker and stop Redis, so they never use the shared stack: the
module starts a private Kafka and Redis through ``stack/kafka.sh`` and ``stack/redis.sh``
on free loopback ports (in a temporary directory, with the jars ``make up`` fetched), and a
private Redis Cluster and Sentinel setup for the scenarios on them, and stops them at the
end. The scenarios themselves are :mod:`fraudtools.chaos`, which
``make chaos`` also runs to write the table in ``docs/reliability.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudtools.chaos import (
    FAULTS,
    FLOOD_BAD,
    OUTAGE,
    RATE,
    Outcome,
    PrivateStack,
    chaos_frame,
    expected_features,
    run_fault,
)


@pytest.fixture
def stack() -> None:
    """Overrides the session check of the shared stack: these tests bring their own."""


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    own = PrivateStack(tmp_path_factory.mktemp("chaos-stack"))
    try:
        own.up()
        yield own
    finally:
        own.down()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return chaos_frame()


@pytest.fixture(scope="module")
def uninterrupted(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return expected_features(frame)


def _run(private_stack: PrivateStack, name: str, frame: pd.DataFrame,
         uninterrupted: dict[str, np.ndarray], workdir: Path) -> Outcome:
    outcome = run_fault(private_stack, name, frame=frame, workdir=workdir,
                        uninterrupted=uninterrupted)
    report = "\n".join([*outcome.problems, *outcome.notes])
    # Every valid transaction decided, none twice with another answer, none dead-lettered.
    assert outcome.lost == 0, report
    assert outcome.decided == outcome.events == len(frame), report
    assert outcome.inconsistent_copies == 0, report
    assert outcome.dead_letters == 0, report
    # Features: every decision (every copy) as in the uninterrupted run; a degraded one
    # (fail-open) as on empty history.
    assert outcome.mismatched == 0, report
    assert outcome.worker_alive, report
    assert outcome.ok, report
    # A transaction decided again always says duplicate: true (a record merely sent again
    # is the first decision itself, counted in resent_copies).
    assert outcome.unflagged_copies == 0, report
    return outcome


@pytest.mark.parametrize("name", ["worker-sigkill", "worker-sigterm", "broker-restart",
                                  "rebalance"])
def test_nothing_lost_nothing_doubled_features_equal(
    private_stack: PrivateStack, frame: pd.DataFrame, uninterrupted: dict[str, np.ndarray],
    tmp_path: Path, name: str,
) -> None:
    outcome = _run(private_stack, name, frame, uninterrupted, tmp_path)
    assert outcome.degraded == 0
    assert outcome.differ_from_uninterrupted == 0
    # The documented copies (README, docs/reliability.md): none after a graceful stop or a
    # rebalance (partitions are released after the batch in hand is committed); after a
    # SIGKILL at most what was decided since the last commit — a commit interval (1 s) of
    # traffic, and the batch that straddled it; after a broker restart only records sent
    # again as they were, when their acknowledgement was lost with the broker (the same
    # decision, the same decided_at: outputs are at least once), never a decision made again.
    if name in ("worker-sigterm", "rebalance"):
        assert outcome.duplicated == 0, outcome
    elif name == "worker-sigkill":
        assert 0 < outcome.duplicated <= RATE * 1.0 + 500, outcome
    elif name == "broker-restart":
        assert outcome.duplicated == outcome.resent_copies, outcome


def test_redis_down_with_the_hold_policy_holds_then_decides_everything_exactly(
    private_stack: PrivateStack, frame: pd.DataFrame, uninterrupted: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    outcome = _run(private_stack, "redis-down-hold", frame, uninterrupted, tmp_path)
    # Held: no decision from the fault's start until Redis was back (from the decisions'
    # own times; a batch may straddle either end by a second).
    assert outcome.paused_seconds >= OUTAGE - 1.0
    assert outcome.decided_during_outage == 0  # held: nothing decided while Redis was down
    assert outcome.degraded == 0
    assert outcome.differ_from_uninterrupted == 0


def test_redis_down_with_the_open_policy_decides_degraded_and_loses_nothing(
    private_stack: PrivateStack, frame: pd.DataFrame, uninterrupted: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    outcome = _run(private_stack, "redis-down-open", frame, uninterrupted, tmp_path)
    assert outcome.decided_during_outage > 0
    assert outcome.undegraded_during_outage == 0  # every decision in the outage is marked
    assert outcome.degraded >= outcome.decided_during_outage
    # The degraded events are recorded once Redis is back, before anything newer, so only
    # the degraded decisions themselves differ from the uninterrupted run.
    assert 0 < outcome.differ_from_uninterrupted <= outcome.degraded


def test_redis_out_of_memory_holds_then_decides_everything_exactly(
    private_stack: PrivateStack, frame: pd.DataFrame, uninterrupted: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    outcome = _run(private_stack, "redis-oom", frame, uninterrupted, tmp_path)
    assert outcome.decided_during_outage == 0  # held: no write went through, none decided
    assert outcome.degraded == 0
    assert outcome.differ_from_uninterrupted == 0


def test_a_bad_model_swapped_in_is_refused_and_the_old_one_decides_everything(
    private_stack: PrivateStack, frame: pd.DataFrame, uninterrupted: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    outcome = _run(private_stack, "bad-model", frame, uninterrupted, tmp_path)
    assert outcome.served_by_bad_model == 0
    assert outcome.degraded == 0 and outcome.differ_from_uninterrupted == 0


def test_a_redis_flushed_mid_stream_is_detected_and_every_later_decision_marked(
    private_stack: PrivateStack, frame: pd.DataFrame, uninterrupted: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    outcome = _run(private_stack, "redis-flushed", frame, uninterrupted, tmp_path)
    assert outcome.state_lost == 1
    # Every decision on lost state is marked (an unmarked one must equal the uninterrupted
    # run, which _run checks), and the stream goes on after the flush.
    assert 0 < outcome.degraded <= outcome.decisions
    assert 0 < outcome.differ_from_uninterrupted <= outcome.degraded


def test_a_label_flood_refuses_exactly_the_wrong_labels_and_counts_none_of_them(
    private_stack: PrivateStack, frame: pd.DataFrame, uninterrupted: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    outcome = _run(private_stack, "label-flood", frame, uninterrupted, tmp_path)
    assert outcome.label_dead_letters == FLOOD_BAD
    assert outcome.degraded == 0
    # Decisions differ from the uninterrupted run only by labels recorded late behind the
    # flood (fewer known frauds, never more: _run checks mismatched == 0).


def test_the_scenarios_cover_every_fault() -> None:
    assert set(FAULTS) == {"worker-sigkill", "worker-sigterm", "broker-restart",
                           "redis-down-hold", "redis-down-open", "rebalance", "redis-oom",
                           "bad-model", "redis-flushed", "label-flood",
                           "cluster-primary-kill", "cluster-reshard", "sentinel-primary-kill"}


@pytest.mark.parametrize(
    "name", ["cluster-primary-kill", "cluster-reshard", "sentinel-primary-kill"]
)
def test_a_failover_or_a_reshard_loses_nothing_and_keeps_features_equal(
    private_stack: PrivateStack, frame: pd.DataFrame, uninterrupted: dict[str, np.ndarray],
    tmp_path: Path, name: str,
) -> None:
    """On a private Redis Cluster (3 primaries, 3 replicas) or Sentinel setup: the batches
    hold while the cluster changes (WAIT for a replica: a promoted primary has none until
    the old one is back), then everything is decided once, on the features of an
    uninterrupted run."""
    outcome = _run(private_stack, name, frame, uninterrupted, tmp_path)
    assert outcome.degraded == 0
    assert outcome.differ_from_uninterrupted == 0
