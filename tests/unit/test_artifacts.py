"""model_info: a metadata dict written by hand against the model's bytes and this code."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest

from fraudcore import (
    FEATURE_NAMES,
    FingerprintMismatch,
    ModelIntegrityError,
    Thresholds,
    fingerprint,
)
from fraudcore.artifacts import ModelInfo, model_info
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
