"""The text part of the course emails, written for reading (issue 17): no Markdown markup, links as
"text: URL", headings on lines of their own, the footer's links; the HTML keeps the signature's line break."""

import re
from io import StringIO

import pytest
from django.core.management import call_command

from cohorts.models import Course
from scheduler.models import EmailKind, EmailTemplate
from scheduler.services import email_render
from scheduler.templating import markdown_to_text_template
from scheduler.tests.helpers import readable_context

pytestmark = pytest.mark.django_db

MARKUP = re.compile(r"\*\*|__|^#+ |\]\(|\[[^\]]*\]\(|^\s*\* ", re.MULTILINE)


@pytest.fixture
def demo():
    call_command("load_demo", stdout=StringIO())
    return Course.objects.get(slug="gentle-python")


def default(course, kind, week_number=0):
    return EmailTemplate.objects.get(course=course, cohort=None, kind=kind, week_number=week_number).current_version


def with_group_page(context: dict, email: str = "") -> dict:
    page = "https://example.org/me/x/group/g1/"
    return context | {"group": context["group"] | {"discussion_url": page, "page_url": page, "email": email}}


def rendered(version, context):
    return email_render(version, context, "week; cohort=test; week=1; id=1")


@pytest.mark.parametrize("kind, week_number", [
    (EmailKind.WEEK, 1), (EmailKind.WEEK, 8), (EmailKind.WELCOME, 0), (EmailKind.GROUP_INTRO, 0), (EmailKind.COURSE_END, 0),
])
def test_each_default_emails_text_has_no_markdown_and_the_footers_links(demo, kind, week_number):
    email = rendered(default(demo, kind, week_number), with_group_page(readable_context()))

    assert MARKUP.search(email.text) is None, email.text
    assert "*" not in email.text and "\\" not in email.text
    assert "Manage your enrollment: https://example.org/me/x/\n" in email.text
    assert "Unsubscribe: https://example.org/u/x/\n" in email.text
    assert "\n-- \n" in email.text  # the footer is a signature mail clients recognise
    assert "\n\n\n" not in email.text


def test_the_weekly_texts_headings_are_lines_and_its_links_read_text_colon_url(demo):
    email = rendered(default(demo, EmailKind.WEEK, 1), readable_context())

    for heading in ["Watch", "Read", "Practise", "Build", "Talk it over", "Your own pace"]:
        assert f"\n\n{heading}\n{'-' * len(heading)}\n\n" in email.text
    assert "Read\n----\n\n- A link: https://example.org/\n\nPractise" in email.text
    assert "Watch\n-----\n\nA link: https://example.org/\n\n" in email.text
    assert "drop back to the next round: https://example.org/me/x/#switch and pick up" in email.text
    assert "Week 3 of 8: A week\n\n" in email.text  # bold without its stars


@pytest.mark.parametrize("kind, signature", [
    (EmailKind.WEEK, "Happy coding,"), (EmailKind.COURSE_END, "Happy coding,"), (EmailKind.WELCOME, "See you soon,"),
])
def test_the_signature_keeps_its_line_break_in_both_parts(demo, kind, signature):
    email = rendered(default(demo, kind, 2 if kind == EmailKind.WEEK else 0), readable_context())

    assert f"{signature}<br />\nThe Mechanical MOOC</p>" in email.html
    assert f"{signature}\nThe Mechanical MOOC\n" in email.text


def test_the_group_introductions_text_has_its_links(demo):
    version = default(demo, EmailKind.GROUP_INTRO)

    by_email = rendered(version, with_group_page(readable_context(), email="g1@groups.example.org")).text
    page_only = rendered(version, with_group_page(readable_context())).text

    assert "You can write to g1@groups.example.org any time; your group's page: https://example.org/me/x/group/g1/" in by_email
    assert "See who is in it on your group's page: https://example.org/me/x/group/g1/." in page_only
    assert "Your group\n----------\n\n- Grace (America/New_York)\n" in page_only


@pytest.mark.parametrize("markdown, text", [
    ("# Title\n\nSome *soft* and **strong** `code`.", "Title\n=====\n\nSome soft and strong code.\n"),
    ("[https://a.org/](https://a.org/) and <https://b.org/x>", "https://a.org/ and https://b.org/x\n"),
    ("[Write to us](mailto:us@example.org), [us@example.org](mailto:us@example.org)", "Write to us: us@example.org, us@example.org\n"),
    ("1. one\n2. two\n\n- a\n  - nested", "1. one\n2. two\n\n- a\n  - nested\n"),
    ("> quoted\n> on two lines", "> quoted\n> on two lines\n"),
    ("A line\\\nbroken, a line\njoined in HTML", "A line\nbroken, a line\njoined in HTML\n"),
])
def test_markdown_becomes_text_for_reading(markdown, text):
    assert markdown_to_text_template(markdown) == text


def test_a_long_url_is_never_wrapped_and_a_heading_of_variables_is_underlined_to_its_length(demo):
    from types import SimpleNamespace

    long_url = "https://example.org/" + "a" * 300
    body = "## {{ week.title }} for {{ learner.first_name }}\n\nSee [the page](" + long_url + ").\n"
    version = SimpleNamespace(pk=None, subject="Hi", body=body, body_html="")

    email = rendered(version, readable_context())

    assert email.text.startswith("A week for Ada\n--------------\n\nSee the page: " + long_url + ".\n")


def test_markdown_unescaping_never_makes_a_template_tag():
    from scheduler.templating import _TEXT

    text = markdown_to_text_template("Write \\{\\{ learner.first_name }} to greet them")
    assert _TEXT.from_string(text).render(learner={"first_name": "Ada"}) == "Write {{ learner.first_name }} to greet them"


def test_the_demo_weeks_point_a_group_to_its_own_place_and_a_learner_alone_to_no_empty_section(demo, clock):
    from cohorts.models import Cohort, Week
    from scheduler.selectors import email_contexts, week_context
    from signups.tests.factories import EnrollmentFactory

    cohort = Cohort.objects.get(slug="gentle-python-round-1")
    enrollment = EnrollmentFactory(cohort=cohort, learner__first_name="Hedy")
    week = week_context(Week.objects.get(course=demo, number=1), demo.week_count)
    context = email_contexts(cohort, week, [enrollment], clock.today())[enrollment.pk]
    context = context | {"checkin": {"last": {"week": 1, "answer": "stuck"}}}
    alone = rendered(default(demo, EmailKind.WEEK, 1), context)

    assert "openstudy" not in (alone.text + alone.html).lower()
    assert "Talk it over" not in alone.text and "Questions are welcome" not in alone.text
    assert "You told us you were stuck in week 1. Every week's links stay open" in alone.text

    grouped = rendered(default(demo, EmailKind.WEEK, 1), with_group_page(readable_context() | {"week": week}))
    assert "Talk it over\n------------\n\nYour study group, Group 1" in grouped.text
    assert "See who is in it on your group's page: https://example.org/me/x/group/g1/." in grouped.text
    assert "Everyone taking the course" not in grouped.text
