"""When each email of a cohort is due for a learner: pure time computation, no database.

Week N of a cohort begins N-1 weeks after its start date. Its email is due on the cohort's
send weekday (the first one on or after the week's first day) at the cohort's send time,
in the learner's own time zone, converted to UTC. Each (learner, week) has exactly one due
moment, whatever the clocks do: a daylight-saving change moves that moment in UTC but can
neither skip a week nor make one due twice, because the ledger is keyed by week, not time.
A local time that does not exist on a spring-forward night (02:30, say) is read with the
offset before the change, so it falls an hour later on the wall clock: still once.
"""

import datetime
import functools
import zoneinfo

from cohorts.models import week_send_date

UTC = datetime.UTC


@functools.lru_cache(maxsize=65536)
def local_send_moment(
    start_date: datetime.date, week_number: int, send_weekday: int, send_time: datetime.time, timezone_name: str
) -> datetime.datetime:
    """The UTC moment week `week_number`'s email is due for a learner in `timezone_name`."""
    local_date = week_send_date(start_date, week_number, send_weekday)
    # fold=0 whatever the caller's time carries: a repeated hour is read at its first
    # occurrence and a skipped one with the offset before the change, as promised above.
    local = datetime.datetime.combine(local_date, send_time.replace(fold=0), tzinfo=zoneinfo.ZoneInfo(timezone_name))
    return local.astimezone(UTC)


def cohort_week_due(cohort, week_number: int, timezone_name: str) -> datetime.datetime:
    return local_send_moment(cohort.start_date, week_number, cohort.send_weekday, cohort.send_time, timezone_name)
