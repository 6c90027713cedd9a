"""What the worker's web server answers (README "Operating it": the endpoints table and "the
metrics that matter"), read from the real worker process after it decided real traffic
from the real broker: the names, the labels and the values."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import orjson
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ROOT, Run, Worker, consume, send_keyed

N = 30
PARTITIONS = 4


def _samples(worker: Worker) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of ``/metrics`` by sample name: (labels, value)."""
    url = f"http://127.0.0.1:{worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        # Prometheus' text format
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
           **labels: str) -> float:
    matching = [v for found, v in samples.get(name, []) if labels.items() <= found.items()]
    assert matching, f"no sample {name}{labels or ''} in /metrics"
    return sum(matching)


def _until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.2)


def test_health_readiness_liveness_and_metrics_say_what_the_readme_promises(
    run: Run, worker: Worker
) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    valid = [
        orjson.dumps({"transaction_id": f"ep-{i}", "card_id": f"card-{i % 9}",
                      "terminal_id": f"T-{i % 4}", "amount": 5.0 + i,
                      "timestamp": (t0 + timedelta(seconds=i)).isoformat()})
        for i in range(N)
    ]
    invalid = orjson.dumps({"transaction_id": "ep-bad", "card_id": "card-0", "terminal_id": "T",
                            "amount": -1, "timestamp": t0.isoformat()})
    send_keyed(run.topic("transactions"), [*valid[:10], invalid, *valid[10:]])
    decisions = asyncio.run(consume(run.topic("decisions"), until=N, quiet=0.5))
    assert sorted(d["transaction_id"] for d in decisions) == sorted(f"ep-{i}" for i in range(N))
    dead = asyncio.run(consume(run.topic("dlq"), until=1, quiet=0.5))
    assert [d["reason"] for d in dead] == ["amount: must not be negative"]
    current = (ROOT / "models" / "current").read_text().strip()

    # /health: 200 and the detail the README lists, for a worker that holds on nothing.
    status, health = worker.health() or (0, {})
    assert status == 200, health
    assert health["status"] == "ok"
    assert health["redis"] is True
    assert health["faults"] == {}
    assert health["model_version"] == current
    assert health["model_refused"] is None
    assert health["rules_version"] is None and health["rules_refused"] is None  # no rules file
    assert str(health["state"]).startswith("complete"), health["state"]  # whole
    assert health["state_lost_at"] is None
    # /readyz: exactly the README's answer; /livez: alive.
    assert worker.health("/readyz") == (
        200, {"status": "ready", "reasons": {}, "model_version": current}
    )
    assert worker.health("/livez") == (200, {"status": "alive"})

    # /metrics, once the last decision's acknowledgement and the lag have been counted.
    _until(lambda: _value(_samples(worker), "fraud_decisions_total") == N)
    _until(lambda: _value(_samples(worker), "fraud_oldest_undecided_seconds") == 0)
    # The model's series is written by the model poll (FRAUD_MODEL_POLL_SECONDS, 5 s), not
    # at the start: until then it is absent (reported).
    _until(lambda: "fraud_model_info" in _samples(worker), timeout=15)
    samples = _samples(worker)
    by_action = {labels["action"]: v for labels, v in samples["fraud_decisions_total"]}
    assert set(by_action) <= {"approve", "review", "decline"}
    expected = {a: float(sum(d["action"] == a for d in decisions)) for a in by_action}
    assert by_action == expected and sum(by_action.values()) == N
    assert _value(samples, "fraud_duplicate_decisions_total") == 0
    assert _value(samples, "fraud_dead_letters_total", topic=run.topic("transactions"),
                  reason="invalid") == 1
    assert _value(samples, "fraud_dead_letters_total") == 1  # no other reason, no other topic
    assert _value(samples, "fraud_poison_total") == 0
    # Every decision's latency is in it (the dead letter's too, as the code stands: the
    # README says "to its decision"; reported, not asserted either way).
    assert _value(samples, "fraud_event_to_decision_seconds_count") >= N
    assert 0 < _value(samples, "fraud_event_to_decision_seconds_sum") < N * 3_600 * 2
    for stage in ("decode", "redis", "features", "model", "emit"):
        assert _value(samples, "fraud_stage_seconds_count", stage=stage) >= 1, stage
    assert _value(samples, "fraud_batch_size_sum") == N + 1  # the invalid one was in a batch
    assert _value(samples, "fraud_batch_size_count") >= 1
    assert _value(samples, "fraud_model_info", version=current) == 1
    assert [labels for labels, _ in samples["fraud_model_info"]] == [{"version": current}]
    assert "fraud_model_refused_info" not in samples  # nothing refused since the start
    assert all(v == 0 for _, v in samples.get("fraud_faults", []))
    assert _value(samples, "fraud_state_unavailable_total") == 0
    assert _value(samples, "fraud_degraded_decisions_total") == 0
    assert _value(samples, "fraud_state_partial") == 0
    assert abs(time.time() - _value(samples, "fraud_last_decision_timestamp_seconds")) < 120
    assert _value(samples, "fraud_oldest_undecided_seconds") == 0
    lag = {labels["partition"]: v for labels, v in samples["fraud_consumer_lag"]
           if labels["topic"] == run.topic("transactions")}
    assert sorted(lag) == [str(p) for p in range(PARTITIONS)] and set(lag.values()) == {0}
    assert _value(samples, "fraud_gc_pause_seconds_count") >= 0
    assert "fraud_gc_pause_seconds_count" in samples
