"""A learner opens their weekly email from the development outbox, follows "I did this week" and
presses the button, in a real browser, on a phone and a laptop: recorded, and the page fits."""

import datetime
import email
import email.policy
import re

import pytest

from cohorts.models import Cohort
from mooc.testing.accessibility import axe_violations
from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, csp_violations, fits_width
from signups.models import CheckIn
from signups.tests.factories import EnrollmentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

START = datetime.date(2026, 11, 30)  # a Monday: week 1's email is due at 09:00 in Lisbon (UTC+0)


def outbox_messages(outbox) -> list:
    return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in sorted(outbox.glob("*.eml"))]


@pytest.mark.clock("2026-11-30T09:05:00Z")
@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_a_check_in_link_from_the_weekly_email_records_the_answer(page_at, live_server, settings, tmp_path, clock, width):
    from cohorts.services import DEMO_COURSE_FILE, course_create_from_definition, course_definition_read
    from scheduler.services import email_templates_install_defaults
    from scheduler.tests.helpers import run_pass

    settings.SITE_URL = live_server.url
    settings.EMAIL_BACKEND = "scheduler.outbox.OutboxEmailBackend"
    settings.EMAIL_OUTBOX_DIR = outbox = tmp_path / "outbox"
    settings.EMAIL_SEND_RATE_PER_SECOND = 0
    course, _ = course_create_from_definition(course_definition_read(DEMO_COURSE_FILE))
    email_templates_install_defaults(course)
    cohort = Cohort.objects.create(
        course=course, name="Winter round", slug="winter", start_date=START,
        signup_opens_on=START - datetime.timedelta(weeks=4), signup_closes_on=START,
    )
    hedy = EnrollmentFactory(
        cohort=cohort, learner__first_name="Hedy", learner__timezone="Europe/Lisbon",
        learner__email="a.rather.long.address.for.a.small.screen@example.org",
    ).learner
    run_pass(clock.now())  # the scheduler's pass: week 1's email goes to the outbox

    [weekly] = [message for message in outbox_messages(outbox) if message["Subject"].startswith("We begin")]
    html = weekly.get_body(preferencelist=("html",)).get_content()
    done = re.search(r'href="(http://[^"]+/checkin/[^"]+/done/)"', html).group(1)
    assert "I did this week</a>" in html and done.replace("/done/", "/stuck/") in html

    page = page_at(width)
    violations = csp_violations(page)
    page.goto(done)
    page.get_by_role("heading", name="Week 1: First programs, values and variables").wait_for()
    assert CheckIn.objects.count() == 0  # opening the link records nothing
    assert fits_width(page)
    assert axe_violations(page) == []

    page.get_by_role("button", name="I did this week").click()

    page.get_by_text("Recorded:", exact=False).wait_for()
    assert page.get_by_text("Well done.", exact=False).is_visible()
    assert page.get_by_role("heading", name="Changed your mind?").is_visible()
    assert fits_width(page)
    checkin = CheckIn.objects.get()
    assert (checkin.learner, checkin.cohort, checkin.week_number, checkin.answer) == (hedy, cohort, 1, "done")

    page.get_by_role("button", name="I'm stuck").click()  # changed their mind
    page.get_by_role("heading", name="Getting unstuck").wait_for()
    assert fits_width(page)
    assert axe_violations(page) == []
    assert CheckIn.objects.get().answer == "stuck"
    assert violations == []
