"""What a model artifact must say about itself, written and checked the same way on both sides.

Layout under the models folder::

    models/current                  one line: the version directory to serve
    models/<version>/model.onnx     float32 input of the feature vector, probabilities out
    models/<version>/metadata.json  see :func:`metadata_document` and :func:`model_info`
    models/<version>/reasons.onnx   optional: each feature's contribution to the score, for
                                    reason codes (``metadata["reasons"]`` describes it)

Training fills a :class:`ModelMetadata` and writes :func:`metadata_document` of it; the
service reads the files and calls :func:`model_info`, which refuses a model built on other
feature definitions or whose bytes are not the ones the metadata describes. A model's
version is the start of its sha256, derived once, in :class:`ModelIdentity`.

Nothing here reads a file or the clock: the caller passes the bytes and the times.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, NotRequired, TypeAlias, TypedDict, get_args

from fraudcore.errors import FingerprintMismatch, ModelIntegrityError
from fraudcore.features import FEATURE_NAMES, SPEC, fingerprint
from fraudcore.policy import Thresholds

__all__ = [
    "JSON",
    "METADATA_FILE",
    "MODEL_FILE",
    "POINTER_FILE",
    "REASONS_FILE",
    "VERSION_DIGITS",
    "DataDocument",
    "DataSummary",
    "FeatureSet",
    "FeaturesDocument",
    "MetadataDocument",
    "ModelDescription",
    "ModelDocument",
    "ModelIdentity",
    "ModelInfo",
    "ModelMetadata",
    "ReasonsDescription",
    "ReasonsDocument",
    "ReasonsMethod",
    "ReasonsOutput",
    "ThresholdChoice",
    "ThresholdsDocument",
    "check_reasons",
    "metadata_document",
    "model_info",
]

POINTER_FILE = "current"
MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
REASONS_FILE = "reasons.onnx"
VERSION_DIGITS = 12

#: A JSON value as training hands it over (any sequence or mapping serialises).
JSON: TypeAlias = "str | int | float | bool | None | Sequence[JSON] | Mapping[str, JSON]"

#: How a model's contributions are computed (see ``training/reasons.py``).
ReasonsMethod: TypeAlias = Literal["path_contributions", "linear"]
#: What contributions add up to (with the base value): the fraud probability or its log-odds.
ReasonsOutput: TypeAlias = Literal["probability", "log_odds"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*\.onnx")


# --- what training fills ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """A model's sha256 and its version, the first :data:`VERSION_DIGITS` hex digits of it.

    The version is derived here and nowhere else, when the identity is made.
    """

    sha256: str
    version: str = field(init=False)

    def __post_init__(self) -> None:
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        object.__setattr__(self, "version", self.sha256[:VERSION_DIGITS])

    @classmethod
    def of(cls, model_bytes: bytes) -> ModelIdentity:
        """The identity of the model serialised as ``model_bytes``."""
        return cls(hashlib.sha256(model_bytes).hexdigest())


@dataclass(frozen=True, slots=True)
class FeatureSet:
    """The feature definitions a model was trained on (``metadata["features"]``)."""

    names: tuple[str, ...]
    fingerprint: str
    spec_version: int

    @classmethod
    def current(cls) -> FeatureSet:
        """This code's features: the ones :func:`model_info` expects by default."""
        return cls(FEATURE_NAMES, fingerprint(), SPEC.version)


@dataclass(frozen=True, slots=True)
class ModelDescription:
    """The exported model (``metadata["model"]``, with the identity's ``sha256``)."""

    type: str
    params: Mapping[str, JSON]
    input_name: str
    output_name: str
    opset: Mapping[str, int]
    parity_max_abs_diff: float


@dataclass(frozen=True, slots=True)
class ReasonsDescription:
    """The contributions model beside a model (``metadata["reasons"]``).

    ``file`` (in the model's directory) takes the model's input ``input_name`` and answers
    ``output_name``: one contribution per feature, in the order of ``features``, whose sum
    plus ``base_value`` is the model's ``output`` (its fraud probability or log-odds).
    ``faithfulness_max_abs_diff`` is the largest difference from scikit-learn's output
    that training measured on the test set. Checked when made: a malformed description
    raises ``ValueError``.
    """

    file: str
    sha256: str
    method: ReasonsMethod
    output: ReasonsOutput
    base_value: float
    input_name: str
    output_name: str
    features: tuple[str, ...]
    faithfulness_max_abs_diff: float

    def __post_init__(self) -> None:
        problems = []
        if not _FILE_NAME.fullmatch(self.file) or self.file == MODEL_FILE:
            problems.append(f"file must be an .onnx file name other than {MODEL_FILE}")
        if not _SHA256.fullmatch(self.sha256):
            problems.append("sha256 must be 64 lowercase hex digits")
        if self.method not in get_args(ReasonsMethod):
            problems.append(f"method must be one of {list(get_args(ReasonsMethod))}")
        if self.output not in get_args(ReasonsOutput):
            problems.append(f"output must be one of {list(get_args(ReasonsOutput))}")
        for name in ("base_value", "faithfulness_max_abs_diff"):
            number = getattr(self, name)
            if isinstance(number, bool) or not isinstance(number, int | float) or not (
                abs(number) < float("inf")
            ):
                problems.append(f"{name} must be a finite number")
        if not all(isinstance(n, str) and n for n in (self.input_name, self.output_name)):
            problems.append("input_name and output_name must be names")
        if not self.features or not all(isinstance(n, str) for n in self.features):
            problems.append("features must be the feature names")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    """The decision thresholds and, in words, how each was chosen."""

    thresholds: Thresholds
    review_rule: str
    decline_rule: str


@dataclass(frozen=True, slots=True)
class DataSummary:
    """The data a model was trained and tested on (``metadata["data"]``).

    ``train`` and ``test`` are half-open day ranges ``(first day, day after the last)``;
    ``first`` and ``last`` are the data's earliest and latest transaction times.
    """

    source: str
    transactions: int
    first: datetime
    last: datetime
    train: tuple[date, date]
    test: tuple[date, date]
    train_rows: int
    test_rows_cleaned: int
    label_delay_days: int


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """Everything ``metadata.json`` records; :func:`metadata_document` writes it."""

    identity: ModelIdentity
    created_at: datetime
    features: FeatureSet
    model: ModelDescription
    thresholds: ThresholdChoice
    data: DataSummary
    validation: Mapping[str, float]
    test: Mapping[str, JSON]
    libraries: Mapping[str, str]
    reasons: ReasonsDescription | None = None  # None: decisions carry no reason codes

    def __post_init__(self) -> None:
        if self.created_at.utcoffset() is None:
            raise ValueError(f"created_at must be timezone-aware, got {self.created_at!r}")

    @property
    def version(self) -> str:
        return self.identity.version


# --- what metadata.json holds -------------------------------------------------------------


class FeaturesDocument(TypedDict):
    names: list[str]
    fingerprint: str
    spec_version: int


class ModelDocument(TypedDict):
    type: str
    params: dict[str, JSON]
    input_name: str
    output_name: str
    opset: dict[str, int]
    parity_max_abs_diff: float
    sha256: str


class ThresholdsDocument(TypedDict):
    review: float
    decline: float
    review_rule: str
    decline_rule: str


class DataDocument(TypedDict):
    source: str
    transactions: int
    first: str
    last: str
    train: list[str]
    test: list[str]
    train_rows: int
    test_rows_cleaned: int
    label_delay_days: int


class ReasonsDocument(TypedDict):
    file: str
    sha256: str
    method: str
    output: str
    base_value: float
    input_name: str
    output_name: str
    features: list[str]
    faithfulness_max_abs_diff: float


class MetadataDocument(TypedDict):
    created_at: str
    features: FeaturesDocument
    model: ModelDocument
    thresholds: ThresholdsDocument
    data: DataDocument
    validation: dict[str, float]
    test: dict[str, JSON]
    libraries: dict[str, str]
    version: str
    reasons: NotRequired[ReasonsDocument]


def metadata_document(metadata: ModelMetadata) -> MetadataDocument:
    """The JSON object of ``metadata.json``: what :func:`model_info` reads back.

    Times and days are ISO 8601 strings; the ``data`` keys keep their order (the report
    lists them as they come). ``reasons`` is there only when the model has reason codes.
    """
    model, choice, data = metadata.model, metadata.thresholds, metadata.data
    document: MetadataDocument = {
        "created_at": metadata.created_at.isoformat(),
        "features": {
            "names": list(metadata.features.names),
            "fingerprint": metadata.features.fingerprint,
            "spec_version": metadata.features.spec_version,
        },
        "model": {
            "type": model.type,
            "params": dict(model.params),
            "input_name": model.input_name,
            "output_name": model.output_name,
            "opset": dict(model.opset),
            "parity_max_abs_diff": model.parity_max_abs_diff,
            "sha256": metadata.identity.sha256,
        },
        "thresholds": {
            "review": choice.thresholds.review,
            "decline": choice.thresholds.decline,
            "review_rule": choice.review_rule,
            "decline_rule": choice.decline_rule,
        },
        "data": {
            "source": data.source,
            "transactions": data.transactions,
            "first": data.first.isoformat(),
            "last": data.last.isoformat(),
            "train": [day.isoformat() for day in data.train],
            "test": [day.isoformat() for day in data.test],
            "train_rows": data.train_rows,
            "test_rows_cleaned": data.test_rows_cleaned,
            "label_delay_days": data.label_delay_days,
        },
        "validation": dict(metadata.validation),
        "test": dict(metadata.test),
        "libraries": dict(metadata.libraries),
        "version": metadata.version,
    }
    if (reasons := metadata.reasons) is not None:
        document["reasons"] = {
            "file": reasons.file,
            "sha256": reasons.sha256,
            "method": reasons.method,
            "output": reasons.output,
            "base_value": reasons.base_value,
            "input_name": reasons.input_name,
            "output_name": reasons.output_name,
            "features": list(reasons.features),
            "faithfulness_max_abs_diff": reasons.faithfulness_max_abs_diff,
        }
    return document


# --- what the service checks --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the service needs of a checked model; ``reasons`` is None for a model without
    reason codes (its decisions then carry none)."""

    version: str
    sha256: str
    input_name: str
    output_name: str
    thresholds: Thresholds
    reasons: ReasonsDescription | None = None


def model_info(
    metadata: Mapping[str, Any],
    model_bytes: bytes,
    *,
    expected_fingerprint: str | None = None,
    expected_features: tuple[str, ...] = FEATURE_NAMES,
    reasons_bytes: bytes | None = None,
) -> ModelInfo:
    """Check ``metadata`` (a parsed ``metadata.json``) against the model's bytes and this
    code's features.

    A ``reasons`` object, if there is one, must be well formed and explain the model's
    features; with ``reasons_bytes`` (the contributions file's content) its sha256 is
    checked too, as :func:`check_reasons` does (a model without a ``reasons`` object has no
    such file)."""
    try:
        version = str(metadata["version"])
        recorded_hash = str(metadata["model"]["sha256"])
        features = metadata["features"]
        thresholds = Thresholds(
            review=float(metadata["thresholds"]["review"]),
            decline=float(metadata["thresholds"]["decline"]),
        )
        input_name = str(metadata["model"]["input_name"])
        output_name = str(metadata["model"]["output_name"])
        model_fingerprint = str(features["fingerprint"])
        names = tuple(features["names"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelIntegrityError(
            f"model metadata is incomplete or malformed ({exc!r}); retrain with `make train`"
        ) from exc
    expected = expected_fingerprint or fingerprint()
    if model_fingerprint != expected or names != expected_features:
        what = (
            f"feature fingerprint {model_fingerprint}, but this code computes {expected}"
            if model_fingerprint != expected
            else f"features {list(names)}, but this code computes {list(expected_features)}"
        )
        raise FingerprintMismatch(
            f"model {version} was trained on {what}; retrain with `make train` or deploy the "
            "matching code"
        )
    actual_hash = ModelIdentity.of(model_bytes).sha256
    if actual_hash != recorded_hash:
        raise ModelIntegrityError(
            f"model {version}: model.onnx has sha256 {actual_hash[:12]}..., its metadata "
            f"records {recorded_hash[:12]}...; the file was changed or corrupted, retrain or "
            "restore it"
        )
    reasons = _reasons(metadata, version, names)
    if reasons_bytes is not None:
        if reasons is None:
            raise ModelIntegrityError(
                f"model {version}: a contributions file was given but its metadata describes "
                "no reasons; retrain with `make train`"
            )
        check_reasons(reasons, reasons_bytes, version=version)
    return ModelInfo(version, actual_hash, input_name, output_name, thresholds, reasons)


def _reasons(
    metadata: Mapping[str, Any], version: str, names: tuple[str, ...]
) -> ReasonsDescription | None:
    """The ``reasons`` object of ``metadata`` checked, or None where there is none."""
    if "reasons" not in metadata:
        return None
    document = metadata["reasons"]
    try:
        if not isinstance(document, Mapping) or isinstance(document["features"], str):
            raise TypeError("reasons must be an object and its features a list")
        reasons = ReasonsDescription(
            file=document["file"],
            sha256=document["sha256"],
            method=document["method"],
            output=document["output"],
            base_value=document["base_value"],
            input_name=document["input_name"],
            output_name=document["output_name"],
            features=tuple(document["features"]),
            faithfulness_max_abs_diff=document["faithfulness_max_abs_diff"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelIntegrityError(
            f"model {version}: its reasons metadata is incomplete or malformed ({exc!r}); "
            "retrain with `make train`"
        ) from exc
    if reasons.features != names:
        raise ModelIntegrityError(
            f"model {version}: its reasons explain features {list(reasons.features)}, but the "
            f"model takes {list(names)}; retrain with `make train`"
        )
    return reasons


def check_reasons(reasons: ReasonsDescription, reasons_bytes: bytes, *, version: str) -> None:
    """Refuse ``reasons_bytes`` unless they are the contributions file ``reasons``
    describes (its sha256), as :func:`model_info` refuses a model's bytes."""
    actual = hashlib.sha256(reasons_bytes).hexdigest()
    if actual != reasons.sha256:
        raise ModelIntegrityError(
            f"model {version}: {reasons.file} has sha256 {actual[:12]}..., its metadata "
            f"records {reasons.sha256[:12]}...; the file was changed or corrupted, retrain or "
            "restore it"
        )
