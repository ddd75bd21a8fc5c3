"""Staff-written emails: rendering every variable, escaping, the sandbox, validation, history, defaults."""

import re
from io import StringIO

import pytest
from django.core.management import call_command

from cohorts.models import Cohort, Course, Week
from scheduler import templating
from scheduler.models import EmailKind, EmailTemplate
from scheduler.selectors import email_context, email_contexts, preview_context, sample_contexts, week_context
from scheduler.services import email_render, template_restore, template_version_save
from scheduler.templating import TemplateProblem, email_check
from scheduler.tests.helpers import readable_context
from signups.services import learner_links
from signups.tests.factories import EnrollmentFactory
from signups.tokens import learner_token

pytestmark = pytest.mark.django_db

EVERY_VARIABLE = """\
Hi {{ learner.first_name }} ({{ learner.timezone }}), {{ course.title }} has {{ course.week_count }} weeks.
{{ cohort.name }} started {{ cohort.start_date }}.
Week {{ week.number }}: {{ week.title }}{% if week.is_last %} (the last){% endif %}.
{% if week.lecture %}Lecture: [{{ week.lecture.title }}]({{ week.lecture.url }}){% endif %}
{% for link in week.readings %}
- Read [{{ link.title }}]({{ link.url }})
{% endfor %}
{% for link in week.exercises %}
- Practise [{{ link.title }}]({{ link.url }})
{% endfor %}
{% if week.project %}Project: [{{ week.project.title }}]({{ week.project.url }}){% endif %}{% if week.discussion %}; talk at [{{ week.discussion.title }}]({{ week.discussion.url }}).{% endif %}
{% if group %}
Group {{ group.name }} at {{ group.discussion_url }}{{ group.email }}, moved from {{ group.moved_from|default("nowhere") }}:
{% for member in group.members %}
- {{ member.first_name|upper }} in {{ member.timezone }}
{% endfor %}
{% endif %}
[manage]({{ links.manage }}) [switch]({{ links.switch }}) [stop]({{ links.unsubscribe }}) [site]({{ links.site }})
[done]({{ links.checkin_done }}) [behind]({{ links.checkin_behind }}) [stuck]({{ links.checkin_stuck }})
{% if checkin.last %}Last: week {{ checkin.last.week }}, {{ checkin.last.answer }}{% else %}No answer yet{% endif %}
"""


@pytest.fixture
def demo():
    call_command("load_demo", stdout=StringIO())
    return Course.objects.get(slug="gentle-python")


def week_template(course, number):
    return EmailTemplate.objects.get(course=course, cohort=None, kind=EmailKind.WEEK, week_number=number)


def render(version, context):
    return email_render(version, context, "week; cohort=test; week=1; id=1")


def test_every_documented_variable_renders(demo):
    template = week_template(demo, 1)
    version = template_version_save(template, "Week {{ week.number }} for {{ learner.first_name }}", EVERY_VARIABLE)
    context = readable_context()

    email = render(version, context)

    assert email.subject == "Week 3 for Ada"
    for expected in ["Hi Ada (Europe/London), A Course has 8 weeks.", "Round 1 started Monday 30 November 2026.",
                     "Week 3: A week.", "Group Group 1 at https://example.org/g1, moved from Group 9:",
                     "GRACE in America/New_York", "switch: https://example.org/me/x/#switch",
                     "done: https://example.org/c/x/done/ behind: https://example.org/c/x/behind/ stuck: https://example.org/c/x/stuck/",
                     "No answer yet"]:
        assert expected in email.text, expected
    assert '<a style="color:#0b5cad;text-decoration:underline;word-break:break-word;" href="https://example.org/">A link</a>' in email.html
    assert "GRACE in America/New_York" in email.html


def test_every_email_carries_the_unsubscribe_and_tracking_headers(demo):
    email = render(week_template(demo, 2).current_version, readable_context())
    assert email.headers == {
        "List-Unsubscribe": "<https://example.org/u/x/>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "X-Mooc-Delivery": "week; cohort=test; week=1; id=1",
    }


@pytest.mark.parametrize(
    "name",
    ["<script>alert('x')</script>", "Ada 👩🏽‍💻 Lovelace", "שלום עליכם", "A" * 300, "**not bold** [not a link](http://evil.example)"],
)
def test_a_learners_own_text_is_escaped_and_renders_sensibly(demo, name):
    context = sample_contexts()[0]
    context["learner"]["first_name"] = name

    email = render(week_template(demo, 1).current_version, context)

    assert "<script>" not in email.html
    assert "evil.example\"" not in email.html and 'href="http://evil.example' not in email.html
    from markupsafe import escape

    assert str(escape(name)) in email.html
    assert name in email.text  # the text part is plain text: shown as typed
    assert email.html.count("<table") == email.html.count("</table>")


def test_sections_of_a_week_without_them_disappear_cleanly(demo):
    week = Week.objects.get(course=demo, number=8)  # no lecture, no reading
    week.exercises = []
    week.project_url = week.project_title = ""
    context = sample_contexts()[1] | {"week": week_context(week, 8)}

    email = render(week_template(demo, 8).current_version, context)

    for heading in ["Watch", "Read", "Practise", "Build"]:
        assert f">{heading}</h2>" not in email.html
        assert f"## {heading}" not in email.text
    assert email.html.count("<ul") == 1 and email.html.count("<li") == 3  # only the check-in links
    assert re.search(r"<h2[^>]*>\s*</h2>|<p[^>]*>\s*</p>", email.html) is None  # no empty heading or paragraph
    assert "Your own pace" in email.text and "the last week of the course" in email.text


def test_a_week_with_everything_shows_every_section(demo):
    week = Week.objects.get(course=demo, number=1)
    context = readable_context() | {"week": week_context(week, 8)}

    email = render(week_template(demo, 1).current_version, context)

    for heading in ["Watch", "Read", "Practise", "Build", "Talk it over", "Your own pace"]:
        assert f">{heading}</h2>" in email.html
    assert email.html.count("<ul") == 3  # the readings in one list, the exercises in another, the check-in links
    assert week.readings[2]["url"] in email.html and week.project["url"] in email.text
    assert "Grace (America/New_York)" in email.text


def with_group(context: dict, url: str, email: str = "", week_discussion: bool = True) -> dict:
    """The readable context's group with its own discussion link `url` ("": none, so its page
    here stands in, as email_context does) and its address `email` ("": group mail off)."""
    page = "https://example.org/me/x/group/g1/"
    week = context["week"] | ({} if week_discussion else {"discussion": None})
    return context | {"group": context["group"] | {"discussion_url": url or page, "page_url": page, "email": email}, "week": week}


def test_the_weekly_default_tells_a_group_where_to_talk(demo):
    version = week_template(demo, 3).current_version

    linked = render(version, with_group(readable_context(), "https://example.org/g1")).text
    by_email = render(version, with_group(readable_context(), "", email="g1@groups.example.org")).text
    both = render(version, with_group(readable_context(), "https://example.org/g1", email="g1@groups.example.org")).text
    page_only = render(version, with_group(readable_context(), "", week_discussion=False)).text

    place = "Alan (Europe/London), is the place for questions, answers and encouragement.\n\n"
    reply = ("Reply to this email to write to your whole group, or write to g1@groups.example.org any time. "
             "Everything said so far is on your group's page: https://example.org/me/x/group/g1/.\n\n")
    assert f"{place}Meet them here too: Group 1: https://example.org/g1.\n\n" in linked and "Reply to this" not in linked
    assert f"{place}{reply}Everyone taking the course" in by_email and "Meet them here" not in by_email
    assert f"{place}{reply}Meet them here too: Group 1: https://example.org/g1." in both
    assert (f"{place}See who is in it on your group's page: https://example.org/me/x/group/g1/.\n\n"
            "Your own pace\n-------------\n") in page_only


def test_the_group_introduction_default_invites_a_first_hello(demo):
    version = EmailTemplate.objects.get(course=demo, cohort=None, kind=EmailKind.GROUP_INTRO).current_version

    by_email = render(version, with_group(readable_context(), "", email="g1@groups.example.org")).text
    linked = render(version, with_group(readable_context(), "https://example.org/g1")).text
    nowhere = render(version, with_group(readable_context(), "", week_discussion=False)).text

    assert ("Say hello: reply to this email and everyone in your group gets it. Tell the others why you are learning "
            "Python and what you hope to build. You can write to g1@groups.example.org any time") in by_email
    assert "Say hello in your group's space: Group 1: https://example.org/g1. Tell the others why" in linked
    assert "reply to this email" not in linked
    assert ("Your group has no place to talk by email on this site. See who is in it on "
            "your group's page: https://example.org/me/x/group/g1/.\n\nYour first weekly email") in nowhere


def test_the_defaults_for_all_eight_weeks_render_for_a_real_learner(demo, clock):
    cohort = Cohort.objects.get(slug="gentle-python-round-1")
    enrollment = EnrollmentFactory(cohort=cohort, learner__first_name="Hedy", learner__timezone="Europe/Vienna")
    unsubscribe = learner_links(enrollment.learner)["unsubscribe"]
    for number in range(1, 9):
        week = week_context(Week.objects.get(course=demo, number=number), demo.week_count)
        context = email_contexts(cohort, week, [enrollment], clock.today())[enrollment.pk]
        email = render(week_template(demo, number).current_version, context)
        assert "Hedy" in email.text
        assert email.subject.startswith(("We begin", f"Week {number}"))
        assert week["title"].replace("'", "&#39;") in email.html
        assert email.headers["List-Unsubscribe"] == f"<{unsubscribe}>"
    for kind in (EmailKind.WELCOME, EmailKind.GROUP_INTRO, EmailKind.COURSE_END):
        template = EmailTemplate.objects.get(course=demo, cohort=None, kind=kind)
        context = email_contexts(cohort, None, [enrollment], clock.today())[enrollment.pk]
        assert "Hedy" in render(template.current_version, context).text


def test_a_preview_as_a_real_learner_shows_their_name_and_never_their_links(demo, client):
    cohort = Cohort.objects.get(slug="gentle-python-round-1")
    learner = EnrollmentFactory(cohort=cohort, learner__first_name="Hedy", learner__timezone="Europe/Vienna").learner
    real_links = learner_links(learner)

    context, who = preview_context(demo, cohort, EmailKind.WEEK, 2, real_learner=True)
    email = render(week_template(demo, 2).current_version, context)

    assert "Hedy" in email.text and "Hedy (Europe/Vienna)" in who and learner.email not in who
    everything = email.subject + email.text + email.html + str(email.headers)
    assert learner_token(learner.public_id) not in everything and learner.email not in everything
    assert not set(real_links.values()) - {real_links["site"]} & set(re.findall(r"https?://[^\s)\"<>]+", everything))
    # The made-up links lead nowhere: no learner's page, and unsubscribing acts on nobody.
    manage_path = context["links"]["manage"].removeprefix("http://testserver")
    assert client.get(manage_path).status_code == 400
    assert client.post(context["links"]["unsubscribe"].removeprefix("http://testserver")).status_code == 400
    learner.refresh_from_db()
    assert learner.unsubscribed_at is None


# --- The sandbox and the checks --------------------------------------------------------------


@pytest.mark.parametrize(
    "body, message",
    [
        ("{{ settings.SECRET_KEY }}", "“settings” is not one of the variables"),
        ("{{ learner.__class__ }}", "unsafe"),
        ("{{ learner.first_name.__class__.__mro__ }}", "unsafe"),
        ("{{ week.readings.append(1) }}", "unsafe"),
        ("{{ course.objects }}", "has no attribute 'objects'"),
        ("{% include 'base.html' %}", "cannot include, import or extend"),
        ("{% extends 'base.html' %}", "cannot include, import or extend"),
        ("{{ learner|attr('first_name') }}", "the filter “attr” is not available"),
        ("{{ range(10) }}", "“range” is not one of the variables"),
        ("{{ lipsum() }}", "“lipsum” is not one of the variables"),
    ],
)
def test_the_sandbox_refuses_what_is_not_documented(body, message):
    with pytest.raises(TemplateProblem) as refusal:
        email_check("Subject", f"Hello\n\n{body}\n", sample_contexts())
    assert message in str(refusal.value)


@pytest.mark.parametrize(
    "subject, body, field, message",
    [
        ("Hi", "One\nTwo\n{% iff x %}\n", "body", "Line 3: Encountered unknown tag 'iff'"),
        ("Hi", "One\n{% if group %}\nTwo\n", "body", "Line 3: Unexpected end of template"),
        ("Hi", "One\nTwo\n{{ week.number }\n", "body", "Line 3:"),
        ("Hi", "One\n\n\n{{ nonsense }}\n", "body", "Line 4: “nonsense” is not one of the variables"),
        ("Hi", "One\n{% if group %}\n{{ group.nickname }}\n{% endif %}\n", "body", "Line 3: 'dict object' has no attribute 'nickname'"),
        ("A" * 201, "Body", "subject", "the subject is 201 characters long; at most 200"),
        ("Two\nlines", "Body", "subject", "the subject must be a single line"),
        ("{{ learner.first_name", "Body", "subject", "Line 1:"),
        ("Hi", "   \n", "body", "the email has no text"),
    ],
)
def test_a_template_that_would_fail_is_refused_with_its_line(subject, body, field, message):
    with pytest.raises(TemplateProblem) as refusal:
        email_check(subject, body, sample_contexts())
    assert refusal.value.field == field
    assert message in str(refusal.value), str(refusal.value)


def test_a_refused_save_keeps_the_last_good_version_in_force(demo):
    template = week_template(demo, 3)
    good = template.current_version

    with pytest.raises(TemplateProblem):
        template_version_save(template, "Broken", "{% for x in %}")

    template.refresh_from_db()
    assert template.current_version == good
    assert template.versions.count() == 1


def test_history_and_restore(demo, admin_user):
    template = week_template(demo, 4)
    original = template.current_version
    edited = template_version_save(template, "Week 4: new words", "New body for {{ learner.first_name }}\n", user=admin_user)

    restored = template_restore(original, user=admin_user)

    template.refresh_from_db()
    assert [version.number for version in template.versions.order_by("number")] == [1, 2, 3]
    assert template.current_version == restored
    assert (restored.subject, restored.body, restored.restored_from) == (original.subject, original.body, 1)
    assert edited.created_by == admin_user


def test_each_version_compiles_once_for_every_learner(demo, monkeypatch):
    template = week_template(demo, 5)
    compiled = []
    real_from_string = templating._HTML.from_string
    monkeypatch.setattr(templating._HTML, "from_string", lambda source: compiled.append(1) or real_from_string(source))
    monkeypatch.setattr(templating, "_compiled", {})

    for name in ["Ada", "Grace", "Alan", "Katherine"]:
        context = sample_contexts()[0]
        context["learner"]["first_name"] = name
        assert name in render(template.current_version, context).html

    assert len(compiled) == 1


def test_context_holds_plain_data_only(demo):
    context, _ = preview_context(demo, None, EmailKind.WEEK, 1)

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(key, str) and plain(item) for key, item in value.items())
        if isinstance(value, list):
            return all(plain(item) for item in value)
        return value is None or isinstance(value, (str, int, bool))

    assert plain(context)
    assert set(context) == templating.TOP_LEVEL_VARIABLES


def test_email_context_falls_back_to_a_friendly_greeting():
    context = email_context(
        first_name="", timezone_name="UTC", course=Course(title="C", week_count=8), cohort=None, week=None,
        group=None, members=[], moved_from="", links={},
    )
    assert context["learner"]["first_name"] == "there"


def test_a_cohorts_override_wins_over_the_course_template(demo):
    from scheduler.selectors import email_template_for

    round_1, round_2 = Cohort.objects.get(slug="gentle-python-round-1"), Cohort.objects.get(slug="gentle-python-round-2")
    override = EmailTemplate.objects.create(course=demo, cohort=round_2, kind=EmailKind.WEEK, week_number=2)
    template_version_save(override, "Round 2's own week 2", "Words.\n")

    assert email_template_for(round_2, EmailKind.WEEK, 2) == override
    assert email_template_for(round_1, EmailKind.WEEK, 2) == week_template(demo, 2)
    assert email_template_for(round_2, EmailKind.WEEK, 3) == week_template(demo, 3)


def test_contexts_for_many_learners_cost_a_fixed_number_of_queries(demo, clock):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from scheduler.selectors import email_contexts
    from signups.groups import cohort_groups_form
    from signups.models import Enrollment

    cohort = Cohort.objects.select_related("course").get(slug="gentle-python-round-2")
    EnrollmentFactory.create_batch(30, cohort=cohort, learner__timezone="Europe/Lisbon")
    cohort_groups_form(cohort, now=clock.now())
    week = week_context(Week.objects.get(course=demo, number=1), 8)

    def contexts(count):
        enrollments = Enrollment.objects.filter(cohort=cohort).select_related("learner", "group").order_by("pk")[:count]
        with CaptureQueriesContext(connection) as queries:
            result = email_contexts(cohort, week, enrollments, clock.today())
        return result, len(queries)

    few, few_queries = contexts(5)
    many, many_queries = contexts(30)

    assert few_queries == many_queries == 3  # the enrollments, every group's members, their last check-ins
    enrollment_id, sample = next(iter(many.items()))
    group_size = Enrollment.objects.filter(group=Enrollment.objects.get(pk=enrollment_id).group).count()
    assert len(sample["group"]["members"]) == group_size - 1  # the others, not the learner themselves


# --- Check-ins: the week's links and the paragraph that follows the last answer (issue 16) ---------


CHECKINS = "How is this week going?\n-----------------------\n\nTell us with one click, until next week's email; " \
    "your answer shapes what we send you next:\n\n- I did this week: https://example.org/c/x/done/\n" \
    "- I'm behind: https://example.org/c/x/behind/\n- I'm stuck: https://example.org/c/x/stuck/\n"


@pytest.mark.parametrize("answer, paragraph", [
    (None, None),
    ("done", "You told us you did week 2: well done. Keep that rhythm, and if someone in your group is stuck, "
             "a word from you may be all they need."),
    ("behind", "You told us you were behind in week 2. That is fine: every week's links stay open, so carry on at your "
               "own pace, or drop back to the next round: https://example.org/me/x/#switch and start afresh with a new group."),
    ("stuck", "You told us you were stuck in week 2. Questions are welcome: ask your group, Group 1, or everyone "
              "taking the course (see Talk it over below)."),
])
def test_the_weekly_default_adapts_a_paragraph_to_the_last_check_in_and_ends_with_the_weeks_links(demo, answer, paragraph):
    context = readable_context() | {"checkin": {"last": {"week": 2, "answer": answer} if answer else None}}

    email = render(week_template(demo, 3).current_version, context)

    assert CHECKINS in email.text
    assert 'href="https://example.org/c/x/stuck/">I\'m stuck</a>' in email.html
    assert email.text.count("You told us you") == (0 if paragraph is None else 1)
    if paragraph:
        assert paragraph in email.text
        assert email.text.index(paragraph) < email.text.index("Watch\n-----")  # first, before the week's material


def test_the_last_weeks_check_in_is_open_a_week(demo):
    week = readable_context()["week"] | {"number": 8, "is_last": True}
    email = render(week_template(demo, 8).current_version, readable_context() | {"week": week})
    assert "Tell us with one click, within a week; your answer shapes what we send you next:\n\n- I did this week: https://example.org/c/x/done/" in email.text


def test_contexts_carry_each_learners_signed_check_in_links_and_last_answer(demo, clock):
    from signups.checkins import checkin_links
    from signups.models import CheckIn
    from signups.tokens import checkin_token_read

    cohort = Cohort.objects.select_related("course").get(slug="gentle-python-round-1")
    hedy, ada = EnrollmentFactory(cohort=cohort), EnrollmentFactory(cohort=cohort)
    for week_number, answer in [(1, "done"), (2, "stuck"), (3, "behind")]:  # week 3's is not before week 3
        CheckIn.objects.create(learner=hedy.learner, cohort=cohort, week_number=week_number, answer=answer,
                               answered_at=clock.now(), changed_at=clock.now())
    week = week_context(Week.objects.get(course=demo, number=3), 8)

    contexts = email_contexts(cohort, week, [hedy, ada], clock.today())

    assert contexts[hedy.pk]["checkin"] == {"last": {"week": 2, "answer": "stuck"}}
    assert contexts[ada.pk]["checkin"] == {"last": None}
    links = contexts[hedy.pk]["links"]
    assert {key: links[key] for key in ("checkin_done", "checkin_behind", "checkin_stuck")} == checkin_links(hedy.learner.public_id, cohort.pk, 3)
    token = links["checkin_stuck"].removeprefix("http://testserver/checkin/").removesuffix("/stuck/")
    read = checkin_token_read(token)
    assert (read.learner_public_id, read.cohort_id, read.week_number) == (hedy.learner.public_id, cohort.pk, 3)
    assert links["checkin_done"] != contexts[ada.pk]["links"]["checkin_done"]
    text = render(week_template(demo, 3).current_version, contexts[hedy.pk]).text
    assert f"I'm stuck: {links['checkin_stuck']}" in text and "You told us you were stuck in week 2." in text
    # An email about no week has none, and renders all the same.
    assert email_contexts(cohort, None, [hedy], clock.today())[hedy.pk]["links"]["checkin_done"] == ""
