"""model_info: a metadata dict written by hand against the model's bytes and this code;
metadata_document: what training writes, read back by model_info."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from fraudcore import (
    FEATURE_NAMES,
    SPEC,
    FingerprintMismatch,
    ModelIntegrityError,
    Thresholds,
    fingerprint,
)
from fraudcore.artifacts import (
    VERSION_DIGITS,
    DataSummary,
    FeatureSet,
    ModelDescription,
    ModelIdentity,
    ModelInfo,
    ModelMetadata,
    ThresholdChoice,
    metadata_document,
    model_info,
)
from fraudcore.errors import ModelError

MODEL_BYTES = b"not really onnx, but bytes all the same\x00\x01\x02"
SHA = hashlib.sha256(MODEL_BYTES).hexdigest()


def metadata(**top: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "version": SHA[:12],
        "model": {"sha256": SHA, "input_name": "features", "output_name": "probabilities"},
        "features": {"fingerprint": fingerprint(), "names": list(FEATURE_NAMES)},
        "thresholds": {"review": 0.4, "decline": 0.9},
    }
    meta.update(top)
    return meta


def test_happy_path() -> None:
    info = model_info(metadata(), MODEL_BYTES)
    assert info == ModelInfo(
        version=SHA[:12],
        sha256=SHA,
        input_name="features",
        output_name="probabilities",
        thresholds=Thresholds(review=0.4, decline=0.9),
    )


def test_numeric_strings_in_thresholds_and_version_are_converted() -> None:
    info = model_info(
        metadata(version=123, thresholds={"review": "0.5", "decline": 1}), MODEL_BYTES
    )
    assert info.version == "123"
    assert info.thresholds == Thresholds(0.5, 1.0)


def test_names_as_a_tuple_or_list_both_match() -> None:
    meta = metadata()
    meta["features"]["names"] = tuple(FEATURE_NAMES)
    assert model_info(meta, MODEL_BYTES).sha256 == SHA


# --- fingerprint and feature names ------------------------------------------------------


def test_wrong_fingerprint() -> None:
    meta = metadata()
    meta["features"]["fingerprint"] = "0123456789abcdef"
    with pytest.raises(FingerprintMismatch) as info:
        model_info(meta, MODEL_BYTES)
    message = str(info.value)
    assert "0123456789abcdef" in message
    assert fingerprint() in message
    assert "make train" in message
    assert SHA[:12] in message  # names the model


def test_expected_fingerprint_can_be_given() -> None:
    meta = metadata()
    meta["features"]["fingerprint"] = "feedfacefeedface"
    assert model_info(meta, MODEL_BYTES, expected_fingerprint="feedfacefeedface").sha256 == SHA
    with pytest.raises(FingerprintMismatch):
        model_info(metadata(), MODEL_BYTES, expected_fingerprint="feedfacefeedface")


@pytest.mark.parametrize(
    "names",
    [
        list(FEATURE_NAMES[:-1]),  # one missing
        [*FEATURE_NAMES, "extra_feature"],  # one more
        [FEATURE_NAMES[1], FEATURE_NAMES[0], *FEATURE_NAMES[2:]],  # same names, other order
        ["renamed", *FEATURE_NAMES[1:]],
        [],
    ],
    ids=["missing", "extra", "reordered", "renamed", "empty"],
)
def test_feature_names_that_differ(names: list[str]) -> None:
    meta = metadata()
    meta["features"]["names"] = names
    with pytest.raises(FingerprintMismatch, match="make train"):
        model_info(meta, MODEL_BYTES)


def test_expected_features_can_be_given() -> None:
    meta = metadata()
    meta["features"]["names"] = ["a", "b"]
    assert model_info(meta, MODEL_BYTES, expected_features=("a", "b")).version == SHA[:12]


def test_fingerprint_is_checked_before_the_hash() -> None:
    # A model trained on other features is a FingerprintMismatch even if its bytes changed too.
    meta = metadata()
    meta["features"]["fingerprint"] = "0" * 16
    with pytest.raises(FingerprintMismatch):
        model_info(meta, MODEL_BYTES + b"x")


# --- integrity ----------------------------------------------------------------------------


def test_hash_mismatch() -> None:
    changed = MODEL_BYTES + b"!"
    with pytest.raises(ModelIntegrityError) as info:
        model_info(metadata(), changed)
    message = str(info.value)
    assert hashlib.sha256(changed).hexdigest()[:12] in message
    assert SHA[:12] in message
    assert "changed or corrupted" in message
    assert "retrain or restore" in message


def test_empty_model_bytes_are_a_hash_mismatch() -> None:
    with pytest.raises(ModelIntegrityError, match="sha256"):
        model_info(metadata(), b"")


def _drop(meta: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    meta = copy.deepcopy(meta)
    node = meta
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return meta


@pytest.mark.parametrize(
    "path",
    [
        ("version",),
        ("model",),
        ("model", "sha256"),
        ("model", "input_name"),
        ("model", "output_name"),
        ("features",),
        ("features", "fingerprint"),
        ("features", "names"),
        ("thresholds",),
        ("thresholds", "review"),
        ("thresholds", "decline"),
    ],
    ids="/".join,
)
def test_missing_key(path: tuple[str, ...]) -> None:
    with pytest.raises(ModelIntegrityError) as info:
        model_info(_drop(metadata(), path), MODEL_BYTES)
    message = str(info.value)
    assert "incomplete or malformed" in message
    assert repr(path[-1]) in message  # the KeyError names the key
    assert "make train" in message


@pytest.mark.parametrize(
    "thresholds",
    [
        {"review": 0.9, "decline": 0.4},
        {"review": -0.1, "decline": 0.5},
        {"review": 0.1, "decline": 1.5},
        {"review": "high", "decline": 0.9},
        {"review": None, "decline": 0.9},
        {"review": float("nan"), "decline": 0.9},
        [0.4, 0.9],
    ],
)
def test_bad_thresholds(thresholds: object) -> None:
    with pytest.raises(ModelIntegrityError, match="make train"):
        model_info(metadata(thresholds=thresholds), MODEL_BYTES)


@pytest.mark.parametrize("meta", [None, [], "metadata", {"model": "x"}])
def test_metadata_that_is_not_a_mapping_of_mappings(meta: Any) -> None:
    with pytest.raises(ModelIntegrityError):
        model_info(meta, MODEL_BYTES)


def test_model_errors_share_a_root() -> None:
    assert issubclass(FingerprintMismatch, ModelError)
    assert issubclass(ModelIntegrityError, ModelError)
    assert not issubclass(FingerprintMismatch, ModelIntegrityError)


# --- the writer: ModelMetadata -> metadata_document -> model_info -------------------------


def written(**changes: Any) -> ModelMetadata:
    """Metadata as training fills it for MODEL_BYTES; ``changes`` replace fields."""
    meta = ModelMetadata(
        identity=ModelIdentity.of(MODEL_BYTES),
        created_at=datetime(2026, 11, 29, 16, 16, 22, tzinfo=UTC),
        features=FeatureSet.current(),
        model=ModelDescription(
            type="random_forest",
            params={"n_estimators": 100, "max_depth": None, "min_samples_leaf": 5},
            input_name="features",
            output_name="probabilities",
            opset={"": 21, "ai.onnx.ml": 3},
            parity_max_abs_diff=6.9e-07,
        ),
        thresholds=ThresholdChoice(
            Thresholds(review=0.04, decline=0.34), review_rule="about 100 a day",
            decline_rule="precision >= 0.9",
        ),
        data=DataSummary(
            source="generator(seed=0, reference size)",
            transactions=1_793_343,
            first=datetime(2018, 4, 1, 0, 1, 21, tzinfo=UTC),
            last=datetime(2018, 9, 30, 23, 59, 51, tzinfo=UTC),
            train=(date(2018, 7, 25), date(2018, 8, 1)),
            test=(date(2018, 8, 8), date(2018, 8, 15)),
            train_rows=68_526,
            test_rows_cleaned=59_515,
            label_delay_days=7,
        ),
        validation={"auc_roc": 0.88, "auc_roc_std": 0.01, "folds": 4},
        test={"auc_roc": 0.87, "card_precision_per_day": [0.41, 0.34], "k": 100},
        libraries={"python": "3.11.7", "numpy": "2.4.6"},
    )
    return dataclasses.replace(meta, **changes)


def read_back(meta: ModelMetadata, model_bytes: bytes = MODEL_BYTES) -> ModelInfo:
    """What the service gets: the document through JSON text, then model_info."""
    return model_info(json.loads(json.dumps(metadata_document(meta))), model_bytes)


def test_write_then_read_gives_the_same_values() -> None:
    meta = written()
    assert read_back(meta) == ModelInfo(
        version=meta.version,
        sha256=meta.identity.sha256,
        input_name=meta.model.input_name,
        output_name=meta.model.output_name,
        thresholds=meta.thresholds.thresholds,
    )
    assert meta.version == SHA[:VERSION_DIGITS]


def test_the_document_holds_every_value_as_json() -> None:
    meta = written()
    document = metadata_document(meta)
    assert json.loads(json.dumps(document)) == document
    assert document == {
        "created_at": "2026-11-29T16:16:22+00:00",
        "features": {
            "names": list(FEATURE_NAMES),
            "fingerprint": fingerprint(),
            "spec_version": SPEC.version,
        },
        "model": {
            "type": "random_forest",
            "params": {"n_estimators": 100, "max_depth": None, "min_samples_leaf": 5},
            "input_name": "features",
            "output_name": "probabilities",
            "opset": {"": 21, "ai.onnx.ml": 3},
            "parity_max_abs_diff": 6.9e-07,
            "sha256": SHA,
        },
        "thresholds": {
            "review": 0.04,
            "decline": 0.34,
            "review_rule": "about 100 a day",
            "decline_rule": "precision >= 0.9",
        },
        "data": {
            "source": "generator(seed=0, reference size)",
            "transactions": 1_793_343,
            "first": "2018-04-01T00:01:21+00:00",
            "last": "2018-09-30T23:59:51+00:00",
            "train": ["2018-07-25", "2018-08-01"],
            "test": ["2018-08-08", "2018-08-15"],
            "train_rows": 68_526,
            "test_rows_cleaned": 59_515,
            "label_delay_days": 7,
        },
        "validation": {"auc_roc": 0.88, "auc_roc_std": 0.01, "folds": 4},
        "test": {"auc_roc": 0.87, "card_precision_per_day": [0.41, 0.34], "k": 100},
        "libraries": {"python": "3.11.7", "numpy": "2.4.6"},
        "version": SHA[:VERSION_DIGITS],
    }


def test_the_data_keys_keep_their_order() -> None:
    # The report lists the data section in this order.
    assert list(metadata_document(written())["data"]) == [
        "source", "transactions", "first", "last", "train", "test", "train_rows",
        "test_rows_cleaned", "label_delay_days",
    ]


def test_times_keep_their_offset() -> None:
    plus_two = timezone(timedelta(hours=2))
    meta = written(created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=plus_two))
    assert metadata_document(meta)["created_at"] == "2026-01-02T03:04:05+02:00"


def test_a_naive_creation_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        written(created_at=datetime(2026, 1, 2, 3, 4, 5))


def test_the_identity_derives_the_version_once_from_the_hash() -> None:
    identity = ModelIdentity.of(MODEL_BYTES)
    assert identity == ModelIdentity(SHA)
    assert (identity.sha256, identity.version) == (SHA, SHA[:VERSION_DIGITS])
    with pytest.raises(TypeError):
        ModelIdentity(SHA, version="other")  # type: ignore[call-arg]  # not a parameter
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.version = "other"  # type: ignore[misc]  # frozen


@pytest.mark.parametrize("sha256", ["", SHA[:12], SHA.upper(), SHA + "0", "g" * 64])
def test_an_identity_needs_a_sha256(sha256: str) -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        ModelIdentity(sha256)


def test_the_reader_refuses_written_metadata_for_other_bytes() -> None:
    with pytest.raises(ModelIntegrityError, match="changed or corrupted"):
        read_back(written(), MODEL_BYTES + b"!")


def test_the_reader_refuses_written_metadata_of_other_features() -> None:
    current = FeatureSet.current()
    with pytest.raises(FingerprintMismatch, match="feedfacefeedface"):
        read_back(written(features=dataclasses.replace(current, fingerprint="feedfacefeedface")))
    with pytest.raises(FingerprintMismatch, match="features"):
        read_back(written(features=dataclasses.replace(current, names=current.names[:-1])))


def test_the_current_feature_set_is_this_codes() -> None:
    assert FeatureSet.current() == FeatureSet(FEATURE_NAMES, fingerprint(), SPEC.version)


# --- what the refusals tell the operator ----------------------------------------------------


def test_a_fingerprint_mismatch_says_what_to_do() -> None:
    meta = metadata()
    meta["features"]["fingerprint"] = "0123456789abcdef"
    with pytest.raises(FingerprintMismatch) as info:
        model_info(meta, MODEL_BYTES)
    assert str(info.value).endswith(
        "retrain with `make train` or deploy the matching code"
    )


def test_a_hash_mismatch_shows_both_hashes_in_their_short_form() -> None:
    # A hash is shown as a model version is named: its first VERSION_DIGITS hex digits,
    # then "..." to say it was cut.
    changed = MODEL_BYTES + b"!"
    with pytest.raises(ModelIntegrityError) as info:
        model_info(metadata(), changed)
    message = str(info.value)
    actual = ModelIdentity.of(changed).version
    recorded = ModelIdentity(SHA).version
    assert len(actual) == len(recorded) == VERSION_DIGITS
    assert f"model.onnx has sha256 {actual}..., " in message
    assert f"its metadata records {recorded}...; " in message
