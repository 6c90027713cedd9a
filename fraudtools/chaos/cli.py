"""``python -m fraudtools.chaos [FAULT ...]``: every scenario (or those named) on one
private stack, then the report."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import fraudtools.chaos
from fraudtools.chaos.faults import FAULTS
from fraudtools.chaos.report import table, write_reports
from fraudtools.chaos.scenario import FAULT_AFTER, RATE, Outcome, run_fault
from fraudtools.chaos.stack import PrivateStack
from fraudtools.chaos.stream import chaos_frame, expected_features
from fraudtools.worker_process import ROOT

__all__ = ["main"]

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudtools.chaos",
                                     description=fraudtools.chaos.__doc__,
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

