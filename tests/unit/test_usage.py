"""``fraud-worker --help`` is the project's own (every FRAUD_* setting, its default and
meaning; no secret), and the settings logged at start hide every secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from service import app, usage
from service.settings import DEVELOPMENT_CARD_KEY_SECRET, Settings, log_format_alone

ROOT = Path(__file__).resolve().parents[2]


def test_help_is_asked_with_h_or_help_anywhere_before_a_double_dash() -> None:
    assert usage.wants_help(["-h"])
    assert usage.wants_help(["--web-port", "6067", "--help"])
    assert not usage.wants_help(["--web-port", "6067"])
    assert not usage.wants_help(["--", "-h"])


def test_every_setting_has_a_meaning() -> None:
    undescribed = [n for n, f in Settings.model_fields.items() if not (f.description or "").strip()]
    assert undescribed == []


def test_help_lists_every_setting_with_its_default_and_meaning() -> None:
    text = usage.help_text()
    for name, field in Settings.model_fields.items():
        env = f"FRAUD_{name.upper()}"
        [entry] = [line for line in text.splitlines() if line.startswith(f"  {env}")]
        if isinstance(field.default, SecretStr):
            assert entry == f"  {env}  (a secret: its default is not shown)"
        assert (field.description or "").split()[0] in text
    assert "  FRAUD_BATCH_SIZE=500  (at least 1)\n      most events in one micro-batch" in text
    assert "  FRAUD_LOG_FORMAT=text  (text | json)" in text
    assert "  FRAUD_WEB_HOST=127.0.0.1\n" in text
    assert "  FRAUD_INCLUDE_FEATURES=false\n" in text
    assert "  FRAUD_KAFKA_SASL_PASSWORD=unset  (a secret)\n" in text
    assert "  FRAUD_MAX_FUTURE_SECONDS=3600  (more than 0)\n" in text
    assert "  FRAUD_TOPIC_LISTS=fraud-lists\n      changes of the allow and block lists" in text
    assert "  FRAUD_LISTS_POLL_SECONDS=1  (more than 0)\n" in text
    assert "  FRAUD_LISTS_MAX_ENTRIES=100000  (at least 1)\n" in text
    # No secret's default: the development card-key secret, the Redis URL.
    assert DEVELOPMENT_CARD_KEY_SECRET not in text
    assert "redis://127.0.0.1" not in text
    assert max(len(line) for line in text.splitlines()) <= 100


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "service", "--help"],
    [str(Path(sys.executable).parent / "fraud-worker"), "-h"],
])
def test_the_command_prints_the_project_s_help_and_exits_0(command: list[str]) -> None:
    # Nothing else is needed: no model, no Redis, no broker; a setting that is not valid
    # does not stop the help either.
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "FRAUD_PARTITIONS": "not a number"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == usage.help_text()
    assert done.stdout.startswith("usage: fraud-worker")
    assert "environment variables" in done.stdout
    assert "Canonical host name" not in done.stdout  # Faust's generic worker help
    assert done.stderr == ""


def test_the_summary_shows_every_setting_and_no_secret() -> None:
    s = Settings(
        env="development",
        redis_mode="cluster",
        redis_url=SecretStr("redis://app:redis-pw@10.0.0.1:6379/0,redis://10.0.0.2:6379"),
        card_key_secret=SecretStr("card-key-of-our-own"),
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="fraud",
        kafka_sasl_password=SecretStr("kafka-pw"),
        redis_sentinel_password=None,
    )
    summary = usage.settings_summary(s)
    assert list(summary) == list(Settings.model_fields)
    assert summary["redis_url"] == "redis://app:***@10.0.0.1:6379/0,redis://10.0.0.2:6379"
    assert summary["card_key_secret"] == summary["kafka_sasl_password"] == "***"
    assert summary["redis_sentinel_password"] is None
    assert summary["kafka_sasl_username"] == "fraud"
    assert summary["model_dir"] == "models"
    text = usage.summary_text(summary)
    for secret in ("redis-pw", "card-key-of-our-own", "kafka-pw"):
        assert secret not in text
        assert secret not in orjson.dumps(summary).decode()
    assert "batch_size=500 " in text
    assert "include_features=false " in text


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("rediss://:pw@cache:6380", "rediss://:***@cache:6380"),
    ("redis://user@cache:6379", "redis://user@cache:6379"),
    ("redis://cache:6379/0?password=pw&socket_timeout=2",
     "redis://cache:6379/0?password=***&socket_timeout=2"),
    ("redis://s1:26379, redis://u:p@s2:26379", "redis://s1:26379,redis://u:***@s2:26379"),
])
def test_a_redis_url_loses_its_password(url: str, shown: str) -> None:
    assert usage.redis_urls_without_password(url) == shown


def test_the_log_format_alone_says_how_to_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_LOG_FORMAT", "json")
    monkeypatch.setenv("FRAUD_PARTITIONS", "0")  # the rest not valid: still json
    assert log_format_alone() == "json"
    monkeypatch.setenv("FRAUD_LOG_FORMAT", "yaml")
    assert log_format_alone() == "text"


def test_faust_gets_quiet_in_json_and_the_user_s_options_last() -> None:
    json_settings = Settings(log_format="json", log_level="WARNING")
    assert app._faust_argv(json_settings, ["--web-port", "7000"]) == [
        "--quiet", "worker", "-l", "warn", "--web-port", "7000",
    ]
    assert app._faust_argv(Settings(), []) == ["worker", "-l", "info"]


def test_an_invalid_setting_is_one_json_line_in_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "argv", ["fraud-worker"])
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setenv("FRAUD_LOG_FORMAT", "json")
    monkeypatch.setenv("FRAUD_PARTITIONS", "0")
    try:
        with pytest.raises(SystemExit) as exit_:
            app.main()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)
    assert exit_.value.code == 1
    [line] = [orjson.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert line["level"] == "CRITICAL"
    assert line["message"].startswith("fraud worker refuses to start: invalid FRAUD_* settings")
    assert "partitions" in line["message"]
