"""Organizers create and run cohorts in the real admin: validation at the field, actions, the page."""

import datetime

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from cohorts.models import Cohort, CohortStatus
from cohorts.tests.factories import CohortFactory, CourseFactory

pytestmark = pytest.mark.django_db


def cohort_form(course, **changes):
    start = timezone.localdate() + datetime.timedelta(weeks=3)  # the test's clock (mooc.testing.clock)
    data = {
        "course": course.pk, "name": "Spring round", "slug": "spring-round", "start_date": start, "capacity": "",
        "signup_opens_on": start - datetime.timedelta(weeks=3), "signup_closes_on": start,
        "send_weekday": 0, "send_time": "09:00", "group_size_min": 6, "group_size_target": 10, "group_size_max": 14,
        "groups_form_on": "", "discussion_url_pattern": "https://forum.example.org/c/{group}",
        "group_strategy": "timezone_experience",
    }
    return data | changes


def field_errors(response) -> dict:
    return response.context["adminform"].form.errors


def test_a_valid_cohort_is_created(admin_client):
    course = CourseFactory()
    response = admin_client.post(reverse("admin:cohorts_cohort_add"), cohort_form(course))
    assert response.status_code == 302, field_errors(response)
    assert Cohort.objects.get().discussion_url_pattern == "https://forum.example.org/c/{group}"


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"signup_closes_on": "2000-01-01"}, "signup_closes_on", "Signup cannot close before it opens."),
        ({"group_size_min": 15}, "group_size_min", "cannot be larger than the largest"),
        ({"group_size_target": 20}, "group_size_target", "The target must lie between"),
        ({"group_size_min": 1, "group_size_target": 1}, "group_size_min", "at least 2 people"),
        ({"discussion_url_pattern": "https://forum.example.org/c/general"}, "discussion_url_pattern", "must contain {group}"),
        ({"discussion_url_pattern": "forum/{group}"}, "discussion_url_pattern", "not a web address"),
        ({"start_date": "2001-01-01", "signup_opens_on": "2000-12-01", "signup_closes_on": "2001-01-01"}, "start_date", "cannot start in the past"),
    ],
)
def test_bad_settings_are_refused_at_the_field(admin_client, changes, field, message):
    course = CourseFactory()
    response = admin_client.post(reverse("admin:cohorts_cohort_add"), cohort_form(course, **changes))
    assert response.status_code == 200
    assert message in " ".join(field_errors(response)[field]), field_errors(response)
    assert not Cohort.objects.exists()


def test_signup_cannot_close_after_the_last_week(admin_client):
    course = CourseFactory(week_count=8)
    data = cohort_form(course)
    data["signup_closes_on"] = data["start_date"] + datetime.timedelta(weeks=8)
    response = admin_client.post(reverse("admin:cohorts_cohort_add"), data)
    assert "Signup cannot close after the cohort's last week" in " ".join(field_errors(response)["signup_closes_on"])


def test_a_running_cohort_can_still_be_edited(admin_client, clock):
    cohort = CohortFactory(start_date=clock.today() - datetime.timedelta(weeks=2))
    data = cohort_form(cohort.course, slug=cohort.slug, start_date=cohort.start_date,
                       signup_opens_on=cohort.signup_opens_on, signup_closes_on=cohort.signup_closes_on, name="Renamed")
    response = admin_client.post(reverse("admin:cohorts_cohort_change", args=[cohort.pk]), data)
    assert response.status_code == 302, field_errors(response)


def change_form_of(cohort, **changes) -> dict:
    return cohort_form(cohort.course, slug=cohort.slug, name=cohort.name, start_date=cohort.start_date,
                       signup_opens_on=cohort.signup_opens_on, signup_closes_on=cohort.signup_closes_on) | changes


@pytest.mark.parametrize("started_weeks_ago", [2, 0])  # 0: it starts today, so it has started
@pytest.mark.parametrize("moved_by", [datetime.timedelta(weeks=1), -datetime.timedelta(days=1)])
def test_the_start_of_a_round_that_has_started_cannot_move(admin_client, clock, started_weeks_ago, moved_by):
    cohort = CohortFactory(start_date=clock.today() - datetime.timedelta(weeks=started_weeks_ago))
    url = reverse("admin:cohorts_cohort_change", args=[cohort.pk])

    response = admin_client.post(url, change_form_of(cohort, start_date=cohort.start_date + moved_by))

    assert response.status_code == 200
    [error] = field_errors(response)["start_date"]
    assert f"This round started on {cohort.start_date:%A %-d %B %Y}: its start date can no longer move." in error
    assert "tick “Sending paused”" in error and "start a new round" in error
    assert Cohort.objects.get().start_date == cohort.start_date


def test_a_round_that_has_not_started_can_still_be_moved_but_not_into_the_past(admin_client, clock):
    today = clock.today()
    cohort = CohortFactory(start_date=today + datetime.timedelta(days=10), signup_opens_on=today)
    url = reverse("admin:cohorts_cohort_change", args=[cohort.pk])

    into_the_past = admin_client.post(url, change_form_of(cohort, start_date=today - datetime.timedelta(days=1)))
    later = admin_client.post(url, change_form_of(cohort, start_date=cohort.start_date + datetime.timedelta(weeks=1)))

    assert "cannot be moved into the past" in " ".join(field_errors(into_the_past)["start_date"])
    assert later.status_code == 302, field_errors(later)
    assert Cohort.objects.get().start_date == cohort.start_date + datetime.timedelta(weeks=1)


def test_status_follows_the_dates():
    cohort = CohortFactory(start_date=datetime.date(2026, 12, 7), signup_opens_on=datetime.date(2026, 11, 23))
    assert cohort.status_on(datetime.date(2026, 11, 22)) == CohortStatus.DRAFT
    assert cohort.status_on(datetime.date(2026, 11, 23)) == CohortStatus.OPEN
    assert cohort.status_on(datetime.date(2026, 12, 7)) == CohortStatus.RUNNING
    assert cohort.status_on(datetime.date(2027, 1, 31)) == CohortStatus.RUNNING  # last day of week 8
    assert cohort.status_on(datetime.date(2027, 2, 1)) == CohortStatus.FINISHED


@pytest.mark.clock("2026-11-21T12:00:00Z")  # a week before the first round starts
def test_start_the_next_round_copies_the_settings(admin_client):
    cohort = CohortFactory(
        capacity=200, send_weekday=2, group_size_target=8, group_size_min=5, group_size_max=12,
        discussion_url_pattern="https://forum.example.org/{group}", start_date=datetime.date(2026, 11, 30),
    )
    url = reverse("admin:cohorts_cohort_changelist")
    ask = admin_client.post(url, {"action": "start_next_round", ACTION_CHECKBOX_NAME: [cohort.pk]})
    assert "Monday 28 December 2026" in ask.content.decode() and "Create Round" in ask.content.decode()

    admin_client.post(url, {"action": "start_next_round", ACTION_CHECKBOX_NAME: [cohort.pk], "apply": "1", "weeks_later": 4, "previewed": "4"})

    new = Cohort.objects.exclude(pk=cohort.pk).get()
    assert new.start_date == datetime.date(2026, 12, 28)
    assert new.signup_opens_on == cohort.signup_opens_on + datetime.timedelta(weeks=4)
    assert (new.capacity, new.send_weekday, new.group_size_target, new.group_size_min, new.group_size_max) == (200, 2, 8, 5, 12)
    assert new.discussion_url_pattern == cohort.discussion_url_pattern
    assert new.slug == f"{cohort.course.slug}-2026-12-28"


@pytest.mark.clock("2026-11-21T12:00:00Z")
def test_start_the_next_round_shows_the_name_and_dates_first_and_links_to_the_new_round(admin_client):
    cohort = CohortFactory(name="Round 1", start_date=datetime.date(2026, 11, 30), signup_opens_on=datetime.date(2026, 11, 1),
                           signup_closes_on=datetime.date(2026, 12, 6))
    url = reverse("admin:cohorts_cohort_changelist")
    chosen = {"action": "start_next_round", ACTION_CHECKBOX_NAME: [cohort.pk]}

    preview = admin_client.post(url, {**chosen, "weeks_later": 6, "preview": "1"}).content.decode()
    assert "<h3>Round 2 <span" in preview
    assert "Monday 11 January 2027" in preview and "opens Sun 13 Dec 2026, closes Sun 17 Jan 2027" in preview
    assert "It is a Draft until its signup opens on Sunday 13 December 2026" in preview
    changed_number = admin_client.post(url, {**chosen, "weeks_later": 8, "previewed": "6", "apply": "1"})
    assert changed_number.status_code == 200 and "Monday 25 January 2027" in changed_number.content.decode()  # shown again, not created
    assert Cohort.objects.count() == 1

    done = admin_client.post(url, {**chosen, "weeks_later": 8, "previewed": "8", "apply": "1"}, follow=True).content.decode()
    new = Cohort.objects.get(name="Round 2")
    assert new.start_date == datetime.date(2027, 1, 25)
    assert f'Created <a href="{reverse("admin:cohorts_cohort_change", args=[new.pk])}">Round 2</a>, starting Monday 25 January 2027' in done


def test_close_signup_now(admin_client, clock):
    today = clock.today()
    cohort = CohortFactory(start_date=today + datetime.timedelta(days=10), signup_opens_on=today)
    admin_client.post(reverse("admin:cohorts_cohort_changelist"), {"action": "close_signup", ACTION_CHECKBOX_NAME: [cohort.pk]})
    cohort.refresh_from_db()
    assert cohort.signup_closes_on < today
