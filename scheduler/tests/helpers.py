"""Helpers for the scheduler's tests (fixtures are in conftest.py)."""

import datetime

from anymail.exceptions import AnymailAPIError

from scheduler.delivery import deliveries_dispatch, deliveries_send
from scheduler.models import Delivery, EmailKind
from signups.tests.factories import EnrollmentFactory

UTC = datetime.UTC
START = datetime.date(2026, 11, 30)  # a Monday: week 1's email goes out Monday 09:00 local


def learner_in(cohort, timezone_name="Europe/Lisbon", email=None, **fields):
    extra = {"learner__email": email} if email else {}
    return EnrollmentFactory(cohort=cohort, learner__timezone=timezone_name, **extra, **fields)


def at(day: datetime.date, hour: int, minute: int = 0) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(hour, minute), tzinfo=UTC)


# Where the clock of a test with a cohort starting START begins (`pytest.mark.clock`): noon
# UTC on the Monday before, while signup is open. Learners the factories confirm then had
# their welcome due that day, so by week 1 it is too late to send (skipped), unless a test
# confirms them at another moment.
BEFORE_START = at(START - datetime.timedelta(weeks=1), 12)


def provider_error(status: int, reason: str) -> AnymailAPIError:
    """What Anymail raises when the provider answers `status`."""
    import requests

    response = requests.Response()
    response.status_code, response.reason, response._content = status, reason, b'{"message": "%s"}' % reason.encode()
    return AnymailAPIError(f"{reason} (from the provider)", status_code=status, response=response)


def run_pass(now):
    """One whole pass, as send_due does: dispatch, then send every chunk."""
    report = deliveries_dispatch(now)
    for chunk in report.chunks:
        deliveries_send(chunk, now=now)
    return report


def weekly(cohort, week):
    return Delivery.objects.filter(cohort=cohort, kind=EmailKind.WEEK, week_number=week)
