"""`python -m training` end to end on a small generated data set: the artifacts, the report
keys the README promises, the predictions file, and the pointer moving only at the end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from fraudcore import FEATURE_NAMES, fingerprint
from fraudcore.artifacts import model_info

ROOT = Path(__file__).resolve().parents[2]
#: The zone of the training file's times (no daylight-saving change: +05:30 all year).
TIMEZONE = "Asia/Kolkata"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    data = tmp / "tx.csv"
    done = _cli(
        "generate",
        "--customers",
        "300",
        "--terminals",
        "600",
        "--days",
        "75",
        "--start",
        "2018-04-01",
        "--seed",
        "4",
        "--out",
        str(data),
    )
    assert done.returncode == 0, done.stderr
    # The user's own column names, and the generated instants written as local times
    # without an offset (README "Retraining": --columns, --timezone): the run below must
    # read them as told.
    raw = pd.read_csv(data, dtype=str)
    local = pd.to_datetime(raw["TX_DATETIME"], utc=True).dt.tz_convert(TIMEZONE)
    raw["TX_DATETIME"] = local.dt.strftime("%Y-%m-%d %H:%M:%S.%f")
    raw.rename(columns={"TX_AMOUNT": "amount", "CUSTOMER_ID": "card"}).to_csv(data, index=False)
    done = _cli(
        "train",
        "--data",
        str(data),
        "--columns",
        "TX_AMOUNT=amount,CUSTOMER_ID=card",
        "--timezone",
        TIMEZONE,
        "--train-start",
        "2018-05-20",
        "--validation-folds",
        "2",
        "--test-folds",
        "2",
        "--out",
        str(tmp / "models"),
        "--report",
        str(tmp / "report.json"),
        "--predictions",
        str(tmp / "pred.csv"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, done.stdout, done.stderr


def test_the_report_has_the_documented_keys(trained):
    tmp, stdout, _ = trained
    report = json.loads((tmp / "report.json").read_text())
    for part in ("test", "validation"):
        for key in ("auc_roc", "average_precision", "card_precision_at_100"):
            assert 0.0 <= report[part][key] <= 1.0
    assert report["model"]["version"] == report["version"]
    assert len(report["prequential_test"]["folds"]) == 2
    assert {c["name"] for c in report["candidates"]} == {
        "logistic_regression",
        "random_forest",
        "hist_gradient_boosting",
    }
    assert report["model"]["parity_max_abs_diff"] <= 1e-5
    assert "AUC ROC" in stdout and report["version"] in stdout


def test_columns_and_timezone_are_read_as_told(trained):
    """The file's times are local to --timezone: the report's first and last transaction
    times are theirs in UTC, and a test row's day is its UTC day; the renamed columns were
    read (the predictions' cards are the file's ``card`` column)."""
    tmp, _, _ = trained
    raw = pd.read_csv(tmp / "tx.csv", dtype=str)
    assert {"amount", "card"} <= set(raw.columns) and "TX_AMOUNT" not in raw.columns
    zone = ZoneInfo(TIMEZONE)
    local = sorted(datetime.fromisoformat(t) for t in raw["TX_DATETIME"])
    assert local[0].tzinfo is None  # naive in the file
    report = json.loads((tmp / "report.json").read_text())
    for key, naive in (("first", local[0]), ("last", local[-1])):
        expected = naive.replace(tzinfo=zone).astimezone(UTC)
        assert datetime.fromisoformat(report["data"][key]) == expected, key
    assert datetime.fromisoformat(report["data"]["first"]).utcoffset() == timedelta(0)
    assert report["data"]["transactions"] == len(raw)
    predictions = pd.read_csv(tmp / "pred.csv", dtype={"card_id": str})
    assert set(predictions["card_id"]) <= set(raw["card"])
    by_id = raw.set_index("TRANSACTION_ID")
    row = predictions.iloc[0]
    naive = datetime.fromisoformat(by_id.loc[str(row["transaction_id"]), "TX_DATETIME"])
    assert row["day"] == naive.replace(tzinfo=zone).astimezone(UTC).date().isoformat()


def test_the_log_is_written_for_people(trained):
    """Each phase named with its duration, the thresholds rounded and labelled, and only
    paths the person asked for (no temporary directory)."""
    tmp, stdout, stderr = trained
    for phase in ("reading", "replaying", "fitting candidates", "selecting", "testing",
                  "exporting"):
        assert re.search(rf"^\d\d:\d\d:\d\d {phase} done in [\d.]+ s", stderr, re.M), phase
    assert re.search(r"thresholds review ≥ \d\.\d{4}, decline ≥ \d\.\d{4}$", stderr, re.M)
    assert "Thresholds(" not in stderr + stdout
    assert f"report copied to {tmp / 'report.json'}" in stderr
    for path in re.findall(r"(?<![\w.])/[\w.\-/]+", stderr):
        assert path.startswith(str(tmp)), path
    assert re.search(r"^\d\d:\d\d:\d\d training done in .+: reading .+, exporting .+$",
                     stderr, re.M)
    assert re.search(r"^review ≥ \d\.\d{4} \(test precision", stdout, re.M)


def test_the_artifacts_are_complete_and_current(trained):
    tmp, _, _ = trained
    models = tmp / "models"
    version = (models / "current").read_text().strip()
    directory = models / version
    for name in (
        "model.onnx",
        "metadata.json",
        "report.json",
        "report.md",
        "precision_recall.png",
        "score_distribution.png",
        "card_precision_per_day.png",
    ):
        assert (directory / name).stat().st_size > 0, name
    metadata = json.loads((directory / "metadata.json").read_text())
    info = model_info(metadata, (directory / "model.onnx").read_bytes())
    assert info.version == version
    assert metadata["features"] == {
        "names": list(FEATURE_NAMES),
        "fingerprint": fingerprint(),
        "spec_version": 1,
    }
    assert 0 <= info.thresholds.review <= info.thresholds.decline <= 1


def _card_precision_top_k(rows: pd.DataFrame, k: int) -> list[float]:
    """Card precision top-k from its definition (docs/benchmark-dataset.md, section 3),
    in plain Python: per day, each card's highest score and whether it had a fraud; cards
    detected (in an earlier day's top k and compromised that day) left out; top k by
    score (ties by card id); compromised cards among them / k."""
    detected: set[str] = set()
    per_day = []
    for day in sorted(set(rows["day"])):
        cards: dict[str, tuple[float, int]] = {}
        for card, score, label in rows.loc[rows["day"] == day, ["card_id", "score", "label"]
                                           ].itertuples(index=False):
            best, fraud = cards.get(str(card), (-1.0, 0))
            cards[str(card)] = (max(best, score), max(fraud, int(label)))
        ranked = sorted((c for c in cards if c not in detected),
                        key=lambda c: (-cards[c][0], c))[:k]
        hits = [c for c in ranked if cards[c][1] == 1]
        per_day.append(len(hits) / k)
        detected.update(hits)
    return per_day


def test_the_predictions_file_lets_anyone_recompute_the_metrics(trained):
    """The report's test metrics, recomputed from the predictions file without the
    project's own metrics code: scikit-learn for AUC ROC and average precision, plain
    counting for the rest."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    tmp, _, _ = trained
    predictions = pd.read_csv(tmp / "pred.csv", dtype={"card_id": str})
    assert list(predictions.columns) == ["transaction_id", "card_id", "day", "label", "score"]
    report = json.loads((tmp / "report.json").read_text())
    test, thresholds = report["test"], report["thresholds"]
    labels, scores = predictions["label"].to_numpy(), predictions["score"].to_numpy()
    assert test["transactions"] == len(predictions)
    assert test["frauds"] == int(labels.sum())
    assert test["auc_roc"] == pytest.approx(roc_auc_score(labels, scores))
    assert test["average_precision"] == pytest.approx(average_precision_score(labels, scores))
    per_day = _card_precision_top_k(predictions, test["k"])
    assert test["card_precision_per_day"] == pytest.approx(per_day)
    assert test["card_precision_at_100"] == pytest.approx(sum(per_day) / len(per_day))
    for action in ("review", "decline"):
        flagged = scores >= thresholds[action]
        hits = int((flagged & (labels == 1)).sum())
        assert test[f"precision_at_{action}"] == pytest.approx(hits / max(int(flagged.sum()), 1))
        assert test[f"recall_at_{action}"] == pytest.approx(hits / int(labels.sum()))


def test_a_bad_file_is_refused_with_row_and_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD\n"
        "1,2018-04-01 00:00:31,596,3156,57.16,0\n2,2018-04-01 00:02:10,4961,3412,abc,0\n"
    )
    done = _cli("train", "--data", str(bad), "--out", str(tmp_path / "models"))
    assert done.returncode == 2
    assert "row 2, column TX_AMOUNT: not a number" in done.stderr
    assert not (tmp_path / "models").exists()
