"""Due moments over every time zone and date: once a week, at the local send time, whatever the clocks do.

Properties of `local_send_moment` (pure: no database, no clock), checked by hypothesis over
all of the zone database, 1990-2037, and every send weekday and minute, and aimed at the
moments around clock changes: local times that do not exist (spring forward) are sent as
much later as the gap is long, and repeated local times (fall back) at their first occurrence.
"""

import datetime
import zoneinfo

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from mooc.testing.clock import offset_changes
from cohorts.models import week_begins
from scheduler.due import local_send_moment

UTC = datetime.UTC
ZONES = sorted(zoneinfo.available_timezones() - {"Factory", "localtime"})

zones = st.sampled_from(ZONES)
send_times = st.times().map(lambda moment: moment.replace(second=0, microsecond=0))
weekdays = st.integers(0, 6)
weeks = st.integers(1, 9)  # 8 weeks and the course's end


def wall_time_kind(wall: datetime.datetime, zone: zoneinfo.ZoneInfo) -> str:
    """'normal', 'gap' (never shown by the zone's clocks) or 'fold' (shown twice), after PEP 495."""
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return "normal"
    back = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return "fold" if back == wall else "gap"


def send_date(start: datetime.date, week: int, weekday: int) -> datetime.date:
    begins = week_begins(start, week)
    return begins + datetime.timedelta(days=(weekday - begins.weekday()) % 7)


@settings(max_examples=500, deadline=None)
@given(zones, st.dates(datetime.date(1990, 1, 1), datetime.date(2037, 12, 31)), weeks, weekdays, send_times)
# Found by hypothesis: a send time that carries fold=1 (st.times makes them) in a skipped hour.
@example("America/Denver", datetime.date(2020, 2, 23), 3, 6, datetime.time(2, 23, fold=1))
def test_a_week_is_due_at_the_send_time_on_the_learners_own_clock(zone_name, start, week, weekday, send_time):
    zone = zoneinfo.ZoneInfo(zone_name)
    due = local_send_moment(start, week, weekday, send_time, zone_name)

    assert due.tzinfo is UTC
    wall = datetime.datetime.combine(send_date(start, week, weekday), send_time)
    local = due.astimezone(zone)
    kind = wall_time_kind(wall, zone)
    if kind == "normal":
        assert local.replace(tzinfo=None) == wall
    elif kind == "fold":  # the first of the two moments the clocks show it
        assert due == wall.replace(tzinfo=zone, fold=0).astimezone(UTC) < wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    else:  # later on the wall clock by exactly the gap
        gap = wall.replace(tzinfo=zone, fold=1).utcoffset() - wall.replace(tzinfo=zone, fold=0).utcoffset()
        assert local.replace(tzinfo=None) - wall == gap > datetime.timedelta(0)


@settings(max_examples=300, deadline=None)
@given(zones, st.dates(datetime.date(1990, 1, 1), datetime.date(2037, 12, 31)), weekdays, send_times)
def test_each_week_has_one_moment_and_they_come_in_order(zone_name, start, weekday, send_time):
    moments = [local_send_moment(start, week, weekday, send_time, zone_name) for week in range(1, 10)]

    assert moments == sorted(set(moments))  # no week twice, none out of order
    for week, moment in enumerate(moments, start=1):
        # In its own week on the learner's calendar (a skipped local hour may push it past midnight).
        local_day = moment.astimezone(zoneinfo.ZoneInfo(zone_name)).date()
        assert week_begins(start, week) <= local_day <= week_begins(start, week) + datetime.timedelta(days=7)


# --- Aimed at clock changes --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_send_time_the_clocks_skip_or_repeat_is_sent_once(data):
    zone_name = data.draw(zones, label="zone")
    year = data.draw(st.integers(1995, 2037), label="year")
    changes = offset_changes(zone_name, year)
    assume(changes)
    moment, before, after = data.draw(st.sampled_from(changes), label="change")
    # A local minute inside the hour (or half hour, or day) that the change skips or repeats.
    span_minutes = int(abs(after - before) / datetime.timedelta(minutes=1))
    assume(span_minutes >= 1)
    first_wall = (moment + min(before, after)).replace(tzinfo=None)
    wall = first_wall + datetime.timedelta(minutes=data.draw(st.integers(0, span_minutes - 1), label="minute"))
    assume(wall.second == 0)  # send times are whole minutes
    week = data.draw(weeks, label="week")
    # A cohort whose week `week` is sent on that local day, at that minute.
    start = wall.date() - datetime.timedelta(weeks=week - 1, days=data.draw(st.integers(0, 6), label="days into the week"))
    zone = zoneinfo.ZoneInfo(zone_name)

    due = local_send_moment(start, week, wall.weekday(), wall.time(), zone_name)

    if after > before:  # the clocks skip `wall`: sent as much later on the wall clock as they jumped
        assert due == (wall - before).replace(tzinfo=UTC)
        assert due.astimezone(zone).replace(tzinfo=None) == wall + (after - before)
    else:  # the clocks show `wall` twice: sent at the first
        assert due == (wall - before).replace(tzinfo=UTC) < (wall - after).replace(tzinfo=UTC)
    earlier, later = (local_send_moment(start, number, wall.weekday(), wall.time(), zone_name) for number in (week - 1, week + 1))
    assert earlier < due < later  # the weeks around it keep their own moments
