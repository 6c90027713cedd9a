"""The onnxruntime session every served model and contributions model runs in."""

from __future__ import annotations

import onnxruntime as ort

__all__ = ["session"]


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
