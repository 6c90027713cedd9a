"""ONNX export, the parity check, and the model artifacts.

The model is converted with skl2onnx to one named float32 input (``features``, shape
``[None, n_features]``) and a plain probability array (``zipmap`` off). Before anything is
written, onnxruntime scores the whole test set and the result must match scikit-learn's
``predict_proba`` within ``PARITY_TOLERANCE``; otherwise training fails. The pointer
``models/current`` moves to the new version only after the files are complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from collections.abc import Mapping
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import ClassifierMixin
from sklearn.pipeline import Pipeline

from fraudcore.artifacts import METADATA_FILE, MODEL_FILE, POINTER_FILE
from fraudcore.errors import ModelError
from training import onnx_compat

__all__ = [
    "INPUT_NAME",
    "PARITY_TOLERANCE",
    "TARGET_OPSET",
    "ParityError",
    "check_parity",
    "convert",
    "library_versions",
    "version_of",
    "write_artifacts",
]

log = logging.getLogger(__name__)

INPUT_NAME = "features"
PARITY_TOLERANCE = 1e-5
TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}


class ParityError(ModelError):
    """onnxruntime and scikit-learn disagree on the test set; nothing is written."""


def convert(model: ClassifierMixin, n_features: int) -> bytes:
    """The ONNX bytes of ``model`` with a float32 input and a probability-array output."""
    onnx_compat.install()
    classifier = model.steps[-1][1] if isinstance(model, Pipeline) else model
    onx = convert_sklearn(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={id(classifier): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    return bytes(onx.SerializeToString())


def session(model_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def check_parity(model_bytes: bytes, model: ClassifierMixin, features: np.ndarray) -> float:
    """The largest absolute difference in fraud probability; raises above the tolerance."""
    expected = model.predict_proba(features)[:, 1]
    sess = session(model_bytes)
    output = sess.get_outputs()[1].name  # [label, probabilities]
    actual = sess.run([output], {INPUT_NAME: features})[0][:, 1]
    worst = float(np.max(np.abs(actual.astype(np.float64) - expected))) if len(features) else 0.0
    if not worst <= PARITY_TOLERANCE:
        raise ParityError(
            f"ONNX and scikit-learn differ by up to {worst:.2e} on {len(features)} rows "
            f"(tolerance {PARITY_TOLERANCE:g}); the export is wrong, nothing was written"
        )
    log.info("ONNX parity: max |diff| %.2e over %d rows", worst, len(features))
    return worst


def library_versions() -> dict[str, str]:
    names = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas", "protobuf")
    return {"python": platform.python_version(), **{n: package_version(n) for n in names}}


def version_of(model_bytes: bytes) -> str:
    """A model's version: the first 12 hex digits of its sha256."""
    return hashlib.sha256(model_bytes).hexdigest()[:12]


def write_artifacts(
    models_dir: Path,
    model_bytes: bytes,
    metadata: Mapping[str, Any],
    *,
    files: Mapping[str, bytes] = {},
) -> Path:
    """Write ``models/<version>/`` and then point ``models/current`` at it.

    The version is the first 12 hex digits of the model's sha256, so the same model always
    lands in the same place. ``metadata`` gets ``version`` and ``model.sha256`` filled in.
    """
    digest = hashlib.sha256(model_bytes).hexdigest()
    version = version_of(model_bytes)
    target = models_dir / version
    target.mkdir(parents=True, exist_ok=True)
    full = {**metadata, "version": version}
    full["model"] = {**metadata.get("model", {}), "sha256": digest}
    _write_atomic(target / MODEL_FILE, model_bytes)
    _write_atomic(
        target / METADATA_FILE, json.dumps(full, indent=2, sort_keys=True).encode() + b"\n"
    )
    for name, content in files.items():
        _write_atomic(target / name, content)
    _write_atomic(models_dir / POINTER_FILE, f"{version}\n".encode())
    log.info("model %s written to %s and made current", version, target)
    return target


def _write_atomic(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)
