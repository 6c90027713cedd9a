"""``python -m training backtest`` on a tiny generated history with tiny real ONNX models.

The oracles are independent of the backtest's code: the worker's own model loader
(``fraudmodel.load_model``) on features replayed from the data's first day (the
backtest replays from a warm-up before its window), scikit-learn's metrics and plain pandas
on the predictions file, and the expected actions worked out from the scores, thresholds
and amounts by hand.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudcore import FEATURE_NAMES, fingerprint
from fraudmodel import load_model
from training import backtest, cli, export, generator
from training.dataset import normalise
from training.pipeline import _review_cards_per_day
from training.replay import replay
from training.train import features_of

ROOT = Path(__file__).resolve().parents[2]
START = date(2018, 4, 1)
DAYS = 60
FROM = date(2018, 5, 25)  # day 55: the warm-up (40 days) starts after the data's first day
WINDOW = 5
REVIEW, DECLINE = 0.2, 0.6  # the baseline's thresholds
BIG = 150.0  # the rule's amount


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("history")
    raw = generator.generate(
        generator.GeneratorConfig(
            customers=50, terminals=500, days=DAYS, start=START, seed=7,
            compromised_terminals_per_day=1, compromised_customers_per_day=1,
        )
    )
    path = tmp / "history.csv"
    raw.to_csv(path, index=False)
    return path, normalise(raw, source="test")


@pytest.fixture(scope="module")
def full_replay(data: tuple[Path, pd.DataFrame]) -> pd.DataFrame:
    """Features of every transaction, replayed from the data's first day, as training does."""
    return replay(data[1])[0]


def _model(models: Path, featured: pd.DataFrame, *, review: float, decline: float) -> Path:
    """A tiny logistic regression on the features, exported as training exports, with the
    given thresholds in the metadata of the shipped model."""
    x = features_of(featured)
    y = featured["TX_FRAUD"].to_numpy()
    model = LogisticRegression(max_iter=2000).fit(x, y)
    onnx = export.convert(model, len(FEATURE_NAMES))
    export.check_parity(onnx, model, x)
    shipped = ROOT / "models" / (ROOT / "models" / "current").read_text().strip()
    metadata = json.loads((shipped / "metadata.json").read_text())
    metadata["features"] = {**metadata["features"], "fingerprint": fingerprint()}
    metadata["thresholds"] = {**metadata["thresholds"], "review": review, "decline": decline}
    metadata.pop("reasons", None)
    return export.write_artifacts(models, onnx, metadata)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, full_replay: pd.DataFrame) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("models")
    return {
        "base": _model(tmp / "a", full_replay, review=REVIEW, decline=DECLINE),
        "strict": _model(tmp / "b", full_replay, review=REVIEW / 2, decline=DECLINE / 2),
    }


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(
        "rules:\n"
        f"  - id: big\n    when: amount > {BIG}\n    action: decline\n"
        "  - id: busy-card\n    when: tx_count_by_card_1d >= 4.0 && score > 0.05\n"
        "    action: review\n"
    )
    return path


def _run(
    tmp: Path, data: Path, baseline: Path, candidate: Path, *extra: str,
    capsys: pytest.CaptureFixture[str] | None = None,
) -> tuple[dict, pd.DataFrame]:
    code = cli.main([
        "backtest", "--data", str(data), "--baseline", str(baseline), "--candidate",
        str(candidate), "--from", FROM.isoformat(), "--days", str(WINDOW),
        "--report", str(tmp / "report.json"), "--predictions", str(tmp / "predictions.csv"),
        *extra,
    ])
    assert code == 0
    report = json.loads((tmp / "report.json").read_text())
    predictions = pd.read_csv(
        tmp / "predictions.csv", dtype={"transaction_id": str, "card_id": str},
        keep_default_na=False,
    )
    return report, predictions


@pytest.fixture(scope="module")
def compared(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[Path, pd.DataFrame],
    models: dict[str, Path], rules_file: Path,
) -> tuple[dict, pd.DataFrame, Path]:
    """The base model against the stricter thresholds with the rules."""
    tmp = tmp_path_factory.mktemp("compared")
    report, predictions = _run(
        tmp, data[0], models["base"], models["strict"], "--candidate-rules", str(rules_file),
        "--examples", "3", "--reviewer-capacity", "7",
    )
    return report, predictions, tmp


def _window(featured: pd.DataFrame) -> pd.DataFrame:
    times = featured["TX_DATETIME"]
    start = pd.Timestamp(FROM, tz="UTC")
    return featured.loc[(times >= start) & (times < start + pd.Timedelta(days=WINDOW))]


def _expected(scores: np.ndarray, review: float, decline: float) -> np.ndarray:
    return np.where(scores >= decline, "decline", np.where(scores >= review, "review", "approve"))


# --- the same side twice -------------------------------------------------------------------


def test_a_baseline_compared_with_itself_reports_no_change(
    tmp_path: Path, data: tuple[Path, pd.DataFrame], models: dict[str, Path], rules_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report, predictions = _run(
        tmp_path, data[0], models["base"], models["base"], "--baseline-rules",
        str(rules_file), "--candidate-rules", str(rules_file),
    )
    changes = report["changes"]
    assert changes["transactions_changed"] == changes["scores_changed"] == 0
    for kind in ("new_declines", "removed_declines", "new_reviews", "removed_reviews"):
        assert changes[kind]["count"] == 0 and changes[kind]["examples"] == [], kind
    assert report["baseline"] == report["candidate"]
    assert all(day["baseline"] == day["candidate"] for day in report["days"])
    assert report["baseline"]["rule_hits"]  # the rules did fire, on both sides alike
    assert (predictions["action_baseline"] == predictions["action_candidate"]).all()
    out = capsys.readouterr().out
    assert "0 new declines, 0 removed declines, 0 new reviews, 0 removed reviews" in out


# --- the report against the predictions file ----------------------------------------------


def _card_precision(side: pd.DataFrame, k: int = 100) -> list[float]:
    """The benchmark's card precision top-k per day, written again from its definition."""
    detected: set[str] = set()
    values = []
    for _, day in side.groupby("day", sort=True):
        cards = day.groupby("card_id").agg(score=("score", "max"), label=("label", "max"))
        cards = cards.loc[~cards.index.isin(detected)].reset_index()
        top = cards.sort_values(["score", "card_id"], ascending=[False, True]).head(k)
        hits = top.loc[top["label"] == 1, "card_id"]
        values.append(len(hits) / k)
        detected |= set(hits)
    return values


def _recomputed(side: pd.DataFrame) -> dict[str, float | int]:
    fraud = side["label"] == 1
    flagged = side["action"].isin(["review", "decline"])
    declined = side["action"] == "decline"
    return {
        "transactions": len(side),
        "frauds": int(fraud.sum()),
        "reviews": int((side["action"] == "review").sum()),
        "declines": int(declined.sum()),
        "approvals": int((side["action"] == "approve").sum()),
        "precision_at_review_or_decline": (flagged & fraud).sum() / max(flagged.sum(), 1),
        "recall_at_review_or_decline": (flagged & fraud).sum() / max(fraud.sum(), 1),
        "precision_at_decline": (declined & fraud).sum() / max(declined.sum(), 1),
        "recall_at_decline": (declined & fraud).sum() / max(fraud.sum(), 1),
        "fraud_amount": side.loc[fraud, "amount"].sum(),
        "fraud_amount_caught": side.loc[fraud & flagged, "amount"].sum(),
        "fraud_amount_declined": side.loc[fraud & declined, "amount"].sum(),
        "fraud_amount_missed": side.loc[fraud & ~flagged, "amount"].sum(),
        "good_declined": int((~fraud & declined).sum()),
        "good_declined_amount": side.loc[~fraud & declined, "amount"].sum(),
        "good_reviewed": int((~fraud & (side["action"] == "review")).sum()),
    }


def _tolerance(key: str) -> float:
    """Amounts are reported to the cent; the rest exactly (up to float noise)."""
    return 0.005 if key.endswith("amount") or "_amount_" in key else 1e-9


def _side(predictions: pd.DataFrame, name: str) -> pd.DataFrame:
    return predictions.rename(columns={f"score_{name}": "score", f"action_{name}": "action"})


def test_the_report_equals_a_recomputation_from_the_predictions_file(
    compared: tuple[dict, pd.DataFrame, Path], data: tuple[Path, pd.DataFrame]
) -> None:
    report, predictions, _ = compared
    window = _window(data[1])
    assert list(predictions["transaction_id"]) == list(window["TRANSACTION_ID"])
    assert {
        "transaction_id", "card_id", "day", "label",
        "score_baseline", "score_candidate", "action_baseline", "action_candidate",
    } <= set(predictions.columns)
    assert sorted(set(predictions["day"])) == [
        (FROM + timedelta(days=i)).isoformat() for i in range(WINDOW)
    ]
    assert report["changes"]["transactions_changed"] > 0  # the two sides differ
    for name in ("baseline", "candidate"):
        side = _side(predictions, name)
        got = report[name]
        for key, value in _recomputed(side).items():
            assert got[key] == pytest.approx(value, rel=1e-12, abs=_tolerance(key)), (name, key)
        assert got["auc_roc"] == pytest.approx(roc_auc_score(side["label"], side["score"]))
        assert got["average_precision"] == pytest.approx(
            average_precision_score(side["label"], side["score"])
        )
        per_day_cp = _card_precision(side)
        assert got["card_precision_at_100"] == pytest.approx(np.mean(per_day_cp))
        reviewed = side.loc[side["action"] == "review"].groupby("day")["card_id"].nunique()
        assert [d["day"] for d in report["days"]] == sorted(side["day"].unique())
        for entry, cp in zip(report["days"], per_day_cp, strict=True):
            day = side.loc[side["day"] == entry["day"]]
            mine = entry[name]
            for key, value in _recomputed(day).items():
                assert mine[key] == pytest.approx(value, rel=1e-12, abs=_tolerance(key)), key
            assert mine["card_precision_at_100"] == pytest.approx(cp)
            assert mine["review_cards"] == int(reviewed.get(entry["day"], 0))
            if day["label"].nunique() == 2:
                assert mine["auc_roc"] == pytest.approx(roc_auc_score(day["label"], day["score"]))
                assert mine["average_precision"] == pytest.approx(
                    average_precision_score(day["label"], day["score"])
                )
            else:
                assert mine["auc_roc"] is None and mine["average_precision"] is None
        assert got["review_cards"] == sum(d[name]["review_cards"] for d in report["days"])


def test_the_scores_are_the_workers_on_features_replayed_from_the_first_day(
    compared: tuple[dict, pd.DataFrame, Path], full_replay: pd.DataFrame,
    models: dict[str, Path],
) -> None:
    """The backtest replays from a warm-up before its window only; its scores are still
    those the worker's loader gives on training's replay of the whole history."""
    _, predictions, _ = compared
    window = _window(full_replay)
    for name, directory in (("baseline", models["base"]), ("candidate", models["strict"])):
        served = load_model(directory).score(features_of(window))
        np.testing.assert_array_equal(predictions[f"score_{name}"].to_numpy(), served)


# --- the changes ----------------------------------------------------------------------------


def test_a_candidate_with_other_thresholds_and_rules_reports_the_expected_changes(
    compared: tuple[dict, pd.DataFrame, Path], full_replay: pd.DataFrame,
    models: dict[str, Path],
) -> None:
    report, predictions, _ = compared
    window = _window(full_replay)
    scores = load_model(models["base"]).score(features_of(window))  # the same model
    base = _expected(scores, REVIEW, DECLINE)
    cand = _expected(scores, REVIEW / 2, DECLINE / 2)
    amount = window["TX_AMOUNT"].to_numpy()
    busy = (window["tx_count_by_card_1d"].to_numpy() >= 4.0) & (scores > 0.05)
    cand = np.where(amount > BIG, "decline", np.where(busy & (cand == "approve"), "review", cand))
    assert (amount > BIG).any() and (busy & (_expected(scores, REVIEW / 2, DECLINE / 2) ==
                                             "approve")).any()  # both rules change something
    np.testing.assert_array_equal(predictions["action_baseline"].to_numpy(), base)
    np.testing.assert_array_equal(predictions["action_candidate"].to_numpy(), cand)
    ids = window["TRANSACTION_ID"].to_numpy()
    expected = {
        "new_declines": (cand == "decline") & (base != "decline"),
        "removed_declines": (base == "decline") & (cand != "decline"),
        "new_reviews": (cand == "review") & (base != "review"),
        "removed_reviews": (base == "review") & (cand != "review"),
    }
    assert expected["new_declines"].any() and expected["new_reviews"].any()
    assert not expected["removed_declines"].any()  # stricter: nothing declined is let go
    changes = report["changes"]
    assert changes["transactions_changed"] == int((base != cand).sum())
    for kind, mask in expected.items():
        part = changes[kind]
        assert part["count"] == int(mask.sum()), kind
        assert part["frauds"] == int((window["TX_FRAUD"].to_numpy()[mask] == 1).sum()), kind
        assert part["amount"] == pytest.approx(amount[mask].sum(), abs=0.005), kind
        shown = part["examples"]
        assert len(shown) == min(3, int(mask.sum()))
        assert {e["transaction_id"] for e in shown} <= set(ids[mask]), kind
        largest = sorted(amount[mask], reverse=True)[: len(shown)]
        assert [e["amount"] for e in shown] == pytest.approx(largest), kind
    big = next(e for e in changes["new_declines"]["examples"] if e["amount"] > BIG)
    assert "big" in big["rules_candidate"].split() and big["rules_baseline"] == ""
    assert {"transaction_id", "card_id", "day", "score_baseline", "score_candidate",
            "action_baseline", "action_candidate"} <= set(big)
    assert report["candidate"]["rule_hits"]["big"] == int((amount > BIG).sum())
    assert report["candidate"]["rule_hits"]["busy-card"] == int(busy.sum())


def test_the_markdown_report_and_its_plots_are_beside_the_json(
    compared: tuple[dict, pd.DataFrame, Path],
) -> None:
    report, _, tmp = compared
    markdown = (tmp / "report.md").read_text()
    for plot in ("report_reviews_per_day.png", "report_precision_per_day.png"):
        assert (tmp / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({plot})" in markdown
    assert "capacity 7.0 cards a day" in markdown
    assert report["reviewer_capacity"]["cards_per_day"] == 7.0
    assert report["rate"]["replay_events_per_second"] > 0
    assert report["data"]["replayed_from"] == (FROM - timedelta(days=40)).isoformat()


def test_the_default_reviewer_capacity_is_trainings(data: tuple[Path, pd.DataFrame]) -> None:
    frame = data[1]
    assert backtest.default_reviewer_capacity(frame) == _review_cards_per_day(frame, None)


def test_the_warm_up_covers_every_window_a_feature_reads(data: tuple[Path, pd.DataFrame]) -> None:
    """Replayed from the warm-up's first day, the window's features are those of a replay
    from the data's first day (what lets the backtest skip the older history)."""
    frame = data[1]
    warm = pd.Timestamp(FROM - timedelta(days=backtest.warm_up_days()), tz="UTC")
    assert warm > frame["TX_DATETIME"].min()
    full = _window(replay(frame)[0])
    short = _window(replay(frame.loc[frame["TX_DATETIME"] >= warm])[0])
    columns = list(FEATURE_NAMES)
    pd.testing.assert_frame_equal(full[columns], short[columns])


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing model", "no model at"),
        ("rules that do not compile", "unknown name 'amout'"),
        ("from before the data", "is outside the data, which runs from 2018-04-01"),
        ("from after the data", "is outside the data"),
        ("days past the data", "past the data's last day 2018-05-30; at most 6 days"),
        ("missing data", "no such file"),
    ],
)
def test_bad_input_fails_with_a_message_and_exit_code_2(
    case: str, message: str, tmp_path: Path, data: tuple[Path, pd.DataFrame],
    models: dict[str, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    bad_rules = tmp_path / "bad.yaml"
    bad_rules.write_text("rules:\n  - id: typo\n    when: amout > 5.0\n    action: decline\n")
    args = {
        "--data": str(data[0]), "--baseline": str(models["base"]),
        "--candidate": str(models["strict"]), "--from": FROM.isoformat(), "--days": "2",
        "--report": str(tmp_path / "r.json"), "--predictions": str(tmp_path / "p.csv"),
    }
    if case == "missing model":
        args["--candidate"] = str(tmp_path / "no-such-model")
    elif case == "rules that do not compile":
        args["--candidate-rules"] = str(bad_rules)
    elif case == "from before the data":
        args["--from"] = "2017-12-31"
    elif case == "from after the data":
        args["--from"] = (START + timedelta(days=DAYS)).isoformat()
    elif case == "days past the data":
        args["--days"] = "7"
    elif case == "missing data":
        args["--data"] = str(tmp_path / "none.csv")
    code = cli.main(["backtest", *(part for pair in args.items() for part in pair)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "error: " in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()
