"""A learner's whole journey in a real browser: sign up, confirm from the outbox, switch round, unsubscribe."""

import email
import email.policy
import re

import pytest

from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, csp_violations, fits_width
from signups.models import Enrollment, Learner
from signups.tests.factories import EnrollmentFactory
from signups.tokens import confirmation_token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def outbox(settings, tmp_path):
    """Emails go where `make run` puts them: .eml files in the outbox folder."""
    settings.EMAIL_BACKEND = "scheduler.outbox.OutboxEmailBackend"
    settings.EMAIL_OUTBOX_DIR = tmp_path / "outbox"
    return settings.EMAIL_OUTBOX_DIR


def read_outbox(folder):
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted(folder.glob("*.eml"))
    ]


def test_sign_up_confirm_switch_round_and_unsubscribe(browser, live_server, settings, outbox, next_cohort, later_cohort):
    settings.SITE_URL = live_server.url
    context = browser.new_context(timezone_id="Asia/Tokyo")
    page = context.new_page()
    page.set_default_timeout(10_000)
    violations = csp_violations(page)
    try:
        page.goto(live_server.url + "/")
        # The browser filled in its own time zone.
        assert page.get_by_label("Your time zone").input_value() == "Asia/Tokyo"
        page.get_by_label("Email address").fill("hedy@example.org")
        page.get_by_label("First name (optional)").fill("Hedy")
        page.get_by_label("Some: I have written a little code").check()
        page.get_by_label("I agree to receive the course emails", exact=False).check()
        page.get_by_role("button", name="Sign up").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()

        learner = Learner.objects.get()
        assert learner.timezone == "Asia/Tokyo"
        [message] = read_outbox(outbox)
        text = message.get_body(preferencelist=("plain",)).get_content()
        confirm_url = re.search(r"http://\S+/confirm/\S+/", text).group(0)

        page.goto(confirm_url)
        page.get_by_role("heading", name="Confirm your address").wait_for()
        assert not Learner.objects.get().is_confirmed  # opening the link is not confirming
        page.get_by_role("button", name="Confirm").click()
        page.get_by_role("heading", name="You are in!").wait_for()
        assert Learner.objects.get().is_confirmed
        page.get_by_role("link", name="Manage your enrollment").click()
        page.get_by_role("heading", name="Your enrollment").wait_for()
        assert next_cohort.name in page.content()

        page.get_by_label(later_cohort.name, exact=False).check()
        page.get_by_role("button", name="Switch to this round").click()
        page.get_by_text(f"you are now in {later_cohort.name}").wait_for()
        assert Enrollment.objects.get(status="active").cohort == later_cohort

        page.get_by_role("link", name="Unsubscribe from all emails").click()
        page.get_by_role("button", name="Unsubscribe").click()
        page.get_by_role("heading", name="You are unsubscribed").wait_for()
        learner.refresh_from_db()
        assert learner.is_unsubscribed
        # Every page on the way (home, check your inbox, confirm, you are in, /me/, unsubscribe)
        # kept to the Content-Security-Policy.
        assert violations == []
    finally:
        context.close()


def test_the_browser_refuses_what_the_policy_forbids(page, live_server):
    """The header is obeyed, and `csp_violations` sees what is refused."""
    violations = csp_violations(page)
    page.goto(live_server.url + "/signup/sent/")
    assert violations == []

    with page.expect_console_message(lambda message: "inline style" in message.text):
        page.evaluate("document.body.setAttribute('style', 'background: red')")
    with page.expect_console_message(lambda message: "inline script" in message.text):
        page.evaluate("""() => {
            const script = document.createElement('script');
            script.textContent = 'window.inlineScriptRan = true';
            document.body.append(script);
        }""")

    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != "rgb(255, 0, 0)"
    assert page.evaluate("window.inlineScriptRan") is None
    assert len(violations) == 2


def test_the_form_without_javascript_offers_time_zones_to_pick(browser, live_server, next_cohort):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(live_server.url + "/")
        field = page.get_by_label("Your time zone")
        assert field.input_value() == ""
        assert page.locator("datalist#timezone-names option[value='America/Chicago']").count() == 1
    finally:
        context.close()


@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_the_confirm_page_reads_and_works_on_a_phone_and_a_laptop(page_at, live_server, next_cohort, width):
    enrollment = EnrollmentFactory(
        cohort=next_cohort, status=Enrollment.Status.PENDING,
        learner__confirmed_at=None, learner__email="a.rather.long.address.for.a.small.screen@example.org",
    )
    page = page_at(width)
    page.goto(f"{live_server.url}/confirm/{confirmation_token(enrollment.pk)}/")

    button = page.get_by_role("button", name="Confirm")
    assert button.is_visible()
    box = button.bounding_box()
    assert 0 <= box["x"] and box["x"] + box["width"] <= width
    assert fits_width(page)

    button.click()
    page.get_by_role("heading", name="You are in!").wait_for()
    assert fits_width(page)
    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.ACTIVE
