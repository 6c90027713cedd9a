"""``make soak``: the worker at a steady rate for a long time; memory and latency over time.

On the local stack (real broker, real Redis, the real worker process), like ``make bench``
and with its machinery (own topics, consumer group and Redis prefix, all removed at the
end): the state is first warmed with 45 days of event time as a backlog (past the cards'
33 and terminals' 40 days of retention, so Redis is at its steady size), then
transactions are sent at a fixed rate (default: half the highest rate the latest
``make bench`` sustained) for ``--minutes`` (default 10). Every 10 s it samples the
worker's resident memory and CPU and Redis' ``used_memory``; a consumer in another process
stamps each decision's arrival. Per minute: sent, decided, latency p50/p95/p99/max, worker
RSS, Redis memory. It asserts nothing; it writes ``reports/soak.json``, ``reports/soak.md``
and ``reports/soak.png``, and says whether memory and latency stayed flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer
from redis import Redis

from fraudtools.bench import QUICK, system
from fraudtools.bench import data as bench_data
from fraudtools.bench.context import Bench
from fraudtools.bench.kafka import Arrivals, freeze_gc, preload
from fraudtools.bench.kafka import send_paced as send_paced_records
from fraudtools.bench.metrics import percentiles, progress
from fraudtools.bench.run import execute
from fraudtools.kafka_admin import create_topics
from fraudtools.worker_process import ROOT

__all__ = ["Soak", "main", "write"]

WINDOW = 10.0  # seconds between samples
WARM_DAYS = 45
TRANSACTIONS_PER_DAY = 9_700  # the reference population (5,000 cards) makes about this many


class Soak(Bench):
    """A :class:`Bench` named ``soak-<id>`` (its logs in ``reports/soak-logs``) whose run is
    the warm-up and the steady rate."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args, QUICK, name="soak")

    def redis_used(self) -> int:
        client = Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            return int(client.info("memory")["used_memory"])
        finally:
            client.close()

    async def run(self) -> dict[str, Any]:
        args = self.args
        rate, seconds = args.rate, args.minutes * 60
        client = Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            self.pids = self.stack_pids(client.info("server"))
        finally:
            client.close()
        warm_n = WARM_DAYS * TRANSACTIONS_PER_DAY
        progress(f"{self.run_id}: generating {warm_n + int(rate * seconds):,} transactions ...")
        self.data = bench_data.build(warm_n + int(rate * seconds) + 1_000)
        freeze_gc()
        where = self.isolated("soak")
        topics = where.names
        await create_topics(self.bootstrap, where.topics)
        worker = self.worker("worker", where).start()
        await worker.healthy()

        warm = self.take(warm_n)
        await preload(self.bootstrap, warm, transactions=topics.transactions,
                      labels=topics.labels)
        progress(f"warm-up: {warm.transactions:,} transactions ({WARM_DAYS} days) as a backlog ...")
        await self.watch(topics.decisions, warm.transactions, self.cpu_pids(worker=worker.pid),
                         what="warm-up", alive=[worker])

        arrivals = await Arrivals.start(self.bootstrap, topics.decisions)
        self.children.append(arrivals.process)
        received = arrivals.received
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
        await producer.start()
        windows: list[dict[str, Any]] = []
        progress(f"soak: {rate:,}/s for {args.minutes:g} min ...")
        began = time.monotonic()
        pids = self.cpu_pids(worker=worker.pid)
        previous = system.sample(pids)
        try:
            while time.monotonic() - began < seconds:
                piece = self.take(int(rate * WINDOW))
                sent_at = await send_paced_records(producer, piece, rate=rate,
                                                   transactions=topics.transactions,
                                                   labels=topics.labels)
                worker.check()
                now = system.sample(pids)
                memory = system.memory_kb(worker.pid)
                windows.append({
                    "at": round(now.at - began, 1),
                    "sent_at": sent_at,
                    "worker_rss_mb": round(memory["VmRSS"] / 1024, 1),
                    "redis_used_mb": round(self.redis_used() / 2**20, 1),
                    "cores": {k: round((now.cpu[k] - previous.cpu[k]) / (now.at - previous.at), 3)
                              for k in now.cpu},
                })
                previous = now
                if len(windows) % 6 == 0:
                    w = windows[-1]
                    progress(f"  {w['at']:.0f} s: worker {w['worker_rss_mb']} MB, "
                         f"Redis {w['redis_used_mb']} MB, decided {received.value:,}")
            expected = sum(len(w["sent_at"]) for w in windows)
            deadline = time.monotonic() + 60
            while received.value < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        finally:
            await producer.stop()
        return self.summarise(windows, await arrivals.collect(), rate)

    def summarise(self, windows: list[dict[str, Any]], arrivals: list[tuple[str, float]],
                  rate: float) -> dict[str, Any]:
        first: dict[str, float] = {}
        repeated = 0
        for tx_id, at in arrivals:
            if tx_id in first:
                repeated += 1
            else:
                first.setdefault(tx_id, at)
        minutes = []
        per_minute = max(1, int(60 / WINDOW))
        for m in range(0, len(windows), per_minute):
            group = windows[m : m + per_minute]
            sent = {i: t for w in group for i, t in w["sent_at"].items()}
            lat = [(first[i] - t) * 1000 for i, t in sent.items() if i in first]
            minutes.append({
                "minute": m // per_minute + 1,
                "sent": len(sent),
                "decided": len(lat),
                **percentiles(lat),
                "worker_rss_mb": group[-1]["worker_rss_mb"],
                "redis_used_mb": group[-1]["redis_used_mb"],
                "worker_cores": round(float(np.mean([w["cores"].get("worker", math.nan)
                                                     for w in group])), 3),
            })
        sent_total = sum(m["sent"] for m in minutes)
        decided_total = sum(m["decided"] for m in minutes)
        full = [m for m in minutes if m["sent"] >= 0.9 * rate * 60] or minutes
        a, b = full[0], full[-1]
        flat = {
            "worker_rss_growth_mb": round(b["worker_rss_mb"] - a["worker_rss_mb"], 1),
            "redis_growth_mb": round(b["redis_used_mb"] - a["redis_used_mb"], 1),
            "p99_first_last_ms": [a["p99"], b["p99"]],
        }
        flat["flat"] = bool(
            abs(flat["worker_rss_growth_mb"]) <= 0.05 * a["worker_rss_mb"]
            and abs(flat["redis_growth_mb"]) <= 0.05 * max(a["redis_used_mb"], 1.0)
            and b["p99"] <= 2 * a["p99"] + 5
        )
        return {
            "schema": 1,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "rate_eps": rate,
            "minutes_planned": self.args.minutes,
            "warm_days": WARM_DAYS,
            "sent": sent_total,
            "decided": decided_total,
            "missing": sent_total - decided_total,
            "repeated": repeated,
            "latency_ms": percentiles([(first[i] - t) * 1000 for w in windows
                                        for i, t in w["sent_at"].items() if i in first]),
            "by_minute": minutes,
            "windows": [{k: v for k, v in w.items() if k != "sent_at"} for w in windows],
            "flatness": flat,
            "git": system.git_info(ROOT),
            "machine": system.machine_info(kafka_pid=self.pids.get("kafka"), redis_version=None),
        }


def write(result: dict[str, Any], where: Path) -> list[Path]:
    where.mkdir(parents=True, exist_ok=True)
    paths = [where / "soak.json", where / "soak.md", where / "soak.png"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    f = result["flatness"]
    lines = [
        "# Soak run",
        "",
        f"{result['started_at']}: {result['rate_eps']:,}/s for {result['minutes_planned']:g} "
        f"min after {result['warm_days']} days of warm-up; commit "
        f"`{result['git'].get('commit', '?')}`.",
        "",
        f"Sent {result['sent']:,}, decided {result['decided']:,}, missing "
        f"{result['missing']:,}, decided twice {result['repeated']:,}. Latency over the run: "
        f"p50 {result['latency_ms']['p50']} ms, p99 {result['latency_ms']['p99']} ms, max "
        f"{result['latency_ms']['max']} ms.",
        "",
        f"Flat: **{'yes' if f['flat'] else 'no'}** (first to last full minute: worker RSS "
        f"{f['worker_rss_growth_mb']:+} MB, Redis {f['redis_growth_mb']:+} MB, p99 "
        f"{f['p99_first_last_ms'][0]} → {f['p99_first_last_ms'][1]} ms; flat means memory "
        "within 5 % and p99 at most twice the first minute's + 5 ms).",
        "",
        "| minute | sent | decided | p50 ms | p95 ms | p99 ms | max ms | worker RSS MB | "
        "Redis MB | worker cores |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in result["by_minute"]:
        lines.append(
            f"| {m['minute']} | {m['sent']:,} | {m['decided']:,} | {m['p50']} | {m['p95']} | "
            f"{m['p99']} | {m['max']} | {m['worker_rss_mb']} | {m['redis_used_mb']} | "
            f"{m['worker_cores']} |"
        )
    paths[1].write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [m["minute"] for m in result["by_minute"]]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for key, label in (("p50", "p50"), ("p99", "p99"), ("max", "max")):
        top.plot(minutes, [m[key] for m in result["by_minute"]], marker="o", label=label)
    top.set_ylabel("send → decision, ms")
    top.set_yscale("log")
    top.legend()
    top.set_title(f"soak: {result['rate_eps']:,} transactions/s")
    bottom.plot(minutes, [m["worker_rss_mb"] for m in result["by_minute"]], marker="o",
                label="worker RSS")
    bottom.plot(minutes, [m["redis_used_mb"] for m in result["by_minute"]], marker="o",
                label="Redis used_memory")
    bottom.set_ylabel("MB")
    bottom.set_xlabel("minute")
    bottom.set_ylim(bottom=0)
    bottom.legend()
    fig.tight_layout()
    fig.savefig(paths[2], dpi=110)
    plt.close(fig)
    return paths


def _default_rate(reports: Path) -> int | None:
    try:
        bench = json.loads((reports / "bench.json").read_text())
    except (OSError, ValueError):
        return None
    best = bench.get("max_sustained_eps")
    return int(best) // 2 if best else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudtools.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, help="transactions a second (default: half the "
                        "highest rate the last make bench sustained, reports/bench.json)")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--reports", default=str(ROOT / "reports"))
    parser.add_argument("--worker-env", action="append", default=[], metavar="FRAUD_X=VALUE")
    parser.add_argument("--kafka-pid", type=int)
    parser.add_argument("--redis-pid", type=int)
    args = parser.parse_args(argv)
    args.quick = True
    args.profile = False
    if args.rate is None:
        args.rate = _default_rate(Path(args.reports))
        if args.rate is None:
            parser.error("no reports/bench.json with max_sustained_eps: run make bench or "
                         "give --rate")
    soak = Soak(args)
    result, code = execute(soak, soak.run(), "soak")
    if result is None:
        return code
    paths = write(result, Path(args.reports))
    progress("wrote " + ", ".join(str(p) for p in paths))
    print(Path(paths[1]).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
