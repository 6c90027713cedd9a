"""Plots are real PNGs; the Markdown summary carries the numbers."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from training.report import PLOT_FILES, render_markdown, write_markdown, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _predictions() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 500
    labels = (rng.random(n) < 0.1).astype(int)
    return pd.DataFrame(
        {
            "card_id": rng.integers(0, 80, n),
            "day": [date(2018, 8, 8) + timedelta(days=int(d)) for d in rng.integers(0, 7, n)],
            "label": labels,
            "score": np.clip(rng.random(n) * 0.6 + labels * 0.4, 0, 1),
        }
    )


def test_write_plots_writes_valid_pngs(tmp_path: Path) -> None:
    out = tmp_path / "plots"
    paths = write_plots(
        _predictions(),
        out,
        review_threshold=0.5,
        decline_threshold=0.8,
        per_day_cp=[0.1, 0.2, 0.0, 0.3, 0.25, 0.15, 0.2],
    )
    assert [p.name for p in paths] == list(PLOT_FILES)
    for path in paths:
        assert path.parent == out
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) > 5_000
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.size[0] > 200 and image.size[1] > 200


def test_write_plots_rejects_one_class(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_plots(
            _predictions().assign(label=0),
            tmp_path,
            review_threshold=0.5,
            decline_threshold=0.8,
            per_day_cp=[0.0],
        )


def _metrics(auc: float, ap: float, cp: float) -> dict[str, Any]:
    return {
        "auc_roc": auc,
        "average_precision": ap,
        "card_precision_at_100": cp,
        "card_precision_per_day": [cp] * 7,
        "precision_at_review": 0.4321,
        "recall_at_review": 0.6543,
        "precision_at_decline": 0.9012,
        "recall_at_decline": 0.2109,
        "alerts_per_day_at_review": 98.5,
        "transactions": 58264,
        "frauds": 385,
        "k": 100,
    }


def _report() -> dict[str, Any]:
    return {
        "model": {
            "version": "v20180815-1",
            "type": "random_forest",
            "params": {"n_estimators": 300},
        },
        "data": {
            "train": "2018-07-25..2018-07-31",
            "test": "2018-08-08..2018-08-14",
            "rows": 67_000,
        },
        "validation": _metrics(0.8812, 0.6901, 0.3125),
        "test": _metrics(0.8776, 0.6688, 0.2957),
        "thresholds": {
            "review": 0.3141,
            "decline": 0.8765,
            "review_rule": "about 100 cards a day on validation",
            "decline_rule": "precision >= 0.9 on validation",
        },
        "candidates": [
            {"name": "logistic_regression", "validation": _metrics(0.8650, 0.6111, 0.2800)},
            {"name": "random_forest", "validation": _metrics(0.8812, 0.6901, 0.3125)},
        ],
    }


def test_markdown_contains_the_numbers(tmp_path: Path) -> None:
    path = write_markdown(_report(), tmp_path / "report.md")
    text = path.read_text(encoding="utf-8")
    assert "random_forest" in text and "v20180815-1" in text
    assert "2018-07-25..2018-07-31" in text and "67,000" in text
    assert "| AUC ROC | 0.8812 | 0.8776 |" in text
    assert "| average precision | 0.6901 | 0.6688 |" in text
    assert "| CP@100 | 0.3125 | 0.2957 |" in text
    assert "| precision at decline | 0.9012 | 0.9012 |" in text
    assert "| transactions | 58,264 | 58,264 |" in text
    assert "0.3141" in text and "about 100 cards a day on validation" in text
    assert "0.8765" in text and "precision >= 0.9 on validation" in text
    assert "| logistic_regression | 0.8650 | 0.6111 (± —) | 0.2800 | — | — | — | — |" in text
    for name in PLOT_FILES:
        assert f"({name})" in text


def test_markdown_links_plots_relative_and_tolerates_missing_parts(tmp_path: Path) -> None:
    plots = [tmp_path / "plots" / name for name in PLOT_FILES]
    path = write_markdown(_report(), tmp_path / "report.md", plots=plots)
    assert "(plots/precision_recall.png)" in path.read_text(encoding="utf-8")

    partial = {"model": {"type": "logistic_regression", "version": "v1"}, "validation": {}}
    text = render_markdown(partial, plots=[])
    assert "| AUC ROC | — | — |" in text
    assert "## Plots" not in text
