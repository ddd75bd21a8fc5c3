"""Staff edit emails in the real admin: the editor, live preview, test send, history, diff, restore."""

from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from cohorts.models import Cohort, Course
from scheduler import admin as scheduler_admin
from scheduler import sandbox
from scheduler.models import EmailKind, EmailTemplate
from scheduler.tasks import email_test_send
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def week_one(db):
    call_command("load_demo", stdout=StringIO())
    return EmailTemplate.objects.get(cohort=None, kind=EmailKind.WEEK, week_number=1)


def change_data(template, subject, body):
    return {
        "course": template.course_id, "cohort": "", "kind": template.kind, "week_number": template.week_number,
        "subject": subject, "body": body,
    }


def test_the_editor_lists_the_variables_and_the_history(admin_client, week_one):
    page = admin_client.get(reverse("admin:scheduler_emailtemplate_change", args=[week_one.pk])).content.decode()

    assert "Variables you can use" in page and "{{ week.lecture.title, week.lecture.url }}" in page
    assert "History: every saved version" in page and "(in force)" in page
    assert "We begin: week 1 of {{ course.title }}" in page
    assert admin_client.get(reverse("admin:scheduler_emailtemplate_changelist")).status_code == 200


def test_saving_keeps_the_previous_version_with_who_and_when(admin_client, admin_user, week_one):
    url = reverse("admin:scheduler_emailtemplate_change", args=[week_one.pk])

    response = admin_client.post(url, change_data(week_one, "Week 1 starts, {{ learner.first_name }}", "New words.\n"))

    assert response.status_code == 302
    week_one.refresh_from_db()
    assert week_one.current_version.number == 2 and week_one.current_version.created_by == admin_user
    assert week_one.versions.get(number=1).subject == "We begin: week 1 of {{ course.title }}"
    # Saving again without changing the words adds no version.
    admin_client.post(url, change_data(week_one, "Week 1 starts, {{ learner.first_name }}", "New words.\n"))
    assert week_one.versions.count() == 2


def test_a_broken_template_is_refused_at_its_field_with_its_line(admin_client, week_one):
    url = reverse("admin:scheduler_emailtemplate_change", args=[week_one.pk])

    response = admin_client.post(url, change_data(week_one, "Fine", "Hello\n\n{% if group %}\nNo end\n"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "Line 4: Unexpected end of template" in errors["body"][0]
    week_one.refresh_from_db()
    assert week_one.versions.count() == 1


def test_a_valid_template_shows_no_error_box(admin_client, week_one):
    page = admin_client.get(reverse("admin:scheduler_emailtemplate_change", args=[week_one.pk])).content.decode()

    assert "errornote" not in page  # the preview's box is styled as an error only while it holds one
    assert '<div id="preview-error" role="alert" hidden>' in page


def test_every_problem_of_both_parts_is_listed_at_its_field(admin_client, week_one):
    url = reverse("admin:scheduler_emailtemplate_change", args=[week_one.pk])
    body = "Hello {{ learner.nickname }}\n\n{{ oops }}\n\n{{ week.title|shout }}\n"

    response = admin_client.post(url, change_data(week_one, "Week {{ wek.number }}", body))

    errors = response.context["adminform"].form.errors
    assert errors["subject"] == ["Line 1: “wek” is not one of the variables listed beside the editor"]
    assert errors["body"][0] == "Line 3: “oops” is not one of the variables listed beside the editor"
    assert errors["body"][1].startswith("Line 5: the filter “shout” is not available")
    page = response.content.decode()
    assert "“wek”" in page and "“oops”" in page and "“shout”" in page
    week_one.refresh_from_db()
    assert week_one.versions.count() == 1


def test_the_preview_lists_the_subjects_and_the_bodys_problems(admin_client, week_one):
    response = admin_client.post(
        reverse("admin:scheduler_emailtemplate_preview"),
        {"course": week_one.course_id, "kind": "week", "week_number": 1, "subject": "{{ learner.nickname }}", "body": "{% if x %}\n"},
    )

    [subject, body] = response.json()["errors"]
    assert subject.startswith("Subject: Line 1:") and "nickname" in subject
    assert body.startswith("Body: Line 1: Unexpected end of template")


def test_the_editor_documents_the_limits_beside_the_variables(admin_client, week_one):
    page = admin_client.get(reverse("admin:scheduler_emailtemplate_change", args=[week_one.pk])).content.decode()

    limits = page[page.index('<table id="email-limits">'):]
    for words in [f"at most {sandbox.OPERATION_MAX:,} characters", f"at most {sandbox.NUMBER_DIGITS_MAX} digits",
                  f"at most {sandbox.OUTPUT_MAX // 1024} KiB", f"at most {sandbox.STEPS_MAX:,} steps",
                  f"at most {sandbox.RENDER_SECONDS_MAX:g} seconds", "macros and call blocks"]:
        assert words in limits, words


def test_a_template_bomb_is_refused_at_its_line_and_the_last_version_stays(admin_client, week_one):
    url = reverse("admin:scheduler_emailtemplate_change", args=[week_one.pk])

    response = admin_client.post(url, change_data(week_one, "Fine", "Hello\n\n{{ '{:>1000000000}'.format(1) }}\n"))

    assert response.status_code == 200
    error = response.context["adminform"].form.errors["body"][0]
    assert error == f"Line 3: one operation would make 1,000,000,000 characters (or list items); at most {sandbox.OPERATION_MAX:,}"
    week_one.refresh_from_db()
    assert week_one.versions.count() == 1


def test_the_preview_refuses_a_template_bomb_with_its_line(admin_client, week_one):
    response = admin_client.post(
        reverse("admin:scheduler_emailtemplate_preview"),
        {"course": week_one.course_id, "kind": "week", "week_number": 1, "subject": "x",
         "body": "Hello\n{% for a in links.manage %}{% for b in links.manage %}{{ links.manage }}{% endfor %}{% endfor %}\n"},
    )

    assert response.json() == {"errors": [f"Body: Line 2: it produced more than {sandbox.OUTPUT_MAX // 1024} KiB ({sandbox.OUTPUT_MAX:,} characters)"]}


def test_a_week_outside_the_course_is_refused(admin_client, week_one):
    data = change_data(week_one, "Hi", "Body\n") | {"week_number": 9}
    response = admin_client.post(reverse("admin:scheduler_emailtemplate_add"), data)
    assert "A weekly email needs a week between 1 and 8." in response.context["adminform"].form.errors["week_number"][0]


def test_the_preview_renders_what_is_typed_without_saving(admin_client, week_one):
    cohort = Cohort.objects.get(slug="gentle-python-round-2")
    response = admin_client.post(
        reverse("admin:scheduler_emailtemplate_preview"),
        {"course": week_one.course_id, "kind": "week", "week_number": 1, "preview_cohort": cohort.pk,
         "subject": "Preview for {{ learner.first_name }}", "body": "## {{ week.title }}\n"},
    )

    data = response.json()
    assert data["subject"] == "Preview for Ada"  # the cohort is empty: a made-up learner
    assert "First programs, values and variables</h2>" in data["html"]
    assert data["text"].startswith("First programs, values and variables\n------------------------------------\n")
    assert "made-up learner" in data["who"]
    assert week_one.versions.count() == 1

    broken = admin_client.post(
        reverse("admin:scheduler_emailtemplate_preview"),
        {"course": week_one.course_id, "kind": "week", "week_number": 1, "subject": "x", "body": "{{ oops }"},
    ).json()
    assert broken["errors"][0].startswith("Body: Line 1:")


def test_the_preview_is_for_staff_only(client, week_one):
    response = client.post(reverse("admin:scheduler_emailtemplate_preview"), {"course": week_one.course_id})
    assert response.status_code == 302  # to the login page


def test_a_test_send_goes_to_the_staff_members_own_address(admin_client, admin_user, week_one):
    response = admin_client.post(reverse("admin:scheduler_emailtemplate_test_send", args=[week_one.pk]), follow=True)

    [message] = mail.outbox
    assert message.to == [admin_user.email]
    assert message.subject == "[Test] We begin: week 1 of A Gentle Introduction to Python"
    # The staff member's mail client must offer no Unsubscribe that acts on anyone.
    assert not {"List-Unsubscribe", "List-Unsubscribe-Post"} & set(message.extra_headers)
    html = message.alternatives[0][0]
    assert "First programs, values and variables" in html
    assert f"to {admin_user.email}" in response.content.decode()


def test_a_test_send_is_queued_for_a_worker_and_the_page_says_so(admin_client, admin_user, week_one, monkeypatch):
    queued = []
    monkeypatch.setattr(email_test_send, "apply_async", lambda args, **options: queued.append(args))
    cohort = Cohort.objects.get(slug="gentle-python-round-2")

    response = admin_client.post(
        reverse("admin:scheduler_emailtemplate_test_send", args=[week_one.pk]), {"preview_cohort": cohort.pk}, follow=True
    )

    assert not mail.outbox  # the request only queued it
    assert queued == [[week_one.current_version_id, cohort.pk, admin_user.email]]
    assert (
        f"Queued “We begin: week 1 of A Gentle Introduction to Python” (version 1): a worker sends it to {admin_user.email}"
        in response.content.decode()
    )
    assert 'id="preview-html"' in response.content.decode()  # the editor and its live preview, as before

    email_test_send.apply(args=queued[0])  # the worker
    [message] = mail.outbox
    assert message.to == [admin_user.email] and message.subject.startswith("[Test] We begin")


def test_a_test_send_the_provider_fails_is_retried(admin_client, admin_user, week_one, provider, monkeypatch):
    from anymail.exceptions import AnymailAPIError

    queued = []
    monkeypatch.setattr(email_test_send, "apply_async", lambda args, **options: queued.append(args))
    admin_client.post(reverse("admin:scheduler_emailtemplate_test_send", args=[week_one.pk]))
    provider[admin_user.email] = [AnymailAPIError("Service Unavailable", status_code=503), None]

    # As a worker runs it: the retry is run at once here (throw=False lets Celery's eager mode retry).
    email_test_send.apply(args=queued[0], throw=False)

    [message] = mail.outbox
    assert message.to == [admin_user.email]
    assert provider[admin_user.email] == []  # both answers played: failed once, then sent


def test_with_the_broker_unreachable_the_page_says_the_test_was_not_sent(admin_client, week_one, monkeypatch):
    from kombu.exceptions import OperationalError

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(email_test_send, "apply_async", broker_down)

    response = admin_client.post(reverse("admin:scheduler_emailtemplate_test_send", args=[week_one.pk]), follow=True)

    page = response.content.decode()
    assert "The test email was not sent: the task queue (the Celery broker) cannot be reached." in page
    assert "Queued" not in page and not mail.outbox


def test_diff_and_restore(admin_client, week_one):
    url = reverse("admin:scheduler_emailtemplate_change", args=[week_one.pk])
    admin_client.post(url, change_data(week_one, "New subject", "Completely new body.\n"))

    diff = admin_client.get(reverse("admin:scheduler_emailtemplate_diff", args=[week_one.pk, 2])).content.decode()
    assert "+Subject: New subject" in diff and "-Subject: We begin: week 1 of {{ course.title }}" in diff
    assert "+Completely new body." in diff

    admin_client.post(reverse("admin:scheduler_emailtemplate_restore", args=[week_one.pk, 1]))

    week_one.refresh_from_db()
    assert week_one.current_version.number == 3
    assert week_one.current_version.restored_from == 1
    assert week_one.current_version.subject == "We begin: week 1 of {{ course.title }}"


def test_a_cohort_can_override_a_week(admin_client, week_one):
    cohort = Cohort.objects.get(slug="gentle-python-round-2")
    data = change_data(week_one, "Round 2 special", "Special words.\n") | {"cohort": cohort.pk}
    response = admin_client.post(reverse("admin:scheduler_emailtemplate_add"), data)
    assert response.status_code == 302
    override = EmailTemplate.objects.get(cohort=cohort)
    assert override.current_version.subject == "Round 2 special"

    again = admin_client.post(reverse("admin:scheduler_emailtemplate_add"), data)
    assert "already overrides this email" in again.content.decode()


def test_a_cohort_of_another_course_is_refused(admin_client, week_one):
    other = Course.objects.create(title="Other", slug="other", week_count=4)
    cohort = Cohort.objects.get(slug="gentle-python-round-2")
    data = change_data(week_one, "Hi", "Body\n") | {"course": other.pk, "cohort": cohort.pk, "week_number": 2}
    response = admin_client.post(reverse("admin:scheduler_emailtemplate_add"), data)
    assert "This cohort runs another course." in response.context["adminform"].form.errors["cohort"][0]


def test_a_real_learners_preview_past_a_limit_says_so_instead_of_failing(admin_client, week_one, monkeypatch):
    """The save check uses samples; a real learner previewed by an organizer may be bigger."""
    cohort = Cohort.objects.get(slug="gentle-python-round-2")
    EnrollmentFactory(cohort=cohort, learner__first_name="Hedy")
    monkeypatch.setattr(sandbox, "STEPS_MAX", 40)
    body = "{% for a in learner.first_name %}{% for b in learner.first_name %}{% for c in learner.first_name %}.{% endfor %}{% endfor %}{% endfor %}\n"
    monkeypatch.setattr(scheduler_admin, "email_problems", lambda *args: [])  # as if the samples had passed

    response = admin_client.post(
        reverse("admin:scheduler_emailtemplate_preview"),
        {"course": week_one.course_id, "kind": "week", "week_number": 1, "preview_cohort": cohort.pk, "subject": "Hi", "body": body},
    )

    assert response.status_code == 200
    assert response.json()["errors"][0].startswith("This email cannot be made for Hedy")
