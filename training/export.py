"""ONNX export, the parity check, and the model artifacts.

The model is converted with skl2onnx to one named float32 input (``features``, shape
``[None, n_features]``) and a plain probability array (``zipmap`` off). Before anything is
written, onnxruntime scores the whole test set and the result must match scikit-learn's
``predict_proba`` within ``PARITY_TOLERANCE``; otherwise training fails. The model's
contributions model for reason codes (``reasons.onnx``, built and checked the same way by
:mod:`training.reasons`) is written beside it. The pointer ``models/current`` moves to the
new version only after the files are complete.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Mapping
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.pipeline import Pipeline

from fraudcore.artifacts import (
    METADATA_FILE,
    MODEL_FILE,
    POINTER_FILE,
    ModelIdentity,
    ModelMetadata,
    metadata_document,
    model_info,
)
from fraudcore.errors import ModelError, ModelIntegrityError
from fraudmodel import session
from training import onnx_compat
from training.train import Classifier

__all__ = [
    "GRAPH_NAME",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "PARITY_TOLERANCE",
    "TARGET_OPSET",
    "ParityError",
    "check_parity",
    "convert",
    "library_versions",
    "write_artifacts",
]

log = logging.getLogger(__name__)

INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"  # skl2onnx's name for the probability array (zipmap off)
PARITY_TOLERANCE = 1e-5
GRAPH_NAME = "fraud_model"
TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}


class ParityError(ModelError):
    """onnxruntime and scikit-learn disagree on the test set; nothing is written."""


def convert(model: Classifier, n_features: int) -> bytes:
    """The ONNX bytes of ``model`` with a float32 input and a probability-array output; the
    same bytes for the same model every time."""
    onnx_compat.install()
    classifier = model.steps[-1][1] if isinstance(model, Pipeline) else model
    onx = convert_sklearn(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={id(classifier): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    # skl2onnx names the graph with a random UUID, so the same model exported twice had
    # other bytes and another version; a fixed name makes the version the model's.
    onx.graph.name = GRAPH_NAME
    return bytes(onx.SerializeToString())


def check_parity(model_bytes: bytes, model: Classifier, features: NDArray[np.float32]) -> float:
    """The largest absolute difference in fraud probability (in the session the worker
    runs); raises above the tolerance."""
    expected = model.predict_proba(features)[:, 1]
    sess = session(model_bytes)
    output = sess.get_outputs()[1].name  # [label, OUTPUT_NAME]
    # onnxruntime is untyped: its run() returns a list of arrays, the probabilities first.
    actual: NDArray[np.float32] = sess.run([output], {INPUT_NAME: features})[0][:, 1]
    worst = float(np.max(np.abs(actual.astype(np.float64) - expected))) if len(features) else 0.0
    if not worst <= PARITY_TOLERANCE:
        raise ParityError(
            f"ONNX and scikit-learn differ by up to {worst:.2e} on {len(features)} rows "
            f"(tolerance {PARITY_TOLERANCE:g}); the export is wrong, nothing was written"
        )
    log.info(
        "ONNX scores match scikit-learn's on the %s test rows (largest difference %.1e, "
        "tolerance %g)", f"{len(features):,}", worst, PARITY_TOLERANCE,
    )
    return worst


def library_versions() -> dict[str, str]:
    names = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas", "protobuf")
    return {"python": platform.python_version(), **{n: package_version(n) for n in names}}


def write_artifacts(
    models_dir: Path,
    model_bytes: bytes,
    metadata: ModelMetadata | Mapping[str, Any],
    *,
    reasons: bytes | None = None,
    files: Mapping[str, bytes] = {},
) -> Path:
    """Write ``models/<version>/`` and then point ``models/current`` at it.

    ``metadata`` is normally the :class:`~fraudcore.artifacts.ModelMetadata` training
    filled, whose identity must be that of ``model_bytes`` and whose reasons, if any, those
    of ``reasons`` (the contributions model's bytes, written under the name they give). A
    metadata document instead (a parsed ``metadata.json``, e.g. another model's) gets this
    model's ``version`` and ``model.sha256`` filled in, and its ``reasons`` object the
    sha256 of ``reasons``, or dropped without them: another model's contributions do not
    explain this one. Either way the document is checked with
    :func:`~fraudcore.artifacts.model_info`, as the service will check it, before anything
    is written; the version names the directory, so the same model always lands in the
    same place.
    """
    document = _document(metadata, model_bytes, reasons)
    info = model_info(document, model_bytes, reasons_bytes=reasons)
    if info.reasons is not None and reasons is None:
        raise ModelIntegrityError(
            f"model {info.version}: its metadata describes {info.reasons.file} but no "
            "contributions model was given to write; nothing was written"
        )
    target = models_dir / info.version
    target.mkdir(parents=True, exist_ok=True)
    _write_atomic(target / MODEL_FILE, model_bytes)
    if info.reasons is not None and reasons is not None:
        _write_atomic(target / info.reasons.file, reasons)
    _write_atomic(
        target / METADATA_FILE, json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
    )
    for name, content in files.items():
        _write_atomic(target / name, content)
    _write_atomic(models_dir / POINTER_FILE, f"{info.version}\n".encode())
    log.info(
        "model %s written to %s%s; %s now names it", info.version, target,
        " with its reason codes" if info.reasons is not None else "", models_dir / POINTER_FILE,
    )
    return target


def _document(
    metadata: ModelMetadata | Mapping[str, Any], model_bytes: bytes, reasons: bytes | None
) -> Mapping[str, Any]:
    # A parsed metadata.json is JSON of unknown shape (Any), as model_info takes it.
    if isinstance(metadata, ModelMetadata):
        return metadata_document(metadata)
    identity = ModelIdentity.of(model_bytes)
    document = {
        **metadata,
        "version": identity.version,
        "model": {**metadata.get("model", {}), "sha256": identity.sha256},
    }
    if reasons is None:
        document.pop("reasons", None)
    elif isinstance(described := metadata.get("reasons"), Mapping):
        document["reasons"] = {**described, "sha256": ModelIdentity.of(reasons).sha256}
    return document


def _write_atomic(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)
