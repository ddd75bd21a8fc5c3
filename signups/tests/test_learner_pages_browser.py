"""The learner's pages in a real browser at a phone's and a laptop's width: a signup with an error,
the confirmation flow, the learner's own page and the pages around them, each checked by axe-core
and photographed under var/screenshots/ for review."""

import re

import pytest
from django.core import mail

from cohorts.services import demo_load
from mooc.testing.accessibility import axe_violations
from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, PROJECT_DIR, csp_violations, fits_width
from signups.services import learner_links
from signups.tests.factories import EnrollmentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = PROJECT_DIR / "var" / "screenshots"


def screenshot(page, request, name: str = "") -> None:
    """The whole page, as var/screenshots/<test>[-<name>]-<width>.png (var/ is not committed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    test = request.node.originalname.removeprefix("test_")
    suffix = f"-{name}" if name else ""
    page.screenshot(path=SCREENSHOTS / f"{test}{suffix}-{page.viewport_size['width']}.png", full_page=True)


def in_viewport(page, selector: str) -> bool:
    return page.evaluate(
        """selector => { const box = document.querySelector(selector).getBoundingClientRect();
        return box.top >= 0 && box.bottom <= window.innerHeight && box.left >= 0 && box.right <= window.innerWidth; }""",
        selector,
    )


def clear_of_the_rules(page) -> bool:
    """The page's content keeps at least 16 px from the header's rule above it and the footer's below."""
    return page.evaluate("""() => {
        const header = document.querySelector('.site-header').getBoundingClientRect();
        const footer = document.querySelector('.site-footer').getBoundingClientRect();
        const content = [...document.querySelectorAll('main > *')].filter(e => e.getClientRects().length)
            .map(e => e.getBoundingClientRect());
        const top = Math.min(...content.map(box => box.top)), bottom = Math.max(...content.map(box => box.bottom));
        return top - header.bottom >= 16 && footer.top - bottom >= 16;
    }""")


@pytest.fixture
def demo_round(clock, settings, live_server):
    settings.SITE_URL = live_server.url
    demo_load(today=clock.today())


def fill_signup_form(page, time_zone: str) -> None:
    form = page.locator("form#signup")
    form.get_by_label("Email address").fill("ada@example.org")
    form.get_by_label("First name (optional)").fill("Ada")
    form.get_by_label("Your time zone").fill(time_zone)
    form.locator("input[name=experience]").first.check()
    form.locator("input[name=wants_group]").first.check()
    form.locator("input[name=cohort]").first.check()
    form.locator("#id_consent").check()


@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_a_signup_with_an_error_lands_on_the_error(page_at, live_server, demo_round, request, width):
    page = page_at(width)
    violations = csp_violations(page)
    page.goto(live_server.url + "/")
    assert axe_violations(page) == []
    fill_signup_form(page, "Mars/Olympus_Mons")

    page.locator("form#signup").get_by_role("button", name="Sign up").click()

    summary = page.locator("#signup-errors")
    summary.wait_for()
    from playwright.sync_api import expect  # here: without Playwright the browser fixture skips, not the import

    expect(summary).to_be_focused()
    assert in_viewport(page, "#signup-errors"), "the error summary is where the learner is looking"
    assert "is not a time zone we know" in summary.inner_text()
    assert page.get_by_label("Your time zone").input_value() == "Mars/Olympus_Mons"
    # The summary's link takes the learner to the field.
    summary.get_by_role("link").click()
    assert page.evaluate("document.activeElement.id") == "id_timezone"
    assert fits_width(page)
    assert axe_violations(page) == []
    screenshot(page, request)
    assert violations == []


@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_the_confirmation_flow(page_at, live_server, demo_round, request, width):
    page = page_at(width)
    violations = csp_violations(page)
    page.goto(live_server.url + "/")
    fill_signup_form(page, "Europe/Lisbon")

    page.locator("form#signup").get_by_role("button", name="Sign up").click()

    page.wait_for_url(re.compile(r"/signup/sent/(#signup)?$"))  # the redirect keeps the form's fragment
    assert fits_width(page)
    assert axe_violations(page) == []
    assert clear_of_the_rules(page)
    screenshot(page, request, "sent")

    [message] = mail.outbox
    link = re.search(r"https?://\S+/confirm/[^/\s\"]+/", message.body).group(0)
    page.goto(link)
    assert fits_width(page)
    assert axe_violations(page) == []
    screenshot(page, request, "confirm")
    page.get_by_role("button", name=re.compile("Confirm", re.IGNORECASE)).click()

    page.get_by_role("heading", name="You are in!").wait_for()
    assert page.get_by_role("link", name="Manage your enrollment").is_visible()
    assert fits_width(page)
    assert axe_violations(page) == []
    assert clear_of_the_rules(page)
    screenshot(page, request, "confirmed")
    assert violations == []


@pytest.mark.clock("2026-11-24T12:00:00Z")
@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_the_self_service_page(page_at, live_server, settings, running_cohort, request, width):
    settings.SITE_URL = live_server.url
    hedy = EnrollmentFactory(cohort=running_cohort, learner__first_name="Hedy", learner__timezone="Europe/Lisbon").learner
    page = page_at(width)
    violations = csp_violations(page)

    page.goto(learner_links(hedy)["manage"])

    page.get_by_role("heading", name="Your enrollment").wait_for()
    assert fits_width(page)
    download = page.get_by_role("link", name="Download my data (JSON)").bounding_box()
    delete = page.get_by_role("link", name="Delete my data").bounding_box()
    across = delete["x"] - (download["x"] + download["width"])
    down = delete["y"] - (download["y"] + download["height"])
    assert max(across, down) >= 8, "the two buttons are far enough apart for a thumb"
    assert axe_violations(page) == []
    assert clear_of_the_rules(page)
    screenshot(page, request)

    page.goto(learner_links(hedy)["unsubscribe"])
    assert fits_width(page)
    assert axe_violations(page) == []
    screenshot(page, request, "unsubscribe")
    assert violations == []


@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_the_not_found_page(page_at, live_server, request, width):
    page = page_at(width)
    violations = csp_violations(page)
    console_errors = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)

    response = page.goto(live_server.url + "/no-such-page/")

    assert response.status == 404
    assert page.get_by_role("heading", name="We could not find that page").is_visible()
    assert fits_width(page)
    assert axe_violations(page) == []
    assert clear_of_the_rules(page)
    screenshot(page, request)
    assert violations == []
    # The page's own 404 is the only error: the icon was found.
    assert [error for error in console_errors if "404" not in error or "favicon" in error] == []
