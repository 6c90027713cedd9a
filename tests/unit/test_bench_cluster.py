"""Pure parts of the bench on a Redis Cluster (fraudtools.bench.redis_nodes and the CPU sums
over its nodes): CLUSTER NODES parsed into roles and slots, keys grouped by slot, the CPU
of primaries and replicas summed, the WAIT a run reports."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

from fraudtools.bench.context import Bench, Watched
from fraudtools.bench.plan import QUICK
from fraudtools.bench.redis_nodes import (
    Node,
    RedisTarget,
    by_slot,
    cpu_groups,
    grouped,
    owner_of,
    parse_cluster_nodes,
    wait_replicas,
)
from fraudtools.bench.report import redis_setup
from fraudtools.bench.system import CpuSample
from fraudtools.bench.throughput import commands_per_decision
from service.cluster import slot_of

# What the local cluster answered (stack/redis-cluster.sh) after two failovers, plus a
# failed node, a hostname, and a slot being migrated.
NODES = """\
1141dc15 127.0.0.1:7103@17103 slave 68dd9af0 0 1796140568641 2 connected
6d8b3532 127.0.0.1:7102@17102 master - 0 1796140568337 7 connected 10923-16383
fa9a6257 127.0.0.1:7105@17105 slave 850574a3 0 1796140568641 8 connected
850574a3 127.0.0.1:7100@17100 myself,master - 0 1796140568000 8 connected 0-5460
184b0512 127.0.0.1:7104@17104,node-4 slave 6d8b3532 0 1796140568641 7 connected
68dd9af0 127.0.0.1:7101@17101 master - 0 17961405686 2 connected 5461-10921 10922 [10922->-6d8b3532]
deadbeef 127.0.0.1:7106@17106 master,fail - 0 1796140568641 3 disconnected
"""


def test_cluster_nodes_are_parsed_into_roles_addresses_and_slots() -> None:
    nodes = parse_cluster_nodes(NODES)
    assert [(n.address, n.role) for n in nodes] == [
        ("127.0.0.1:7100", "primary"), ("127.0.0.1:7101", "primary"),
        ("127.0.0.1:7102", "primary"), ("127.0.0.1:7106", "primary"),
        ("127.0.0.1:7103", "replica"), ("127.0.0.1:7104", "replica"),
        ("127.0.0.1:7105", "replica"),
    ]
    by_address = {n.address: n for n in nodes}
    assert by_address["127.0.0.1:7100"].slots == ((0, 5460),)
    assert by_address["127.0.0.1:7101"].slots == ((5461, 10921), (10922, 10922))  # not the [..]
    assert by_address["127.0.0.1:7104"].primary == "6d8b3532"  # the hostname is dropped
    assert by_address["127.0.0.1:7106"].down and not by_address["127.0.0.1:7100"].down
    assert by_address["127.0.0.1:7103"].name == "redis@127.0.0.1:7103"
    assert sum(hi - lo + 1 for n in nodes if not n.down for lo, hi in n.slots) == 16_384
    assert parse_cluster_nodes("") == []


def test_a_slot_is_owned_by_its_live_primary() -> None:
    nodes = parse_cluster_nodes(NODES)
    assert owner_of(nodes, 0).address == "127.0.0.1:7100"  # type: ignore[union-attr]
    assert owner_of(nodes, 10922).address == "127.0.0.1:7101"  # type: ignore[union-attr]
    assert owner_of(nodes, 16383).address == "127.0.0.1:7102"  # type: ignore[union-attr]
    assert owner_of([n for n in nodes if n.port != 7102], 16383) is None
    single = [Node("127.0.0.1:6379", "single")]
    assert owner_of(single, 1234) == single[0]


def test_keys_are_grouped_by_slot_and_a_hash_tag_keeps_them_together() -> None:
    keys = [b"p:v1:card:{abc}:tx", b"p:v1:card:{abc}:val", b"p:v1:t:{T1}:tx", b"p:v1:lineage"]
    groups = by_slot(keys)
    assert groups[slot_of("p:v1:card:{abc}:tx")] == keys[:2]
    assert sorted(len(g) for g in groups.values()) == [1, 1, 2]
    assert all(slot_of(k.decode()) == s for s, g in groups.items() for k in g)


def test_cpu_is_summed_over_primaries_and_replicas_and_a_gap_shows() -> None:
    nodes = parse_cluster_nodes(NODES)
    groups = cpu_groups(nodes)
    assert groups["redis_primaries"] == [f"redis@127.0.0.1:{p}" for p in (7100, 7101, 7102)]
    assert groups["redis_replicas"] == [f"redis@127.0.0.1:{p}" for p in (7103, 7104, 7105)]
    assert groups["redis"] == groups["redis_primaries"] + groups["redis_replicas"]  # not 7106
    assert cpu_groups([Node("127.0.0.1:6379", "single")]) == {}
    used = {name: 1.0 for name in groups["redis"]} | {"worker": 5.0}
    summed = grouped(used, groups)
    assert (summed["redis"], summed["redis_primaries"], summed["redis_replicas"]) == (6, 3, 3)
    assert summed["worker"] == 5.0
    gone = grouped({**used, "redis@127.0.0.1:7104": math.nan}, groups)
    assert math.isnan(gone["redis"]) and math.isnan(gone["redis_replicas"])
    assert gone["redis_primaries"] == 3.0
    assert math.isnan(grouped({}, groups)["redis"])  # a node never sampled


def test_watched_reports_the_sums_and_every_node_and_counts_no_process_twice() -> None:
    groups = {"redis": ["redis@a", "redis@b"], "redis_primaries": ["redis@a"],
              "redis_replicas": ["redis@b"]}

    def at(t: float, worker: float, a: float, b: float, busy: float) -> CpuSample:
        return CpuSample(t, {"worker": worker, "redis@a": a, "redis@b": b}, busy)

    watched = Watched([(at(0, 0, 0, 0, 0), 0), (at(1, 1, 0.5, 0.1, 1.8), 100),
                       (at(2, 2, 1.0, 0.2, 3.6), 1_000_000)], groups)
    cpu = watched.cpu(["worker", "redis", "kafka"])
    pm = cpu["core_seconds_per_million"]
    assert pm["worker"] == 2.0 and pm["redis"] == 1.2
    assert pm["redis_primaries"] == 1.0 and pm["redis_replicas"] == 0.2
    assert pm["redis@a"] == 1.0 and math.isnan(pm["kafka"])
    assert pm["total"] == 3.2  # worker + the cluster's sum, once
    assert cpu["other_processes_cores"] == round((3.6 - 3.2) / 2, 2)


def test_commands_per_decision_by_role() -> None:
    snaps = [{"primary": 1_000, "replica": 500}, {"primary": 31_000, "replica": 15_500}]
    assert commands_per_decision(snaps, 10_000) == {"primary": 3.0, "replica": 1.5,
                                                    "total": 4.5}
    assert commands_per_decision(snaps[:1], 10_000) == {}


def test_the_wait_a_run_reports_is_the_workers() -> None:
    assert wait_replicas("cluster", {}) == 1
    assert wait_replicas("single", {}) == 0
    assert wait_replicas("cluster", {"FRAUD_REDIS_WAIT_REPLICAS": "0"}) == 0
    assert wait_replicas("single", {"FRAUD_REDIS_WAIT_REPLICAS": "2"}) == 2


def test_a_single_target_needs_no_server_to_know_its_node() -> None:
    target = RedisTarget("single", "redis://127.0.0.1:6390/0")
    assert target.nodes == [Node("127.0.0.1:6390", "single")] == target.primaries
    assert target.groups == {}
    with pytest.raises(ValueError):
        RedisTarget("sentinel", "redis://127.0.0.1:7120")


def _args(reports: Path, **kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"bootstrap": "127.0.0.1:9092", "redis_url": "redis://h:6379/0",
                               "cluster_url": "redis://h:7100", "worker_env": [],
                               "reports": str(reports)}
    return argparse.Namespace(**{**base, **kw})


def test_cluster_mode_gives_the_workers_the_cluster(tmp_path: Path) -> None:
    bench = Bench(_args(tmp_path, redis_mode="cluster", report_name="bench-cluster",
                        worker_env=["FRAUD_REDIS_WAIT_REPLICAS=0"]), QUICK)
    env = bench.isolated("main").env({})
    assert env["FRAUD_REDIS_MODE"] == "cluster" and env["FRAUD_REDIS_URL"] == "redis://h:7100"
    assert env["FRAUD_REDIS_WAIT_REPLICAS"] == "0"
    assert bench.logs.name == "bench-cluster-logs"
    single = Bench(_args(tmp_path), QUICK)  # no redis_mode: e.g. the soak's arguments
    env = single.isolated("main").env({})
    assert "FRAUD_REDIS_MODE" not in env and env["FRAUD_REDIS_URL"] == "redis://h:6379/0"
    assert single.logs.name == "bench-logs"


def test_the_report_says_which_redis_and_its_wait() -> None:
    nodes = [{"address": f"h:{p}", "role": r} for p, r in
             ((7100, "primary"), (7101, "primary"), (7102, "primary"),
              (7103, "replica"), (7104, "replica"), (7105, "replica"))]
    r = {"redis_mode": "cluster", "redis_wait_replicas": 1,
         "stack": {"redis": "h:7100", "redis_nodes": nodes}}
    assert redis_setup(r) == ("a Redis Cluster of 3 primaries and 3 replicas (h:7100), each "
                              "round trip ending with WAIT 1 per primary")
    assert redis_setup({**r, "redis_wait_replicas": 0}).endswith("ending with no WAIT")
    assert redis_setup({"stack": {"redis": "h:6379/0"}}) == "one Redis (h:6379/0)"
