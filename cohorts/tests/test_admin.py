"""Organizers edit a course and its weeks in the real Django admin."""

import datetime

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from cohorts.models import Cohort, Course, Week
from cohorts.services import course_week_count_change
from cohorts.tests.factories import CohortFactory, CourseFactory, WeekFactory

pytestmark = pytest.mark.django_db


def course_form(weeks: list[dict], week_count: int = 3, **course) -> dict:
    data = {
        "title": "Python for everyone",
        "slug": "python-for-everyone",
        "summary": "Learn Python with others.",
        "week_count": str(week_count),
        "links": "Course home | https://example.org/home",
        "weeks-TOTAL_FORMS": str(len(weeks)),
        "weeks-INITIAL_FORMS": "0",
        "weeks-MIN_NUM_FORMS": "0",
        "weeks-MAX_NUM_FORMS": "1000",
    } | course
    for index, week in enumerate(weeks):
        defaults = {"title": f"Week {week['number']}", "readings": "", "exercises": ""}
        data |= {f"weeks-{index}-{name}": value for name, value in (defaults | week).items()}
    return data


def test_a_course_is_created_with_its_weeks_inline(admin_client):
    response = admin_client.post(
        reverse("admin:cohorts_course_add"),
        course_form(
            [
                {
                    "number": "1",
                    "title": "Getting started",
                    "lecture_title": "Lecture 1",
                    "lecture_url": "https://ocw.mit.edu/lecture-1",
                    "readings": "Chapter 1 | https://example.org/ch1\nhttps://example.org/notes",
                    "exercises": "Codecademy unit 1 | https://www.codecademy.com/python",
                },
                {"number": "2", "title": "Loops"},
            ]
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    course = Course.objects.get(slug="python-for-everyone")
    assert course.links == [{"title": "Course home", "url": "https://example.org/home"}]
    first = course.weeks.get(number=1)
    assert first.readings == [
        {"title": "Chapter 1", "url": "https://example.org/ch1"},
        {"title": "https://example.org/notes", "url": "https://example.org/notes"},
    ]
    assert first.lecture == {"title": "Lecture 1", "url": "https://ocw.mit.edu/lecture-1"}
    assert course.weeks.count() == 2


def inline_errors(response) -> str:
    return " ".join(str(error) for formset in response.context["inline_admin_formsets"] for error in formset.formset.errors)


def test_a_week_number_beyond_the_course_is_refused_at_the_field(admin_client):
    response = admin_client.post(
        reverse("admin:cohorts_course_add"), course_form([{"number": "4"}], week_count=3)
    )

    assert response.status_code == 200
    assert "Week 4 is outside this course, which has weeks 1 to 3." in inline_errors(response)
    assert not Course.objects.exists()


def test_two_weeks_with_one_number_are_refused(admin_client):
    response = admin_client.post(
        reverse("admin:cohorts_course_add"), course_form([{"number": "2"}, {"number": "2", "title": "Again"}])
    )

    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert "Please correct the duplicate data for number" in " ".join(formset.non_form_errors())
    assert not Course.objects.exists()


def test_shrinking_a_course_below_its_weeks_is_refused(admin_client):
    course = CourseFactory(week_count=3, slug="short-course")
    week = WeekFactory(course=course, number=3)
    data = course_form(
        [{"id": str(week.pk), "course": str(course.pk), "number": "3", "title": week.title}],
        week_count=2,
        slug="short-course",
    )
    data["weeks-INITIAL_FORMS"] = "1"

    response = admin_client.post(reverse("admin:cohorts_course_change", args=[course.pk]), data)

    assert response.status_code == 200
    assert "Week 3 is outside this course, which has weeks 1 to 2." in inline_errors(response)
    course.refresh_from_db()
    assert course.week_count == 3


@pytest.fixture
def rounds_of_an_eight_week_course(clock):
    """A finished round, a running one, one starting today and two yet to start, of one 8-week course."""
    course = CourseFactory(week_count=8, slug="eight-weeks")
    today = clock.today()
    for name, start in [("Round 0", today - datetime.timedelta(weeks=20)), ("Round 1", today - datetime.timedelta(weeks=2)),
                        ("Round 1b", today), ("Round 2", today + datetime.timedelta(days=1)),
                        ("Round 3", today + datetime.timedelta(weeks=5))]:
        CohortFactory(course=course, name=name, start_date=start)
    return course


def week_counts(course) -> dict[str, int]:
    return dict(Cohort.objects.filter(course=course).values_list("name", "week_count"))


@pytest.mark.clock("2026-11-23T12:00:00Z")  # midday: "today" and "tomorrow" stay put
@pytest.mark.parametrize("new_count", [10, 6])
def test_a_new_length_reaches_only_the_rounds_that_have_not_started(admin_client, rounds_of_an_eight_week_course, new_count):
    course = rounds_of_an_eight_week_course
    url = reverse("admin:cohorts_course_change", args=[course.pk])

    response = admin_client.post(url, course_form([], week_count=new_count, slug=course.slug), follow=True)

    assert response.redirect_chain, response.context["adminform"].form.errors
    assert week_counts(course) == {"Round 0": 8, "Round 1": 8, "Round 1b": 8, "Round 2": new_count, "Round 3": new_count}
    assert [str(message) for message in get_messages(response.wsgi_request)][0] == (
        f"2 rounds that have not started now have {new_count} weeks; "
        "Round 0, finished, keeps 8; Round 1, running, keeps 8; Round 1b, running, keeps 8."
    )


@pytest.mark.clock("2026-11-23T12:00:00Z")  # midday: "today" and "tomorrow" stay put
def test_saving_a_course_without_changing_its_length_says_nothing_of_rounds(admin_client, rounds_of_an_eight_week_course):
    course = rounds_of_an_eight_week_course
    url = reverse("admin:cohorts_course_change", args=[course.pk])

    response = admin_client.post(url, course_form([], week_count=8, slug=course.slug, title="Renamed"), follow=True)

    assert not any("weeks" in str(message) for message in get_messages(response.wsgi_request))
    assert set(week_counts(course).values()) == {8}


@pytest.mark.clock("2026-11-23T12:00:00Z")  # midday: "today" and "tomorrow" stay put
def test_the_change_is_idempotent_and_names_one_round_in_the_singular(rounds_of_an_eight_week_course, clock):
    from cohorts.admin import week_count_change_message

    course = rounds_of_an_eight_week_course
    Cohort.objects.filter(name__in=["Round 0", "Round 1b", "Round 3"]).delete()
    course.week_count = 9
    course.save()

    first = course_week_count_change(course, clock.today())
    again = course_week_count_change(course, clock.today())

    assert week_counts(course) == {"Round 1": 8, "Round 2": 9}
    assert week_count_change_message(first, clock.today()) == week_count_change_message(again, clock.today()) == (
        "1 round that has not started now has 9 weeks; Round 1, running, keeps 8."
    )


def test_a_bad_link_line_is_reported_with_its_line_number(admin_client):
    response = admin_client.post(
        reverse("admin:cohorts_course_add"),
        course_form([{"number": "1", "readings": "Good | https://example.org/good\nBad | ftp//nowhere"}]),
    )

    assert response.status_code == 200
    assert "Line 2: &#x27;ftp//nowhere&#x27; is not a web address" in response.content.decode()
    assert not Week.objects.exists()


def test_admin_pages_open(admin_client):
    cohort = CohortFactory()
    WeekFactory(course=cohort.course, number=1)
    for url in [
        reverse("admin:cohorts_course_changelist"),
        reverse("admin:cohorts_course_change", args=[cohort.course.pk]),
        reverse("admin:cohorts_cohort_changelist"),
        reverse("admin:cohorts_cohort_change", args=[cohort.pk]),
        reverse("admin:cohorts_cohort_add"),
    ]:
        assert admin_client.get(url).status_code == 200, url


@pytest.mark.clock("2026-11-23T12:00:00Z")  # midday: "today" and "tomorrow" stay put
def test_shrinking_a_course_keeps_the_weeks_a_started_round_still_needs(admin_client, rounds_of_an_eight_week_course):
    course = rounds_of_an_eight_week_course
    weeks = [WeekFactory(course=course, number=number) for number in range(1, 9)]
    data = course_form(
        [{"id": str(week.pk), "course": str(course.pk), "number": str(week.number), "title": week.title} for week in weeks]
        + [{"course": str(course.pk), "number": "9", "title": "One too many"}],
        week_count=6, slug=course.slug,
    )
    data["weeks-INITIAL_FORMS"] = "8"
    url = reverse("admin:cohorts_course_change", args=[course.pk])

    refused = admin_client.post(url, data)

    # Weeks 7 and 8 stay: Round 1 is running with 8 weeks. Week 9 is in no round's length.
    errors = inline_errors(refused)
    assert "Week 9 is outside this course, which has weeks 1 to 6." in errors
    assert "Week 7" not in errors and "Week 8" not in errors
    del data["weeks-8-number"], data["weeks-8-title"], data["weeks-8-course"]
    data["weeks-TOTAL_FORMS"] = "8"

    response = admin_client.post(url, data, follow=True)

    assert response.redirect_chain, inline_errors(response)
    assert week_counts(course) == {"Round 0": 8, "Round 1": 8, "Round 1b": 8, "Round 2": 6, "Round 3": 6}
    assert sorted(Week.objects.filter(course=course).values_list("number", flat=True)) == [1, 2, 3, 4, 5, 6, 7, 8]
