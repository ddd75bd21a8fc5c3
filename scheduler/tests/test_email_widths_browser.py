"""Every default email as a reader sees it, on a phone and a laptop (Debian's chromium): the HTML
part fits the width, and its links are there. Rendered for a real learner of the demo round by
the scheduler's own path (email_contexts, email_render), as the weekly send renders it."""

import datetime
from pathlib import Path

import pytest

from cohorts.models import Cohort, StudyGroup, Week
from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, fits_width
from scheduler.models import EmailKind, EmailTemplate
from scheduler.selectors import email_contexts, week_context
from scheduler.services import email_render
from scheduler.tests.helpers import START, at
from signups.tests.factories import EnrollmentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db, pytest.mark.clock(at(START + datetime.timedelta(days=2), 12))]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def rendered_emails(course):
    cohort = Cohort.objects.create(course=course, name="Winter round", slug="winter", start_date=START,
                                   signup_opens_on=START - datetime.timedelta(weeks=4), signup_closes_on=START)
    group = StudyGroup.objects.create(cohort=cohort, number=1, name="Group 1", slug="winter-1", utc_offset_minutes=0)
    enrollment = EnrollmentFactory(cohort=cohort, group=group, learner__first_name="Maximiliana-Alexandrina",
                                   learner__timezone="America/Argentina/ComodRivadavia")
    for number in range(4):
        EnrollmentFactory(cohort=cohort, group=group)
    for template in EmailTemplate.objects.filter(course=course, cohort=None).order_by("kind", "week_number"):
        number = template.week_number or (cohort.week_count if template.kind == EmailKind.COURSE_END else 1)
        week = week_context(Week.objects.get(course=course, number=number), cohort.week_count)
        context = email_contexts(cohort, week, [enrollment], START)[enrollment.pk]
        yield f"{template.kind}-{template.week_number}", email_render(template.current_version, context, "test")


@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_every_default_email_fits_a_phone_and_a_laptop(page_at, course, settings, width):
    settings.GROUP_MAIL_DOMAIN = "groups.example.org"
    page = page_at(width)
    checked = 0
    for name, email in rendered_emails(course):
        page.set_content(email.html)
        assert fits_width(page), f"{name} is wider than {width} px"
        assert page.locator("a[href*='/unsubscribe/']").count() >= 1, f"{name} has no unsubscribe link"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"email-{name}-{width}.png", full_page=True)
        checked += 1
    assert checked == 11  # eight weeks, welcome, group introduction, course end
