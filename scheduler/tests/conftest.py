import datetime

import pytest

from cohorts.models import Cohort
from mooc.testing.providers import ScriptedAnymailBackend
from scheduler import sandbox
from scheduler.tests.helpers import START


class RenderClock:
    """The clock a render's deadline is read from (sandbox._monotonic), in the test's hands:
    still unless a test moves it, or makes every reading `tick` seconds later than the last."""

    def __init__(self):
        self.seconds, self.tick = 0.0, 0.0

    def __call__(self) -> float:
        self.seconds += self.tick
        return self.seconds


@pytest.fixture(autouse=True)
def render_clock(monkeypatch):
    """Held still, so that which limit a render breaks never depends on how fast the machine is."""
    clock = RenderClock()
    monkeypatch.setattr(sandbox, "_monotonic", clock)
    return clock


@pytest.fixture
def provider(settings):
    """Anymail's test backend, scriptable per address: provider["a@b.c"] = [error, None]."""
    settings.EMAIL_BACKEND = "mooc.testing.providers.ScriptedAnymailBackend"
    settings.EMAIL_SEND_RATE_PER_SECOND = 0
    ScriptedAnymailBackend.script = {}
    yield ScriptedAnymailBackend.script
    ScriptedAnymailBackend.script = {}


@pytest.fixture
def course(db):
    """The demo course and its default emails, without the demo's cohorts."""
    from cohorts.services import DEMO_COURSE_FILE, course_create_from_definition, course_definition_read
    from scheduler.services import email_templates_install_defaults

    course, _ = course_create_from_definition(course_definition_read(DEMO_COURSE_FILE))
    email_templates_install_defaults(course)
    return course


@pytest.fixture
def cohort(course, provider):
    """A round starting START; modules that use it start their clock at BEFORE_START (pytest.mark.clock)."""
    return Cohort.objects.create(
        course=course, name="Winter round", slug="winter", start_date=START,
        signup_opens_on=START - datetime.timedelta(weeks=4), signup_closes_on=START,
    )
