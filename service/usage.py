"""What the worker says about itself: ``fraud-worker --help``, and the settings it logs at
start. Both are generated from :class:`service.settings.Settings` (each field's default and
description), so a new setting appears in both; a secret's value never does.
"""

from __future__ import annotations

import textwrap
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from service.settings import Settings

__all__ = [
    "HELP_FLAGS",
    "help_text",
    "redis_urls_without_password",
    "settings_summary",
    "summary_text",
    "wants_help",
]

#: ``-h`` is the help, as everywhere (Faust's worker took it for ``--web-host``).
HELP_FLAGS = frozenset({"-h", "--help"})

_WIDTH = 88
_ENV_PREFIX = "FRAUD_"

_INTRO = """\
usage: fraud-worker [OPTIONS]
       python -m service [OPTIONS]

Runs the fraud-scoring worker: it reads card transactions and fraud labels from Kafka,
keeps each card's and terminal's recent history in Redis, scores every transaction with
the ONNX model that FRAUD_MODEL_DIR/current names, applies the analysts' rules and their
allow and block lists (FRAUD_RULES_FILE; the lists' changes come on FRAUD_TOPIC_LISTS and
are kept in Redis), and writes one decision per transaction (and the alerts, and the dead
letters) back to Kafka. Its web server answers /health and
/metrics. It runs until stopped (SIGTERM or Ctrl-C).

It is configured by environment variables: the FRAUD_* settings below, each with its
default. A setting that is not valid, a model that does not load or a Redis that does not
answer stops it at once with a message saying why.

Options (Faust's worker options that still apply; each one overrides a setting):
  -h, --help          print this help and exit
  --web-port PORT     instead of FRAUD_WEB_PORT
  --web-bind ADDRESS  the address the web server listens on, instead of FRAUD_WEB_HOST
  --loglevel LEVEL    crit, error, warn, info or debug, instead of FRAUD_LOG_LEVEL
  --logfile PATH      write the log to PATH instead of standard error

Settings (environment variables):
"""


def wants_help(argv: Sequence[str]) -> bool:
    """``-h`` or ``--help`` among the command-line arguments (before a ``--``)."""
    for arg in argv:
        if arg == "--":
            return False
        if arg in HELP_FLAGS:
            return True
    return False


def _is_secret(field: FieldInfo) -> bool:
    annotation = field.annotation
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def _choices(field: FieldInfo) -> tuple[str, ...]:
    """The values of a ``Literal`` setting (also inside ``X | None``)."""
    annotation = field.annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(candidate) is typing.Literal:
            return tuple(str(v) for v in typing.get_args(candidate))
    return ()


def _bounds(field: FieldInfo) -> str:
    words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
    found = [
        f"{word} {getattr(rule, name)}"
        for rule in field.metadata
        for name, word in words.items()
        if getattr(rule, name, None) is not None
    ]
    return ", ".join(found)


def _shown(value: object) -> str:
    """A value as it would be written in the environment."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _help_entry(name: str, field: FieldInfo) -> str:
    env = f"{_ENV_PREFIX}{name.upper()}"
    if not _is_secret(field):
        head = f"  {env}={_shown(field.default)}"
    elif field.default is None:
        head = f"  {env}=unset  (a secret)"
    else:
        head = f"  {env}  (a secret: its default is not shown)"
    notes = [" | ".join(_choices(field)), _bounds(field)]
    if any(notes):
        head += f"  ({'; '.join(n for n in notes if n)})"
    body = textwrap.fill(
        field.description or "", width=_WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6
    )
    return f"{head}\n{body}" if body else head


def help_text() -> str:
    """The whole ``--help``: what the command does, its options, every setting."""
    entries = [_help_entry(name, field) for name, field in Settings.model_fields.items()]
    return _INTRO + "\n".join(entries) + "\n"


# --- the settings summary logged at start -------------------------------------------------

_HIDDEN = "***"


def _url_without_password(url: str) -> str:
    """One Redis URL with its password (in the user part or the query) replaced."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{_HIDDEN}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, _HIDDEN if "password" in k.lower() else v) for k, v in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redis_urls_without_password(urls: str) -> str:
    """``FRAUD_REDIS_URL`` (one URL, or several comma-separated) with no password in it."""
    return ",".join(_url_without_password(u.strip()) for u in urls.split(","))


def settings_summary(settings: Settings) -> dict[str, Any]:
    """Every setting's value, for the start-up line: the Redis URL without its password,
    the other secrets as ``***`` when set (None when not)."""
    summary: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            value = redis_urls_without_password(secret) if name == "redis_url" else _HIDDEN
        elif isinstance(value, Path):
            value = str(value)
        summary[name] = value
    return summary


def summary_text(summary: dict[str, Any]) -> str:
    """``name=value`` pairs, the way the environment would write them."""
    return " ".join(f"{name}={_shown(value)}" for name, value in summary.items())
