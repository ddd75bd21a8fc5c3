"""Joining a round from the waitlist in a real browser, on a phone and on a laptop."""

import pytest

from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, csp_violations, fits_width
from signups.models import Enrollment
from signups.services import waitlist_join_url
from signups.tests.factories import EnrollmentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_the_join_page_reads_and_works_on_a_phone_and_a_laptop(page_at, live_server, settings, course, next_cohort, width):
    settings.SITE_URL = live_server.url
    next_cohort.name = "The autumn round for evening learners across the Americas"  # a long button
    next_cohort.save()
    enrollment = EnrollmentFactory(
        cohort=None, course=course, learner__first_name="Maximiliana",
        learner__email="a.rather.long.address.for.a.small.screen@example.org",
    )
    page = page_at(width)
    violations = csp_violations(page)
    page.goto(waitlist_join_url(enrollment.pk, next_cohort.pk))

    page.get_by_role("heading", name=f"Join {next_cohort.name}").wait_for()
    button = page.get_by_role("button", name=f"Join {next_cohort.name}")
    assert button.is_visible()
    box = button.bounding_box()
    assert 0 <= box["x"] and box["x"] + box["width"] <= width
    assert fits_width(page)
    enrollment.refresh_from_db()
    assert enrollment.is_waitlisted  # opening the page is not joining

    button.click()
    page.get_by_role("heading", name=f"You are in {next_cohort.name}!").wait_for()
    assert fits_width(page)
    enrollment.refresh_from_db()
    assert enrollment.cohort == next_cohort and enrollment.status == Enrollment.Status.ACTIVE

    page.get_by_role("link", name="Manage your enrollment").click()
    page.get_by_role("heading", name="Your enrollment").wait_for()
    assert next_cohort.name in page.content()
    assert violations == []
