"""The faults: what each does to the private stack or the workers, and when it started and
was cleared."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from redis import Redis

from fraudtools.chaos.stack import PrivateStack
from fraudtools.feed import Record
from fraudtools.worker_process import WorkerProcess

__all__ = ["FAULTS", "FLOOD", "FLOOD_BAD", "OUTAGE", "REBALANCE_STAY", "Context", "Fault"]

OUTAGE = 10.0  # seconds Redis stays down
REBALANCE_STAY = 8.0  # seconds the second worker stays in the group


@dataclass
class Context:
    """What a fault acts on, and when it started and was cleared (wall clock)."""

    stack: PrivateStack
    workers: list[WorkerProcess]  # the group's main line: the last one runs at the end
    spawn: Callable[[str], WorkerProcess]  # a new worker of the same group, by log name
    spawned: list[WorkerProcess] = field(default_factory=list)  # all, to stop at the end
    model_dir: Path | None = None  # the workers' own copy of models/ (Fault.own_models)
    label_topic: str = ""  # where the stream's labels go (the label flood adds to it)
    labels: list[Record] = field(default_factory=list)  # the stream's label records
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


def _redis_out_of_memory(ctx: Context) -> None:
    """Redis refuses every write (``maxmemory`` reached, ``noeviction``) for OUTAGE seconds."""
    client = Redis.from_url(ctx.stack.redis_url)
    try:
        ctx.fault_start = time.time()
        client.config_set("maxmemory", "1")
        time.sleep(OUTAGE)
        client.config_set("maxmemory", "0")
        ctx.fault_end = time.time()
    finally:
        client.close()


def _redis_flushed(ctx: Context) -> None:
    """``FLUSHALL``: every card's and terminal's history gone, and the state's marker."""
    client = Redis.from_url(ctx.stack.redis_url)
    try:
        ctx.fault_start = time.time()
        client.flushall()
        ctx.fault_end = time.time()
    finally:
        client.close()
    worker = ctx.workers[-1]
    deadline = time.monotonic() + 15
    while worker.metric("fraud_state_lost_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    lost = worker.metric("fraud_state_lost_total")
    ctx.notes.append(f"state loss detected {lost:.0f} time(s)" if lost
                     else "the state loss was never detected")


FLOOD = 10_000  # labels in the flood
FLOOD_BAD = 500  # of which name their transaction with another amount


def _label_flood(ctx: Context) -> None:
    """10,000 labels at once on the labels topic: the stream's labels of its first fifth
    (their transactions recorded by now) again and again — a chargeback file imported
    twice — and 500 that name their transaction with another amount (dead-lettered)."""
    early = sorted(ctx.labels, key=lambda r: orjson.loads(r.value)["timestamp"])
    early = early[: max(1, len(early) // 5)]
    flood: list[tuple[bytes, bytes]] = []
    for i in range(FLOOD - FLOOD_BAD):
        flood.append((early[i % len(early)].key, early[i % len(early)].value))
    for i in range(FLOOD_BAD):
        wrong = orjson.loads(early[i % len(early)].value)
        wrong["amount"] = float(wrong["amount"]) + 1.0 + i
        flood.append((early[i % len(early)].key, orjson.dumps(wrong)))

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=ctx.stack.bootstrap, acks="all",
                                    linger_ms=5)
        await producer.start()
        try:
            for key, value in flood:
                await producer.send(ctx.label_topic, value, key=key,
                                    partition=int(key.split(b"-", 1)[0][1:]))
            await producer.flush()
        finally:
            await producer.stop()

    worker = ctx.workers[-1]
    before = worker.metric("fraud_labels_total")
    ctx.fault_start = time.time()
    asyncio.run(send())
    sent = time.time()
    deadline = time.monotonic() + 120
    while (worker.metric("fraud_labels_total") - before < FLOOD - FLOOD_BAD
           and time.monotonic() < deadline):
        time.sleep(0.1)
    ctx.fault_end = time.time()
    ctx.notes.append(f"{len(flood):,} labels sent in {sent - ctx.fault_start:.1f} s, recorded "
                     f"in {ctx.fault_end - ctx.fault_start:.1f} s")


BAD_MODEL = "bad-output"


def _bad_model_swapped_in(ctx: Context) -> None:
    """``models/current`` moves to a model whose metadata names an output the ONNX lacks
    (its hash and features check out): the worker must refuse it and serve on."""
    assert ctx.model_dir is not None, "this fault needs Fault.own_models"
    models = ctx.model_dir
    current = (models / "current").read_text().strip()
    bad = models / BAD_MODEL
    shutil.copytree(models / current, bad)
    metadata = json.loads((bad / "metadata.json").read_text())
    metadata["version"] = BAD_MODEL
    metadata["model"]["output_name"] = "no-such-output"
    (bad / "metadata.json").write_text(json.dumps(metadata, indent=2))
    ctx.fault_start = time.time()
    (models / "current").write_text(BAD_MODEL)
    worker = ctx.workers[-1]
    deadline = time.monotonic() + 30
    while f"refused model {BAD_MODEL}" not in worker.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    ctx.fault_end = time.time()
    refused = f"refused model {BAD_MODEL}" in worker.output()
    ctx.notes.append(
        f"bad model refused after {ctx.fault_end - ctx.fault_start:.1f} s"
        if refused else "the bad model was never refused"
    )


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


def _cluster_nodes(port: int) -> list[list[str]]:
    with Redis(host="127.0.0.1", port=port, socket_timeout=2.0) as node:
        return [line.split() for line in node.execute_command("CLUSTER", "NODES").decode()
                .splitlines()]


def _pid(port: int) -> int:
    with Redis(host="127.0.0.1", port=port, socket_timeout=2.0) as node:
        return int(node.info("server")["process_id"])


def _port_of(fields: list[str]) -> int:
    return int(fields[1].split("@")[0].rsplit(":", 1)[1])


def _cluster_primary_killed(ctx: Context) -> None:
    """``kill -9`` of the primary that owns slot 0, mid-stream; its replica takes over; the
    node is started again (a replica now), as an operator or an orchestrator would."""
    base = ctx.stack.cluster_port
    assert base is not None
    nodes = _cluster_nodes(base)
    victim = next(f for f in nodes if "master" in f[2] and any(
        r.split("-")[0] == "0" for r in f[8:]))
    port = _port_of(victim)
    survivor = next(_port_of(f) for f in nodes if _port_of(f) != port)
    ctx.fault_start = time.time()
    os.kill(_pid(port), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _cluster_nodes(survivor)
        owner = next((f for f in now if "master" in f[2] and "fail" not in f[2] and any(
            r.split("-")[0] == "0" for r in f[8:])), None)
        if owner is not None and _port_of(owner) != port:
            break
        time.sleep(0.1)
    else:
        ctx.notes.append("no replica took over the killed primary's slots in 60 s")
    promoted = time.time()
    ctx.stack.restart_cluster_node(port)
    ctx.fault_end = time.time()
    ctx.notes.append(f"primary {port} killed: a replica owned its slots after "
                     f"{promoted - ctx.fault_start:.1f} s; the node was back as a replica "
                     f"{ctx.fault_end - promoted:.1f} s later")


RESHARD_SLOTS = 2000


def _cluster_resharded(ctx: Context) -> None:
    """``redis-cli --cluster reshard``: 2,000 slots, with their keys, move from one primary
    to another while the stream runs (MOVED, ASK and TRYAGAIN along the way)."""
    base = ctx.stack.cluster_port
    assert base is not None
    primaries = [f for f in _cluster_nodes(base) if "master" in f[2]]
    source, target = primaries[0][0], primaries[1][0]
    ctx.fault_start = time.time()
    done = subprocess.run(
        ["redis-cli", "--cluster", "reshard", f"127.0.0.1:{base}", "--cluster-from", source,
         "--cluster-to", target, "--cluster-slots", str(RESHARD_SLOTS), "--cluster-yes",
         "--cluster-pipeline", "100"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    ctx.fault_end = time.time()
    if done.returncode != 0:
        ctx.notes.append(f"the reshard failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    else:
        ctx.notes.append(f"{RESHARD_SLOTS} slots moved in {ctx.fault_end - ctx.fault_start:.1f} s")


def _sentinel_primary_killed(ctx: Context) -> None:
    """``kill -9`` of the primary the sentinels watch; they promote the replica; the old
    primary is started again as its replica."""
    stack = ctx.stack
    port = stack.sentinel_primary()
    ctx.fault_start = time.time()
    os.kill(_pid(port), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and stack.sentinel_primary() == port:
        time.sleep(0.1)
    promoted = time.time()
    stack.restart_sentinel_server(port)
    ctx.fault_end = time.time()
    ctx.notes.append(f"primary {port} killed: the sentinels named "
                     f"{stack.sentinel_primary()} after {promoted - ctx.fault_start:.1f} s; "
                     f"the old one was back as a replica {ctx.fault_end - promoted:.1f} s later")


@dataclass(frozen=True)
class Fault:
    name: str
    title: str
    inject: Callable[[Context], None]
    env: dict[str, str] = field(default_factory=dict)
    own_models: bool = False  # the workers serve a copy of models/ the fault may change
    redis: str = "single"  # where the state is: single, cluster or sentinel


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
        Fault("redis-oom", f"Redis out of memory {OUTAGE:.0f} s, policy hold",
              _redis_out_of_memory),
        Fault("bad-model", "a model that cannot score swapped in", _bad_model_swapped_in,
              {"FRAUD_MODEL_POLL_SECONDS": "0.5"}, own_models=True),
        Fault("redis-flushed", "Redis flushed mid-stream (FLUSHALL)", _redis_flushed),
        Fault("label-flood", f"{FLOOD:,} labels at once, {FLOOD_BAD} of them wrong",
              _label_flood),
        Fault("cluster-primary-kill", "Redis Cluster: a primary SIGKILLed, its replica "
              "promoted", _cluster_primary_killed, redis="cluster"),
        Fault("cluster-reshard", f"Redis Cluster: {RESHARD_SLOTS:,} slots resharded "
              "mid-stream", _cluster_resharded, redis="cluster"),
        Fault("sentinel-primary-kill", "Sentinel: the primary SIGKILLed, the replica "
              "promoted", _sentinel_primary_killed, redis="sentinel"),
    )
}
