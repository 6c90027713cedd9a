"""What training tells a person: progress lines off a terminal, phases with durations,
thresholds and durations in words, the CLI's log lines."""

from __future__ import annotations

import io
import logging
import re

import pytest

from fraudcore import Thresholds
from training.cli import _PeopleFormatter
from training.console import Phases, PlainProgress, duration, score, thresholds_text

LINE = re.compile(r"^\d\d:\d\d:\d\d (.*)$")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(text: str) -> list[str]:
    """The messages of the plain progress lines, each checked for its time stamp."""
    out = []
    for line in text.splitlines():
        match = LINE.match(line)
        assert match, f"no time stamp: {line!r}"
        out.append(match.group(1))
    return out


def _replay(phases: Phases, clock: FakeClock, *, total: int, steps: int, seconds: float) -> None:
    """A phase of ``total`` transactions done in ``steps`` equal parts, each ``seconds`` long."""
    with phases.phase("replaying", "the history", total=total, unit="transactions") as step:
        for _ in range(steps):
            clock.now += seconds
            step.advance(total // steps)


def test_off_a_terminal_progress_is_a_plain_line_every_ten_percent(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="training")
    clock = FakeClock()
    phases = Phases(clock=clock)  # sys.stderr, which pytest captures: not a terminal
    _replay(phases, clock, total=1_000_000, steps=10, seconds=30.0)

    err = capsys.readouterr().err
    assert "\r" not in err and "|" not in err  # no bar drawn into a log
    assert _lines(err) == [
        f"replaying: {10 * i} % ({100_000 * i:,} of 1,000,000 transactions), "
        f"{duration(30.0 * i)} so far, about {duration(30.0 * (10 - i))} left"
        for i in range(1, 10)
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["replaying the history", "replaying done in 5 min 00 s"]
    assert phases.durations == {"replaying": 300.0}


def test_no_line_says_a_hundred_percent_before_the_phase_is_done() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = PlainProgress("replaying", 1000, "transactions", stream=out, clock=clock)
    for _ in range(999):
        clock.now += 1.0
        progress.advance()
    lines = _lines(out.getvalue())
    assert len(lines) >= 66  # one at least every 15 s (10 % takes 100 s here) ...
    assert (  # ... and one at each 10 %
        "replaying: 10 % (100 of 1,000 transactions), 1 min 40 s so far, about 15 min 00 s left"
        in lines
    )
    assert lines[-1].startswith("replaying: 99 % (990 of 1,000 transactions), 16 min 30 s so far")
    clock.now += 60.0
    progress.advance()  # the last one: the phase's "done in" line says it, not a progress line
    assert "100 %" not in out.getvalue()


def test_slow_progress_still_gets_a_line_every_fifteen_seconds_with_no_early_estimate() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = PlainProgress("replaying", 1000, "transactions", stream=out, clock=clock)
    for _ in range(5):
        clock.now += 16.0
        progress.advance(10)  # 1 % a step: no 10 % step is crossed
    lines = _lines(out.getvalue())
    assert len(lines) == 5
    assert lines[0] == "replaying: 1 % (10 of 1,000 transactions), 16 s so far"
    assert all("left" not in line for line in lines[:4])  # under 5 %: too early to tell
    assert lines[4] == (
        "replaying: 5 % (50 of 1,000 transactions), 1 min 20 s so far, about 25 min 20 s left"
    )


def test_a_fast_phase_prints_no_progress_lines(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    _replay(Phases(clock=clock), clock, total=50_000, steps=10, seconds=0.3)
    assert "replaying:" not in capsys.readouterr().err


def test_without_an_estimate_no_time_left_is_promised() -> None:
    clock, out = FakeClock(), io.StringIO()
    phases = Phases(stream=out, clock=clock)
    with phases.phase("fitting candidates", total=12, unit="fits", estimate=False) as step:
        for _ in range(11):
            clock.now += 20.0
            step.advance()
    lines = _lines(out.getvalue())
    assert lines[0] == "fitting candidates: 8 % (1 of 12 fits), 20 s so far"
    assert len(lines) == 11 and all("left" not in line for line in lines)


def test_progress_after_the_phase_ended_prints_nothing() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = PlainProgress("replaying", 100, "transactions", stream=out, clock=clock)
    progress.close()
    clock.now += 100.0
    progress.advance(10)
    assert out.getvalue() == ""


def test_a_failed_phase_says_so_and_is_not_counted_as_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="training")
    clock = FakeClock()
    phases = Phases(stream=io.StringIO(), clock=clock)
    with pytest.raises(ValueError), phases.phase("exporting"):
        clock.now += 3.0
        raise ValueError("parity")
    assert [r.getMessage() for r in caplog.records] == [
        "exporting ...",
        "exporting failed after 3.0 s",
    ]
    assert caplog.records[-1].levelno == logging.WARNING
    assert phases.durations == {}


def test_the_summary_names_every_phase_with_its_duration() -> None:
    clock = FakeClock()
    phases = Phases(stream=io.StringIO(), clock=clock)
    for name, seconds in (("generating", 41.0), ("replaying", 263.0), ("exporting", 2.5)):
        with phases.phase(name):
            clock.now += seconds
    assert phases.summary() == "generating 41 s, replaying 4 min 23 s, exporting 2.5 s"
    assert phases.total_seconds() == pytest.approx(306.5)


def test_on_a_terminal_progress_is_a_bar_that_goes_away() -> None:
    out = io.StringIO()
    phases = Phases(stream=out, tty=True)
    with phases.phase("replaying", total=100_000, unit="transactions") as step:
        for _ in range(10):
            step.advance(10_000)
    text = out.getvalue()
    assert "replaying:" in text and "%|" in text and "transactions/s" in text
    assert " so far" not in text  # not the plain lines
    with phases.phase("fitting candidates", total=6, unit="fits", estimate=False) as step:
        step.advance(2)
    assert "0/6 fits" in out.getvalue()  # a count, not "0.00/6.00"


@pytest.mark.parametrize(
    ("thresholds", "text"),
    [
        (Thresholds(0.041972222222222216, 0.312), "review ≥ 0.0420, decline ≥ 0.3120"),
        (Thresholds(0.6119098874981228, 0.6119098874981228), "review ≥ 0.6119, decline ≥ 0.6119"),
        (Thresholds(0.000042, 1.0), "review ≥ 4.2e-05, decline ≥ 1.0000"),
        (Thresholds(0.0, 0.5), "review ≥ 0.0000, decline ≥ 0.5000"),
    ],
)
def test_thresholds_read_as_written_for_people(thresholds: Thresholds, text: str) -> None:
    assert thresholds_text(thresholds) == text
    assert "Thresholds(" not in thresholds_text(thresholds)


def test_a_small_threshold_never_reads_as_zero() -> None:
    assert score(0.00004) != "0.0000"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.04, "0.0 s"),
        (3.74, "3.7 s"),
        (9.97, "10 s"),
        (59.4, "59 s"),
        (59.6, "1 min 00 s"),
        (263.0, "4 min 23 s"),
        (3725.0, "1 h 02 min"),
    ],
)
def test_durations_read_as_written_for_people(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("training.pipeline", level, __file__, 1, message, None, None)


def test_the_cli_log_line_is_the_time_and_the_message() -> None:
    formatter = _PeopleFormatter(verbose=False)
    line = formatter.format(_record(logging.INFO, "replaying done in 4 min 23 s"))
    assert re.fullmatch(r"\d\d:\d\d:\d\d replaying done in 4 min 23 s", line)
    warning = formatter.format(_record(logging.WARNING, "exporting failed after 3.0 s"))
    assert re.fullmatch(r"\d\d:\d\d:\d\d warning: exporting failed after 3.0 s", warning)
    verbose = _PeopleFormatter(verbose=True).format(_record(logging.DEBUG, "x"))
    assert re.fullmatch(r"\d\d:\d\d:\d\d \[training\.pipeline\] x", verbose)
