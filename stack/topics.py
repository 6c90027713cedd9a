"""Create the service's Kafka topics with explicit partition counts, if missing.

Standalone ops script (the broker has auto.create.topics.enable=false):

    .venv/bin/python stack/topics.py

Env: FRAUD_KAFKA_BOOTSTRAP (127.0.0.1:9092), FRAUD_PARTITIONS (4), and the topic names
FRAUD_TOPIC_TRANSACTIONS, FRAUD_TOPIC_LABELS, FRAUD_TOPIC_DECISIONS, FRAUD_TOPIC_ALERTS,
FRAUD_TOPIC_DLQ, FRAUD_TOPIC_DECISION_LOG (kept 90 days: it is what a model is retrained on,
docs/decision-log.md). Idempotent: existing topics are left as they are (a differing partition
count is reported, never changed). Exit status 1 if a topic could not be created.
"""

from __future__ import annotations

import asyncio
import os
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

# env var -> default topic name
TOPIC_ENV = {
    "FRAUD_TOPIC_TRANSACTIONS": "transactions",
    "FRAUD_TOPIC_LABELS": "fraud-labels",
    "FRAUD_TOPIC_DECISIONS": "decisions",
    "FRAUD_TOPIC_ALERTS": "fraud-alerts",
    "FRAUD_TOPIC_DLQ": "transactions-dlq",
    "FRAUD_TOPIC_DECISION_LOG": "fraud-decision-log",
}
# Topic settings beyond the broker's defaults (7 days' retention), by env var.
RETENTION_DAYS = {"FRAUD_TOPIC_DECISION_LOG": 90}
DEFAULT_PARTITIONS = 4  # keep in step with docker-compose.yml's topics service
TOPIC_ALREADY_EXISTS = 36  # Kafka error code: fine, another run created it meanwhile


def topic_names() -> list[str]:
    return [os.environ.get(var) or default for var, default in TOPIC_ENV.items()]


def topic_configs() -> dict[str, dict[str, str]]:
    """The topics created with settings of their own (name -> settings)."""
    return {
        os.environ.get(var) or TOPIC_ENV[var]: {"retention.ms": str(days * 86_400_000)}
        for var, days in RETENTION_DAYS.items()
    }


async def ensure_topics(bootstrap: str, names: list[str], partitions: int) -> list[str]:
    """Create the missing topics; return the names actually created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="fraud-stack-topics", request_timeout_ms=30000
    )
    await admin.start()
    try:
        existing = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
        for name in names:
            if name in existing and existing[name] != partitions:
                print(f"note: {name} exists with {existing[name]} partitions (wanted {partitions})")
        missing = [n for n in names if n not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(n, num_partitions=partitions, replication_factor=1,
                         topic_configs=topic_configs().get(n, {}))
                for n in missing
            ]
        )
        created, failed = [], []
        for topic, code, *rest in response.topic_errors:
            if code == 0:
                created.append(topic)
            elif code != TOPIC_ALREADY_EXISTS:
                failed.append(f"{topic}: error {code} {rest[0] if rest else ''}".strip())
        if failed:
            raise RuntimeError("could not create " + "; ".join(failed))
        return created
    finally:
        await admin.close()


def main() -> int:
    bootstrap = os.environ.get("FRAUD_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    partitions = int(os.environ.get("FRAUD_PARTITIONS", DEFAULT_PARTITIONS))
    names = topic_names()
    try:
        created = asyncio.run(ensure_topics(bootstrap, names, partitions))
    except (KafkaError, OSError, RuntimeError) as exc:
        print(f"topics.py: {bootstrap}: {exc!r} (is Kafka up? make kafka-up)", file=sys.stderr)
        return 1
    for name in created:
        print(f"created {name} ({partitions} partitions)")
    if not created:
        print(f"all {len(names)} topics present on {bootstrap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
