"""The demo round's dashboard in a real browser (Debian's chromium through Playwright): reached from
the cohort's page, its funnel chart drawn, at a phone's width and a laptop's, within the admin's CSP."""

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from cohorts.models import Cohort
from mooc.permissions import ORGANIZER
from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, csp_violations, fits_width
from scheduler.models import Delivery, EmailKind
from signups.tests.factories import EnrollmentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.clock("2026-11-23T12:00:00Z")
@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_an_organizer_opens_the_demo_rounds_dashboard_and_sees_its_funnel(page_at, live_server, django_user_model, clock, width):
    call_command("load_demo", stdout=StringIO())
    cohort = Cohort.objects.order_by("start_date").first()
    for n, enrollment in enumerate(EnrollmentFactory.create_batch(5, cohort=cohort)):
        Delivery.objects.create(
            learner=enrollment.learner, cohort=cohort, kind=EmailKind.WEEK, week_number=1, status=Delivery.Status.SENT,
            due_at=clock.now(), sent_at=clock.now(), delivered_at=clock.now(), opened_at=clock.now() if n % 2 else None,
        )
    organizer = django_user_model.objects.create_user("organizer", "o@example.org", "a-long-test-password", is_staff=True)
    organizer.groups.add(Group.objects.get(name=ORGANIZER))
    page = page_at(width)
    violations = csp_violations(page)

    page.goto(f"{live_server.url}/admin/login/?next=/admin/cohorts/cohort/{cohort.pk}/change/")
    page.get_by_label("Username").fill("organizer")
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Dashboard", exact=True).click()

    chart = page.get_by_role("img", name=f"Funnel of {cohort.name}")
    chart.wait_for()
    assert chart.is_visible()
    box = chart.bounding_box()
    assert 0 < box["width"] <= width and box["height"] > 100
    assert chart.locator("text", has_text="Week 1 opened").count() == 1
    assert chart.locator("text", has_text="2 (40%)").count() == 1  # two of five opened
    assert fits_width(page)
    page.locator("#exports").get_by_role("link", name="Learners").wait_for()  # the organizer's export
    assert violations == []
