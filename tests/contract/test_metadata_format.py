"""The committed model's metadata.json is exactly what the typed writer writes from its
values: training's ModelMetadata and metadata_document keep the format the service reads,
its reason codes' description included."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fraudcore import Thresholds
from fraudcore.artifacts import (
    METADATA_FILE,
    MODEL_FILE,
    POINTER_FILE,
    REASONS_FILE,
    DataSummary,
    FeatureSet,
    ModelDescription,
    ModelIdentity,
    ModelMetadata,
    ReasonsDescription,
    ThresholdChoice,
    metadata_document,
    model_info,
)

MODELS = Path(__file__).resolve().parents[2] / "models"


def _values_of(document: dict[str, Any]) -> ModelMetadata:
    """The ModelMetadata a training run filled to write ``document``."""
    model, thresholds, data = document["model"], document["thresholds"], document["data"]
    return ModelMetadata(
        identity=ModelIdentity(model["sha256"]),
        created_at=datetime.fromisoformat(document["created_at"]),
        features=FeatureSet(
            tuple(document["features"]["names"]),
            document["features"]["fingerprint"],
            document["features"]["spec_version"],
        ),
        model=ModelDescription(
            type=model["type"],
            params=model["params"],
            input_name=model["input_name"],
            output_name=model["output_name"],
            opset=model["opset"],
            parity_max_abs_diff=model["parity_max_abs_diff"],
        ),
        thresholds=ThresholdChoice(
            Thresholds(thresholds["review"], thresholds["decline"]),
            review_rule=thresholds["review_rule"],
            decline_rule=thresholds["decline_rule"],
        ),
        data=DataSummary(
            source=data["source"],
            transactions=data["transactions"],
            first=datetime.fromisoformat(data["first"]),
            last=datetime.fromisoformat(data["last"]),
            train=(date.fromisoformat(data["train"][0]), date.fromisoformat(data["train"][1])),
            test=(date.fromisoformat(data["test"][0]), date.fromisoformat(data["test"][1])),
            train_rows=data["train_rows"],
            test_rows_cleaned=data["test_rows_cleaned"],
            label_delay_days=data["label_delay_days"],
        ),
        validation=document["validation"],
        test=document["test"],
        libraries=document["libraries"],
        reasons=_reasons_of(document.get("reasons")),
    )


def _reasons_of(document: dict[str, Any] | None) -> ReasonsDescription | None:
    if document is None:
        return None
    return ReasonsDescription(**{**document, "features": tuple(document["features"])})


def test_the_committed_metadata_is_what_the_writer_writes() -> None:
    directory = MODELS / (MODELS / POINTER_FILE).read_text().strip()
    committed = json.loads((directory / METADATA_FILE).read_text())
    values = _values_of(committed)
    assert values.version == committed["version"] == directory.name
    assert metadata_document(values) == committed
    written = json.dumps(metadata_document(values), indent=2, sort_keys=True) + "\n"
    assert written == (directory / METADATA_FILE).read_text()
    assert model_info(committed, (directory / MODEL_FILE).read_bytes()).version == values.version


def test_the_committed_model_has_its_reason_codes() -> None:
    directory = MODELS / (MODELS / POINTER_FILE).read_text().strip()
    committed = json.loads((directory / METADATA_FILE).read_text())
    assert set(committed["reasons"]) == {
        "file", "sha256", "method", "output", "base_value", "input_name", "output_name",
        "features", "faithfulness_max_abs_diff",
    }
    info = model_info(
        committed,
        (directory / MODEL_FILE).read_bytes(),
        reasons_bytes=(directory / REASONS_FILE).read_bytes(),
    )
    assert info.reasons == _values_of(committed).reasons
    assert info.reasons is not None and info.reasons.file == REASONS_FILE
    assert info.reasons.features == tuple(committed["features"]["names"])
    assert info.reasons.method == "path_contributions"
    # a forest explains its probability; boosting and linear models their log-odds
    expected = "probability" if committed["model"]["type"] == "random_forest" else "log_odds"
    assert info.reasons.output == expected
    if expected == "probability":
        assert 0.0 < info.reasons.base_value < 1.0
    assert info.reasons.faithfulness_max_abs_diff <= 1e-5


def test_a_model_without_reasons_writes_no_reasons_object() -> None:
    directory = MODELS / (MODELS / POINTER_FILE).read_text().strip()
    committed = json.loads((directory / METADATA_FILE).read_text())
    values = dataclasses.replace(_values_of(committed), reasons=None)
    document = metadata_document(values)
    assert "reasons" not in document
    assert document == {k: v for k, v in committed.items() if k != "reasons"}
    assert model_info(document, (directory / MODEL_FILE).read_bytes()).reasons is None
