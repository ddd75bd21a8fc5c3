"""The outcome report in a real browser (Debian's chromium through Playwright): reached from the
round's dashboard, at a phone's width and a laptop's, within the admin's CSP."""

import datetime

import pytest
from django.contrib.auth.models import Group

from cohorts.models import GroupStrategy, StudyGroup
from cohorts.tests.factories import CohortFactory, CourseFactory
from mooc.permissions import ORGANIZER
from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, csp_violations, fits_width
from signups.models import CheckIn
from signups.tests.factories import EnrollmentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

START = datetime.date(2026, 11, 30)


@pytest.mark.clock("2027-01-01T12:00:00Z")
@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_an_organizer_reads_the_outcome_report(page_at, live_server, django_user_model, clock, width):
    cohort = CohortFactory(course=CourseFactory(week_count=5), name="Winter round", start_date=START, group_strategy=GroupStrategy.EXPERIMENT,
                           experiment_strategies=[GroupStrategy.TIMEZONE, GroupStrategy.RANDOM],
                           signup_opens_on=START - datetime.timedelta(weeks=4), signup_closes_on=START)
    for number, strategy in [(1, GroupStrategy.TIMEZONE), (2, GroupStrategy.RANDOM)]:
        group = StudyGroup.objects.create(cohort=cohort, number=number, name=f"Group {number}", slug=f"w-{number}", utc_offset_minutes=0, strategy=strategy)
        for n, enrollment in enumerate(EnrollmentFactory.create_batch(12, cohort=cohort, group=group)):
            if n < (9 if number == 1 else 5):
                CheckIn.objects.create(learner=enrollment.learner, cohort=cohort, week_number=2, answer=CheckIn.Answer.DONE,
                                       answered_at=clock.now(), changed_at=clock.now())
    organizer = django_user_model.objects.create_user("organizer", "o@example.org", "a-long-test-password", is_staff=True)
    organizer.groups.add(Group.objects.get(name=ORGANIZER))
    page = page_at(width)
    violations = csp_violations(page)

    page.goto(f"{live_server.url}/admin/login/?next=/admin/cohorts/cohort/{cohort.pk}/dashboard/")
    page.get_by_label("Username").fill("organizer")
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Log in").click()
    page.locator("#outcomes-link").click()

    table = page.locator("table.outcomes-table")
    table.wait_for()
    assert table.get_by_role("row", name="Time zone only").count() == 1
    assert "75.0%" in table.inner_text() and "9 of 12" in table.inner_text()
    assert "The sample is too small to tell" in page.locator(".outcomes-verdicts").inner_text()
    assert page.get_by_role("link", name="Outcome report").count() == 1  # the CSV
    assert fits_width(page)
    assert violations == []
