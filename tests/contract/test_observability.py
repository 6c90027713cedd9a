"""The Prometheus rules and the Grafana dashboard name only metrics the worker exports.

Pure file checks (no Prometheus, no Grafana): every metric name in the expressions of
ops/prometheus/rules.yml and of ops/grafana/dashboards/fraud.json is one the worker's
registry exports (``service.metrics`` imported, names read from ``prometheus_client``'s
REGISTRY with each type's suffixes), a recording rule of the same file, or ``up``; the
dashboard is valid JSON with a query in every panel; every alert has the annotations an
on-call engineer reads, a runbook section that exists, and promtool unit tests that fire it
and that do not. promtool itself runs in ``make rules``; the real server in
tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

import service.metrics as metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "rules.yml"
RULE_TESTS = sorted((ROOT / "ops" / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "fraud.json"
RUNBOOKS = ROOT / "docs" / "alerts.md"
DATASOURCES = ROOT / "ops" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"

#: What a scrape adds to every target's samples.
SCRAPE_METRICS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

#: The sample names each metric type exposes (prometheus_client, text format 0.0.4).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}

# -- a small PromQL reader: the metric names of an expression ------------------------------

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and",
     "or", "unless", "inf", "nan", "atan2"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MODIFIER = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not functions,
    aggregations, keywords, label names (in ``{}``, ``by (...)``, ``on (...)``), strings,
    durations or Grafana variables (``$job``, ``$__rate_interval``)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = _MODIFIER.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    names = set()
    for match in _NAME.finditer(text):
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def test_the_promql_reader_finds_metrics_and_only_metrics() -> None:
    expr = (
        'sum by (job, le) (rate(fraud_x_bucket{job=~"$job", le!="1"}[$__rate_interval])) '
        '/ on (job) group_left () (fraud_y_total offset 1h or vector(0)) > 1e-3 '
        'and label_replace(up, "kind", "a b", "", "") unless absent(z:recorded:rate5m)'
    )
    assert metric_names(expr) == {"fraud_x_bucket", "fraud_y_total", "up", "z:recorded:rate5m"}


# -- what the worker exports ---------------------------------------------------------------


def _families() -> Iterator[Metric]:
    yield from REGISTRY.collect()
    yield from metrics.GC_PAUSES.collect()  # registered by the running worker (GcPauses.install)


@cache
def exported() -> frozenset[str]:
    names = set(SCRAPE_METRICS)
    for family in _families():
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return frozenset(names)


def test_the_registry_is_read_with_its_suffixes() -> None:
    names = exported()
    for name in ("fraud_decisions_total", "fraud_event_to_decision_seconds_bucket",
                 "fraud_stage_seconds_count", "fraud_consumer_lag", "fraud_model_refused_info",
                 "fraud_gc_pause_seconds_sum", "fraud_redis_cluster_refused_total"):
        assert name in names, name
    assert "fraud_decisions" not in names and "fraud_consumer_lag_total" not in names


# -- the rules -----------------------------------------------------------------------------


@cache
def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("alert") or r["record"])
def test_every_rule_names_exported_metrics(rule: dict[str, Any]) -> None:
    names = metric_names(rule["expr"])
    assert names, "no metric found in the expression"
    unknown = names - exported() - recorded()
    assert not unknown, f"not exported by the worker: {sorted(unknown)}"


def test_recording_rules_are_named_level_metric_operations() -> None:
    for name in recorded():
        level, metric, operations = name.split(":")
        assert level and operations, name
        assert any(e.startswith(metric) for e in exported()), name


@pytest.mark.parametrize("alert", alerts(), ids=lambda r: r["alert"])
def test_every_alert_is_written_for_the_on_call(alert: dict[str, Any]) -> None:
    name = alert["alert"]
    assert re.fullmatch(r"Fraud[A-Z][A-Za-z]+", name)
    assert alert["labels"]["severity"] in {"critical", "warning"}
    notes = alert["annotations"]
    assert set(notes) == {"summary", "description", "runbook_url"}
    assert len(notes["summary"]) <= 160 and "\n" not in notes["summary"]
    assert len(notes["description"]) >= 80
    assert notes["runbook_url"] == f"docs/alerts.md#{name.lower()}"
    headings = re.findall(r"^## (\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    assert name in headings, f"no section '## {name}' in docs/alerts.md"
    assert f"`{name}`" in (ROOT / "README.md").read_text(), "not in the README's alert table"


def test_every_runbook_section_is_an_alert() -> None:
    headings = re.findall(r"^## (\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    assert sorted(headings) == sorted(a["alert"] for a in alerts())


def test_durations_are_only_in_for_and_ranges() -> None:
    """The integration test shrinks every duration of the rules by one factor: a duration
    anywhere else (a threshold in minutes, ``time() - x > 300``) would not shrink."""
    for rule in rules():
        expr = re.sub(r"\[[^\]]*\]|offset\s+\w+", "", rule["expr"])
        assert not re.search(r"\b\d+(ms|s|m|h|d|w|y)\b", expr), rule
        assert "time()" not in expr, rule


@cache
def rule_tests() -> list[dict[str, Any]]:
    loaded = [yaml.safe_load(path.read_text()) for path in RULE_TESTS]
    for path, data in zip(RULE_TESTS, loaded, strict=True):
        assert data["rule_files"] == ["../rules.yml"], path
    return [test for data in loaded for test in data["tests"]]


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in rule_tests():
        for case in test.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - fired == set(), "never fired by a test"
    assert names - quiet == set(), "never shown quiet by a test"


def test_every_recording_rule_is_tested() -> None:
    tested = {
        name for test in rule_tests() for case in test.get("promql_expr_test", [])
        for name in metric_names(case["expr"])
    }
    assert recorded() - tested == set()


# -- the dashboard -------------------------------------------------------------------------


@cache
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found += panel.get("panels", [])  # a collapsed row holds its panels
    return found


def queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in panels() if panel["type"] != "row"
        for target in panel["targets"]
    ]


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    data = dashboard()
    assert data["uid"] and data["title"] and isinstance(data["schemaVersion"], int)
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels():
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]


def test_every_panel_has_a_query_on_the_provisioned_datasource() -> None:
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel.get("title") and panel.get("description"), panel
        assert panel["targets"], f"{panel['title']}: no query"
        assert panel["datasource"]["uid"] == uid, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{panel['title']}: an empty query"
            assert target["datasource"]["uid"] == uid, panel["title"]


def test_every_dashboard_query_names_exported_metrics() -> None:
    for title, expr in queries():
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        unknown = names - exported() - recorded()
        assert not unknown, f"{title}: not exported by the worker: {sorted(unknown)}"


def test_the_dashboard_shows_what_the_operator_needs() -> None:
    used = set().union(*(metric_names(expr) for _, expr in queries()))
    for name in ("fraud_decisions_total", "fraud_event_to_decision_seconds_bucket",
                 "fraud_stage_seconds_sum", "fraud_consumer_lag", "fraud_dead_letters_total",
                 "fraud_degraded_decisions_total", "fraud_partial_state_decisions_total",
                 "fraud_model_info", "fraud_redis_used_memory_bytes",
                 "fraud_oldest_undecided_seconds", "fraud_faults"):
        assert name in used, name


def test_the_dashboard_variables_are_defined() -> None:
    defined = {v["name"] for v in dashboard()["templating"]["list"]}
    used = {
        m for _, expr in queries()
        for m in re.findall(r"\$\{?(\w+)", expr) if not m.startswith("__")
    }
    assert used <= defined, used - defined
