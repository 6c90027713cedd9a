"""Import boundaries, read from the source with ``ast`` (nothing is imported or executed).

- ``fraudcore`` imports only the standard library and itself, and never reads the clock;
- ``fraudrules`` (the rules, shared by the service and training's backtest) imports only the
  standard library, itself, ``fraudcore``, the expression library (``cel``) and PyYAML;
- ``fraudmodel`` (the served model artifact, shared by the worker and the backtest) imports
  only the standard library, itself, ``fraudcore``, numpy and onnxruntime;
- ``fraudnative`` (the compiled core, shared by the worker and training's replay) imports only
  the standard library, itself, ``fraudcore`` and the extension ``fraudcore_native``;
- ``service`` never imports ``training`` or ``fraudtools``; ``training`` never imports
  ``service``;
- only ``service`` (and ``fraudtools`` and the tests) import faust, redis, aiokafka;
- only ``training`` imports scikit-learn and skl2onnx.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "fraudcore", "fraudrules", "fraudmodel", "fraudnative", "service", "training", "fraudtools",
)
STREAMING = frozenset({"faust", "redis", "aiokafka"})
LEARNING = frozenset({"sklearn", "skl2onnx"})
HEAVY = (
    frozenset({"numpy", "pandas", "onnxruntime", "onnx", "orjson", "pydantic"})
    | STREAMING
    | LEARNING
)
CLOCK_CALLS = frozenset(
    {
        "time.time",
        "time.time_ns",
        "time.monotonic",
        "time.monotonic_ns",
        "time.perf_counter",
        "time.perf_counter_ns",
        "datetime.datetime.now",
        "datetime.datetime.utcnow",
        "datetime.datetime.today",
        "datetime.date.today",
    }
)


@dataclass(frozen=True)
class Import:
    module: str  # the full dotted name ("sklearn.pipeline"; relative ones made absolute)
    where: str  # path:line

    @property
    def top(self) -> str:
        return self.module.split(".")[0]


def _package_of(path: Path) -> str:
    """The dotted package that ``path`` lives in (for relative imports)."""
    return ".".join(path.relative_to(ROOT).parts[:-1])


def imports_of(source: str, *, path: str = "<snippet>", package: str = "") -> Iterator[Import]:
    """Every module that ``source`` imports, at any depth (functions, ``if TYPE_CHECKING``),
    plus ``importlib.import_module("x")`` and ``__import__("x")`` with a literal name."""
    for node in ast.walk(ast.parse(source, filename=path)):
        where = f"{path}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, where)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield Import(module, where)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                yield Import(node.args[0].value, where)


def clock_calls_of(source: str, *, path: str = "<snippet>") -> list[str]:
    """Calls that read the clock, with import aliases resolved
    (``import datetime as dt; dt.datetime.now()``, ``from time import time as t; t()``)."""
    tree = ast.parse(source, filename=path)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:  # import datetime as dt: dt is datetime
                    aliases[alias.asname] = alias.name
                else:  # import os.path binds os
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        parts: list[str] = []
        func = node.func
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        if not isinstance(func, ast.Name):
            continue
        parts.append(aliases.get(func.id, func.id))
        name = ".".join(reversed(parts))
        if name in CLOCK_CALLS:
            found.append(f"{path}:{node.lineno}: {name}()")
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.fixture(scope="module")
def imports() -> dict[str, list[Import]]:
    found: dict[str, list[Import]] = {}
    for package in PACKAGES:
        found[package] = [
            imp
            for path in _sources(package)
            for imp in imports_of(
                path.read_text(), path=str(path.relative_to(ROOT)), package=_package_of(path)
            )
        ]
    return found


def _offending(imps: list[Import], tops: frozenset[str] | set[str]) -> list[str]:
    return sorted(f"{imp.where}: import {imp.module}" for imp in imps if imp.top in tops)


# --- the scanner itself ------------------------------------------------------------------------


def test_scanner_finds_every_kind_of_import() -> None:
    source = """
import numpy as np, os.path
from sklearn.pipeline import Pipeline
from . import sibling
from ..other import thing
import importlib
def later():
    import redis
    importlib.import_module("faust")
    return __import__("aiokafka")
if False:
    from pandas import DataFrame
"""
    modules = {imp.module for imp in imports_of(source, package="training.sub")}
    assert modules == {
        "numpy",
        "os.path",
        "sklearn.pipeline",
        "training.sub",
        "training.other",
        "importlib",
        "redis",
        "faust",
        "aiokafka",
        "pandas",
    }


def test_scanner_finds_clock_calls_through_aliases() -> None:
    source = """
import time
import datetime as dt
from datetime import datetime, date
from time import time_ns as ns
a = time.time()
b = dt.datetime.now(dt.UTC)
c = datetime.utcnow()
d = date.today()
e = ns()
f = datetime.fromisoformat("2024-01-01T00:00:00Z")  # not the clock
g = datetime.fromtimestamp(0)                       # not the clock
"""
    calls = sorted(c.split(": ", 1)[1] for c in clock_calls_of(source))
    assert calls == [
        "datetime.date.today()",
        "datetime.datetime.now()",
        "datetime.datetime.utcnow()",
        "time.time()",
        "time.time_ns()",
    ]


def test_every_package_has_sources_and_the_scan_sees_known_imports(
    imports: dict[str, list[Import]],
) -> None:
    for package in PACKAGES:
        assert _sources(package), f"no Python files found under {package}/"
    # Positive controls: if the scan saw nothing, every rule below would pass vacuously.
    assert {"faust", "redis", "fraudmodel"} <= {imp.top for imp in imports["service"]}
    assert {"sklearn", "skl2onnx", "pandas"} <= {imp.top for imp in imports["training"]}
    assert {"fraudcore"} <= {imp.top for imp in imports["fraudcore"]}
    assert {"fraudcore", "cel", "yaml"} <= {imp.top for imp in imports["fraudrules"]}
    assert {"fraudcore", "numpy", "onnxruntime"} <= {imp.top for imp in imports["fraudmodel"]}


def _beyond(imports: list[Import], package: str, *more: str) -> list[str]:
    """The imports of ``package`` other than the standard library, itself and ``more``."""
    allowed = set(sys.stdlib_module_names) | {"__future__", package, *more}
    return sorted(f"{imp.where}: import {imp.module}" for imp in imports if imp.top not in allowed)


# --- the rules ---------------------------------------------------------------------------------


def test_fraudcore_imports_only_the_standard_library_and_itself(
    imports: dict[str, list[Import]],
) -> None:
    bad = _beyond(imports["fraudcore"], "fraudcore")
    assert not bad, (
        "fraudcore must stay pure standard library (it is shared by the service and training); "
        "move this code to service/ or training/:\n" + "\n".join(bad)
    )


def test_fraudcore_imports_no_heavy_dependency(imports: dict[str, list[Import]]) -> None:
    bad = _offending(imports["fraudcore"], HEAVY)
    assert not bad, "fraudcore imports a third-party library:\n" + "\n".join(bad)


def test_fraudcore_imports_neither_side(imports: dict[str, list[Import]]) -> None:
    bad = _offending(imports["fraudcore"], {"service", "training", "fraudtools"})
    assert not bad, "fraudcore must not depend on the service or training:\n" + "\n".join(bad)


def test_fraudrules_imports_only_fraudcore_cel_and_yaml(imports: dict[str, list[Import]]) -> None:
    bad = _beyond(imports["fraudrules"], "fraudrules", "fraudcore", "cel", "yaml")
    assert not bad, (
        "fraudrules is shared by the service and training's backtest: only the standard "
        "library, fraudcore, the expression library and PyYAML:\n" + "\n".join(bad)
    )


def test_fraudrules_imports_no_side_and_no_heavy_dependency(
    imports: dict[str, list[Import]],
) -> None:
    forbidden = {"service", "training", "fraudtools"} | STREAMING | LEARNING
    bad = _offending(imports["fraudrules"], forbidden)
    assert not bad, "fraudrules imports a side or a heavy dependency:\n" + "\n".join(bad)


def test_fraudmodel_imports_only_fraudcore_numpy_and_onnxruntime(
    imports: dict[str, list[Import]],
) -> None:
    bad = _beyond(imports["fraudmodel"], "fraudmodel", "fraudcore", "numpy", "onnxruntime")
    assert not bad, (
        "fraudmodel is what the worker serves and the backtest scores with: only the standard "
        "library, fraudcore, numpy and onnxruntime:\n" + "\n".join(bad)
    )


def test_fraudnative_imports_only_fraudcore_and_its_extension(
    imports: dict[str, list[Import]],
) -> None:
    bad = _beyond(imports["fraudnative"], "fraudnative", "fraudcore", "fraudcore_native")
    assert not bad, (
        "fraudnative is the compiled core the worker and training's replay share: only the "
        "standard library, fraudcore and fraudcore_native:\n" + "\n".join(bad)
    )
    assert "fraudcore_native" in {imp.top for imp in imports["fraudnative"]}


def test_service_imports_neither_training_nor_fraudtools(imports: dict[str, list[Import]]) -> None:
    bad = _offending(imports["service"], {"training", "fraudtools"})
    assert not bad, (
        "service/ must not import training/ or fraudtools/; share the code through fraudcore:\n"
        + "\n".join(bad)
    )


def test_training_does_not_import_service(imports: dict[str, list[Import]]) -> None:
    bad = _offending(imports["training"], {"service"})
    assert not bad, (
        "training/ must not import service/; share the code through fraudcore:\n" + "\n".join(bad)
    )


@pytest.mark.parametrize("package", ["fraudcore", "training"])
def test_only_the_service_side_imports_kafka_and_redis(
    imports: dict[str, list[Import]], package: str
) -> None:
    bad = _offending(imports[package], STREAMING)
    assert not bad, f"{package}/ imports faust/redis/aiokafka (only service/ may):\n" + "\n".join(
        bad
    )


@pytest.mark.parametrize("package", ["fraudcore", "service", "fraudtools"])
def test_only_training_imports_scikit_learn(imports: dict[str, list[Import]], package: str) -> None:
    bad = _offending(imports[package], LEARNING)
    assert not bad, f"{package}/ imports sklearn/skl2onnx (only training/ may):\n" + "\n".join(bad)


def test_fraudcore_never_reads_the_clock() -> None:
    calls = [
        call
        for path in _sources("fraudcore")
        for call in clock_calls_of(path.read_text(), path=str(path.relative_to(ROOT)))
    ]
    assert not calls, (
        "fraudcore must take time from the event's timestamp (or an injected clock), never "
        "from the wall clock:\n" + "\n".join(calls)
    )
