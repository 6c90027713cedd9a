"""Throughput: one worker on a pre-loaded backlog, first to last decision by the broker's
append times (optionally under py-spy, ``--profile``: reports/bench-profile-throughput.txt)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fraudtools.bench.kafka import preload, read_decisions
from fraudtools.bench.metrics import progress, stage_figures
from fraudtools.bench.profile import Profiler
from fraudtools.isolated import IsolatedWorker
from fraudtools.kafka_admin import LOG_APPEND_TIME, create_topics

if TYPE_CHECKING:
    from fraudtools.bench.context import Bench
    from fraudtools.bench.data import Slice
    from fraudtools.bench.worker import Worker

__all__ = ["phase"]


async def phase(bench: Bench, backlog: Slice) -> tuple[Worker, IsolatedWorker]:
    """``throughput_eps``, the cost per million decisions and the worker's stages; the
    worker is left running (with its topics) for the latency phase. The topics are
    LogAppendTime: the broker's append times, read back, give the rate here and the
    latency phase's ``broker_to_broker_ms``."""
    where = bench.isolated("main")
    await create_topics(bench.bootstrap, where.topics, config=LOG_APPEND_TIME)
    took = await preload(bench.bootstrap, backlog, transactions=where.names.transactions,
                         labels=where.names.labels)
    n = backlog.transactions
    progress(f"throughput: {n:,} transactions (+{len(backlog) - n:,} labels) pre-loaded in "
             f"{took:.1f} s; starting the worker ...")
    w = bench.worker("worker", where).start()
    profiler: list[Profiler] = []
    commands: list[dict[str, int]] = []  # Redis commands processed, by role of node

    def first_decision() -> None:
        commands.append(bench.redis.commands())  # after the worker's start-up commands
        if bench.args.profile:  # from the first decision: no start-up in the profile
            profiler.append(Profiler(w.pid, Path(bench.args.reports)
                                     / "bench-profile-throughput.txt"))
            bench.children.append(profiler[0].process)

    pids = bench.cpu_pids(worker=w.pid)
    watched = await bench.watch(where.names.decisions, n, pids, what="throughput", alive=[w],
                                on_first=first_decision)
    commands.append(bench.redis.commands())
    summary = profiler[0].stop() if profiler else None
    decisions = await read_decisions(bench.bootstrap, where.names.decisions)
    metrics = await w.metrics()
    bench.result["throughput_eps"] = round(decisions.rate())
    cpu = watched.cpu(["worker", "redis", "kafka", "bench"])
    bench.result["core_seconds_per_million"] = cpu["core_seconds_per_million"]
    counted = watched.samples[-1][1] - watched.samples[watched.first][1]
    bench.result["redis_commands_per_decision"] = commands_per_decision(commands, counted)
    bench.result["phases"]["throughput"] = {
        **bench.check_complete("throughput", decisions, n),
        "stages": stage_figures({}, metrics),
        "cpu": cpu,
        "worker_memory": bench.rss(w),
        "profile": summary,
    }
    progress(f"throughput: {bench.result['throughput_eps']:,} decisions/s; "
             f"cpu {cpu['cores']}; Redis commands a decision "
             f"{bench.result['redis_commands_per_decision']}")
    return w, where


def commands_per_decision(snapshots: list[dict[str, int]], decisions: int
                          ) -> dict[str, float | None]:
    """Commands processed by Redis (by role of node, and in all) between the first and the
    last snapshot, per decision: every client's, so others' traffic shows here too."""
    if len(snapshots) < 2 or decisions <= 0:
        return {}
    first, last = snapshots[0], snapshots[-1]
    out: dict[str, float | None] = {
        role: round((last[role] - first.get(role, 0)) / decisions, 2) for role in last}
    out["total"] = round((sum(last.values()) - sum(first.values())) / decisions, 2)
    return out
