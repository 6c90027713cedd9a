"""``python -m fraudtools.chaos``: faults injected into the real stack, and what they cost.

Every scenario runs on a *private* Kafka broker and Redis, started through
``stack/kafka.sh`` and ``stack/redis.sh`` on free loopback ports in a directory of their
own (the default stack on 9092/6379 is never touched), with the real worker
(``python -m service``, feature vectors included in its decisions):

1. start the worker and wait until ``/health`` answers;
2. send every label event, then stream the generated transactions paced (400/s);
3. a few seconds into the stream, inject the fault (kill the worker, restart the broker,
   stop Redis, start a second worker, ...) and clear it;
4. read every decision and dead letter back and compare with the offline replay of the
   same stream (``training.replay.replay``): nothing lost, duplicates only as redeliveries
   of the same transaction, and the features of every decision (every copy) equal to an
   uninterrupted run's.

Redis is stopped with ``SHUTDOWN SAVE`` and restarted from its snapshot: a Redis outage,
not a loss of the state (which is rebuilt by replay, a separate procedure). With the
``open`` policy the events decided during the outage are decided on empty history (so
checked against that) and recorded once Redis is back, before anything newer: every other
decision must equal the uninterrupted run.

``python -m fraudtools.chaos`` writes ``reports/chaos.json``, ``reports/chaos.md`` and the
table in ``docs/reliability.md``; ``tests/integration/test_faults.py`` runs the same
scenarios under pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis import Redis

from fraudcore import FEATURE_NAMES, SPEC, Transaction
from fraudcore.features import CardHistory, TerminalHistory, compute
from fraudtools.feed import Record, feed
from fraudtools.kafka_admin import create_topics, delete_topics
from fraudtools.worker_process import WorkerProcess, free_port
from training import generator
from training.dataset import normalise
from training.replay import replay

__all__ = [
    "FAULTS",
    "Outcome",
    "PrivateStack",
    "WorkerProcess",
    "chaos_frame",
    "main",
    "partition_of",
    "run_fault",
]

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4
RATE = 400.0  # transactions a second: a live stream, well below the worker's capacity
FAULT_AFTER = 8.0  # seconds into the transaction stream
OUTAGE = 10.0  # seconds Redis stays down
REBALANCE_STAY = 8.0  # seconds the second worker stays in the group
LIVE_LATENCY = 1.0  # a decision later than this after its send: not yet recovered (at least
# this; more when the latency before the fault was already higher, on a busy machine)
NAMES = ("transactions", "labels", "decisions", "alerts", "dlq")


class StackError(RuntimeError):
    """The private broker or Redis would not start or stop."""


# -- the private stack ---------------------------------------------------------------------


class PrivateStack:
    """A Kafka broker and a Redis of our own, through the project's stack scripts."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.kafka_port = free_port()
        self.controller_port = free_port()
        self.redis_port = free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def _script(self, name: str, action: str, timeout: float = 180.0) -> None:
        env = {
            **os.environ,
            "STACK_DIR": str(self.directory),
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "REDIS_PORT": str(self.redis_port),
        }
        done = subprocess.run(
            ["bash", str(ROOT / "stack" / f"{name}.sh"), action],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if done.returncode != 0:
            raise StackError(f"stack/{name}.sh {action} failed:\n{done.stdout}\n{done.stderr}")
        log.info("%s", done.stdout.strip())

    def _share_kafka_jars(self) -> None:
        """Use the default stack's Kafka jars (fetched once by ``make up``), no download."""
        default_dir = Path(os.environ.get("STACK_DIR", ".stack"))
        shared = (default_dir if default_dir.is_absolute() else ROOT / default_dir) / "kafka/libs"
        if not (shared / ".pom.sha256").exists():  # fetch only: starts nothing
            subprocess.run(["bash", str(ROOT / "stack/kafka.sh"), "fetch"], cwd=ROOT, check=True)
        own = self.directory / "kafka" / "libs"
        own.parent.mkdir(parents=True, exist_ok=True)
        if not own.exists():
            own.symlink_to(shared.resolve(), target_is_directory=True)

    def up(self) -> PrivateStack:
        self._share_kafka_jars()
        self.redis_up()
        self.kafka_up()
        return self

    def down(self) -> None:
        errors = []
        for stop in (self.kafka_down, self.redis_down):
            try:
                stop()
            except (StackError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
        if errors:
            raise StackError("; ".join(errors))

    def kafka_up(self) -> None:
        self._script("kafka", "up")

    def kafka_down(self) -> None:
        self._script("kafka", "down")

    def redis_up(self) -> None:
        self._script("redis", "up")

    def redis_down(self) -> None:
        self._script("redis", "down")

    def redis_stop_keeping_state(self) -> None:
        """``SHUTDOWN SAVE``: the snapshot is taken atomically, so no write is lost; the
        next ``redis.sh up`` loads it from its directory."""
        client = Redis.from_url(self.redis_url)
        try:
            client.shutdown(save=True)
        finally:
            client.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                return
        raise StackError("Redis still answers after SHUTDOWN SAVE")

    def redis_keys(self, pattern: str) -> list[bytes]:
        client = Redis.from_url(self.redis_url)
        try:
            return list(client.scan_iter(match=pattern, count=1000))
        finally:
            client.close()


def worker_env(bootstrap: str, redis_url: str, run_id: str, workdir: Path,
               **overrides: str) -> dict[str, str]:
    """The environment of a worker with its own topics, group and key prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
    env.update({
        "FRAUD_APP_ID": f"chaos-{run_id}",
        "FRAUD_KAFKA_BOOTSTRAP": bootstrap,
        "FRAUD_REDIS_URL": redis_url,
        "FRAUD_REDIS_KEY_PREFIX": f"chaos-{run_id}",
        "FRAUD_TOPIC_TRANSACTIONS": topic_name(run_id, "transactions"),
        "FRAUD_TOPIC_LABELS": topic_name(run_id, "labels"),
        "FRAUD_TOPIC_DECISIONS": topic_name(run_id, "decisions"),
        "FRAUD_TOPIC_ALERTS": topic_name(run_id, "alerts"),
        "FRAUD_TOPIC_DLQ": topic_name(run_id, "dlq"),
        "FRAUD_PARTITIONS": str(PARTITIONS),
        "FRAUD_MODEL_DIR": str(ROOT / "models"),
        "FRAUD_DATA_DIR": str(workdir / f"data-{run_id}"),
        "FRAUD_WEB_PORT": str(free_port()),
        "FRAUD_BATCH_WAIT_SECONDS": "0.01",
        "FRAUD_INCLUDE_FEATURES": "true",
    })
    env.update(overrides)
    return env


def topic_name(run_id: str, name: str) -> str:
    return f"chaos-{run_id}-{name}"


# -- Kafka helpers --------------------------------------------------------------------------


async def _produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    *,
    rate: float,
    sent_at: dict[str, float] | None = None,
    started: threading.Event | None = None,
) -> None:
    """Send in order, paced at ``rate`` a second (0: as fast as possible), until the broker
    has every record. Patient: a broker restart only delays the sends."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024,
        request_timeout_ms=120_000, retry_backoff_ms=200,
    )
    await producer.start()
    pending = []
    try:
        begin = time.perf_counter()
        for i, record in enumerate(records):
            if rate > 0:
                ahead = begin + i / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if sent_at is not None:
                sent_at.setdefault(record.transaction_id, time.time())
            pending.append(await producer.send(topic, record.value, key=record.key,
                                               partition=partition_of(record)))
            if started is not None and i == 0:
                started.set()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _collect(bootstrap: str, topic: str, *, expected: set[str] | None,
                   timeout: float, quiet: float) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning: until every expected transaction id was seen
    (or the timeout), then until nothing new arrives for ``quiet`` seconds."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        group_id=None, enable_auto_commit=False,
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            done = expected is None or expected <= seen
            if done and time.monotonic() - last >= quiet:
                break
            batch = await consumer.getmany(timeout_ms=300)
            for messages in batch.values():
                for m in messages:
                    record = orjson.loads(m.value)
                    records.append(record)
                    seen.add(str(record.get("transaction_id")))
                    last = time.monotonic()
    finally:
        await consumer.stop()
    return records


# -- the stream and its expected features ---------------------------------------------------


def chaos_frame(*, customers: int = 320, days: int = 16, seed: int = 5) -> pd.DataFrame:
    """Generated transactions (~9,000 over 16 days): one independent population of cards
    and terminals per partition (ids ``p<partition>-...``), sent to that partition.

    Why: the stream is compressed (16 days in ~23 s), so a backlog of a few seconds spans
    days of event time, and a worker catching up takes one partition's fetched chunk
    (up to 1 MB, thousands of events) before the next: partitions run days apart in event
    time, far beyond what live traffic ever does (seconds). Terminals shared across
    partitions would then see counts that depend on that order, by design (the spec
    tolerates partitions out of step by its 3 days of grace and the 7-day label delay,
    which compressed time exceeds). With no state shared across partitions, the features
    of a correct worker equal the offline replay whatever the faults do to timing, so any
    difference is a real loss, double count or misordering. The stream is shorter than
    the retention (33 and 40 days), so no trim ever runs either.
    """
    parts = []
    for p in range(PARTITIONS):
        config = generator.GeneratorConfig(  # a wider radius: terminals shared by more cards
            customers=customers // PARTITIONS, terminals=customers // PARTITIONS, radius=12.0,
            days=days, start=date(2018, 4, 1), seed=seed + p,
            compromised_terminals_per_day=1, compromised_customers_per_day=1,
        )
        part = generator.generate(config)
        for column in ("TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID"):
            part[column] = f"p{p}-" + part[column].astype(str)
        parts.append(part)
    return normalise(pd.concat(parts, ignore_index=True), source="chaos")


def partition_of(record: Record) -> int | None:
    """The partition of a :func:`chaos_frame` card (``p<n>-...``); None for other keys."""
    head = record.key.split(b"-", 1)[0]
    return int(head[1:]) if head[:1] == b"p" and head[1:].isdigit() else None


def expected_features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Features by transaction id in an uninterrupted run (``training.replay.replay``)."""
    names = list(FEATURE_NAMES)
    offline, _ = replay(frame)
    rows = offline[names].to_numpy(dtype=np.float32)
    return dict(zip(offline["TRANSACTION_ID"].tolist(), rows, strict=True))


def empty_history_features(frame: pd.DataFrame, ids: set[str]) -> dict[str, np.ndarray]:
    """Features of those transactions on empty history: what fail-open decides on."""
    empty_terminal = TerminalHistory(counts=[0] * len(SPEC.terminal_windows_days))
    out: dict[str, np.ndarray] = {}
    for r in frame[frame["TRANSACTION_ID"].isin(ids)].to_dict("records"):
        tx = Transaction(r["TRANSACTION_ID"], r["CUSTOMER_ID"], r["TERMINAL_ID"],
                         r["TX_AMOUNT"], r["TX_DATETIME"].to_pydatetime())
        row = compute(tx, CardHistory(), empty_terminal)
        out[tx.transaction_id] = np.asarray(row, dtype=np.float64).astype(np.float32)
    return out


def _online(decision: dict[str, Any]) -> np.ndarray:
    return np.array([decision["features"][n] for n in FEATURE_NAMES], dtype=np.float32)


# -- faults ---------------------------------------------------------------------------------


@dataclass
class Context:
    """What a fault acts on, and when it started and was cleared (wall clock)."""

    stack: PrivateStack
    workers: list[WorkerProcess]  # the group's main line: the last one runs at the end
    spawn: Callable[[str], WorkerProcess]  # a new worker of the same group, by log name
    spawned: list[WorkerProcess] = field(default_factory=list)  # all, to stop at the end
    fault_start: float = 0.0
    fault_end: float = 0.0
    notes: list[str] = field(default_factory=list)


def _restart_worker(ctx: Context, sig: int) -> None:
    old = ctx.workers[-1]
    ctx.fault_start = time.time()
    code = old.stop(sig, timeout=60)
    stopped = time.time()
    ctx.notes.append(f"worker exited with {code} in {stopped - ctx.fault_start:.1f} s")
    ctx.workers.append(ctx.spawn("restarted").start().wait_ready())
    ctx.fault_end = time.time()


def _broker_restart(ctx: Context) -> None:
    ctx.fault_start = time.time()
    ctx.stack.kafka_down()
    down = time.time()
    ctx.stack.kafka_up()
    ctx.fault_end = time.time()
    ctx.notes.append(
        f"broker down in {down - ctx.fault_start:.1f} s, up again in {ctx.fault_end - down:.1f} s"
    )


def _redis_outage(ctx: Context) -> None:
    ctx.fault_start = time.time()
    ctx.stack.redis_stop_keeping_state()
    time.sleep(max(0.0, OUTAGE - (time.time() - ctx.fault_start)))
    ctx.stack.redis_up()
    ctx.fault_end = time.time()


def _rebalance(ctx: Context) -> None:
    ctx.fault_start = time.time()
    second = ctx.spawn("second").start().wait_ready()
    joined = time.time()
    time.sleep(REBALANCE_STAY)
    took = second.metric("fraud_decisions_total")
    code = second.stop(signal.SIGTERM, timeout=60)
    ctx.fault_end = time.time()
    ctx.notes.append(
        f"second worker healthy after {joined - ctx.fault_start:.1f} s, made {took:.0f} "
        f"decisions in {REBALANCE_STAY:.0f} s, exited with {code}"
    )
    if took == 0:
        ctx.notes.append("the second worker decided nothing: no partition reached it")


@dataclass(frozen=True)
class Fault:
    name: str
    title: str
    inject: Callable[[Context], None]
    env: dict[str, str] = field(default_factory=dict)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("worker-sigkill", "worker SIGKILL mid-stream, restarted",
              lambda ctx: _restart_worker(ctx, signal.SIGKILL)),
        Fault("worker-sigterm", "worker SIGTERM mid-stream, restarted",
              lambda ctx: _restart_worker(ctx, signal.SIGTERM)),
        Fault("broker-restart", "broker restarted mid-stream", _broker_restart),
        Fault("redis-down-hold", f"Redis down {OUTAGE:.0f} s, policy hold", _redis_outage),
        Fault("redis-down-open", f"Redis down {OUTAGE:.0f} s, policy open", _redis_outage,
              {"FRAUD_FAIL_POLICY": "open"}),
        Fault("rebalance", "second worker joins, then leaves", _rebalance),
    )
}


# -- one scenario ---------------------------------------------------------------------------


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
    inconsistent_copies: int = 0  # transactions whose copies (same model) differ in answer
    degraded: int = 0
    decided_during_outage: int = 0  # first decisions made while the fault was on
    undegraded_during_outage: int = 0  # of those, not marked degraded
    mismatched: int = 0  # decisions whose features differ from what the fault allows
    differ_from_uninterrupted: int = 0  # decisions whose features differ from replay(frame)
    dead_letters: int = 0
    recover_seconds: float = 0.0  # fault start -> every later decision live again
    live_latency_seconds: float = LIVE_LATENCY  # what counted as live in this run
    baseline_p99_seconds: float = 0.0  # send -> decision, p99, before the fault
    paused_seconds: float = 0.0  # the longest time without any decision after the fault
    fault_seconds: float = 0.0  # fault start -> cleared (worker healthy, broker or Redis up)
    max_latency_seconds: float = 0.0
    seconds: float = 0.0
    worker_alive: bool = True
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
    topics = [topic_name(run_id, n) for n in NAMES]
    asyncio.run(create_topics(stack.bootstrap, topics))
    workdir.mkdir(parents=True, exist_ok=True)
    base_env = worker_env(stack.bootstrap, stack.redis_url, run_id, workdir, **fault.env)

    def spawn(label: str) -> WorkerProcess:
        env = dict(base_env, FRAUD_WEB_PORT=str(free_port()),
                   FRAUD_DATA_DIR=f"{base_env['FRAUD_DATA_DIR']}-{label}")
        worker = WorkerProcess(env, workdir / f"{name}-{run_id}-{label}.log")
        ctx.spawned.append(worker)
        return worker

    ctx = Context(stack, [], spawn)
    records = feed(frame, delay_days=SPEC.label_delay_days)
    labels = [r for r in records if r.kind == "label"]
    transactions = [r for r in records if r.kind == "transaction"]
    sent_at: dict[str, float] = {}
    failure: list[BaseException] = []
    try:
        ctx.workers.append(spawn("first").start().wait_ready())
        # Labels first: each counts only once known, whatever the topics' relative lag.
        asyncio.run(_produce(stack.bootstrap, topics[1], labels, rate=0))
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
        asyncio.run(_produce(stack.bootstrap, topics[0], transactions, rate=rate,
                             sent_at=sent_at, started=streaming))
        injector.join(180)
        if injector.is_alive():
            raise RuntimeError(f"the fault {name} did not finish in 180 s")
        if failure:
            raise RuntimeError(f"injecting {name} failed: {failure[0]!r}") from failure[0]
        ids = {r.transaction_id for r in transactions}
        decisions = asyncio.run(
            _collect(stack.bootstrap, topics[2], expected=ids, timeout=150, quiet=2.0)
        )
        dead = asyncio.run(_collect(stack.bootstrap, topics[4], expected=None,
                                    timeout=10, quiet=1.0))
        outcome.worker_alive = ctx.workers[-1].alive()
        held = "holding, retry" in "".join(w.output() for w in ctx.spawned)
    finally:
        for worker in ctx.spawned:
            worker.stop()
        try:
            asyncio.run(delete_topics(stack.bootstrap, topics))
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
    answers: dict[tuple[str, str], set[tuple[float, str]]] = {}  # per model version
    degraded_ids = set()
    for d in decisions:
        tx = d["transaction_id"]
        at = datetime.fromisoformat(d["decided_at"]).timestamp()
        first[tx] = min(first.get(tx, at), at)
        answers.setdefault((tx, d["model_version"]), set()).add((d["score"], d["action"]))
        if d.get("degraded"):
            degraded_ids.add(tx)
    outcome.decisions = len(decisions)
    outcome.decided = len(ids & set(first))
    outcome.lost = len(ids - set(first))
    outcome.duplicated = len(decisions) - len(first)
    outcome.inconsistent_copies = sum(len(a) > 1 for a in answers.values())
    outcome.dead_letters = len(dead)
    outcome.degraded = sum(bool(d.get("degraded")) for d in decisions)

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
    for d in decisions:
        online = _online(d)
        tx = d["transaction_id"]
        if tx not in base:
            continue
        if not np.array_equal(online, base[tx]):
            outcome.differ_from_uninterrupted += 1
        allowed = empty[tx] if d.get("degraded") else base[tx]
        if not np.array_equal(online, allowed):
            outcome.mismatched += 1
            if len(outcome.examples) < 5:
                names = [n for n, a, b in zip(FEATURE_NAMES, online, allowed, strict=True)
                         if a != b]
                outcome.examples.append(
                    f"{tx} (duplicate={d['duplicate']}, degraded={d.get('degraded')}): {names}"
                )


def _judge(outcome: Outcome, *, held: bool, ctx: Context) -> None:
    p = outcome.problems
    if outcome.lost:
        p.append(f"{outcome.lost} of {outcome.events} transactions have no decision")
    if outcome.dead_letters:
        p.append(f"{outcome.dead_letters} valid transactions were dead-lettered")
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
    if outcome.fault == "redis-down-hold":
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
    elif outcome.degraded:
        p.append(f"{outcome.degraded} degraded decisions without a Redis outage")
    if outcome.fault == "rebalance" and any("decided nothing" in n for n in ctx.notes):
        p.append("the second worker never got a partition")


# -- reports --------------------------------------------------------------------------------

LEGEND = (
    "*Decisions* counts every decision record, redeliveries included; *duplicated* the "
    "records beyond the first of a transaction (same score and action, checked); "
    "*mismatched features*: decisions (every copy) whose 22 features differ from the "
    "offline replay of the same stream (a degraded one, from features on empty history, "
    "which is what fail-open decides on); *decisions paused*: the "
    "longest time without any decision after the fault started; *time to recover*: from "
    "the fault's start until every later transaction is decided within the live latency "
    f"(the larger of {LIVE_LATENCY:g} s and 1.5 x the p99 before the fault) of being sent; "
    "*max latency*: the worst send-to-decision time of the run."
)

TABLE_START = "<!-- chaos-table:start -->"
TABLE_END = "<!-- chaos-table:end -->"


def table(outcomes: Iterable[Outcome]) -> str:
    lines = [
        "| fault | events | decisions | lost | duplicated | degraded | mismatched features "
        "| decisions paused | time to recover | max latency | result |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for o in outcomes:
        mismatched = f"{o.mismatched}"
        if o.differ_from_uninterrupted != o.mismatched:
            mismatched += f" ({o.differ_from_uninterrupted} differ from an uninterrupted run)"
        lines.append(
            f"| {o.title} | {o.events:,} | {o.decisions:,} | {o.lost} | {o.duplicated} "
            f"| {o.degraded} | {mismatched} | {o.paused_seconds:.1f} s "
            f"| {o.recover_seconds:.1f} s | {o.max_latency_seconds:.1f} s "
            f"| {'pass' if o.ok else 'FAIL'} |"
        )
    return "\n".join(lines)


def _facts(o: Outcome) -> str:
    facts = [f"fault cleared after {o.fault_seconds:.1f} s",
             f"p99 send-to-decision before the fault {o.baseline_p99_seconds:.2f} s"]
    if o.fault.startswith("redis"):
        facts.append(f"{o.decided_during_outage:,} decided while Redis was down"
                     + (f", {o.undegraded_during_outage} of them not marked degraded"
                        if o.fault.endswith("open") else ""))
    facts += [n for n in o.notes if "log tail" not in n]
    if not o.ok:
        facts.append("PROBLEMS: " + "; ".join(o.problems))
    return "; ".join(facts)


def write_reports(
    outcomes: list[Outcome], *, reports: Path, doc: Path, meta: dict[str, Any]
) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    payload = {**meta, "scenarios": [asdict(o) | {"ok": o.ok} for o in outcomes]}
    (reports / "chaos.json").write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
    header = (
        f"# Chaos run {meta['finished_at']}\n\n"
        f"{meta['transactions']:,} generated transactions a scenario at {meta['rate']:g}/s "
        f"(fault {meta['fault_after']:g} s into the stream), private Kafka and Redis, "
        f"the real worker. {LEGEND}\n\n"
    )
    notes = "\n".join(f"- **{o.title}**: {_facts(o)}" for o in outcomes)
    (reports / "chaos.md").write_text(header + table(outcomes) + "\n\n" + notes + "\n")
    if meta.get("complete") and doc.exists():
        text = doc.read_text()
        if TABLE_START in text and TABLE_END in text:
            before, rest = text.split(TABLE_START, 1)
            _, after = rest.split(TABLE_END, 1)
            block = (
                f"{TABLE_START}\n_Measured {meta['finished_at']} by `make chaos` "
                f"({meta['transactions']:,} transactions a scenario at {meta['rate']:g}/s; "
                f"{meta['machine']})._\n\n{table(outcomes)}\n\n{notes}\n{TABLE_END}"
            )
            doc.write_text(before + block + after)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudtools.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faults", nargs="*", metavar="FAULT",
                        help=f"scenarios to run (default: all): {', '.join(FAULTS)}")
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--reports", type=Path, default=ROOT / "reports")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("--keep", action="store_true", help="keep the private stack's directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the broker restart is on purpose
    names = args.faults or list(FAULTS)
    unknown = sorted(set(names) - set(FAULTS))
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; choose from {', '.join(FAULTS)}")

    load_before = os.getloadavg()[0]
    frame = chaos_frame()
    uninterrupted = expected_features(frame)
    directory = Path(tempfile.mkdtemp(prefix="fraud-chaos-"))
    stack = PrivateStack(directory)
    print(f"private stack in {directory}: Kafka {stack.bootstrap}, Redis {stack.redis_url}",
          flush=True)
    outcomes: list[Outcome] = []
    try:
        stack.up()
        for name in names:
            print(f"\n== {name}: {FAULTS[name].title}", flush=True)
            try:
                outcome = run_fault(stack, name, frame=frame, workdir=directory / "workers",
                                    rate=args.rate, uninterrupted=uninterrupted)
            except Exception as exc:  # noqa: BLE001 - reported in the table, next scenario
                log.exception("scenario %s could not run", name)
                outcome = Outcome(name, FAULTS[name].title, worker_alive=False,
                                  problems=[f"the scenario could not run: {exc!r}"])
            outcomes.append(outcome)
            print(table([outcome]).splitlines()[-1], flush=True)
            for problem in outcome.problems:
                print(f"   PROBLEM: {problem}", flush=True)
    finally:
        stack.down()
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    meta = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "transactions": len(frame),
        "rate": args.rate,
        "fault_after": FAULT_AFTER,
        "machine": f"{os.cpu_count()} CPUs, load average {load_before:.1f} before the run "
                   f"and {os.getloadavg()[0]:.1f} after it, Python {sys.version.split()[0]}",
        "complete": names == list(FAULTS),  # only a full run replaces the documented table
    }
    write_reports(outcomes, reports=args.reports, doc=args.doc, meta=meta)
    print("\n" + table(outcomes))
    updated = f", {args.doc}" if meta["complete"] else f" ({args.doc} is updated by full runs only)"
    print(f"\nwritten: {args.reports / 'chaos.json'}, {args.reports / 'chaos.md'}{updated}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
