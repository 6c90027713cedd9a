"""Holding and trying again (service/retry.py, README ``FRAUD_RETRY_MAX_SECONDS``: "longest
backoff while Redis or the broker is unavailable"): the wait doubles from 0.1 s after each
failed attempt and never exceeds the cap; neither helper ever gives up. The sleeps are
recorded instead of slept."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from service.app import build_worker
from service.retry import Unavailable, hold, retry
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _failing(times: int, *, answer: object = "done") -> object:
    """An attempt that answers Unavailable ``times`` times, then ``answer``."""
    left = [times]

    async def attempt() -> object:
        if left[0] > 0:
            left[0] -= 1
            return Unavailable("Redis: ConnectionError: refused")
        return answer

    return attempt


def _raising(times: int) -> object:
    left = [times]

    async def attempt() -> str:
        if left[0] > 0:
            left[0] -= 1
            raise ConnectionError("broker not ready")
        return "sent"

    return attempt


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (1.0, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]),
        (5.0, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]),  # the default cap
        (0.25, [0.1, 0.2, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]),
        (0.05, [0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]),  # below the first wait
    ],
)
def test_hold_backs_off_doubling_up_to_the_cap(cap: float, expected: list[float]) -> None:
    sleeps = Sleeps()
    held = REGISTRY.get_sample_value("fraud_state_unavailable_total") or 0.0
    result = asyncio.run(hold(_failing(8), what="test", max_delay=cap, sleep=sleeps))  # type: ignore[arg-type]
    assert result == "done"
    assert sleeps == pytest.approx(expected)
    assert (REGISTRY.get_sample_value("fraud_state_unavailable_total") or 0.0) - held == 8


def test_hold_never_gives_up_and_stays_at_the_cap() -> None:
    sleeps = Sleeps()
    asyncio.run(hold(_failing(200), what="test", max_delay=2.0, sleep=sleeps))  # type: ignore[arg-type]
    assert len(sleeps) == 200
    assert max(sleeps) == 2.0 and sleeps[-150:] == [2.0] * 150


def test_hold_counts_other_parts_by_part() -> None:
    async def model_fails() -> object:
        if not sleeps:
            return Unavailable("model fails", part="model")
        return "ok"

    sleeps = Sleeps()
    before = REGISTRY.get_sample_value("fraud_held_total", {"part": "model"}) or 0.0
    asyncio.run(hold(model_fails, what="test", max_delay=1.0, sleep=sleeps))
    assert REGISTRY.get_sample_value("fraud_held_total", {"part": "model"}) - before == 1  # type: ignore[operator]


def test_hold_logs_the_first_wait_only_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="service.retry"):
        asyncio.run(hold(_failing(4), what="scoring", max_delay=1.0, sleep=Sleeps()))  # type: ignore[arg-type]
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING] + [logging.DEBUG] * 3


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (1.0, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]),
        (0.3, [0.1, 0.2, 0.3, 0.3, 0.3, 0.3]),
    ],
)
def test_retry_backs_off_doubling_up_to_the_cap(cap: float, expected: list[float]) -> None:
    sleeps = Sleeps()
    assert asyncio.run(retry(_raising(6), what="send", max_delay=cap, sleep=sleeps)) == "sent"  # type: ignore[arg-type]
    assert sleeps == pytest.approx(expected)


def test_the_setting_reaches_every_wait_of_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FRAUD_RETRY_MAX_SECONDS from the environment, as the worker reads it, is the cap of
    the batch path (holding on Redis, on the model, sending again) and of the labels."""
    monkeypatch.setenv("FRAUD_RETRY_MAX_SECONDS", "0.7")
    monkeypatch.setenv("FRAUD_ENV", "development")
    monkeypatch.setenv("FRAUD_MODEL_DIR", str(ROOT / "models"))
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path / "w"))
    worker = build_worker(Settings())
    assert worker.pipeline.options.retry_max_seconds == 0.7
    assert worker.pipeline._labels.options.retry_max_seconds == 0.7
