"""``python -m training backtest``: its options and what it prints (docs/backtest.md).

Kept apart from :mod:`training.backtest` so that the CLI's other commands do not load
onnxruntime, scikit-learn and matplotlib to build their parser.
"""

from __future__ import annotations

import argparse
import logging
from datetime import date
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]

log = logging.getLogger("training")

DESCRIPTION = """\
Replay a labelled history through the feature code once and decide every transaction of
the window twice: as the baseline (its model directory, its thresholds, its rules) and as
the candidate. Writes the JSON report, a Markdown report with plots beside it and the
predictions CSV (one row per transaction). A model is a version directory
(models/<version>), a pointer (models/current) or a models directory.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _json_path(text: str) -> Path:
    path = Path(text)
    if path.suffix != ".json":
        raise argparse.ArgumentTypeError(
            f"{text}: the report is JSON (REPORT.json); its Markdown goes beside it"
        )
    return path


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``backtest`` command to the CLI's subparsers (``commands``)."""
    from training.cli import parse_columns

    parser: argparse.ArgumentParser = commands.add_parser(
        "backtest",
        help="compare a candidate model and rules with a baseline on history",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True,
                        help="CSV or Parquet with the benchmark's columns")
    parser.add_argument("--columns", type=parse_columns, default=None,
                        help="map canonical to your column names: TX_AMOUNT=amount,...")
    parser.add_argument("--timezone", default="UTC", help="zone of timestamps without offset")
    parser.add_argument("--baseline", type=Path, required=True, metavar="MODEL_DIR")
    parser.add_argument("--candidate", type=Path, required=True, metavar="MODEL_DIR")
    parser.add_argument("--baseline-rules", type=Path, default=None, metavar="FILE",
                        help="the baseline's rules file (FRAUD_RULES_FILE's format)")
    parser.add_argument("--candidate-rules", type=Path, default=None, metavar="FILE")
    parser.add_argument("--from", dest="start", type=date.fromisoformat, required=True,
                        metavar="DATE", help="first UTC day scored (YYYY-MM-DD)")
    parser.add_argument("--days", type=_positive_int, required=True, metavar="N",
                        help="days scored from --from")
    parser.add_argument("--report", type=_json_path, required=True, metavar="REPORT.json")
    parser.add_argument("--predictions", type=Path, required=True, metavar="PREDICTIONS.csv")
    parser.add_argument("--reviewer-capacity", type=_positive_float, default=None, metavar="N",
                        help="cards a day investigators can review (default: training's, "
                        "100 a day per 9,600 transactions a day)")
    parser.add_argument("--examples", type=_non_negative_int, default=10, metavar="N",
                        help="examples listed for each kind of change (default 10)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the backtest ``args`` describe; errors propagate to the CLI (exit code 2)."""
    from training import backtest, backtest_report
    from training.console import Phases
    from training.dataset import DatasetError, read_transactions

    phases = Phases()
    with phases.phase("loading", "the two sides' models and rules"):
        baseline = backtest.load_side(args.baseline, args.baseline_rules)
        candidate = backtest.load_side(args.candidate, args.candidate_rules)
    if not args.data.exists():
        raise DatasetError(
            f"{args.data}: no such file; generate one with `python -m training generate`"
        )
    with phases.phase("reading", str(args.data)):
        frame = read_transactions(args.data, columns=args.columns, naive_timezone=args.timezone)
    result = backtest.run(
        frame,
        baseline=baseline,
        candidate=candidate,
        window=backtest.Window(args.start, args.days),
        examples=args.examples,
        reviewer_capacity=args.reviewer_capacity,
        source=str(args.data),
        phases=phases,
    )
    with phases.phase("writing", "the reports and the predictions"):
        try:
            backtest_report.write_all(result, report=args.report, predictions=args.predictions)
        except OSError as exc:
            raise backtest.BacktestError(f"cannot write the reports: {exc}") from exc
    _summary(result.report, args.report)
    return 0


def _summary(report: dict[str, Any], path: Path) -> None:
    base, cand, changes, rate = (
        report["baseline"], report["candidate"], report["changes"], report["rate"]
    )
    print(f"\nbacktest {report['window']['from']} .. {report['window']['last']}: "
          f"{report['window']['transactions']:,} transactions")
    print(f"{'':11}{'reviews':>9}{'declines':>10}{'P(r|d)':>8}{'R(r|d)':>8}{'P(d)':>8}"
          f"{'AUC':>7}{'AP':>7}{'CP@100':>8}")
    for name, side in (("baseline", base), ("candidate", cand)):
        auc, ap = side["auc_roc"], side["average_precision"]
        print(
            f"{name:11}{side['reviews']:9,}{side['declines']:10,}"
            f"{side['precision_at_review_or_decline']:8.3f}"
            f"{side['recall_at_review_or_decline']:8.3f}{side['precision_at_decline']:8.3f}"
            f"{'—' if auc is None else f'{auc:.3f}':>7}{'—' if ap is None else f'{ap:.3f}':>7}"
            f"{side['card_precision_at_100']:8.3f}"
        )
    print(
        "changes: "
        + ", ".join(
            f"{changes[k]['count']:,} {k.replace('_', ' ')}"
            for k in ("new_declines", "removed_declines", "new_reviews", "removed_reviews")
        )
    )
    print(f"rate: {rate['replay_events_per_second']:,} events/s replayed, "
          f"{rate['decisions_per_second']:,} decisions/s, {rate['events_per_second']:,} "
          f"events/s end to end; report: {path.with_suffix('.md')}")
