"""The cohort's admin page with many groups, in a real browser: search and page through its
groups at phone and desktop widths; a round that filled while the signup form was open."""

import pytest
from django.contrib.auth.models import Group

from mooc.permissions import ORGANIZER
from mooc.testing.fixtures import csp_violations, fits_width
from signups.tests.test_admin_scale import groups_of_two

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.clock("2026-11-23T12:00:00Z")
@pytest.mark.parametrize("width", [390, 1280])
def test_an_organizer_finds_a_group_among_sixty_and_pages_through_them(page_at, live_server, next_cohort, django_user_model, width):
    groups_of_two(next_cohort, 60)
    organizer = django_user_model.objects.create_user("organizer", "o@example.org", "a-long-test-password", is_staff=True)
    organizer.groups.add(Group.objects.get(name=ORGANIZER))
    page = page_at(width)
    violations = csp_violations(page)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/cohorts/cohort/{next_cohort.pk}/change/")
    page.get_by_label("Username").fill("organizer")
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Log in").click()

    page.get_by_text("Groups 1–50 of 60").wait_for()
    page.get_by_role("link", name="Next").click()
    page.get_by_text("Groups 51–60 of 60").wait_for()
    assert fits_width(page)
    assert page.get_by_role("link", name="Group 60", exact=True).is_visible()

    page.get_by_label("Find a group").fill("Group 42")
    page.get_by_label("Find a group").press("Enter")
    page.get_by_text("matching “Group 42”").wait_for()
    assert page.locator("#groups tbody tr").count() == 1
    page.get_by_role("link", name="Group 42", exact=True).click()
    page.get_by_text("Zq42x").first.wait_for()  # its members, on its own page
    assert fits_width(page)
    assert violations == []


@pytest.mark.clock("2026-11-23T12:00:00Z")
@pytest.mark.parametrize("width", [390, 1280])
def test_the_last_seat_gone_while_the_form_was_open_is_said_where_the_learner_sees_it(page_at, live_server, next_cohort, width, clock):
    from signups.tests.factories import EnrollmentFactory, LearnerFactory

    next_cohort.capacity = 1
    next_cohort.save()
    page = page_at(width)
    page.goto(f"{live_server.url}/#join")
    page.locator("#id_email").fill("ada@example.org")
    page.locator("#id_timezone").fill("Europe/London")
    # Someone else takes the last seat meanwhile: their link is live.
    EnrollmentFactory(cohort=next_cohort, learner=LearnerFactory(confirmed_at=None, confirmation_sent_at=clock.now()), status="pending")
    page.locator("input[name=experience]").first.check()
    page.locator("input[name=consent]").check()
    page.get_by_role("button", name="Sign up").click()

    page.locator("#signup-errors").wait_for()  # the summary, focused, links to the message at the form
    error = page.locator("form#signup p.error").get_by_text("This round is full or no longer open for signup")
    assert error.is_visible() and "join the waitlist" in error.inner_text()
    assert page.locator("#signup-errors a").get_attribute("href") == "#cohort-error" == "#" + error.get_attribute("id")
    assert fits_width(page)
