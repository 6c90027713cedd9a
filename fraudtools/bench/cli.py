"""``python -m fraudtools.bench [--quick]``: arguments, the stack's reachability, the run
and its reports."""

from __future__ import annotations

import argparse
import logging
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
from fraudtools.bench.run import execute, run
from fraudtools.worker_process import ROOT

__all__ = ["main", "reachable"]


def reachable(bootstrap: str, redis_url: str) -> str | None:
    """None when the broker and Redis take a connection, else what to tell the user."""
    redis = urlsplit(redis_url)
    places = (("Kafka", bootstrap), ("Redis", f"{redis.hostname}:{redis.port or 6379}"))
    for name, address in places:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError:
            return f"{name} is not reachable on {address}: start the stack (make up)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudtools.bench",
                                     description=fraudtools.bench.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (about 2 minutes)")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka brokers")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--reports", default=str(ROOT / "reports"), help="where to write")
    parser.add_argument("--profile", action="store_true",
                        help="record the worker with py-spy during the throughput phase "
                             "(reports/bench-profile-throughput.txt; slows it a little)")
    parser.add_argument("--worker-env", action="append", default=[], metavar="FRAUD_X=VALUE",
                        help="a worker setting for this run (repeatable), e.g. "
                             "FRAUD_BATCH_WAIT_SECONDS=0.002; the service's defaults otherwise")
    parser.add_argument("--kafka-pid", type=int, help="the broker's pid, if not found by port")
    parser.add_argument("--redis-pid", type=int, help="redis-server's pid, if not found")
    args = parser.parse_args(argv)
    bad = [kv for kv in args.worker_env if not kv.startswith("FRAUD_") or "=" not in kv]
    if bad:
        parser.error(f"--worker-env takes FRAUD_NAME=VALUE, not {bad}")

    if not (ROOT / "models" / "current").exists():
        print("no model in models/current: train one first (make train)", file=sys.stderr)
        return 2
    problem = reachable(args.bootstrap, args.redis_url)
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
    paths = report.write(result, Path(args.reports))
    progress("wrote " + ", ".join(str(p) for p in paths))
    print(report.summary(result))
    return 0
