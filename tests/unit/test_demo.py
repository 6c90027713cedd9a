"""`make demo` ends by saying what it leaves running and how to stop it (no stack needed)."""

from __future__ import annotations

import argparse

import pytest

from fraudtools import demo


def test_the_closing_message_names_the_stack_and_make_down() -> None:
    message = demo.closing_message("127.0.0.1:9092", "redis://127.0.0.1:6379/0")
    assert "still running" in message
    assert "Kafka on 127.0.0.1:9092" in message and "Redis on 127.0.0.1:6379" in message
    assert "`make down`" in message


def test_the_closing_message_never_shows_the_redis_password() -> None:
    message = demo.closing_message("kafka:9092", "redis://fraud:s3cret@redis.local:6380/2")
    assert "s3cret" not in message and "fraud:" not in message
    assert "Redis on redis.local:6380" in message


@pytest.mark.parametrize("outcome", [0, RuntimeError("the worker did not start")])
def test_the_demo_says_it_at_the_end_whatever_happened(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], outcome: object
) -> None:
    def fake_demo(args: argparse.Namespace) -> int:
        print("summary: ...")
        if isinstance(outcome, Exception):
            raise outcome
        return 0

    monkeypatch.setattr(demo, "_demo", fake_demo)
    if isinstance(outcome, Exception):
        with pytest.raises(RuntimeError):
            demo.main([])
    else:
        assert demo.main([]) == 0
    out = capsys.readouterr().out
    assert out.index("summary: ...") < out.index("`make down`")
    assert out.rstrip().endswith("`make demo` starts it again.")
