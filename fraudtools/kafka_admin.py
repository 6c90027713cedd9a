"""Topics and consumer groups of a run: the demo, the benchmark, the soak, the fault runs
and the integration tests each make their own and remove them at the end.

(``stack/topics.py`` creates the service's standing topics at ``make up``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

__all__ = [
    "LOG_APPEND_TIME",
    "PARTITIONS",
    "KafkaNotReady",
    "create_topics",
    "delete_groups",
    "delete_topics",
    "group_members",
    "list_topics",
]

PARTITIONS = 4
#: Topic config: the broker stamps each record with its own clock when it appends it (a
#: producer's ack, and a consumer's record, then carry that time, timestamp type 1).
LOG_APPEND_TIME: Mapping[str, str] = {"message.timestamp.type": "LogAppendTime"}


class KafkaNotReady(RuntimeError):
    """The broker did not get topics ready in time."""


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    return admin


async def create_topics(bootstrap: str, names: Sequence[str], *,
                        partitions: int = PARTITIONS, config: Mapping[str, str] | None = None,
                        **client: Any) -> None:
    """Create the topics (4 partitions unless ``partitions``) and wait until every partition
    has a leader. ``config``: topic configs for every one of them (e.g.
    :data:`LOG_APPEND_TIME`), the broker's defaults otherwise. ``client``: aiokafka options
    for a secured broker (``security_protocol``, ...)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000, **client)
    await admin.start()
    configs = dict(config) if config else None
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1, topic_configs=configs)
             for n in names]
        )
    finally:
        await admin.close()
    # Wait until every partition has a leader: a send before that is retried, noisily.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client)
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - no public way
            known = consumer._client.cluster  # noqa: SLF001
            leaders = [
                known.leader_for_partition(TopicPartition(n, p))
                for n in names
                for p in range(partitions)
            ]
            if all(leader is not None and leader >= 0 for leader in leaders):
                return
            if time.monotonic() > deadline:
                raise KafkaNotReady(f"topics {list(names)} have no leader after 30 s")
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def list_topics(bootstrap: str) -> list[str]:
    admin = await _admin(bootstrap)
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    if not names:
        return
    admin = await _admin(bootstrap)
    try:
        await admin.delete_topics(list(names))
    finally:
        await admin.close()


async def delete_groups(bootstrap: str, groups: Sequence[str]) -> None:
    """Remove (empty) consumer groups; best effort."""
    from aiokafka.protocol.admin import DeleteGroupsRequest

    admin = await _admin(bootstrap)
    try:
        for group in groups:
            with contextlib.suppress(Exception):
                node = await admin.find_coordinator(group)
                await admin._send_request(DeleteGroupsRequest([group]), node)  # noqa: SLF001
    finally:
        await admin.close()


async def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, number of members) of a consumer group."""
    admin = await _admin(bootstrap)
    try:
        [response] = await admin.describe_consumer_groups([group])
        described = response.groups[0]
        return str(described[2]), len(described[5])
    finally:
        await admin.close()
