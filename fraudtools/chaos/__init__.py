"""``python -m fraudtools.chaos``: faults injected into the real stack, and what they cost.

Every scenario runs on a *private* Kafka broker and Redis, started through
``stack/kafka.sh`` and ``stack/redis.sh`` on free loopback ports in a directory of their
own (the default stack on 9092/6379 is never touched), with the real worker
(``python -m service``, feature vectors included in its decisions):

1. start the worker and wait until ``/health`` answers;
2. stream the generated transactions paced (400/s), each fraud's label right behind its
   transaction (a label must name a recorded transaction; it counts from its known time);
3. a few seconds into the stream, inject the fault (kill the worker, restart the broker,
   stop Redis, start a second worker, ...) and clear it;
4. read every decision and dead letter back and compare with the offline replay of the
   same stream (``training.replay.replay``): nothing lost, duplicates only as redeliveries
   of the same transaction, and the features of every decision (every copy) equal to an
   uninterrupted run's.

Redis is stopped with ``SHUTDOWN SAVE`` and restarted from its snapshot: a Redis outage,
not a loss of the state (which is rebuilt by replay, a separate procedure). With the
``open`` policy the events decided during the outage are decided on empty history (so
checked against that) and recorded once Redis is back, before anything newer: every other
decision must equal the uninterrupted run.

``python -m fraudtools.chaos`` writes ``reports/chaos.json``, ``reports/chaos.md`` and the
table in ``docs/reliability.md``; ``tests/integration/test_faults.py`` runs the same
scenarios under pytest.

The package, for ``make chaos`` and the tests alike::

    stack     PrivateStack: the private broker and Redis (up, down, restart, SHUTDOWN SAVE)
    stream    the generated stream (a population per partition), its expected features,
              sending and reading it
    faults    FAULTS: each fault's injection and clearing
    scenario  run_fault: one scenario, measured and judged (an Outcome)
    report    reports/chaos.json, reports/chaos.md, the table in docs/reliability.md
    cli       ``python -m fraudtools.chaos`` (``__main__`` runs it)
"""

from __future__ import annotations

from fraudtools.chaos.faults import FAULTS, FLOOD_BAD, OUTAGE, REBALANCE_STAY, Context, Fault
from fraudtools.chaos.scenario import FAULT_AFTER, LIVE_LATENCY, RATE, Outcome, run_fault
from fraudtools.chaos.stack import PrivateStack, StackError
from fraudtools.chaos.stream import chaos_frame, expected_features, partition_of

__all__ = [
    "FAULTS",
    "FLOOD_BAD",
    "FAULT_AFTER",
    "LIVE_LATENCY",
    "OUTAGE",
    "RATE",
    "REBALANCE_STAY",
    "Context",
    "Fault",
    "Outcome",
    "PrivateStack",
    "StackError",
    "chaos_frame",
    "expected_features",
    "partition_of",
    "run_fault",
]
