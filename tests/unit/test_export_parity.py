"""A failed parity check writes nothing (training/export.py, README "Retraining": "checks ONNX
against scikit-learn on the whole test set (max |Δ| ≤ 1e-5, or training fails), and only
then writes models/<version>/ and moves models/current").

Nothing of the code under test is replaced: the whole of ``training.pipeline.run`` runs on
a small generated data set with one candidate whose ONNX export really disagrees with its
scikit-learn scores — a logistic regression whose ``predict_proba`` is squeezed towards
0.5, registered with skl2onnx's own converter for logistic regressions, which knows
nothing of the squeeze (an export bug of the kind the check is there for).
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray
from skl2onnx import update_registered_converter
from skl2onnx.operator_converters.linear_classifier import convert_sklearn_linear_classifier
from skl2onnx.shape_calculators.linear_classifier import calculate_linear_classifier_output_shapes
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training import generator, pipeline, protocol
from training.dataset import normalise
from training.export import PARITY_TOLERANCE, ParityError
from training.train import Candidate, Classifier

ROOT = Path(__file__).resolve().parents[2]
SPLIT = protocol.Split(date(2018, 5, 1))


class SqueezedLogistic(LogisticRegression):  # type: ignore[misc]
    """Scores 0.25 + p / 2: the same ranking, other probabilities than its ONNX gives."""

    def predict_proba(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        fraud = 0.25 + super().predict_proba(x)[:, 1] / 2
        return np.column_stack([1 - fraud, fraud])


update_registered_converter(
    SqueezedLogistic,
    "SqueezedLogistic",
    calculate_linear_classifier_output_shapes,
    convert_sklearn_linear_classifier,
    options={"zipmap": [True, False, "columns"], "nocl": [True, False],
             "output_class_labels": [False, True], "raw_scores": [True, False]},
)


def _squeezed() -> Classifier:
    model: Classifier = make_pipeline(StandardScaler(), SqueezedLogistic())
    return model


def _honest() -> Classifier:
    model: Classifier = make_pipeline(StandardScaler(), LogisticRegression())
    return model


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    config = generator.GeneratorConfig(
        customers=80, terminals=160, days=52, start=date(2018, 4, 1), seed=2
    )
    return normalise(generator.generate(config), source="test")


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory``: its bytes and modification time."""
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    } | {str(p.relative_to(directory)) + "/": (b"", 0) for p in directory.rglob("*") if p.is_dir()}


def test_a_parity_failure_writes_nothing_and_leaves_current_alone(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    before = _snapshot(models)
    with pytest.raises(ParityError, match="nothing was written") as failure:
        pipeline.run(
            frame, split=SPLIT, models_dir=models, source="test", validation_folds=2,
            candidates=[Candidate("squeezed_logistic", _squeezed)],
        )
    assert f"tolerance {PARITY_TOLERANCE:g}" in str(failure.value)
    assert _snapshot(models) == before  # no version directory, no file, the pointer as it was


def test_the_same_run_with_an_honest_export_writes_the_model_and_moves_current(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    """The control: the same data and protocol, a candidate whose export is right."""
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    old = (models / "current").read_text().strip()
    result = pipeline.run(
        frame, split=SPLIT, models_dir=models, source="test", validation_folds=2,
        candidates=[Candidate("logistic_regression", _honest)],
    )
    new = (models / "current").read_text().strip()
    assert new == result.metadata.version != old
    assert (models / new / "model.onnx").is_file() and (models / new / "metadata.json").is_file()
    assert (models / old / "model.onnx").is_file()  # the old version stays beside it
