"""One fault scenario: a worker on the private stack, the stream, the fault mid-stream, and
every decision and dead letter read back and measured against the uninterrupted run."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from fraudcore import FEATURE_NAMES, SPEC
from fraudtools.chaos.faults import BAD_MODEL, FAULTS, FLOOD_BAD, Context
from fraudtools.chaos.stack import PrivateStack
from fraudtools.chaos.stream import (
    collect,
    empty_history_features,
    expected_features,
    online_features,
    produce,
    with_labels_behind,
)
from fraudtools.feed import Record, feed
from fraudtools.isolated import IsolatedWorker
from fraudtools.kafka_admin import create_topics, delete_topics
from fraudtools.worker_process import ROOT, WorkerProcess
from service.keys import KeyLayout

__all__ = ["FAULT_AFTER", "LIVE_LATENCY", "RATE", "Outcome", "isolated", "run_fault"]

log = logging.getLogger(__name__)

RATE = 400.0  # transactions a second: a live stream, well below the worker's capacity
FAULT_AFTER = 8.0  # seconds into the transaction stream
LIVE_LATENCY = 1.0  # a decision later than this after its send: not yet recovered (at least
# this; more when the latency before the fault was already higher, on a busy machine)


def isolated(
    stack: PrivateStack, run_id: str, workdir: Path, mode: str = "single"
) -> IsolatedWorker:
    """A scenario's workers: topics, group and key prefix ``chaos-<run_id>`` on ``stack``
    (its Redis, cluster or Sentinel setup by ``mode``), decisions with their features (to
    compare), batches of labels waiting 10 ms at most."""
    return IsolatedWorker.named(
        f"chaos-{run_id}", bootstrap=stack.bootstrap, redis_url=stack.redis_url,
        data_dir=workdir / f"data-{run_id}",
        settings={"FRAUD_BATCH_WAIT_SECONDS": "0.01", "FRAUD_INCLUDE_FEATURES": "true",
                  **stack.worker_settings(mode)},
    )


@dataclass
class Outcome:
    fault: str
    title: str
    events: int = 0  # valid transactions sent
    labels: int = 0
    decisions: int = 0  # decision records, copies included
    decided: int = 0  # distinct transactions decided
    lost: int = 0
    duplicated: int = 0  # decision records beyond the first of each transaction
    flagged: int = 0  # first decisions marked duplicate: true (each was sent once)
    unflagged_copies: int = 0  # later decisions of a transaction not marked duplicate
    resent_copies: int = 0  # a record sent again, as it was (its acknowledgement was lost)
    inconsistent_copies: int = 0  # transactions whose copies (same model) differ in answer
    degraded: int = 0
    decided_during_outage: int = 0  # first decisions made while the fault was on
    undegraded_during_outage: int = 0  # of those, not marked degraded
    mismatched: int = 0  # decisions whose features differ from what the fault allows
    differ_from_uninterrupted: int = 0  # decisions whose features differ from replay(frame)
    dead_letters: int = 0  # of transactions (valid, all of them)
    label_dead_letters: int = 0
    state_lost: int = 0  # times the worker reported the state lost (fraud_state_lost_total)
    late_labels: int = 0  # decisions that counted fewer known frauds: a label came late
    labels_missing: int = 0  # stream labels not recorded at the end
    recover_seconds: float = 0.0  # fault start -> every later decision live again
    live_latency_seconds: float = LIVE_LATENCY  # what counted as live in this run
    baseline_p99_seconds: float = 0.0  # send -> decision, p99, before the fault
    paused_seconds: float = 0.0  # the longest time without any decision after the fault
    fault_seconds: float = 0.0  # fault start -> cleared (worker healthy, broker or Redis up)
    max_latency_seconds: float = 0.0
    seconds: float = 0.0
    worker_alive: bool = True
    served_by_bad_model: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def run_fault(
    stack: PrivateStack,
    name: str,
    *,
    frame: pd.DataFrame,
    workdir: Path,
    rate: float = RATE,
    fault_after: float = FAULT_AFTER,
    uninterrupted: dict[str, np.ndarray] | None = None,
) -> Outcome:
    """Stream ``frame`` through a worker on ``stack`` while ``name`` happens; measure."""
    fault = FAULTS[name]
    began = time.monotonic()
    outcome = Outcome(fault.name, fault.title)
    run_id = uuid.uuid4().hex[:8]
    stack.ensure(fault.redis)
    where = isolated(stack, run_id, workdir, fault.redis)
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = None
    if fault.own_models:
        model_dir = workdir / f"models-{run_id}"
        shutil.copytree(ROOT / "models", model_dir)
        where = dataclasses.replace(where, model_dir=model_dir)
    topics = where.names
    asyncio.run(create_topics(stack.bootstrap, where.topics))

    def spawn(label: str) -> WorkerProcess:
        # the same group, topics and keys; a port and a data directory of its own
        own = dataclasses.replace(where, data_dir=Path(f"{where.data_dir}-{label}"))
        worker = WorkerProcess(own.env(**fault.env), workdir / f"{name}-{run_id}-{label}.log")
        ctx.spawned.append(worker)
        return worker

    records = feed(frame, delay_days=SPEC.label_delay_days)
    labels = [r for r in records if r.kind == "label"]
    ctx = Context(stack, [], spawn, model_dir=model_dir, label_topic=topics.labels,
                  labels=labels)
    transactions = [r for r in records if r.kind == "transaction"]
    sent_at: dict[str, float] = {}
    failure: list[BaseException] = []
    try:
        ctx.workers.append(spawn("first").start().wait_ready())
        streaming = threading.Event()

        def inject() -> None:
            try:
                streaming.wait(60)
                time.sleep(fault_after)
                fault.inject(ctx)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                failure.append(exc)

        injector = threading.Thread(target=inject, name=f"fault-{name}", daemon=True)
        injector.start()
        asyncio.run(produce(
            stack.bootstrap, {"transaction": topics.transactions, "label": topics.labels},
            with_labels_behind(records), rate=rate, sent_at=sent_at, started=streaming,
        ))
        injector.join(180)
        if injector.is_alive():
            raise RuntimeError(f"the fault {name} did not finish in 180 s")
        if failure:
            raise RuntimeError(f"injecting {name} failed: {failure[0]!r}") from failure[0]
        ids = {r.transaction_id for r in transactions}
        decisions = asyncio.run(
            collect(stack.bootstrap, topics.decisions, expected=ids, timeout=150, quiet=2.0)
        )
        dead = asyncio.run(collect(stack.bootstrap, topics.dlq, expected=None,
                                   timeout=10, quiet=1.0))
        outcome.worker_alive = ctx.workers[-1].alive()
        if name != "redis-flushed":  # there the labels before the flush are gone with it
            outcome.labels_missing = _labels_missing(stack, fault.redis, where.prefix, labels)
        outcome.state_lost = int(sum(w.metric("fraud_state_lost_total") for w in ctx.workers
                                     if w.alive()))
        held = "holding, retry" in "".join(w.output() for w in ctx.spawned)
    finally:
        for worker in ctx.spawned:
            worker.stop()
        try:
            asyncio.run(delete_topics(stack.bootstrap, where.topics))
        except Exception as exc:  # noqa: BLE001 - cleanup only
            log.warning("could not delete the topics of %s: %r", name, exc)

    outcome.events, outcome.labels = len(transactions), len(labels)
    (workdir / f"{name}-{run_id}-timeline.json").write_bytes(orjson.dumps({
        "fault_start": ctx.fault_start, "fault_end": ctx.fault_end, "sent_at": sent_at,
        "decided": [(d["transaction_id"], d["decided_at"], d["duplicate"], d["degraded"])
                    for d in decisions],
    }))
    outcome.notes += ctx.notes
    _measure(outcome, decisions, dead, sent_at=sent_at, ctx=ctx, frame=frame,
             uninterrupted=uninterrupted)
    _judge(outcome, held=held, ctx=ctx)
    outcome.seconds = round(time.monotonic() - began, 1)
    if outcome.problems:
        outcome.notes.append("worker log tail:\n" + ctx.workers[-1].tail(2000))
    return outcome


def _measure(outcome: Outcome, decisions: list[dict[str, Any]], dead: list[dict[str, Any]], *,
             sent_at: dict[str, float], ctx: Context, frame: pd.DataFrame,
             uninterrupted: dict[str, np.ndarray] | None) -> None:
    ids = set(sent_at)
    first: dict[str, float] = {}
    first_flag: dict[str, bool] = {}
    answers: dict[tuple[str, str], set[tuple[float, str]]] = {}  # per model version
    degraded_ids = set()
    for d in decisions:
        tx = d["transaction_id"]
        at = datetime.fromisoformat(d["decided_at"]).timestamp()
        if at < first.get(tx, float("inf")):
            first[tx], first_flag[tx] = at, bool(d["duplicate"])
        answers.setdefault((tx, d["model_version"]), set()).add((d["score"], d["action"]))
        if d.get("degraded"):
            degraded_ids.add(tx)
    outcome.decisions = len(decisions)
    outcome.decided = len(ids & set(first))
    outcome.lost = len(ids - set(first))
    outcome.duplicated = len(decisions) - len(first)
    outcome.flagged = sum(first_flag.values())
    copies: dict[str, list[tuple[float, bool]]] = {}
    for d in decisions:
        at = datetime.fromisoformat(d["decided_at"]).timestamp()
        copies.setdefault(d["transaction_id"], []).append((at, bool(d["duplicate"])))
    for seen in copies.values():
        (first_at, _), *later = sorted(seen)
        for at, flag in later:
            # The same decision time: the same record again, sent once more by the delivery
            # after its acknowledgement was lost (outputs are at least once). A later time:
            # the transaction decided again, which must say duplicate: true.
            if at == first_at:
                outcome.resent_copies += 1
            elif not flag:
                outcome.unflagged_copies += 1
    if outcome.resent_copies:
        outcome.notes.append(f"{outcome.resent_copies} decision records sent again as they "
                             "were (their acknowledgement lost)")
    outcome.inconsistent_copies = sum(len(a) > 1 for a in answers.values())
    outcome.dead_letters = sum(d.get("topic") != ctx.label_topic for d in dead)
    outcome.label_dead_letters = len(dead) - outcome.dead_letters
    outcome.degraded = sum(bool(d.get("degraded")) for d in decisions)
    outcome.served_by_bad_model = sum(d["model_version"] == BAD_MODEL for d in decisions)

    start, end = ctx.fault_start, ctx.fault_end
    outcome.fault_seconds = round(end - start, 1)
    # Margins: a batch may straddle the fault's start or end.
    inside = [tx for tx, at in first.items() if start + 0.5 < at < end - 0.5]
    outcome.decided_during_outage = len(inside)
    outcome.undegraded_during_outage = len([tx for tx in inside if tx not in degraded_ids])
    latencies = {tx: first[tx] - sent_at[tx] for tx in first if tx in sent_at}
    outcome.max_latency_seconds = round(max(latencies.values(), default=0.0), 2)
    # The live latency of this run: sent in the 5 s before the fault, decided before it.
    before = [lat for tx, lat in latencies.items()
              if start - 5 < sent_at[tx] and first[tx] < start]
    outcome.baseline_p99_seconds = round(float(np.percentile(before, 99)), 2) if before else 0.0
    live = max(LIVE_LATENCY, 1.5 * outcome.baseline_p99_seconds)
    outcome.live_latency_seconds = round(live, 2)
    late = [first[tx] for tx, lat in latencies.items() if lat > live and first[tx] >= start]
    outcome.recover_seconds = round(max(late) - start, 1) if late else 0.0
    times = sorted(at for at in (datetime.fromisoformat(d["decided_at"]).timestamp()
                                 for d in decisions) if at >= start)
    gaps = np.diff([start, *times]) if times else np.array([0.0])
    outcome.paused_seconds = round(float(gaps.max()), 1)

    base = uninterrupted if uninterrupted is not None else expected_features(frame)
    empty = empty_history_features(frame, degraded_ids) if degraded_ids else {}
    fraud = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith("fraud_")]
    other = [i for i in range(len(FEATURE_NAMES)) if i not in fraud]
    fraud_count = FEATURE_NAMES.index("fraud_count_by_terminal_30d_delay7d")
    counts = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith("tx_count")]
    for d in decisions:
        online = online_features(d)
        tx = d["transaction_id"]
        if tx not in base:
            continue
        if d.get("degraded") and outcome.fault == "redis-flushed":
            # Decided on the state from the flush on: never more than an uninterrupted
            # run counted (a count above it would be a double count), never unmarked.
            outcome.differ_from_uninterrupted += not np.array_equal(online, base[tx])
            if any(online[i] > base[tx][i] for i in counts):
                outcome.mismatched += 1
            continue
        allowed = empty[tx] if d.get("degraded") else base[tx]
        if np.array_equal(online, allowed):
            continue
        if (not d.get("degraded") and np.array_equal(online[other], allowed[other])
                and online[fraud_count] <= allowed[fraud_count]):
            # A label recorded after a transaction that could have counted it: labels come
            # on their own topic, and behind a fault (or a flood) they may be read seconds
            # later, which this compressed stream makes days. Fewer known frauds than
            # uninterrupted, never more; every label is checked to be recorded in the end.
            outcome.late_labels += 1
            continue
        outcome.differ_from_uninterrupted += not d.get("degraded")
        outcome.mismatched += 1
        if len(outcome.examples) < 5:
            names = [n for n, a, b in zip(FEATURE_NAMES, online, allowed, strict=True)
                     if a != b]
            outcome.examples.append(
                f"{tx} (duplicate={d['duplicate']}, degraded={d.get('degraded')}): {names}"
            )
    if outcome.fault == "redis-down-open":  # the degraded ones differ, by design
        outcome.differ_from_uninterrupted += sum(
            not np.array_equal(online_features(d), base[d["transaction_id"]])
            for d in decisions if d.get("degraded") and d["transaction_id"] in base
        )


def _labels_missing(stack: PrivateStack, mode: str, prefix: str, labels: list[Record]) -> int:
    """Labels of the stream that are not among their terminal's recorded frauds."""
    layout = KeyLayout(card_key_secret=b"terminal keys only", prefix=prefix)
    client = stack.client(mode)
    try:
        pipe = client.pipeline(transaction=False)
        for r in labels:
            value = orjson.loads(r.value)
            pipe.zscore(layout.terminal(value["terminal_id"]).fraud, value["transaction_id"])
        return sum(score is None for score in pipe.execute())
    finally:
        client.close()


def _judge(outcome: Outcome, *, held: bool, ctx: Context) -> None:
    p = outcome.problems
    if outcome.lost:
        p.append(f"{outcome.lost} of {outcome.events} transactions have no decision")
    if outcome.dead_letters:
        p.append(f"{outcome.dead_letters} valid transactions were dead-lettered")
    if outcome.labels_missing:
        p.append(f"{outcome.labels_missing} of the stream's {outcome.labels} labels were "
                 "never recorded")
    if outcome.mismatched:
        p.append(f"{outcome.mismatched} decisions with features other than expected: "
                 + "; ".join(outcome.examples))
    if outcome.inconsistent_copies:
        p.append(f"{outcome.inconsistent_copies} transactions decided twice with another score "
                 "or action")
    if not outcome.worker_alive:
        p.append("the worker was not running at the end")
    if ctx.fault_start == 0.0 or ctx.fault_end == 0.0:
        p.append("the fault was never injected")
    p += [n for n in ctx.notes if n.startswith(("no replica took over", "the reshard failed"))]
    if outcome.fault in ("redis-down-hold", "redis-oom"):
        if outcome.degraded:
            p.append(f"{outcome.degraded} decisions degraded under the hold policy")
        if outcome.decided_during_outage:
            p.append(f"{outcome.decided_during_outage} decided while Redis was down (hold)")
        if not held:
            p.append("the worker never reported holding: the outage was not seen")
    elif outcome.fault == "redis-down-open":
        if not outcome.degraded:
            p.append("no decision was degraded: the outage was not seen")
        if outcome.decided_during_outage == 0:
            p.append("nothing was decided during the outage under the open policy")
        if outcome.undegraded_during_outage:
            p.append(f"{outcome.undegraded_during_outage} decided during the outage without "
                     "the `degraded` mark")
    elif outcome.fault == "redis-flushed":
        if outcome.state_lost != 1:
            p.append(f"the state loss was reported {outcome.state_lost} times, not once")
        if not outcome.degraded:
            p.append("no decision after the flush was marked degraded")
    elif outcome.degraded:
        p.append(f"{outcome.degraded} degraded decisions without a Redis outage")
    if outcome.fault == "label-flood" and outcome.label_dead_letters != FLOOD_BAD:
        p.append(f"{outcome.label_dead_letters} labels dead-lettered, not the {FLOOD_BAD} "
                 "wrong ones")
    elif outcome.fault not in ("label-flood", "redis-flushed") and outcome.label_dead_letters:
        p.append(f"{outcome.label_dead_letters} valid labels were dead-lettered")
    if outcome.fault == "bad-model":
        if any("never refused" in n for n in ctx.notes):
            p.append("the worker never refused the bad model")
        if outcome.served_by_bad_model:
            p.append(f"{outcome.served_by_bad_model} decisions by the model that cannot score")
    if outcome.fault == "rebalance" and any("decided nothing" in n for n in ctx.notes):
        p.append("the second worker never got a partition")
