"""Helpers for the scheduler's tests (fixtures are in conftest.py)."""

import contextlib
import datetime
import socket
from collections.abc import Iterator
from types import SimpleNamespace

from anymail.exceptions import AnymailAPIError
from django.conf import settings

from scheduler.planning import deliveries_dispatch
from scheduler.sending import deliveries_send
from scheduler.models import Delivery, EmailKind
from scheduler.selectors import email_context
from scheduler.services import heartbeat_record
from signups.tests.factories import EnrollmentFactory

UTC = datetime.UTC
START = datetime.date(2026, 11, 30)  # a Monday: week 1's email goes out Monday 09:00 local


def workers_report_in(now: datetime.datetime) -> None:
    """Every worker queue's heartbeat arrives at `now`: as far as the site can tell, the workers run."""
    for queue in settings.WORKER_QUEUES:
        heartbeat_record(now=now, queue=queue)


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


def closed_port() -> int:
    """A local port nothing listens on: connecting is refused before any byte leaves."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A local port that takes connections (the kernel completes them) and never answers a byte."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def run_pass(now):
    """One whole pass, as send_due does: dispatch, then send every chunk."""
    report = deliveries_dispatch(now)
    for chunk in report.chunks:
        deliveries_send(chunk, now=now)
    return report


def weekly(cohort, week):
    return Delivery.objects.filter(cohort=cohort, kind=EmailKind.WEEK, week_number=week)


def readable_context() -> dict:
    """A learner in a group, in a week with every part, with short values easy to look for
    (the save check's samples are as long as real values can be: hard to read in a test)."""
    link = {"title": "A link", "url": "https://example.org/"}
    week = {"number": 3, "title": "A week", "is_last": False, "lecture": link, "readings": [link], "exercises": [link],
            "project": link, "discussion": link}
    return email_context(
        first_name="Ada", timezone_name="Europe/London", course=SimpleNamespace(title="A Course", week_count=8),
        cohort=SimpleNamespace(name="Round 1", start_date=datetime.date(2026, 11, 30)), week=week,
        group=SimpleNamespace(name="Group 1", slug="g1", discussion_url="https://example.org/g1", mail_address=""),
        members=[{"first_name": "Grace", "timezone": "America/New_York"}, {"first_name": "Alan", "timezone": "Europe/London"}],
        moved_from="Group 9",
        links={"manage": "https://example.org/me/x/", "switch": "https://example.org/me/x/#switch",
               "unsubscribe": "https://example.org/u/x/", "site": "https://example.org/",
               "checkin_done": "https://example.org/c/x/done/", "checkin_behind": "https://example.org/c/x/behind/",
               "checkin_stuck": "https://example.org/c/x/stuck/"},
    )
