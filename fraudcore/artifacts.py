"""What a model artifact must say about itself, checked the same way on both sides.

Layout under the models folder::

    models/current                  one line: the version directory to serve
    models/<version>/model.onnx     float32 input of the feature vector, probabilities out
    models/<version>/metadata.json  see :func:`model_info`

Training writes it; the service reads the files and calls :func:`model_info`, which
refuses a model built on other feature definitions or whose bytes are not the ones the
metadata describes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fraudcore.errors import FingerprintMismatch, ModelIntegrityError
from fraudcore.features import FEATURE_NAMES, fingerprint
from fraudcore.policy import Thresholds

__all__ = ["METADATA_FILE", "MODEL_FILE", "POINTER_FILE", "ModelInfo", "model_info"]

POINTER_FILE = "current"
MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    version: str
    sha256: str
    input_name: str
    output_name: str
    thresholds: Thresholds


def model_info(
    metadata: Mapping[str, Any],
    model_bytes: bytes,
    *,
    expected_fingerprint: str | None = None,
    expected_features: tuple[str, ...] = FEATURE_NAMES,
) -> ModelInfo:
    """Check ``metadata`` against the model's bytes and this code's features."""
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
    actual_hash = hashlib.sha256(model_bytes).hexdigest()
    if actual_hash != recorded_hash:
        raise ModelIntegrityError(
            f"model {version}: model.onnx has sha256 {actual_hash[:12]}..., its metadata "
            f"records {recorded_hash[:12]}...; the file was changed or corrupted, retrain or "
            "restore it"
        )
    return ModelInfo(version, actual_hash, input_name, output_name, thresholds)
