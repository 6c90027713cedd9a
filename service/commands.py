"""The commands of the Redis store, packed by hiredis (C) once, sent as they are.

A :class:`Call` is one packed command and its first key: a single Redis gets a batch's
calls in one write (:mod:`service.state`), a Redis Cluster gets them grouped by the node
owning each key's slot (:mod:`service.cluster`). A script call knows its script, so a
server that lost it (restarted, flushed, a promoted replica) is sent it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import hiredis

__all__ = ["Call", "Script", "command", "pack"]


def pack(*args: str | int | bytes) -> bytes:
    """One command in Redis' protocol, packed in C."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type] # stub: a 1-tuple
    return packed


@dataclass(frozen=True, slots=True)
class Script:
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())  # noqa: S324 - Redis' id

    def call(self, keys: Sequence[str], args: Sequence[str | bytes]) -> Call:
        return Call(pack("EVALSHA", self.sha, len(keys), *keys, *args), keys[0], self)


class Call(NamedTuple):
    """One packed command; ``key``, its first key (a Redis Cluster routes by its slot);
    ``script`` when it is an EVALSHA (loaded again on NOSCRIPT). A named tuple: three a
    transaction, and a frozen dataclass cost ~1 µs each to make."""

    packed: bytes
    key: str
    script: Script | None = None


def command(name: str, key: str, *args: str | int | bytes) -> Call:
    """A plain command on one key."""
    return Call(pack(name, key, *args), key)
