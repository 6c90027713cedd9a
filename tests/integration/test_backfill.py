"""fraud-backfill on the real Redis (and Kafka): the state it rebuilds answers a new
transaction with the features the offline replay computes, a second run changes nothing,
nothing is sent to Kafka, invalid records are skipped, and Redis going away mid-run is
waited for."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis import Redis

from fraudcore import FEATURE_NAMES, SPEC, Transaction, compute
from fraudcore.errors import DuplicateConflict
from fraudtools.backfill import Counts, Options, run
from fraudtools.feed import feed
from fraudtools.history import MISKEYED
from fraudtools.producer import TopicNames, send_records
from fraudtools.worker_process import free_port
from service.app import build_store
from service.settings import Settings
from training import generator
from training.dataset import label_events, normalise
from training.replay import replay

from .conftest import BOOTSTRAP, REDIS_URL, ROOT, Run, remove_keys, wait_for_redis

OUTPUTS = ("decisions", "alerts", "dlq")


def history(*, customers: int = 30, terminals: int = 60, days: int = 42, seed: int = 7
            ) -> pd.DataFrame:
    """A small generated history, longer than a card keeps (33 days): trims run too."""
    config = generator.GeneratorConfig(
        customers=customers, terminals=terminals, radius=12.0, days=days,
        start=date(2018, 4, 1), seed=seed, compromised_terminals_per_day=0,
        compromised_customers_per_day=1,
    )
    return normalise(generator.generate(config), source="test")


def settings(r: Run, **values: Any) -> Settings:
    env = {k.removeprefix("FRAUD_").lower(): v for k, v in r.env().items()
           if k.startswith("FRAUD_")}
    return Settings(**{**env, **values})


def snapshot(prefix: str, url: str = REDIS_URL) -> dict[bytes, tuple[bytes, bytes]]:
    """Every key of the prefix: its type and its DUMP (the value, encoding included)."""
    client = Redis.from_url(url)
    try:
        return {
            key: (client.type(key), client.dump(key))  # type: ignore[misc]
            for key in client.scan_iter(match=f"{prefix}:*", count=1000)
        }
    finally:
        client.close()


def probes(frame: pd.DataFrame, *, after: pd.Timedelta) -> list[Transaction]:
    """A new transaction of every card, at its last terminal, ``after`` the history ends."""
    when = (frame["TX_DATETIME"].max() + after).to_pydatetime()
    last = frame.groupby("CUSTOMER_ID")["TERMINAL_ID"].last()
    return [Transaction(f"probe-{card}", card, terminal, 42.5, when)
            for card, terminal in last.items()]


def reference(frame: pd.DataFrame, new: list[Transaction]) -> np.ndarray:
    """The offline features of ``new``, appended to the history (training.replay)."""
    rows = pd.DataFrame({
        "TRANSACTION_ID": [t.transaction_id for t in new],
        "TX_DATETIME": [t.timestamp.isoformat() for t in new],
        "CUSTOMER_ID": [t.card_id for t in new], "TERMINAL_ID": [t.terminal_id for t in new],
        "TX_AMOUNT": [t.amount for t in new], "TX_FRAUD": [0] * len(new),
    })
    both = pd.concat([frame.assign(TX_DATETIME=frame["TX_DATETIME"].map(pd.Timestamp.isoformat)),
                      rows], ignore_index=True)
    offline, _ = replay(normalise(both, source="test"))
    by_id = offline.set_index("TRANSACTION_ID")[list(FEATURE_NAMES)]
    return by_id.loc[[t.transaction_id for t in new]].to_numpy(dtype=np.float32)


def online(s: Settings, new: list[Transaction]) -> np.ndarray:
    """The features of ``new`` from what the store answers (it records them too)."""
    async def go() -> np.ndarray:
        store = build_store(s)
        try:
            answers = await store.exchange(new)
        finally:
            await store.aclose()
        assert not any(isinstance(a, DuplicateConflict) for a in answers)
        assert not any(a.duplicate for a in answers)  # type: ignore[union-attr]
        return np.array([compute(t, a.card, a.terminal)  # type: ignore[union-attr]
                         for t, a in zip(new, answers, strict=True)], dtype=np.float32)

    return asyncio.run(go())


def assert_state_rebuilt(s: Settings, frame: pd.DataFrame, new: list[Transaction]) -> None:
    expected, got = reference(frame, new), online(s, new)
    assert got.shape == (len(new), len(FEATURE_NAMES))
    np.testing.assert_array_equal(got, expected)
    # the history is really there, not just keys: cards' 30 days, terminals' counts, frauds
    names = list(FEATURE_NAMES)
    assert got[:, names.index("tx_count_by_card_30d")].mean() > 10
    assert got[:, names.index("tx_count_by_terminal_7d_delay7d")].max() > 0
    assert got[:, [i for i, n in enumerate(names) if n.startswith("fraud_count_by")]].max() > 0


def cli(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fraudtools.backfill", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


async def end_offsets(topics: list[str]) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)
               or await _partitions(consumer, t)]
        return int(sum((await consumer.end_offsets(tps)).values()))
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer.topics()
    return set(consumer.partitions_for_topic(topic) or ())


async def groups() -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        return {g[0] for g in await admin.list_consumer_groups()}
    finally:
        await admin.close()


# -- file mode ---------------------------------------------------------------------------


def test_file_mode_rebuilds_the_state_and_a_second_run_changes_nothing(
    run: Run, tmp_path: Path
) -> None:
    frame = history()
    frauds = int(frame["TX_FRAUD"].sum())
    assert len(frame) > 1_000 and frauds > 50
    # The user's own column names, mapped as training maps them.
    path = tmp_path / "history.csv"
    frame.rename(columns={"TX_AMOUNT": "amount", "CUSTOMER_ID": "card"}).to_csv(path, index=False)
    env = run.env()
    args = ["--data", str(path), "--columns", "TX_AMOUNT=amount,CUSTOMER_ID=card"]

    first = cli(env, *args, "--json", str(tmp_path / "first.json"))
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "first.json").read_text())
    assert (report["transactions_recorded"], report["duplicates"], report["conflicts"],
            report["labels"], report["invalid"]) == (len(frame), 0, 0, frauds, 0)
    assert report["label_verdicts"].get("checks=match", frauds) == frauds  # every label known
    assert report["events_per_second"] > 0 and report["elapsed_seconds"] > 0
    assert f"{len(frame):,} transactions recorded" in first.stdout
    after_first = snapshot(run.prefix)
    assert len(after_first) > 1_000

    second = cli(env, *args, "--json", str(tmp_path / "second.json"))
    assert second.returncode == 0, second.stderr
    again = json.loads((tmp_path / "second.json").read_text())
    assert (again["transactions_recorded"], again["duplicates"], again["conflicts"],
            again["labels"]) == (0, len(frame), 0, frauds)
    assert snapshot(run.prefix) == after_first  # every key, type and value: the same

    assert_state_rebuilt(settings(run), frame, probes(frame, after=pd.Timedelta(hours=6)))


def test_file_mode_rebuilds_the_state_on_a_redis_cluster(
    run: Run, tmp_path: Path, cluster_url: str
) -> None:
    """The same rebuild through the cluster store (FRAUD_REDIS_MODE=cluster): every
    feature of a probe afterwards equals the offline replay."""
    frame = history(seed=5)
    path = tmp_path / "history.csv"
    frame.to_csv(path, index=False)
    on_cluster = {"FRAUD_REDIS_MODE": "cluster", "FRAUD_REDIS_URL": cluster_url}
    try:
        done = cli(run.env(**on_cluster), "--data", str(path), "--json",
                   str(tmp_path / "report.json"))
        assert done.returncode == 0, done.stderr
        report = json.loads((tmp_path / "report.json").read_text())
        assert (report["transactions_recorded"], report["conflicts"], report["invalid"]) == (
            len(frame), 0, 0)
        assert not snapshot(run.prefix)  # nothing went to the single Redis
        cluster = settings(run, redis_mode="cluster", redis_url=cluster_url)
        assert_state_rebuilt(cluster, frame, probes(frame, after=pd.Timedelta(hours=6)))
    finally:
        remove_keys("cluster", run.prefix)


# -- topic mode --------------------------------------------------------------------------


def test_topic_mode_rebuilds_the_state_and_sends_nothing(run: Run) -> None:
    frame = history(seed=11)
    records = feed(frame, delay_days=SPEC.label_delay_days)
    labels = sum(r.kind == "label" for r in records)
    names = TopicNames(run.topic("transactions"), run.topic("labels"))
    asyncio.run(send_records(records, bootstrap=BOOTSTRAP, topics=names))
    # feed() sends the labels known by the history's end: probe right after it, before any
    # label it left out is known.
    new = probes(frame, after=pd.Timedelta(seconds=1))
    known = label_events(frame, delay_days=SPEC.label_delay_days)["KNOWN_AT"]
    end = frame["TX_DATETIME"].max()
    assert not ((known > end) & (known <= end + pd.Timedelta(seconds=1))).any()

    groups_before = asyncio.run(groups())
    s = settings(run)
    out = io.StringIO()
    counts = asyncio.run(run_backfill(s, out))
    assert (counts.transactions, counts.duplicates, counts.conflicts, counts.labels) == (
        len(frame), 0, 0, labels)
    assert counts.total == len(records) and not counts.invalid
    after_first = snapshot(run.prefix)

    again = asyncio.run(run_backfill(s, out))
    assert (again.transactions, again.duplicates, again.conflicts, again.labels) == (
        0, len(frame), 0, labels)
    assert snapshot(run.prefix) == after_first

    assert_state_rebuilt(s, frame, new)
    assert asyncio.run(end_offsets([run.topic(t) for t in OUTPUTS])) == 0  # nothing sent
    assert not {g for g in asyncio.run(groups()) - groups_before if run.run_id in g}


async def run_backfill(s: Settings, out: io.StringIO) -> Counts:
    return await run(s, Options(progress_seconds=0.5), out=out)


def test_invalid_records_on_the_topics_are_counted_and_skipped(run: Run) -> None:
    t0 = pd.Timestamp("2018-04-01T10:00:00Z")

    def tx(i: int, **changes: Any) -> dict[str, Any]:
        return {"transaction_id": f"tx-{i}", "card_id": f"card-{i % 3}", "terminal_id": "T-1",
                "amount": 10.0 + i, "timestamp": (t0 + timedelta(minutes=i)).isoformat(),
                **changes}

    bad: list[tuple[str, bytes | None, bytes | None]] = [
        ("transactions", b"card-1", b"{not json"),
        ("transactions", b"card-1", None),
        ("transactions", b"card-1", orjson.dumps(tx(90, amount=-5))),
        ("transactions", b"someone-else", orjson.dumps(tx(91))),
        ("labels", b"card-0", orjson.dumps(tx(0))),  # a label without known_at
    ]
    good = [("transactions", tx(i)["card_id"].encode(), orjson.dumps(tx(i))) for i in range(20)]
    good.append(("labels", b"card-0", orjson.dumps(
        {**tx(0), "known_at": (t0 + timedelta(days=7)).isoformat()})))

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
        await producer.start()
        try:
            for role, key, value in [*good[:10], *bad, *good[10:]]:
                await producer.send_and_wait(run.topic(role), value, key=key)
        finally:
            await producer.stop()

    asyncio.run(produce())
    counts = asyncio.run(run_backfill(settings(run), io.StringIO()))
    assert (counts.transactions, counts.labels, counts.conflicts) == (20, 1, 0)
    assert counts.total == len(good) + len(bad)
    tx_topic, label_topic = run.topic("transactions"), run.topic("labels")
    assert sum(counts.invalid.values()) == len(bad)
    assert counts.invalid[f"{tx_topic}: amount: must not be negative"] == 1
    assert counts.invalid[f"{tx_topic}: {MISKEYED}"] == 1
    assert counts.invalid[f"{label_topic}: known_at: missing required field"] == 1
    assert sum(n for reason, n in counts.invalid.items() if "not valid JSON" in reason) == 1
    assert sum(n for reason, n in counts.invalid.items() if "empty message" in reason) == 1
    assert asyncio.run(end_offsets([run.topic(t) for t in OUTPUTS])) == 0


# -- Redis away mid-run ------------------------------------------------------------------


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A redis-server of this test's own that keeps every acknowledged write (AOF, fsync
    always), and a function that kills it and starts it again after a pause."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path),
               "--maxmemory-policy", "noeviction"]
    url = f"redis://127.0.0.1:{port}/0"
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)]

    def wait_up() -> None:
        wait_for_redis(url, timeout=15)

    def outage(seconds: float) -> None:
        processes[-1].send_signal(signal.SIGKILL)
        processes[-1].wait(10)
        time.sleep(seconds)
        processes.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        wait_up()

    wait_up()
    try:
        yield url, outage
    finally:
        processes[-1].terminate()
        processes[-1].wait(10)


def test_redis_going_away_mid_run_is_waited_for_and_nothing_is_skipped(
    run: Run, tmp_path: Path, restartable_redis: tuple[str, Any]
) -> None:
    url, outage = restartable_redis
    frame = history(customers=200, terminals=400, days=30, seed=3)
    path = tmp_path / "history.parquet"
    frame.to_parquet(path, index=False)
    env = run.env(FRAUD_REDIS_URL=url, FRAUD_RETRY_MAX_SECONDS="0.5")
    process = subprocess.Popen(
        [sys.executable, "-m", "fraudtools.backfill", "--data", str(path), "--json",
         str(tmp_path / "report.json"), "--progress-seconds", "0.5"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    client = Redis.from_url(url)
    deadline = time.monotonic() + 60
    while client.dbsize() < 100:  # writing has begun
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    client.close()
    outage(2.0)
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["redis_outages"] >= 1 and report["batches_retried"] >= 1, stderr
    # Every transaction written; the ones the failed attempt had recorded come back as
    # duplicates when the batch is written again.
    assert report["transactions_recorded"] + report["duplicates"] == len(frame)
    assert report["duplicates"] <= 500 * report["batches_retried"]
    assert (report["conflicts"], report["labels"]) == (0, int(frame["TX_FRAUD"].sum()))
    assert "Redis unavailable" in stderr and "Redis answers again after" in stderr
    assert "Redis was unavailable" in stdout
    assert_state_rebuilt(settings(run, redis_url=url), frame,
                         probes(frame, after=pd.Timedelta(hours=1)))
    assert os.environ.get("FRAUD_REDIS_URL", REDIS_URL) != url  # the shared Redis untouched
