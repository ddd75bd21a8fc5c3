"""The cohort's page as the organizer's desk, in a real browser (Debian's chromium through
Playwright) at a phone's width and a laptop's: the week ahead's forecast with times in the
browser's own zone, the action buttons, and "Start the next round"'s preview. Each test saves
a screenshot under var/screenshots/ (not committed) for review."""

import datetime
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User

from cohorts.models import Cohort
from mooc.permissions import ORGANIZER
from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, csp_violations, fits_width
from scheduler.tests.helpers import START, at, learner_in, workers_report_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NOW = at(START, 10)  # Monday of week 1, 10:00 UTC
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "a-long-test-password"


def screenshot(page, name: str, width: int) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}-{width}.png", full_page=True)


def log_in_as_organizer(page, live_server, next_url: str) -> None:
    """Through the admin's own login form, as a staff member with the Organizer role only."""
    user = User.objects.create_user("organizer", "o@example.org", PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=ORGANIZER))
    page.goto(f"{live_server.url}/admin/login/?next={next_url}")
    page.get_by_label("Username").fill("organizer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


@pytest.mark.clock(NOW)
@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_the_cohort_page_shows_the_week_ahead_and_the_organizers_buttons(page_at, live_server, cohort, clock, width):
    learner_in(cohort, "Europe/Lisbon", learner__confirmed_at=NOW - datetime.timedelta(days=10))
    learner_in(cohort, "America/New_York", learner__confirmed_at=NOW - datetime.timedelta(days=10))
    workers_report_in(NOW)  # the workers run: no banner
    page = page_at(width, timezone_id="Asia/Tokyo")
    violations = csp_violations(page)

    log_in_as_organizer(page, live_server, f"/admin/cohorts/cohort/{cohort.pk}/change/")

    from playwright.sync_api import expect  # here: without Playwright the browser fixture skips, not the import

    forecast = page.locator("#forecast")
    forecast.wait_for()
    assert "Due in the next 7 days" in forecast.inner_text()
    # Filled by static/js/local_times.js, a deferred script that may run just after the table
    # shows: expect() waits for it (reading the text at once failed on a loaded CI machine).
    expect(forecast.locator("[data-local-zone]")).to_have_text("Asia/Tokyo")
    week_two = forecast.locator("time[data-local]").first
    expect(week_two).not_to_contain_text("UTC")  # shown in Tokyo's time, not the UTC fallback
    rows = forecast.locator("tbody tr")
    assert rows.count() >= 2
    buttons = page.locator("#cohort-actions button")
    labels = [buttons.nth(index).inner_text() for index in range(buttons.count())]
    assert "Pause sending" in labels and "Close signup now" in labels and "Form study groups now" in labels
    assert "Resume sending" not in labels
    assert page.locator("#worker-banner").count() == 0
    screenshot(page, "cohort-page", width)
    assert fits_width(page)
    assert violations == []

    page.get_by_role("button", name="Pause sending").click()
    page.locator(".messagelist").get_by_text("Paused sending for 1 cohort.").wait_for()
    assert page.url.endswith(f"/admin/cohorts/cohort/{cohort.pk}/change/")
    assert "nothing is forecast" in page.locator("#forecast").inner_text()


@pytest.mark.clock(at(START - datetime.timedelta(weeks=1), 12))
@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_start_the_next_round_shows_its_dates_first_then_links_to_it(page_at, live_server, cohort, width):
    Cohort.objects.filter(pk=cohort.pk).update(name="Round 1")
    page = page_at(width)
    violations = csp_violations(page)
    log_in_as_organizer(page, live_server, f"/admin/cohorts/cohort/{cohort.pk}/change/")

    page.get_by_role("button", name="Start the next round (a copy, N weeks later)").click()
    preview = page.locator("#next-round-preview")
    preview.wait_for()
    page.get_by_label("Start how many weeks after this one?").fill("6")
    page.get_by_role("button", name="Show the dates for this number").click()
    page.locator("#next-round-preview", has_text="Monday 11 January 2027").wait_for()
    text = page.locator("#next-round-preview").inner_text()
    assert "Round 2" in text and "Draft" in text and "until its signup opens on" in text
    screenshot(page, "start-next-round-preview", width)
    assert fits_width(page)
    assert Cohort.objects.count() == 1  # nothing created yet

    page.get_by_role("button", name="Create Round 2").click()
    page.locator(".messagelist").get_by_role("link", name="Round 2").click()
    new = Cohort.objects.get(name="Round 2")
    page.wait_for_url(f"**/admin/cohorts/cohort/{new.pk}/change/")
    assert new.start_date == START + datetime.timedelta(weeks=6)
    assert violations == []
