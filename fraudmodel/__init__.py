"""The model artifact as it is served, shared by the worker and training's backtest.

::

    model       load_model, Model.score, current_version: models/<version>/ checked and scored
    reasons     load_explainer, Explainer.explain, top_reasons: what explains a score
    runtime     session: onnxruntime as the worker runs it (one thread, no spinning)

Imports the standard library, ``fraudcore``, numpy and onnxruntime only (never ``service``,
``training``, scikit-learn or the streaming libraries: ``tests/contract/test_boundaries.py``).
"""

from fraudmodel.model import Model, current_version, load_current, load_model
from fraudmodel.reasons import Explainer, Reason, load_explainer, top_reasons
from fraudmodel.runtime import session

__all__ = [
    "Explainer",
    "Model",
    "Reason",
    "current_version",
    "load_current",
    "load_explainer",
    "load_model",
    "session",
    "top_reasons",
]
