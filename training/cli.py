"""``python -m training`` (also ``fraud-train``): generate data and train models.

    python -m training generate --customers 5000 --terminals 10000 --days 183 \\
        --start 2018-04-01 --seed 0 --out data/transactions.parquet
    python -m training train --data data/transactions.parquet --train-start 2018-07-25 \\
        --out models/ --report reports/train.json [--predictions reports/test.csv]
    python -m training backtest --data data/transactions.parquet --baseline models/current \\
        --candidate models/<version> --from 2018-09-01 --days 30 \\
        --report reports/backtest.json --predictions reports/backtest.csv   (docs/backtest.md)
    python -m training from-log --log log.jsonl --labels labels.jsonl --out set.parquet
    python -m training train --features set.parquet --train-start 2018-07-25   (the service's
        own features, from the decision log: docs/decision-log.md)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from fraudcore.errors import FraudError
from training import backtest_cli, generator, protocol
from training.console import LOG_FORMAT, TIME_FORMAT, Phases, duration, score
from training.dataset import COLUMNS, DatasetError, normalise, read_transactions

if TYPE_CHECKING:  # training.pipeline loads scikit-learn and onnx: only when training
    from training.pipeline import TrainingRun

__all__ = ["main", "parse_columns"]

log = logging.getLogger("training")


def parse_columns(text: str) -> dict[str, str]:
    """``TX_AMOUNT=amount,TX_DATETIME=ts`` -> mapping of canonical to the file's names (the
    ``--columns`` option's type, here and in ``fraud-backfill``)."""
    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        canonical, sep, theirs = part.partition("=")
        if not sep or canonical not in COLUMNS or not theirs:
            raise argparse.ArgumentTypeError(
                f"bad mapping {part!r}: use CANONICAL=yours with CANONICAL one of "
                f"{', '.join(COLUMNS)}"
            )
        mapping[canonical] = theirs
    return mapping


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="simulate the benchmark's transactions")
    gen.add_argument("--customers", type=int, default=5_000)
    gen.add_argument("--terminals", type=int, default=10_000)
    gen.add_argument("--days", type=int, default=183)
    gen.add_argument("--start", type=date.fromisoformat, default=date(2018, 4, 1))
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", type=Path, required=True, help=".parquet or .csv")

    train = commands.add_parser("train", help="replay features, select, export a model")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="CSV or Parquet with the benchmark's columns")
    source.add_argument(
        "--generate", action="store_true", help="train on freshly generated reference-size data"
    )
    source.add_argument(
        "--features", type=Path,
        help="a training set with its features (`from-log`'s output): no replay",
    )
    train.add_argument("--seed", type=int, default=0, help="seed for --generate")
    train.add_argument(
        "--columns",
        type=parse_columns,
        default=None,
        help="map canonical to your column names: TX_AMOUNT=amount,...",
    )
    train.add_argument("--timezone", default="UTC", help="zone of timestamps without offset")
    train.add_argument("--train-start", type=date.fromisoformat, default=date(2018, 7, 25))
    train.add_argument("--train-days", type=int, default=7)
    train.add_argument("--delay-days", type=int, default=7)
    train.add_argument("--test-days", type=int, default=7)
    train.add_argument("--validation-folds", type=int, default=4)
    train.add_argument(
        "--test-folds",
        type=int,
        default=1,
        help="also score the winner on this many consecutive test weeks",
    )
    train.add_argument("--out", type=Path, default=Path("models"))
    train.add_argument("--report", type=Path, default=None, help="where to copy the JSON report")
    train.add_argument(
        "--predictions",
        type=Path,
        default=None,
        help="CSV of the cleaned test set: transaction, card, day, label, score",
    )
    backtest_cli.add_parser(commands)  # docs/backtest.md

    logged = commands.add_parser(
        "from-log", help="a training set from the decision log and the labels"
    )
    logged.add_argument("--log", type=Path, required=True,
                        help="the decision log as JSON lines (fraud-tail --raw --to-end)")
    logged.add_argument("--labels", type=Path, required=True,
                        help="label events as JSON lines, or a .csv/.parquet with "
                        "TRANSACTION_ID and TX_FRAUD")
    logged.add_argument("--out", type=Path, required=True, help=".parquet or .csv")
    logged.add_argument("--keep-degraded", action="store_true",
                        help="keep decisions made on partial or empty history")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(verbose=args.verbose)
    try:
        if args.command == "generate":
            return _generate(args)
        if args.command == "backtest":
            return backtest_cli.run(args)
        if args.command == "from-log":
            return _from_log(args)
        return _train(args)
    except (FraudError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


class _PeopleFormatter(logging.Formatter):
    """``16:11:09 replaying done in 3.7 s``: the time and the message; a warning or an error
    says so (``warning: ...``); with ``--verbose`` each line also names its module."""

    def __init__(self, *, verbose: bool) -> None:
        super().__init__(LOG_FORMAT, datefmt=TIME_FORMAT)
        self.verbose = verbose

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        # format() has set record.asctime and record.message before it calls this.
        prefix = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        where = f"[{record.name}] " if self.verbose else ""
        return f"{record.asctime} {where}{prefix}{record.message}"


def _configure_logging(*, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PeopleFormatter(verbose=verbose))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def _generate(args: argparse.Namespace) -> int:
    config = generator.GeneratorConfig(
        customers=args.customers,
        terminals=args.terminals,
        days=args.days,
        start=args.start,
        seed=args.seed,
    )
    started = time.perf_counter()
    frame = generator.generate(config)
    elapsed = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".csv":
        frame.to_csv(args.out, index=False)
    else:
        frame.to_parquet(args.out, index=False)
    print(
        f"{len(frame):,} transactions, {int(frame['TX_FRAUD'].sum()):,} frauds "
        f"({frame['TX_FRAUD'].mean():.3%}) generated in {elapsed:.1f} s -> {args.out}"
    )
    return 0


def _from_log(args: argparse.Namespace) -> int:
    from training import from_log

    decisions = from_log.read_log(args.log)
    frame, summary = from_log.training_set(
        decisions, from_log.read_frauds(args.labels), keep_degraded=args.keep_degraded
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".csv":
        frame.to_csv(args.out, index=False)
    else:
        frame.to_parquet(args.out, index=False)
    print(f"{summary.text()} -> {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from training import pipeline  # scikit-learn and onnx load only when training

    phases = Phases()
    featured = None
    if args.features:
        from training.from_log import read_features

        with phases.phase("reading", f"{args.features} (features as logged: no replay)"):
            featured = read_features(args.features)
        frame = featured[list(COLUMNS)]
        source = f"{args.features} (features from the decision log)"
    elif args.generate:
        config = generator.GeneratorConfig(seed=args.seed)
        with phases.phase(
            "generating",
            f"{config.customers:,} customers, {config.terminals:,} terminals, {config.days} "
            f"days (seed {args.seed})",
        ):
            frame = normalise(generator.generate(config), source="generator")
        source = f"generator(seed={args.seed}, reference size)"
    else:
        if not args.data.exists():
            raise DatasetError(
                f"{args.data}: no such file; generate one with `python -m training generate`"
            )
        with phases.phase("reading", str(args.data)):
            frame = read_transactions(
                args.data, columns=args.columns, naive_timezone=args.timezone
            )
        source = str(args.data)
    split = protocol.Split(args.train_start, args.train_days, args.delay_days, args.test_days)
    result = pipeline.run(
        frame,
        split=split,
        models_dir=args.out,
        source=source,
        validation_folds=args.validation_folds,
        test_folds=args.test_folds,
        phases=phases,
        featured=featured,
    )
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(result.report, indent=2, sort_keys=True) + "\n")
        log.info("report copied to %s", args.report)
    if args.predictions:
        args.predictions.parent.mkdir(parents=True, exist_ok=True)
        result.predictions.to_csv(args.predictions, index=False)
        log.info("test predictions written to %s", args.predictions)
    log.info(
        "training done in %s: %s", duration(phases.total_seconds()), phases.summary()
    )
    _summary(result)
    return 0


def _summary(result: TrainingRun) -> None:
    metadata, test = result.metadata, result.test
    val, model_dir = metadata.validation, result.model_dir
    print(f"\nmodel {metadata.version} ({metadata.model.type}) -> {model_dir}")
    print(f"{'':12}{'AUC ROC':>9}{'AP':>9}{'CP@100':>9}")
    rows = (
        ("validation", val["auc_roc"], val["average_precision"], val["card_precision_at_100"]),
        ("test", test.auc_roc, test.average_precision, test.card_precision_at_100),
    )
    for name, auc, ap, cp in rows:
        print(f"{name:12}{auc:9.3f}{ap:9.3f}{cp:9.3f}")
    p = result.prequential_means()
    if p is not None:
        label = f"{len(result.prequential)}-fold test"
        print(
            f"{label:12}{p['mean_auc_roc']:9.3f}{p['mean_average_precision']:9.3f}"
            f"{p['mean_card_precision_at_100']:9.3f}"
        )
    t = metadata.thresholds.thresholds
    print(
        f"review ≥ {score(t.review)} (test precision {test.precision_at_review:.2f}, recall "
        f"{test.recall_at_review:.2f}); decline ≥ {score(t.decline)} (precision "
        f"{test.precision_at_decline:.2f}, recall {test.recall_at_decline:.2f})"
    )
    replayed = (f"replay: {round(result.replay.events_per_second):,} events/s"
                if result.replay.transactions else "features as logged (no replay)")
    print(f"{replayed}; report: {model_dir / 'report.md'}")
