"""Staff edit a week's email in the real admin, in a real browser: live preview, save, test send."""

import email
import email.policy
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from mooc.permissions import COURSE_EDITOR
from scheduler.models import EmailKind, EmailTemplate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_edit_preview_save_and_test_send(browser, live_server, settings, tmp_path, django_user_model):
    settings.EMAIL_BACKEND = "scheduler.outbox.OutboxEmailBackend"
    settings.EMAIL_OUTBOX_DIR = tmp_path / "outbox"
    call_command("load_demo", stdout=StringIO())
    # A course editor, the role that writes emails (mooc/permissions.py), not a superuser.
    editor = django_user_model.objects.create_user("staff", "staff@example.org", "a-long-test-password", is_staff=True)
    editor.groups.add(Group.objects.get(name=COURSE_EDITOR))
    template = EmailTemplate.objects.get(cohort=None, kind=EmailKind.WEEK, week_number=3)
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{live_server.url}/admin/login/?next=/admin/scheduler/emailtemplate/{template.pk}/change/")
        page.get_by_label("Username").fill("staff")
        page.get_by_label("Password").fill("a-long-test-password")
        page.get_by_role("button", name="Log in").click()

        preview = page.frame_locator("#preview-html")
        page.locator("#preview-subject").get_by_text("Week 3: the Mechanical MOOC is recalculating your route").wait_for()
        preview.get_by_text("This week you write your own functions", exact=False).wait_for()
        error = page.locator("#preview-error")
        assert not error.is_visible()  # a preview that works shows no error bar, not even an empty one

        # Both parts broken: every problem is listed, then the bar goes once they are fixed.
        page.locator("#id_subject").fill("Week {{ wek.number }}")
        page.locator("#id_body").fill("Hello {{ oops }}\n")
        error.get_by_text("Body: Line 1: “oops” is not one of the variables", exact=False).wait_for()
        assert error.locator("li").all_inner_texts()[0].startswith("Subject: Line 1: “wek”")
        assert "errornote" in error.get_attribute("class")
        page.locator("#id_subject").fill("Week {{ week.number }}: functions, {{ learner.first_name }}!")
        body = page.locator("#id_body")
        body.fill("## Hello {{ learner.first_name }}\n\nThis week: **{{ week.title }}**.\n\n[Your page]({{ links.manage }})\n")
        page.locator("#preview-subject").get_by_text("Week 3: functions, Ada!").wait_for()
        error.wait_for(state="hidden")
        assert error.get_attribute("class") in (None, "")
        preview.get_by_role("heading", name="Hello Ada").wait_for()

        page.get_by_role("button", name="Save and continue editing").click()
        page.get_by_text("was changed successfully").wait_for()
        template.refresh_from_db()
        assert template.current_version.number == 2

        page.get_by_role("button", name="Send the saved version to me").click()
        page.get_by_text("to staff@example.org").wait_for()

        # On a phone the editor and its preview fit the width.
        for width, height in [(390, 844), (1280, 800)]:
            page.set_viewport_size({"width": width, "height": height})
            page.locator("#email-preview").screenshot(path=tmp_path / f"editor-{width}.png")
            assert page.locator("#preview-html").bounding_box()["width"] <= width
            assert not page.locator("#preview-error").is_visible()  # no empty error box
    finally:
        context.close()

    [path] = (tmp_path / "outbox").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "staff@example.org"
    assert message["Subject"] == "[Test] Week 3: functions, Ada!"
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Writing functions (and debugging)" in text
    assert "/me/sample-learner/" in text and message["List-Unsubscribe"] is None
