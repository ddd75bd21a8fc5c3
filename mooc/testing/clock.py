"""The suite's clock: every test runs on a clock it sets, and a whole run can be moved in time.

- `clock` (autouse): the clock of each test, ticking from the test's starting moment. That
  moment is the one `@pytest.mark.clock("2026-11-23T12:00:00Z")` names (a module, class or
  test sets it next to the fixed dates of the data it builds), else the run's moment. Tests
  move it with `clock.move_to(...)` or `clock.shift(...)` and read it with `clock.now()` and
  `clock.today()`; factories, services and the live server read the same clock through
  `django.utils.timezone.now()`, so nothing in a test reads the wall clock by accident.
- `--as-of MOMENT` sets the run's moment: every test without a clock mark starts at MOMENT
  (ISO 8601 with a zone, e.g. 2027-03-28T01:30:00Z) instead of the real now, and the clock
  ticks from there. It proves that tests meaning "whatever today is" pass on any day.

time-machine moves the clock of this process only (threads included, so the live server
too); real worker processes keep the real clock, so tests that start them are left out of
runs with --as-of.
"""

import datetime
import functools
import sys
import zoneinfo

import pytest
import time_machine
from django.utils import timezone

REAL_PROCESS_MARKERS = ("celery_worker",)
# Where CI's second run is moved to: just after the clocks of one of these change.
CLOCK_CHANGE_ZONES = ("Europe/Berlin", "America/New_York")
UTC = datetime.UTC


def parse_moment(text: str) -> datetime.datetime:
    """An aware datetime from ISO 8601 text; ValueError names what is wrong."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 moment (e.g. 2027-03-28T01:30:00Z)") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z or an offset such as +01:00")
    return moment.astimezone(UTC)


def pytest_addoption(parser):
    parser.addoption(
        "--as-of",
        metavar="MOMENT",
        default=None,
        help="run every test as if the clock read MOMENT (ISO 8601 with a zone, e.g. 2027-03-28T01:30:00Z), ticking from there",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "clock(moment): the moment (ISO 8601 with a zone, or an aware datetime) the test's clock starts at")
    text = config.getoption("as_of")
    if text is not None:
        try:
            config.stash[AS_OF] = parse_moment(text)
        except ValueError as error:
            raise pytest.UsageError(f"--as-of: {error}") from None


def pytest_report_header(config):
    as_of = config.stash.get(AS_OF, None)
    return f"clock: every test starts at {as_of.isoformat()} (--as-of)" if as_of else None


def pytest_collection_modifyitems(config, items):
    """With --as-of, leave out tests whose real processes would keep the real clock."""
    if config.stash.get(AS_OF, None) is None:
        return
    kept, left_out = [], []
    for item in items:
        (left_out if any(item.get_closest_marker(marker) for marker in REAL_PROCESS_MARKERS) else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


AS_OF = pytest.StashKey[datetime.datetime]()


class Clock:
    """The test's clock: read it, or move it (it keeps ticking from where it is moved)."""

    def __init__(self, start: datetime.datetime):
        self._travel = time_machine.travel(start, tick=True)
        self._traveller = self._travel.start()

    def now(self) -> datetime.datetime:
        return timezone.now()

    def today(self) -> datetime.date:
        """The date in UTC, the zone the site keeps its dates in (TIME_ZONE)."""
        return timezone.localdate()

    def move_to(self, moment: datetime.datetime | str) -> None:
        self._traveller.move_to(parse_moment(moment) if isinstance(moment, str) else _aware(moment))

    def shift(self, delta: datetime.timedelta) -> None:
        self._traveller.shift(delta)

    def stop(self) -> None:
        self._travel.stop()


def _aware(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is None:
        raise ValueError(f"the clock needs an aware datetime, not {moment!r}")
    return moment


def starting_moment(request) -> datetime.datetime:
    """Where the test's clock starts: its clock mark, else --as-of, else the real now."""
    marker = request.node.get_closest_marker("clock")
    if marker:
        [moment] = marker.args
        return parse_moment(moment) if isinstance(moment, str) else _aware(moment)
    return request.config.stash.get(AS_OF, None) or timezone.now()


@pytest.fixture(autouse=True)
def clock(request):
    """The test's clock (see this module's docstring); autouse, so it is set before the fixtures a test asks for."""
    test_clock = Clock(starting_moment(request))
    yield test_clock
    test_clock.stop()


# --- Clock changes ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def offset_changes(zone_name: str, year: int) -> tuple[tuple[datetime.datetime, datetime.timedelta, datetime.timedelta], ...]:
    """(moment in UTC, offset before, offset after) of every change of the zone's UTC offset in `year`."""
    zone = zoneinfo.ZoneInfo(zone_name)
    changes = []
    day = datetime.datetime(year, 1, 1, tzinfo=UTC)
    while day.year == year:
        following = day + datetime.timedelta(days=1)
        before, after = day.astimezone(zone).utcoffset(), following.astimezone(zone).utcoffset()
        if before != after:
            low, high = day, following  # the offset is `before` at low and `after` at high
            while high - low > datetime.timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == before:
                    low = middle
                else:
                    high = middle
            changes.append((high.replace(microsecond=0), before, after))
        day = following
    return tuple(changes)


def clock_change_after(moment: datetime.datetime, days: int = 31) -> datetime.datetime:
    """Half an hour after the first clock change in Europe or the US at least `days` after `moment`.

    A run moved there (--as-of) starts on the far side of a daylight-saving change from today.
    """
    earliest = moment + datetime.timedelta(days=days)
    changes = sorted(
        change for zone_name in CLOCK_CHANGE_ZONES for year in (earliest.year, earliest.year + 1)
        for change, _, _ in offset_changes(zone_name, year) if change >= earliest
    )
    return changes[0] + datetime.timedelta(minutes=30)


if __name__ == "__main__":
    # `python -m mooc.testing.clock next-change`: the moment CI's second run uses.
    if sys.argv[1:] != ["next-change"]:
        sys.exit("usage: python -m mooc.testing.clock next-change")
    print(clock_change_after(datetime.datetime.now(UTC)).isoformat().replace("+00:00", "Z"))
