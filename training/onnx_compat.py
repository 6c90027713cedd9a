"""A fix for skl2onnx's HistGradientBoosting converter under protobuf 7.

skl2onnx 1.20 builds ``nodes_missing_value_tracks_true`` with a Python ``False`` for every
leaf (``skl2onnx/common/tree_ensemble.py``, ``add_tree_to_attribute_pairs_hist_gradient_
boosting``). protobuf 7 rejects a bool in an int field (``Expected an int, got a
boolean``); protobuf 6 accepts it with a DeprecationWarning. Pinning protobuf < 7 would
only postpone it, so this wraps the registered converters and casts boolean list
attributes to int before the node is made: the same graph, valid under both versions.
``tests/contract/test_onnx_export.py`` checks the converted model against scikit-learn.
Remove it once skl2onnx casts these itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import skl2onnx._supported_operators  # noqa: F401 - registers the built-in converters
from skl2onnx.common._registration import get_converter, register_converter

__all__ = ["install"]

_HGB = ("SklearnHistGradientBoostingClassifier", "SklearnHistGradientBoostingRegressor")
_installed = False


def _ints(value: object) -> object:
    if isinstance(value, list | tuple) and any(isinstance(x, bool | np.bool_) for x in value):
        return [int(x) for x in value]
    return value


def _bool_safe(name: str) -> None:
    original = get_converter(name)

    # skl2onnx is untyped: its scope, operator and container objects are Any here.
    def convert(scope: Any, operator: Any, container: Any) -> Any:
        add_node = container.add_node

        def add_node_with_ints(*args: object, **attrs: object) -> Any:
            return add_node(*args, **{k: _ints(v) for k, v in attrs.items()})

        container.add_node = add_node_with_ints
        try:
            return original(scope, operator, container)
        finally:
            del container.add_node

    register_converter(name, convert, overwrite=True, options=original.get_allowed_options())


def install() -> None:
    """Wrap the HistGradientBoosting converters (once per process)."""
    global _installed
    if not _installed:
        for name in _HGB:
            _bool_safe(name)
        _installed = True
