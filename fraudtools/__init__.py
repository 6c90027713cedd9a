"""Tools around the stream, by purpose.

The user's tools (they talk to Kafka as any client would: aiokafka, JSON; data from
``training``'s generator and CSV import)::

    producer      fraud-produce: stream transactions and labels to Kafka
    tail          fraud-tail: follow the alerts
    demo          make demo: the live stream for a minute, with a summary
    feed          transactions and label events as Kafka records, in event-time order
    lists         make lists: add, remove and show allow and block list entries
    backfill      fraud-backfill: rebuild the feature state in Redis from history

The measuring harnesses (they start the real worker on names of their own)::

    bench/        make bench: speed, latency, memory and cost (a module per phase)
    soak.py       make soak: a steady rate for a long time, on the bench's machinery
    chaos/        make chaos and tests/integration/test_faults.py: faults on a private stack

Shared by both::

    isolated      IsolatedWorker: the environment of a worker with its own topics, group
                  and Redis key prefix
    worker_process  the worker as a separate process (``python -m service``)
    kafka_admin   a run's topics and consumer groups
    audit         make audit: pip-audit over the pinned packages

The harnesses import ``service`` for its key layout (:mod:`service.keys`) and, in the
in-process benchmarks, its batch path; of the user's tools, ``backfill`` and ``lists``
import it too, to write Redis exactly as the worker does (its store, its card-key hashing).
"""
