"""The run's Redis: one server (``--redis-mode single``) or every node of a Redis Cluster
(``--redis-mode cluster``), for what the bench does to Redis itself rather than through
the worker: each node's pid for its CPU time, the used memory, the commands processed, the
keys of the run's prefix (scanned node by node) and their removal.

A cluster's nodes come from ``CLUSTER NODES`` of a seed (:func:`parse_cluster_nodes`);
each node's pid from its own ``INFO server`` (``process_id``). Primaries and replicas are
both measured: a replica applies every write of its primary. Keys are scanned on each
primary (a ``SCAN`` sees one node's keys only) and removed there one slot at a time (a
multi-key ``UNLINK`` must stay in one slot).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from redis import Redis
from redis.exceptions import RedisError

from fraudtools.bench import system
from service.cluster import slot_of

__all__ = [
    "MODES",
    "Node",
    "RedisTarget",
    "by_slot",
    "cpu_groups",
    "grouped",
    "owner_of",
    "parse_cluster_nodes",
    "wait_replicas",
]

MODES = ("single", "cluster")
#: Flags of a node that cannot be asked anything (it has failed, or is not known yet).
_DOWN = frozenset({"fail", "fail?", "noaddr", "handshake"})


@dataclass(frozen=True, slots=True)
class Node:
    """One Redis server: ``role`` "single", "primary" or "replica"; ``slots`` the slot
    ranges a primary serves (inclusive); ``primary`` the node id a replica follows."""

    address: str  # host:port
    role: str
    node_id: str = ""
    primary: str = ""
    slots: tuple[tuple[int, int], ...] = ()
    down: bool = False

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    @property
    def name(self) -> str:
        """Its name among the processes whose CPU is sampled: ``redis`` for one server,
        ``redis@host:port`` for a node of a cluster."""
        return "redis" if self.role == "single" else f"redis@{self.address}"


def _slots(fields: Sequence[str]) -> tuple[tuple[int, int], ...]:
    out = []
    for item in fields:
        if item.startswith("["):  # a slot being migrated or imported: still the old owner's
            continue
        low, _, high = item.partition("-")
        out.append((int(low), int(high or low)))
    return tuple(out)


def parse_cluster_nodes(text: str) -> list[Node]:
    """The nodes of a ``CLUSTER NODES`` reply, primaries first, then by address.

    A line: ``<id> <ip:port@cport[,hostname]> <flags> <primary id or -> <ping-sent>
    <pong-recv> <config-epoch> <link-state> <slot> <slot> ...``."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        node_id, where, flags, primary = fields[:4]
        flag = set(flags.split(","))
        role = "primary" if "master" in flag else "replica" if "slave" in flag else "unknown"
        address = where.split("@", 1)[0].split(",", 1)[0]
        nodes.append(Node(
            address=address, role=role, node_id=node_id,
            primary="" if primary == "-" else primary,
            slots=_slots(fields[8:]) if role == "primary" else (),
            down=bool(flag & _DOWN) or fields[7] != "connected" or address.startswith(":"),
        ))
    order = {"primary": 0, "replica": 1}
    return sorted(nodes, key=lambda n: (order.get(n.role, 2), n.host, n.port))


def owner_of(nodes: Iterable[Node], slot: int) -> Node | None:
    """The live primary serving ``slot``."""
    for node in nodes:
        if node.role in ("primary", "single") and not node.down and (
            node.role == "single" or any(lo <= slot <= hi for lo, hi in node.slots)
        ):
            return node
    return None


def by_slot(keys: Iterable[bytes]) -> dict[int, list[bytes]]:
    """Keys grouped by their cluster slot (one multi-key command per group)."""
    groups: dict[int, list[bytes]] = {}
    for key in keys:
        groups.setdefault(slot_of(key.decode()), []).append(key)
    return groups


def cpu_groups(nodes: Iterable[Node]) -> dict[str, list[str]]:
    """The sums reported for a cluster: ``redis`` (every live node), ``redis_primaries``
    and ``redis_replicas``; none for one server (``redis`` is its own process)."""
    nodes = [n for n in nodes if n.role in ("primary", "replica") and not n.down]
    if not nodes:
        return {}
    return {
        "redis": [n.name for n in nodes],
        "redis_primaries": [n.name for n in nodes if n.role == "primary"],
        "redis_replicas": [n.name for n in nodes if n.role == "replica"],
    }


def grouped(values: Mapping[str, float], groups: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """``values`` (per process) with each group's sum added; a member that is missing or
    NaN (its process is gone) makes the sum NaN: shown as missing, never as too low."""
    out = dict(values)
    for name, members in groups.items():
        out[name] = math.fsum(values.get(m, math.nan) for m in members) if members else 0.0
    return out


def wait_replicas(mode: str, worker_env: Mapping[str, str]) -> int:
    """The replicas the worker's round trips wait for: ``FRAUD_REDIS_WAIT_REPLICAS`` of
    ``--worker-env``, else the service's default (1 in cluster mode, 0 on one Redis;
    ``Settings.wait_replicas``)."""
    given = worker_env.get("FRAUD_REDIS_WAIT_REPLICAS")
    return int(given) if given not in (None, "") else (0 if mode == "single" else 1)


class RedisTarget:
    """The Redis of a run: ``url`` is one server (single) or seed nodes, comma-separated
    (cluster). Nothing is contacted until a method asks; :meth:`refresh` re-reads a
    cluster's nodes (after a failover they change roles)."""

    def __init__(self, mode: str, url: str) -> None:
        if mode not in MODES:
            raise ValueError(f"redis mode {mode!r}: choose from {', '.join(MODES)}")
        self.mode, self.url = mode, url
        self.seeds: list[SplitResult] = [urlsplit(u.strip()) for u in url.split(",") if u.strip()]
        first = self.seeds[0]
        self._nodes: list[Node] | None = None
        if mode == "single":
            self._nodes = [Node(f"{first.hostname}:{first.port or 6379}", "single")]

    # ---------------------------------------------------------------- nodes
    @property
    def nodes(self) -> list[Node]:
        if self._nodes is None:
            self.refresh()
        assert self._nodes is not None  # noqa: S101 - set by refresh
        return self._nodes

    def refresh(self) -> list[Node]:
        if self.mode == "single":
            return self.nodes
        problems = []
        for seed in self.seeds:
            try:
                seed_client = self._connect(seed.hostname or "", seed.port or 6379)
                # the reply as Redis sends it (redis-py would parse it into a dict)
                seed_client.set_response_callback("CLUSTER NODES", lambda reply, **_: reply)
                with contextlib.closing(seed_client):
                    text = seed_client.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]
            except RedisError as exc:
                problems.append(f"{seed.hostname}:{seed.port}: {exc}")
                continue
            self._nodes = parse_cluster_nodes(text.decode() if isinstance(text, bytes) else text)
            return self._nodes
        raise RedisError(f"no seed node answered CLUSTER NODES ({'; '.join(problems)})")

    @property
    def primaries(self) -> list[Node]:
        return [n for n in self.nodes if n.role in ("single", "primary") and not n.down]

    @property
    def groups(self) -> dict[str, list[str]]:
        return cpu_groups(self.nodes)

    def describe(self) -> list[dict[str, Any]]:
        """The nodes for the report: address, role, slots served, down."""
        return [{"address": n.address, "role": n.role,
                 "slots": sum(high - low + 1 for low, high in n.slots), "down": n.down}
                for n in self.nodes]

    # ---------------------------------------------------------------- clients
    def _connect(self, host: str, port: int, timeout: float = 10) -> Redis:
        first = self.seeds[0]
        return Redis(host=host, port=port, socket_timeout=timeout,
                     username=unquote(first.username) if first.username else None,
                     password=unquote(first.password) if first.password else None,
                     ssl=first.scheme == "rediss")

    def client(self, node: Node, timeout: float = 10) -> Redis:
        """A client of ``node`` alone (one server: from the URL, its database included)."""
        if node.role == "single":
            return Redis.from_url(self.url, socket_timeout=timeout)
        return self._connect(node.host, node.port, timeout)

    @contextlib.contextmanager
    def primary_clients(self) -> Iterator[list[tuple[Node, Redis]]]:
        clients = [(n, self.client(n)) for n in self.primaries]
        try:
            yield clients
        finally:
            for _, c in clients:
                c.close()

    def client_for(self, key: str) -> Redis:
        """A client of the primary holding ``key``."""
        node = owner_of(self.nodes, slot_of(key))
        if node is None:
            raise RedisError(f"no live primary serves the slot of {key!r}")
        return self.client(node)

    def _each(self, nodes: Sequence[Node], section: str) -> list[tuple[Node, dict[str, Any]]]:
        out = []
        for node in nodes:
            with contextlib.closing(self.client(node, timeout=5)) as c:
                out.append((node, dict(c.info(section))))
        return out

    # ---------------------------------------------------------------- figures
    def info_server(self) -> dict[str, Any]:
        """``INFO server`` of the first live primary (its version; the pid of one server)."""
        return self._each(self.primaries[:1], "server")[0][1]

    def pids(self, given: int | None = None) -> tuple[dict[str, int], list[str]]:
        """Each node's pid by its name (:attr:`Node.name`), from its ``INFO server``; a pid
        that is not a local ``redis-server`` is looked for by the node's port. ``given``
        (``--redis-pid``) is the one server's. And what could not be found."""
        pids: dict[str, int] = {}
        missing = []
        for node in self.nodes:
            if node.down:
                missing.append(f"{node.address} ({node.role}, down)")
                continue
            pid: int | None = given if node.role == "single" else None
            if pid is None:
                try:
                    pid = int(self._each([node], "server")[0][1].get("process_id") or 0)
                except RedisError:
                    pid = 0
            comm = Path(f"/proc/{pid}/comm")
            if not (pid and comm.exists() and comm.read_text().startswith("redis")):
                pid = system.listening_pid(node.port)  # e.g. a container: not our pid space
            if pid:
                pids[node.name] = pid
            else:
                missing.append(f"{node.address} ({node.role})")
        return pids, missing

    def used_memory(self) -> int:
        """``used_memory`` summed over the primaries (a replica holds a copy)."""
        return sum(int(info["used_memory"]) for _, info in self._each(self.primaries, "memory"))

    def commands(self) -> dict[str, int]:
        """``total_commands_processed`` so far, summed by role (every client's commands)."""
        out: dict[str, int] = {}
        live = [n for n in self.nodes if not n.down]
        for node, info in self._each(live, "stats"):
            out[node.role] = out.get(node.role, 0) + int(info["total_commands_processed"])
        return out

    # ---------------------------------------------------------------- keys
    def delete_prefix(self, prefix: str) -> int:
        """Remove every key ``<prefix>:*`` on every primary, one slot at a time; the count."""
        if self.mode == "cluster":
            self.refresh()
        removed = 0
        with self.primary_clients() as clients:
            for node, client in clients:
                batch: list[bytes] = []
                for key in client.scan_iter(match=f"{prefix}:*", count=5000):
                    batch.append(key)
                    if len(batch) >= 5000:
                        removed += self._unlink(node, client, batch)
                        batch = []
                removed += self._unlink(node, client, batch)
        return removed

    @staticmethod
    def _unlink(node: Node, client: Redis, keys: list[bytes]) -> int:
        if not keys:
            return 0
        if node.role == "single":
            return int(client.unlink(*keys))
        pipe = client.pipeline(transaction=False)
        for same_slot in by_slot(keys).values():
            pipe.unlink(*same_slot)
        return sum(r for r in pipe.execute(raise_on_error=False) if isinstance(r, int))
