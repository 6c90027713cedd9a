"""Latency: offered rates (500, 1,000, 2,000, 5,000 a second and the highest sustained),
each for a fixed time, from the producer's send to the decision's arrival at a consumer in
another process, with the worker's own time per stage from its /metrics; and, from the
broker's own stamps (LogAppendTime topics), from each transaction's append to its
decision's append (``broker_to_broker_ms``). With ``--profile``, the worker at 1,000/s
under py-spy (reports/bench-profile-latency.txt)."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from aiokafka import AIOKafkaProducer

from fraudtools.bench import broker_gc, system
from fraudtools.bench.kafka import Arrival, Arrivals, broker_to_broker, first_copies, send_stamped
from fraudtools.bench.metrics import percentiles, progress, stage_figures
from fraudtools.bench.plan import MAX_RATE_TRIES
from fraudtools.bench.profile import Profiler
from fraudtools.bench.redis_nodes import grouped

if TYPE_CHECKING:
    from fraudtools.bench.context import Bench
    from fraudtools.bench.worker import Worker
    from fraudtools.isolated import IsolatedWorker

__all__ = ["PROFILED_RATE", "phase"]

#: With ``--profile``, the worker is profiled (py-spy) at this offered rate too: where a
#: small batch's time goes, beside the throughput phase's profile of full batches.
PROFILED_RATE = 1_000
PROFILE = "bench-profile-latency.txt"


async def phase(bench: Bench, w: Worker, where: IsolatedWorker) -> None:
    """``latency_ms`` by offered rate (each with its ``broker_to_broker_ms``),
    ``broker_to_broker_ms`` by rate, ``max_sustained_eps`` and the worker's memory, on the
    throughput phase's worker ``w`` and topics (created LogAppendTime)."""
    phases, arrivals = await _offer(bench, w, where)
    first, seen = first_copies(arrivals)
    _summarise(bench, phases, first, seen)


async def _offer(bench: Bench, w: Worker, where: IsolatedWorker
                 ) -> tuple[list[dict[str, Any]], list[Arrival]]:
    """Each rate in turn: the phases' raw figures, and every decision record that arrived
    (copies included)."""
    plan = bench.plan
    arrivals = await Arrivals.start(bench.bootstrap, where.names.decisions)
    bench.children.append(arrivals.process)
    consumer, received = arrivals.process, arrivals.received
    producer = AIOKafkaProducer(bootstrap_servers=bench.bootstrap, acks="all",
                                linger_ms=bench.args.producer_linger_ms)
    await producer.start()
    phases: list[dict[str, Any]] = []
    expected = 0
    gc_log = broker_gc.find(bench.pids.get("kafka"))
    throughput = bench.result["throughput_eps"]
    try:
        queue: list[tuple[int, str]] = [(r, "fixed") for r in sorted(plan.rates)]
        tries = sorted({min(plan.max_rate_cap, int(throughput * f) // 250 * 250)
                        for f in MAX_RATE_TRIES} - set(plan.rates) - {0}, reverse=True)
        while queue:
            rate, kind = queue.pop(0)
            piece = bench.take(int(rate * plan.seconds))
            pids = bench.cpu_pids(worker=w.pid, consumer=consumer.pid or 0)
            before, c0 = await w.metrics(), system.sample(pids)
            progress(f"latency: {rate:,}/s for {plan.seconds:g} s ({kind}) ...")
            profiler = (Profiler(w.pid, Path(bench.args.reports) / PROFILE)
                        if bench.args.profile and rate == PROFILED_RATE and kind == "fixed"
                        else None)
            began = time.time()
            sent = await send_stamped(producer, piece, rate=rate,
                                      transactions=where.names.transactions,
                                      labels=where.names.labels)
            sent_at = sent.sent_at
            sent_done = time.monotonic()
            expected += len(sent_at)
            deadline = sent_done + plan.drain
            while received.value < expected and time.monotonic() < deadline:
                w.check()
                await asyncio.sleep(0.02)
            drain_seconds = time.monotonic() - sent_done
            # The broker's stops while this rate's transactions and decisions went through.
            stopped = gc_log.during(began, time.time())
            c1, after = system.sample(pids), await w.metrics()
            profile = profiler.stop() if profiler is not None else None
            send_seconds = sent_done - min(sent_at.values())
            used = {k: c1.cpu[k] - c0.cpu[k] for k in c1.cpu}  # by process; then the sums
            phases.append({
                "rate": rate, "kind": kind, "sent_at": sent_at, "sent": sent,
                "send_seconds": send_seconds, "drain_seconds": drain_seconds,
                "stages": stage_figures(before, after), "rss": bench.rss(w),
                "cpu": grouped(used, bench.cpu_groups),
                "measured": sum(v for v in used.values() if not math.isnan(v)),
                "wall": c1.at - c0.at, "busy": c1.busy - c0.busy,
                "profile": profile, "broker_gc": stopped,
            })
            if received.value < expected:
                # The backlog would spill into the next phase: let it clear first.
                progress(f"  not drained {plan.drain:g} s after sending; waiting for the rest")
                deadline = time.monotonic() + 120
                while received.value < expected and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
            # Kept up: sent on time and the last decisions came within a second.
            kept_up = drain_seconds < 1.0 and send_seconds < plan.seconds * 1.05
            if kind == "max" and kept_up:
                tries.clear()
            if not queue and tries:  # after the fixed rates: the highest sustained
                queue.append((tries.pop(0), "max"))
            await asyncio.sleep(1.0)
    finally:
        await producer.stop()
    return phases, await arrivals.collect_stamped()


def _summarise(bench: Bench, phases: list[dict[str, Any]], copies: dict[str, Arrival],
               seen: dict[str, int]) -> None:
    first = {i: a.at for i, a in copies.items()}
    latency_ms: dict[str, Any] = {}
    by_rate: dict[str, Any] = {}
    rss = []
    best = None
    for phase in phases:
        sent_at = phase["sent_at"]
        lat = [(first[i] - t) * 1000 for i, t in sent_at.items() if i in first]
        arrived = [first[i] for i in sent_at if i in first]
        span = (max(arrived) - min(sent_at.values())) if arrived else math.nan
        decided = len(lat)
        achieved = decided / span if span and span > 0 else math.nan
        fifth = max(1, len(lat) // 5)
        ordered = [(first[i] - t) * 1000 for i, t in sorted(sent_at.items(), key=lambda x: x[1])
                   if i in first]
        growing = (np.median(ordered[-fifth:]) > 2 * np.median(ordered[:fifth]) + 5
                   if ordered else True)
        sustained = (decided == len(sent_at) and achieved >= 0.95 * phase["rate"]
                     and not growing)
        busy_cpu = phase["cpu"]
        per_million = {k: round(v / decided * 1e6, 1) if decided else None
                       for k, v in busy_cpu.items()}
        b2b = broker_to_broker(phase["sent"].appended_ms, len(sent_at), copies)
        entry = {
            **percentiles(lat),
            "offered_eps": phase["rate"],
            "achieved_eps": round(achieved) if not math.isnan(achieved) else None,
            "sent": len(sent_at), "decided": decided,
            "missing": len(sent_at) - decided,
            "send_seconds": round(phase["send_seconds"], 2),
            "drain_seconds": round(phase["drain_seconds"], 2),
            "repeated": sum(seen.get(i, 0) > 1 for i in sent_at),
            "sustained": bool(sustained),
            "kind": phase["kind"],
            "broker_to_broker_ms": b2b,
            "broker_gc_pauses": phase["broker_gc"],
            "worker_stages": phase["stages"],
            "cpu_cores": {k: round(v / phase["wall"], 3) for k, v in busy_cpu.items()},
            "core_seconds_per_million": per_million,
            "machine_busy_cores": round(phase["busy"] / phase["wall"], 2),
            "other_processes_cores": round(
                (phase["busy"] - phase["measured"]) / phase["wall"], 2),
            **({"profile": phase["profile"]} if phase["profile"] else {}),
        }
        latency_ms[str(phase["rate"])] = entry
        by_rate[str(phase["rate"])] = {
            **{k: b2b.get(k) for k in ("p50", "p95", "p99", "max")},
            "sustained": bool(sustained),
            "broker_gc_pauses": phase["broker_gc"],
            **({} if b2b["available"] else {"note": b2b["note"]})}
        rss.append(phase["rss"]["rss_mb"])
        if sustained and (best is None or phase["rate"] > best):
            best = phase["rate"]
        progress(f"  {phase['rate']:>6,}/s: p50 {entry['p50']} p99 {entry['p99']} max "
                 f"{entry['max']} ms, achieved {entry['achieved_eps']}/s, "
                 f"sustained {sustained}; broker to broker p50 {b2b.get('p50')} p99 "
                 f"{b2b.get('p99')} ms" + ("" if b2b["available"] else f" ({b2b['note']})")
                 + f"; broker GC {broker_gc.describe(phase['broker_gc'])}")
    bench.result["latency_ms"] = latency_ms
    bench.result["broker_to_broker_ms"] = by_rate
    bench.result["max_sustained_eps"] = best
    bench.result["worker_rss_mb"] = round(float(np.median(rss)), 1) if rss else None
    bench.result["worker_rss_peak_mb"] = phases[-1]["rss"]["peak_mb"] if phases else None
