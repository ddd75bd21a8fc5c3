"""The admin in a real browser (Debian's chromium through Playwright): its Content-Security-Policy, its login throttling."""

from io import StringIO

import pytest
from django.core.management import call_command

from cohorts.models import Cohort
from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, csp_violations, fits_width
from scheduler.models import EmailKind, EmailTemplate
from signups.tests.factories import EnrollmentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_admin_pages_keep_to_their_policy(page, live_server, django_user_model):
    call_command("load_demo", stdout=StringIO())
    cohort = Cohort.objects.order_by("start_date").first()
    EnrollmentFactory.create_batch(3, cohort=cohort)
    template = EmailTemplate.objects.get(cohort=None, kind=EmailKind.WEEK, week_number=1)
    django_user_model.objects.create_superuser("staff", "staff@example.org", "a-long-test-password")
    violations = csp_violations(page)

    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("staff")
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Site administration").wait_for()
    for path in ["/admin/signups/learner/", f"/admin/cohorts/cohort/{cohort.pk}/change/"]:
        page.goto(live_server.url + path)
        page.locator("#content").wait_for()
    # The email editor: its script (a file of ours) fetches the preview and writes the email's
    # HTML, inline styles and all, into a sandboxed frame.
    page.goto(f"{live_server.url}/admin/scheduler/emailtemplate/{template.pk}/change/")
    page.frame_locator("#preview-html").locator("body *").first.wait_for()

    assert violations == []


def admin_log_in(page, live_server, password):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("staff")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_wrong_passwords_in_the_login_form_lead_to_the_lockout_page(page_at, live_server, django_user_model, width):
    django_user_model.objects.create_superuser("staff", "staff@example.org", "a-long-test-password")
    page = page_at(width)
    violations = csp_violations(page)

    for _ in range(4):
        admin_log_in(page, live_server, "a-wrong-guess")
        page.get_by_text("Please enter the correct username and password").wait_for()
    admin_log_in(page, live_server, "a-wrong-guess")
    page.get_by_text("Too many failed logins").wait_for()
    assert fits_width(page)
    admin_log_in(page, live_server, "a-long-test-password")

    page.get_by_text("Too many failed logins").wait_for()
    assert "locked for 15 minutes" in page.content()
    assert fits_width(page)
    assert violations == []
