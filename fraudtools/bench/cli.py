"""``python -m fraudtools.bench [--quick] [--redis-mode cluster]``: arguments, the stack's
reachability, the run and its reports."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import fraudtools.bench
from fraudtools.bench import report
from fraudtools.bench.context import Bench
from fraudtools.bench.metrics import progress
from fraudtools.bench.plan import FULL, QUICK
from fraudtools.bench.redis_nodes import MODES
from fraudtools.bench.run import execute, run
from fraudtools.worker_process import ROOT

__all__ = ["main", "reachable"]


def reachable(bootstrap: str, redis_url: str, *, cluster: bool = False) -> str | None:
    """None when the broker and Redis (a cluster: its first seed) take a connection, else
    what to tell the user."""
    redis = urlsplit(redis_url.split(",")[0].strip())
    places = (("Kafka", bootstrap), ("Redis", f"{redis.hostname}:{redis.port or 6379}"))
    for name, address in places:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError:
            start = "make up-cluster" if cluster and name == "Redis" else "make up"
            return f"{name} is not reachable on {address}: start the stack ({start})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudtools.bench",
                                     description=fraudtools.bench.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (about 3 minutes)")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka brokers")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                        help="the one Redis (--redis-mode single)")
    parser.add_argument("--redis-mode", choices=MODES, default="single",
                        help="single: every worker on --redis-url; cluster: FRAUD_REDIS_MODE="
                             "cluster on --cluster-url, Redis CPU summed over every node "
                             "(primaries and replicas)")
    parser.add_argument("--cluster-url", default="redis://127.0.0.1:7100",
                        help="seed nodes of the Redis Cluster, comma-separated "
                             "(--redis-mode cluster; make up-cluster)")
    parser.add_argument("--report-name", metavar="NAME",
                        help="write <reports>/NAME.{json,md}, NAME_latency.png, NAME-logs/ "
                             "(default bench, or bench-cluster with --redis-mode cluster)")
    parser.add_argument("--reports", default=str(ROOT / "reports"), help="where to write")
    parser.add_argument("--profile", action="store_true",
                        help="record the worker with py-spy during the throughput phase and "
                             "at 1,000/s (reports/bench-profile-throughput.txt and "
                             "bench-profile-latency.txt; slows it a little)")
    parser.add_argument("--worker-env", action="append", default=[], metavar="FRAUD_X=VALUE",
                        help="a worker setting for this run (repeatable), e.g. "
                             "FRAUD_BATCH_WAIT_SECONDS=0.002; the service's defaults otherwise")
    parser.add_argument("--producer-linger-ms", type=int, default=0, metavar="MS",
                        help="the latency phase's producer lingers this long to batch its "
                             "sends (default 0: a request for each pacing tick's "
                             "transactions; Kafka's own producer lingers 5 by default since "
                             "4.0, KIP-1030)")
    parser.add_argument("--kafka-pid", type=int, help="the broker's pid, if not found by port")
    parser.add_argument("--redis-pid", type=int,
                        help="redis-server's pid, if not found (one Redis only: a cluster's "
                             "nodes are found from CLUSTER NODES and each one's INFO)")
    args = parser.parse_args(argv)
    bad = [kv for kv in args.worker_env if not kv.startswith("FRAUD_") or "=" not in kv]
    if bad:
        parser.error(f"--worker-env takes FRAUD_NAME=VALUE, not {bad}")
    owned = [kv for kv in args.worker_env
             if kv.split("=", 1)[0] in ("FRAUD_REDIS_MODE", "FRAUD_REDIS_URL")]
    if owned:
        parser.error(f"{owned}: the bench sets these; use --redis-mode, --redis-url, "
                     "--cluster-url")
    if args.redis_mode == "cluster" and args.redis_pid:
        parser.error("--redis-pid is for one Redis; a cluster's pids come from its nodes")
    args.report_name = args.report_name or (
        "bench-cluster" if args.redis_mode == "cluster" else "bench")
    ignored = sorted(k for k in os.environ if k.startswith("FRAUD_"))
    if ignored:  # the workers never inherit FRAUD_* (fraudtools.isolated)
        print(f"note: {', '.join(ignored)} from this shell do not reach the workers; "
              "use --worker-env FRAUD_X=VALUE", file=sys.stderr)

    if not (ROOT / "models" / "current").exists():
        print("no model in models/current: train one first (make train)", file=sys.stderr)
        return 2
    cluster = args.redis_mode == "cluster"
    problem = reachable(args.bootstrap, args.cluster_url if cluster else args.redis_url,
                        cluster=cluster)
    if problem:
        print(problem, file=sys.stderr)
        return 2

    Path(args.reports).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retries while a topic settles
    bench = Bench(args, QUICK if args.quick else FULL)
    result, code = execute(bench, run(bench), "bench")
    if result is None:
        return code
    paths = report.write(result, Path(args.reports), args.report_name)
    progress("wrote " + ", ".join(str(p) for p in paths))
    print(report.summary(result))
    return 0
