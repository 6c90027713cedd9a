"""What a candidate costs to serve: its ONNX export scored in the worker's session.

Inference cost is part of the product: the worker scores every batch with the model, one
row at a time when traffic is light and hundreds under load. :func:`inference_cost` times
a fitted candidate exported as the worker would serve it (:func:`training.export.convert`,
:func:`fraudmodel.runtime.session`: one thread, no spinning) on rows of real features:
the median over repeated calls of one row, and of a batch of 100 (per row). Medians of
many calls on this shared machine, taken one candidate after the other; the ratio between
candidates is the figure to read, not the microseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fraudcore import FEATURE_NAMES
from fraudmodel.runtime import session
from training import export
from training.train import Classifier

__all__ = ["Cost", "inference_cost"]

ONE_ROW_CALLS = 300
BATCH = 100
BATCH_CALLS = 40


@dataclass(frozen=True)
class Cost:
    """Median microseconds of one call on one row, and per row of a batch of 100; the
    export's size."""

    one_row_us: float
    batch_100_us_per_row: float
    onnx_bytes: int

    def to_dict(self) -> dict[str, float]:
        return {"one_row_us": round(self.one_row_us, 1),
                "batch_100_us_per_row": round(self.batch_100_us_per_row, 2),
                "onnx_bytes": self.onnx_bytes}


def inference_cost(model: Classifier, rows: NDArray[np.float32]) -> Cost:
    """Time ``model``'s ONNX export in the worker's session on ``rows`` (float32, the 22
    features; at least one)."""
    onnx = export.convert(model, len(FEATURE_NAMES))
    sess = session(onnx)
    output = sess.get_outputs()[1].name  # [label, probabilities], as the worker reads it
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    batch = np.ascontiguousarray(np.resize(rows, (BATCH, rows.shape[1])), dtype=np.float32)

    def median_us(x: NDArray[np.float32], calls: int) -> float:
        sess.run([output], {export.INPUT_NAME: x})  # warm
        times = []
        for i in range(calls):
            one = x if len(x) > 1 else rows[i % len(rows)][None, :]
            started = time.perf_counter()
            sess.run([output], {export.INPUT_NAME: one})
            times.append(time.perf_counter() - started)
        return float(np.median(times)) * 1e6

    return Cost(median_us(rows[:1], ONE_ROW_CALLS), median_us(batch, BATCH_CALLS) / BATCH,
                len(onnx))
