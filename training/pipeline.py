"""`make train` end to end: features by replay, selection, test, export, report.

:func:`run` is the list of the steps; each step is one small function below it. The
metadata written beside the model is a :class:`~fraudcore.artifacts.ModelMetadata`, the
type whose document the service reads back with :func:`~fraudcore.artifacts.model_info`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fraudcore import FEATURE_NAMES
from fraudcore.artifacts import (
    DataSummary,
    FeatureSet,
    ModelDescription,
    ModelIdentity,
    ModelMetadata,
    metadata_document,
)
from training import export, protocol, reasons, report
from training.console import Phases, thresholds_text
from training.cost import Cost, inference_cost
from training.metrics import Metrics, evaluate
from training.reasons import ReasonsModel
from training.replay import ReplayStats, replay
from training.train import (
    CANDIDATES,
    Candidate,
    Outcome,
    Selection,
    Validated,
    choose,
    features_of,
    fit_and_score,
    validate,
)

__all__ = ["Exported", "PrequentialFold", "TrainingRun", "prequential_means", "run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exported:
    """The winner as ONNX bytes, checked against scikit-learn, and their identity; its
    contributions model for reason codes, checked too."""

    onnx: bytes
    identity: ModelIdentity
    parity_max_abs_diff: float
    reasons: ReasonsModel
    faithfulness_max_abs_diff: float


@dataclass(frozen=True)
class PrequentialFold:
    """The winner's metrics on the test week of the split that trains from ``train_start``."""

    train_start: dt.date
    metrics: Metrics


@dataclass(frozen=True)
class TrainingRun:
    """What :func:`run` made and where the model went."""

    metadata: ModelMetadata  # what metadata.json records
    test: Metrics  # the requested split's test metrics
    prequential: tuple[PrequentialFold, ...]  # every test week scored, when test_folds > 1
    replay: ReplayStats
    report: dict[str, object]  # report.json: the metadata and the rest of the run
    model_dir: Path
    predictions: pd.DataFrame  # the requested split's cleaned test set, scored

    def prequential_means(self) -> dict[str, float] | None:
        """The means over the test folds (see :func:`prequential_means`), if there are any."""
        return prequential_means(self.prequential) if self.prequential else None


def run(
    frame: pd.DataFrame,
    *,
    split: protocol.Split,
    models_dir: Path,
    source: str,
    validation_folds: int = 4,
    test_folds: int = 1,
    review_cards_per_day: float | None = None,
    candidates: Sequence[Candidate] = CANDIDATES,
    phases: Phases | None = None,
    featured: pd.DataFrame | None = None,
) -> TrainingRun:
    """Train, check and write a model; returns the report and where the model went.

    ``test_folds`` > 1 also scores the winner on that many test weeks, each one week
    later than the last (the benchmark's prequential test protocol); the artifact is
    always the model of the first (the requested) split. ``phases`` names and times each
    phase and shows the progress of the long ones (a new :class:`Phases` if None).
    ``featured``: ``frame`` with its features already computed (the service's, from the
    decision log: :mod:`training.from_log`); no replay then.
    """
    phases = phases if phases is not None else Phases()
    if featured is None:
        with phases.phase(
            "replaying",
            f"{len(frame):,} transactions and their labels through the feature code",
            total=len(frame),
            unit="transactions",
        ) as step:
            featured, replay_stats = replay(frame, progress=step.advance)
            step.note = f"{round(replay_stats.events_per_second):,} events/s"
    else:
        replay_stats = ReplayStats(0, 0, 0.0)  # features as given: nothing replayed
    review_rate = _review_cards_per_day(frame, review_cards_per_day)
    with phases.phase(
        "fitting candidates",
        f"({len(candidates)} models × {validation_folds} validation folds = "
        f"{len(candidates) * validation_folds} fits)",
        total=len(candidates) * validation_folds,
        unit="fits",
        estimate=False,  # the models fit at very different speeds
    ) as step:
        validated = validate(
            featured, split, candidates=candidates, folds=validation_folds, on_fit=step.advance
        )
    with phases.phase(
        "costing", "each candidate's ONNX export, timed in the worker's session"
    ):
        costs = _costs(validated)
    with phases.phase("selecting", "the best candidate and its thresholds"):
        selection = _choose(validated, rate=review_rate, costs=costs)
    with phases.phase(
        "testing",
        f"{selection.winner.name} on {max(test_folds, 1)} test week"
        f"{'s' if test_folds > 1 else ''} (refitted on the training week "
        f"{_days(split.train_range)})",
        total=max(test_folds, 1),
        unit="test weeks",
    ) as step:
        final = fit_and_score(featured, split, selection.winner)
        _log_cleaning(featured, split, final)
        step.advance()
        test = _evaluate(final, selection)
        folds = _test_folds(
            featured, split, selection, first=test, count=test_folds, on_fit=step.advance
        )
    with phases.phase(
        "exporting",
        "the model and its reason codes to ONNX (checked against scikit-learn), its report",
    ):
        exported = _export(final)
        data = _data_summary(frame, featured, split, source=source, test_rows=len(final.test))
        metadata = _metadata(exported, selection, data, test=test)
        run_report = _report(metadata, selection, replay_stats, folds)
        files = _report_files(run_report, final.predictions, test, selection)
        model_dir = export.write_artifacts(
            models_dir, exported.onnx, metadata, reasons=exported.reasons.onnx, files=files
        )
    return TrainingRun(
        metadata, test, folds, replay_stats, run_report, model_dir, final.predictions
    )


def _days(days: tuple[dt.date, dt.date]) -> str:
    """A half-open range of days as its first and last day: ``2018-07-25..2018-07-31``."""
    return f"{days[0]}..{days[1] - dt.timedelta(days=1)}"


# --- the steps ----------------------------------------------------------------------------


def _review_cards_per_day(frame: pd.DataFrame, given: float | None) -> float:
    """``given``, or the benchmark's 100 cards a day at ~9,600 transactions a day, scaled
    to this data's daily volume."""
    if given is not None:
        return given
    days = max(1, int(frame["TX_DATETIME"].dt.normalize().nunique()))
    return 100.0 * (len(frame) / days) / 9_600


def _costs(validated: Sequence[Validated]) -> dict[str, Cost]:
    """Each candidate's serving cost: its latest validation fold's model, on that fold's
    test rows (the features it would be served)."""
    costs = {}
    for v in validated:
        latest = v.per_fold[0]
        cost = inference_cost(latest.model, features_of(latest.test)[:1000])
        log.info("%s: %.1f µs a row, %.2f µs a row in batches of 100, %s bytes of ONNX",
                 v.candidate.name, cost.one_row_us, cost.batch_100_us_per_row,
                 f"{cost.onnx_bytes:,}")
        costs[v.candidate.name] = cost
    return costs


def _choose(validated: Sequence[Validated], *, rate: float, costs: dict[str, Cost]) -> Selection:
    selection = choose(validated, review_cards_per_day=rate, costs=costs)
    log.info("%s wins; thresholds %s", selection.reason, thresholds_text(selection.thresholds))
    return selection


def _log_cleaning(featured: pd.DataFrame, split: protocol.Split, final: Outcome) -> None:
    _, uncleaned = protocol.split(featured, split)
    log.info(
        "test week %s: %s of %s transactions scored (cards already known compromised left "
        "out)",
        _days(split.test_range), f"{len(final.test):,}", f"{len(uncleaned):,}",
    )


def _evaluate(outcome: Outcome, selection: Selection) -> Metrics:
    thresholds = selection.thresholds
    return evaluate(
        outcome.predictions,
        review_threshold=thresholds.review,
        decline_threshold=thresholds.decline,
    )


def _export(final: Outcome) -> Exported:
    """The ONNX bytes of the final model and of its contributions, once they match
    scikit-learn on its test set."""
    features = features_of(final.test)
    onnx = export.convert(final.model, len(FEATURE_NAMES))
    parity = export.check_parity(onnx, final.model, features)
    contributions = reasons.build(final.model, len(FEATURE_NAMES))
    faithfulness = reasons.check_faithfulness(contributions, final.model, features)
    return Exported(onnx, ModelIdentity.of(onnx), parity, contributions, faithfulness)


def _test_folds(
    featured: pd.DataFrame,
    split: protocol.Split,
    selection: Selection,
    *,
    first: Metrics,
    count: int,
    on_fit: Callable[[], None] | None = None,
) -> tuple[PrequentialFold, ...]:
    """With ``count`` > 1: the winner on ``count`` consecutive test weeks, the requested
    split's (``first``) and then each one ``test_days`` later; otherwise none."""
    if count <= 1:
        return ()
    step = dt.timedelta(days=split.test_days)
    later = [
        dataclasses.replace(split, train_start=split.train_start + i * step)
        for i in range(1, count)
    ]
    scored = []
    for s in later:
        scored.append(_evaluate(fit_and_score(featured, s, selection.winner), selection))
        if on_fit is not None:
            on_fit()
    return (
        PrequentialFold(split.train_start, first),
        *(PrequentialFold(s.train_start, m) for s, m in zip(later, scored, strict=True)),
    )


def _data_summary(
    frame: pd.DataFrame,
    featured: pd.DataFrame,
    split: protocol.Split,
    *,
    source: str,
    test_rows: int,
) -> DataSummary:
    train_rows, _ = protocol.split(featured, split)
    times = frame["TX_DATETIME"]
    return DataSummary(
        source=source,
        transactions=len(frame),
        first=times.min(),
        last=times.max(),
        train=split.train_range,
        test=split.test_range,
        train_rows=len(train_rows),
        test_rows_cleaned=test_rows,
        label_delay_days=split.delay_days,
    )


def _metadata(
    exported: Exported, selection: Selection, data: DataSummary, *, test: Metrics
) -> ModelMetadata:
    return ModelMetadata(
        identity=exported.identity,
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        features=FeatureSet.current(),
        model=ModelDescription(
            type=selection.winner.name,
            params=selection.winner.params,
            input_name=export.INPUT_NAME,
            output_name=export.OUTPUT_NAME,
            opset=export.TARGET_OPSET,
            parity_max_abs_diff=exported.parity_max_abs_diff,
        ),
        thresholds=selection.choice,
        data=data,
        validation=selection.validation,
        test=test.to_dict(),
        libraries=export.library_versions(),
        reasons=reasons.describe(
            exported.reasons,
            features=FEATURE_NAMES,
            faithfulness=exported.faithfulness_max_abs_diff,
        ),
    )


def _report(
    metadata: ModelMetadata,
    selection: Selection,
    replay_stats: ReplayStats,
    folds: Sequence[PrequentialFold],
) -> dict[str, object]:
    """The metadata, plus the model's version, every candidate, the replay's speed and
    the prequential test folds if any."""
    document = metadata_document(metadata)
    out: dict[str, object] = {
        **document,
        "model": {**document["model"], "version": metadata.version},
        "candidates": selection.candidates,
        "selection": selection.reason,
        "replay": {
            "events": replay_stats.transactions + replay_stats.labels,
            "seconds": round(replay_stats.seconds, 2),
            "events_per_second": round(replay_stats.events_per_second),
        },
    }
    if folds:
        out["prequential_test"] = {
            "folds": [
                {"train_start": f.train_start.isoformat(), **f.metrics.to_dict()} for f in folds
            ],
            **prequential_means(folds),
        }
    return out


def prequential_means(folds: Sequence[PrequentialFold]) -> dict[str, float]:
    """The mean over the test folds of the three headline metrics, ``mean_<metric>``."""
    return {
        "mean_auc_roc": float(np.mean([f.metrics.auc_roc for f in folds])),
        "mean_average_precision": float(np.mean([f.metrics.average_precision for f in folds])),
        "mean_card_precision_at_100": float(
            np.mean([f.metrics.card_precision_at_100 for f in folds])
        ),
    }


def _report_files(
    run_report: dict[str, object], predictions: pd.DataFrame, test: Metrics, selection: Selection
) -> dict[str, bytes]:
    """report.json, report.md and the plots, as the bytes to write beside the model."""
    thresholds = selection.thresholds
    with tempfile.TemporaryDirectory() as tmp:
        report.write_plots(
            predictions,
            Path(tmp),
            review_threshold=thresholds.review,
            decline_threshold=thresholds.decline,
            per_day_cp=test.card_precision_per_day,
        )
        report.write_markdown(run_report, Path(tmp) / "report.md")
        (Path(tmp) / "report.json").write_text(
            json.dumps(run_report, indent=2, sort_keys=True) + "\n"
        )
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
