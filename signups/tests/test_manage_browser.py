"""The learner's own page in a real browser, on a phone and a laptop: it fits, and their group is there."""

import re

import pytest

from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, csp_violations, fits_width
from signups.groups import cohort_groups_form
from signups.services import learner_links
from signups.tests.factories import EnrollmentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


# Midday UTC: the learners' own date (Buenos Aires) is the site's, so the round is in its week 3.
@pytest.mark.clock("2026-11-24T12:00:00Z")
@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_the_page_shows_the_group_and_fits_on_a_phone_and_a_laptop(page_at, live_server, settings, running_cohort, clock, width):
    settings.SITE_URL = live_server.url
    running_cohort.discussion_url_pattern = "https://a-rather-long-forum-address.example.org/c/mechanical-mooc/{group}"
    running_cohort.save()
    hedy = EnrollmentFactory(
        cohort=running_cohort, learner__first_name="Hedy", learner__timezone="America/Argentina/Buenos_Aires",
        learner__email="a.rather.long.address.for.a.small.screen@example.org",
    )
    for name in ["Ada", "Grace", "Bartholomew-Maximilian", "Joan", "Alan"]:
        EnrollmentFactory(cohort=running_cohort, learner__first_name=name, learner__timezone="America/Argentina/ComodRivadavia")
    cohort_groups_form(running_cohort, now=clock.now())

    page = page_at(width)
    violations = csp_violations(page)
    page.goto(learner_links(hedy.learner)["manage"])

    page.get_by_role("heading", name="Your enrollment").wait_for()
    assert page.get_by_text("Week 3 of 8").is_visible()
    group = page.locator("#group")
    group.scroll_into_view_if_needed()
    assert group.get_by_role("heading", name="Your study group").is_visible()
    assert group.get_by_text("Group 1", exact=False).first.is_visible()
    assert group.get_by_text("Bartholomew-Maximilian").is_visible()
    link = group.get_by_role("link", name="Go to Group 1’s discussion")
    assert link.is_visible()
    box = link.bounding_box()
    assert 0 <= box["x"] and box["x"] + box["width"] <= width
    assert page.locator("#next").get_by_text(re.compile(r"Week \d+’s email (arrives on|is due today)")).is_visible()
    assert fits_width(page)
    assert violations == []
