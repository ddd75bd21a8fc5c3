import datetime

import pytest

from cohorts.models import Cohort
from mooc.testing.providers import ScriptedAnymailBackend
from scheduler import sandbox, sns
from scheduler.tests.helpers import START, learner_in, run_pass, weekly
from scheduler.tests.webhook_requests import RECIPIENT, WEEK_1_PASS


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


@pytest.fixture(autouse=True)
def sns_certificates_forgotten():
    """Each test starts with no SNS signing certificate in this process (the cache is emptied too)."""
    sns.certificates_forget()
    yield
    sns.certificates_forget()


@pytest.fixture(scope="session")
def sns_signer():
    from scheduler.tests.webhook_requests import SnsSigner

    return SnsSigner()


@pytest.fixture(scope="session")
def sendgrid_signer():
    from scheduler.tests.webhook_requests import SendGridSigner

    return SendGridSigner()


@pytest.fixture
def http_blocked():
    """No HTTP request leaves the test through `requests`: each fails as a connection error,
    unless the test tells the mock to answer it (`http_blocked.get(url, body=...)`); the mock
    records every call."""
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def webhooks(client, settings, sns_signer, sendgrid_signer, http_blocked):
    """Every ESP's tracking webhook configured as the README says (basic auth and each signature
    setting); posts the providers' requests (scheduler/tests/webhook_requests.py)."""
    from scheduler.tests import webhook_requests as requests_

    settings.ANYMAIL = {
        **settings.ANYMAIL, "WEBHOOK_SECRET": requests_.SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": requests_.MAILGUN_SIGNING_KEY,
        "RESEND_SIGNING_SECRET": requests_.RESEND_SIGNING_SECRET,
        "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": sendgrid_signer.verification_key,
    }
    return requests_.Webhooks(client, sns_signer, sendgrid_signer, http_blocked)


@pytest.fixture
def zoe(cohort):
    """Zoë, the learner the tracking and provider tests follow, in `cohort`."""
    return learner_in(cohort, email=RECIPIENT)


@pytest.fixture
def week_1(zoe, cohort, clock):
    """Zoë's week 1 email, sent by the pass at WEEK_1_PASS (the clock moved there)."""
    clock.move_to(WEEK_1_PASS)
    run_pass(WEEK_1_PASS)
    row = weekly(cohort, 1).get()
    assert row.status == "sent"
    return row
