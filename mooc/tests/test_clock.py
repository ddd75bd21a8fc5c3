"""The suite's clock (mooc/testing/clock.py): each test sets it, and --as-of moves a whole run.

These tests read timezone.now() on purpose, to show that code under test sees the test's
clock, and time-machine's escape hatch where they need the real one.
"""

import datetime
import re
import time
from pathlib import Path

import pytest
from django.utils import timezone

PROJECT_DIR = Path(__file__).resolve().parents[2]
UTC = datetime.UTC

INNER_TESTS = """
import datetime
import time

import pytest
from django.utils import timezone

UTC = datetime.UTC


def test_runs_at_the_runs_moment_and_the_clock_ticks(clock):
    first = timezone.now()
    time.sleep(0.05)
    assert timezone.now() > first and clock.now() > first
    print("STARTED", first.isoformat())


@pytest.mark.clock("2030-05-06T07:08:00Z")
def test_a_clock_mark_wins():
    assert datetime.timedelta(0) <= timezone.now() - datetime.datetime(2030, 5, 6, 7, 8, tzinfo=UTC) < datetime.timedelta(seconds=30)


@pytest.mark.celery_worker
def test_with_a_real_worker_process():
    pass
"""


@pytest.fixture
def inner_suite(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_DIR))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mooc.settings")
    pytester.makepyfile(INNER_TESTS)

    def run(*options):
        return pytester.runpytest_subprocess("-p", "mooc.testing.clock", "-p", "no:django", "-p", "no:cacheprovider", "-s", "-W", "ignore::pytest.PytestUnknownMarkWarning", *options)

    return run


def started_at(result) -> datetime.datetime:
    [moment] = re.findall(r"STARTED (\S+)", result.stdout.str())
    return datetime.datetime.fromisoformat(moment)


def test_as_of_starts_every_test_at_that_moment_and_leaves_out_real_processes(inner_suite):
    result = inner_suite("--as-of", "2027-03-28T01:30:00Z")

    result.assert_outcomes(passed=2, deselected=1)
    result.stdout.fnmatch_lines(["clock: every test starts at 2027-03-28T01:30:00+00:00 (--as-of)"])
    moment = datetime.datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    assert datetime.timedelta(0) <= started_at(result) - moment < datetime.timedelta(seconds=30)


def test_without_as_of_the_clock_starts_at_the_real_now(inner_suite):
    before = time_machine_free_now()
    result = inner_suite()

    result.assert_outcomes(passed=3)
    assert before <= started_at(result) <= time_machine_free_now()


@pytest.mark.parametrize(
    "value, message",
    [
        ("next tuesday", "--as-of: 'next tuesday' is not an ISO 8601 moment"),
        ("2027-03-28T01:30:00", "--as-of: '2027-03-28T01:30:00' has no time zone"),
    ],
)
def test_a_moment_that_cannot_be_read_stops_the_run_with_the_reason(inner_suite, value, message):
    result = inner_suite("--as-of", value)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


@pytest.mark.clock("2027-11-07T06:30:00Z")  # the night the US falls back
def test_the_clock_starts_at_its_mark_and_moves_when_told(clock):
    start = datetime.datetime(2027, 11, 7, 6, 30, tzinfo=UTC)
    assert datetime.timedelta(0) <= clock.now() - start < datetime.timedelta(seconds=5)
    assert abs(clock.now() - timezone.now()) < datetime.timedelta(seconds=1)  # Django reads the same clock
    assert clock.today() == datetime.date(2027, 11, 7)
    assert abs(time.time() - start.timestamp()) < 5  # the process's clock, not only Django's

    clock.shift(datetime.timedelta(days=1, hours=18))
    assert clock.today() == datetime.date(2027, 11, 9)
    clock.move_to("2028-02-29T12:00:00Z")
    assert clock.today() == datetime.date(2028, 2, 29)
    clock.move_to(datetime.datetime(2027, 12, 31, 23, 59, 59, 800_000, tzinfo=UTC))
    assert clock.today() == datetime.date(2027, 12, 31)
    time.sleep(0.3)
    assert clock.today() == datetime.date(2028, 1, 1)  # it ticks
    with pytest.raises(ValueError, match="aware datetime"):
        clock.move_to(datetime.datetime(2027, 1, 1))


def time_machine_free_now() -> datetime.datetime:
    import time_machine

    return time_machine.escape_hatch.datetime.datetime.now(UTC)


@pytest.mark.parametrize(
    "today, moved_to",
    [
        ("2026-11-21", "2027-03-14T07:30:00Z"),  # the US springs forward (2 am EST is 07:00 UTC)
        ("2027-02-20", "2027-03-28T01:30:00Z"),  # Europe springs forward (01:00 UTC), the US's change is too soon
        ("2027-09-01", "2027-10-31T01:30:00Z"),  # Europe falls back
        ("2027-10-01", "2027-11-07T06:30:00Z"),  # the US falls back (2 am EDT is 06:00 UTC)
        ("2027-10-10", "2028-03-12T07:30:00Z"),  # both of 2027's autumn changes are within a month
    ],
)
def test_ci_moves_its_second_run_past_a_clock_change_a_month_away(today, moved_to):
    from mooc.testing.clock import clock_change_after

    start = datetime.datetime.fromisoformat(today).replace(tzinfo=UTC)
    assert clock_change_after(start) == datetime.datetime.fromisoformat(moved_to)


def test_ci_asks_for_that_moment_with_no_settings_in_its_environment():
    """.ci/run calls `python -m mooc.testing.clock next-change` before any test, with no
    SECRET_KEY or DEBUG: importing the package (and its Celery app) must not read Django's settings."""
    import os
    import subprocess
    import sys

    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    result = subprocess.run([sys.executable, "-m", "mooc.testing.clock", "next-change"], cwd=PROJECT_DIR,
                            env=keep | {"DJANGO_READ_DOT_ENV": "false"}, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00Z\n", result.stdout)
