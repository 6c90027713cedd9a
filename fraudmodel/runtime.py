"""The onnxruntime session every served model and contributions model runs in."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from fraudcore.errors import ModelIntegrityError

__all__ = ["loaded_session", "session"]


def session(model_bytes: bytes) -> ort.InferenceSession:
    """An onnxruntime session as the worker runs one (and the backtest, and reason codes)."""
    options = ort.SessionOptions()
    # The worker shares two cores with the broker and Redis: one thread, no spinning.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def loaded_session(model_bytes: bytes, path: Path) -> ort.InferenceSession:
    """:func:`session` of a model file's bytes; :class:`ModelIntegrityError` naming ``path``
    when onnxruntime cannot load them."""
    try:
        return session(model_bytes)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors are not one type
        raise ModelIntegrityError(f"{path} is not a model onnxruntime can load: {exc}") from exc
