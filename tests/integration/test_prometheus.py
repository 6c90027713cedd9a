"""A real Prometheus server (Debian's `prometheus`) scraping the real worker, with the
repository's rules: the target is up, every rule and every dashboard query evaluates on
what the worker exports, no alert is active while it decides, and the alerts fire when it
stops deciding (Redis out of memory on a private redis-server), resolve once it decides
again, and FraudWorkerDown fires once it is stopped.

The rules' durations are production's, minutes. This test runs the same file with every
duration divided by 60 (:func:`shrunk_rules`): `for: 5m` becomes `for: 5s`, `[5m]` becomes
`[5s]`, `offset 1h` becomes `offset 60s` (ranges at least 4 s: four scrapes at 1 s), and the
groups are evaluated every second. Only the `for:` fields and the range selectors and
offsets of the expressions change — the test checks that the expressions are otherwise
identical, and a contract test (test_observability.py) that no duration hides anywhere
else — so metric names, labels, matching and thresholds are the file's own: an alert whose
expression is wrong does not fire here and the test fails. A threshold that is itself a
duration keeps its value (FraudOldestUndecidedTooOld's 60 s): that alert is not waited for.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis import Redis

from fraudtools.worker_process import free_port

from .conftest import ROOT, Run, Worker
from .test_system_faults import _send, _transactions

RULES = ROOT / "ops" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "fraud.json"
FACTOR = 60  # minutes become seconds
RANGE_FLOOR_SECONDS = 4  # a rate needs two samples: four scrapes at 1 s
HOLDING = {"FraudHoldingOnRedis", "FraudNoDecisionsWhileLagging"}

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_RANGE = re.compile(r"\[(\w+)\]")
_OFFSET = re.compile(r"\boffset\s+(\w+)")


def _seconds(duration: str) -> float:
    assert _DURATION.sub("", duration) == "", duration
    return sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(duration))


def _shrink(duration: str, floor: float) -> str:
    ms = round(max(_seconds(duration) / FACTOR, floor) * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _without_durations(expr: str) -> str:
    return _OFFSET.sub("offset", _RANGE.sub("[]", expr))


def shrunk_rules(path: Path) -> dict[str, Any]:
    """The rules of ``path`` with every duration divided by :data:`FACTOR`."""
    data = yaml.safe_load(path.read_text())
    for group in data["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = _shrink(rule["for"], 1)
            expr = _RANGE.sub(lambda m: f"[{_shrink(m[1], RANGE_FLOOR_SECONDS)}]", rule["expr"])
            expr = _OFFSET.sub(lambda m: f"offset {_shrink(m[1], 1)}", expr)
            assert _without_durations(expr) == _without_durations(rule["expr"])
            rule["expr"] = expr
    return data


def test_shrinking_changes_the_durations_only() -> None:
    original = yaml.safe_load(RULES.read_text())["groups"]
    shrunk = shrunk_rules(RULES)["groups"]
    pairs = [(a, b) for g, h in zip(original, shrunk, strict=True)
             for a, b in zip(g["rules"], h["rules"], strict=True)]
    down = next(b for a, b in pairs if a.get("alert") == "FraudNoDecisionsWhileLagging")
    assert down["for"] == "5s" and "[5s]" in down["expr"]
    refused = next(b for a, b in pairs if a.get("alert") == "FraudModelRefused")
    assert "offset 60s" in refused["expr"]
    for a, b in pairs:
        assert {k: v for k, v in a.items() if k not in ("for", "expr")} == {
            k: v for k, v in b.items() if k not in ("for", "expr")
        }
        assert _without_durations(a["expr"]) == _without_durations(b["expr"])


class Prometheus:
    """A Prometheus server of this test's own: a private port, config and storage."""

    def __init__(self, tmp: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("no prometheus binary: apt-get install prometheus (.ci/run does)")
        self.binary = binary
        self.dir = tmp / "prometheus"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.dir / "rules.yml").write_text(yaml.safe_dump(shrunk_rules(RULES), sort_keys=False))
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms",
                       "evaluation_interval": "1s"},
            "rule_files": ["rules.yml"],
            "scrape_configs": [
                {"job_name": "fraud-worker", "static_configs": [{"targets": [target]}]}
            ],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = self.dir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        check = subprocess.run(
            ["promtool", "check", "config", str(self.dir / "prometheus.yml")],
            capture_output=True, text=True,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={self.dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT,
            )
        _until(self.ready, timeout=30, what=lambda: f"Prometheus ready:\n{self.tail()}")
        return self

    def ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.tail()
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                body = json.loads(exc.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def alerts(self, state: str | None = None) -> list[dict[str, Any]]:
        """The active alerts (pending and firing), or those in ``state``."""
        active = self.api("alerts")["alerts"]
        return [a for a in active if state is None or a["state"] == state]

    def firing(self) -> set[str]:
        return {a["labels"]["alertname"] for a in self.alerts("firing")}


def _until(check: Callable[[], object], timeout: float = 60.0,
           what: Callable[[], str] | str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"not reached in {timeout} s: {said}")
        time.sleep(0.25)


def _seen(prometheus: Prometheus) -> dict[str, object]:
    """What the holding alerts read, for a failure's message."""
    exprs = ("fraud_consumer_lag", "increase(fraud_decisions_total[5s])",
             "fraud_last_decision_timestamp_seconds", "fraud_faults",
             "increase(fraud_state_unavailable_total[5s])")
    return {e: [(r["metric"], r["value"][1]) for r in prometheus.query(e)] for e in exprs}


def _dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    panels += [p for row in panels for p in row.get("panels", [])]
    return [(p["title"], t["expr"]) for p in panels if p["type"] != "row" for t in p["targets"]]


def test_prometheus_scrapes_the_worker_and_alerts_when_it_stops_deciding(
    run: Run, private_redis: str, tmp_path: Path
) -> None:
    # Retries at most a second apart: held batches are counted well within the shrunk 5 s
    # window of FraudHoldingOnRedis (production: at most 5 s apart in 5 minutes).
    worker = Worker(
        run.env(FRAUD_REDIS_URL=private_redis, FRAUD_RETRY_MAX_SECONDS="1"), tmp_path / "w.log"
    ).start().wait_ready()
    target = f"127.0.0.1:{worker.web_port}"
    prometheus = Prometheus(tmp_path, target)
    try:
        prometheus.start()
        try:
            _target_up(prometheus, target)
            _deciding(prometheus, run)
            _holding(prometheus, run, Redis.from_url(private_redis), target)
        finally:
            worker.stop()
        # The worker gone: its target is down and FraudWorkerDown fires.
        _until(lambda: "FraudWorkerDown" in prometheus.firing(), timeout=60,
               what=lambda: f"FraudWorkerDown firing; active: {prometheus.alerts()}")
        assert prometheus.value('up{job="fraud-worker"}') == 0
    finally:
        worker.stop()
        prometheus.stop()


def _target_up(prometheus: Prometheus, target: str) -> None:
    def health() -> list[str]:
        return [t["health"] for t in prometheus.api("targets")["activeTargets"]]

    _until(lambda: health() == ["up"], timeout=30, what=lambda: str(prometheus.api("targets")))
    [active] = prometheus.api("targets")["activeTargets"]
    assert active["labels"] == {"instance": target, "job": "fraud-worker"}
    assert prometheus.value('up{job="fraud-worker"}') == 1


def _deciding(prometheus: Prometheus, run: Run) -> None:
    """While the worker decides: every rule evaluates, the recording rules see the
    decisions, every dashboard query is accepted, and no alert is active."""
    # Twice: a counter's first sample is no increase (its series appears at 100 here).
    for sent in (100, 200):
        start = datetime.now(UTC) - timedelta(hours=3) + timedelta(seconds=sent)  # in order
        _send(run, _transactions(100, ids=f"ok{sent}", start=start))
        _until(lambda sent=sent: (prometheus.value("sum(fraud_decisions_total)") or 0) >= sent,
               what=f"{sent} decisions scraped")
    _until(lambda: (prometheus.value("sum(job_action:fraud_decisions:rate5m)") or 0) > 0,
           what="the decision rate recorded")
    time.sleep(3)  # a few more evaluations
    assert prometheus.alerts() == []
    rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
    written = yaml.safe_load(RULES.read_text())["groups"]
    assert len(rules) == sum(len(group["rules"]) for group in written)
    assert [r for r in rules if r["health"] != "ok"] == []
    for title, expr in _dashboard_queries():
        substituted = (expr.replace("$__rate_interval", "5s")
                       .replace("$job", "fraud-worker").replace("$instance", ".+"))
        result = prometheus.query(substituted)  # asserts the server accepts it
        if title.startswith(("Decisions", "Event", "Model in service", "Workers up")):
            assert result, f"{title}: no data for {expr}"


def _holding(prometheus: Prometheus, run: Run, redis: Redis, target: str) -> None:
    """Redis refuses every write: the worker holds, records wait, nothing is decided, the
    alerts fire; memory freed, the held transactions are decided and the alerts resolve."""
    redis.config_set("maxmemory", "1")  # every write refused: OOM (noeviction)
    _send(run, _transactions(3000, ids="held"))
    _until(lambda: prometheus.firing() >= HOLDING, timeout=90,
           what=lambda: f"{HOLDING} firing; active: {prometheus.alerts()}; {_seen(prometheus)}")
    firing = {a["labels"]["alertname"]: a["labels"] for a in prometheus.alerts("firing")}
    assert firing["FraudHoldingOnRedis"]["instance"] == target
    assert firing["FraudHoldingOnRedis"]["severity"] == "critical"
    assert firing["FraudNoDecisionsWhileLagging"]["instance"] == target
    oldest = prometheus.value(f'fraud_oldest_undecided_seconds{{instance="{target}"}}')
    assert oldest is not None and oldest > 0

    redis.config_set("maxmemory", "0")
    _until(lambda: (prometheus.value("sum(fraud_decisions_total)") or 0) >= 3200,
           what="the held transactions decided")
    _until(lambda: not HOLDING & {a["labels"]["alertname"] for a in prometheus.alerts()},
           timeout=60, what=lambda: f"{HOLDING} resolved; active: {prometheus.alerts()}")
