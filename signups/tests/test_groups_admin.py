"""Organizers form and re-form groups from the cohort's admin page, the command and the beat job."""

import datetime
import logging
import re
import zoneinfo
from io import StringIO

import pytest
from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.urls import reverse

from cohorts.models import StudyGroup
from cohorts.tests.factories import CohortFactory
from signups.models import Enrollment
from signups.services import enrollment_leave
from signups.tasks import groups_form_due
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db


def enroll(cohort, count, timezone_name="Europe/Lisbon", **fields):
    return EnrollmentFactory.create_batch(count, cohort=cohort, learner__timezone=timezone_name, **fields)


def test_form_groups_from_the_admin_then_the_page_shows_them(admin_client, next_cohort):
    enroll(next_cohort, 12, learner__first_name="Ada")
    enroll(next_cohort, 3, status="pending", learner__confirmed_at=None)
    changelist = reverse("admin:cohorts_cohort_changelist")

    response = admin_client.post(changelist, {"action": "form_groups", ACTION_CHECKBOX_NAME: [next_cohort.pk]}, follow=True)

    assert "1 groups of 12 to 12; 100% within 2 hours; 0 left without a group." in response.content.decode()
    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[next_cohort.pk])).content.decode()
    assert "Learners and study groups" in page
    assert "Active: 12" in page and "Waiting for confirmation: 3" in page
    # Lisbon's offset on the day the round starts: UTC+0 in winter, UTC+1 in summer time.
    lisbon_at_start = datetime.datetime.combine(next_cohort.start_date, datetime.time(12), tzinfo=zoneinfo.ZoneInfo("Europe/Lisbon"))
    assert f"UTC+{lisbon_at_start.utcoffset() // datetime.timedelta(hours=1)}: 12" in page
    assert "Group 1" in page and "Ada (Europe/Lisbon)" in page
    assert "Next week due:" in page

    again = admin_client.post(changelist, {"action": "form_groups", ACTION_CHECKBOX_NAME: [next_cohort.pk]}, follow=True)
    assert "has groups already" in again.content.decode()


def test_reform_from_the_admin(admin_client, next_cohort, clock):
    enroll(next_cohort, 20)
    call_command("form_groups", next_cohort.slug, stdout=StringIO())
    second = StudyGroup.objects.get(number=2)
    for enrollment in list(Enrollment.objects.filter(group=second))[:6]:
        enrollment_leave(enrollment, now=clock.now())

    response = admin_client.post(
        reverse("admin:cohorts_cohort_changelist"), {"action": "reform_groups", ACTION_CHECKBOX_NAME: [next_cohort.pk]}, follow=True
    )

    assert "moved 4 learners; groups merged away: Group 2; 0 quiet learners not counted as active." in response.content.decode()


def test_the_command_prints_the_quality_report(next_cohort):
    enroll(next_cohort, 15, "America/Chicago")
    enroll(next_cohort, 15, "Asia/Kolkata")
    output = StringIO()

    call_command("form_groups", next_cohort.slug, "--seed", "3", stdout=output)

    text = output.getvalue()
    assert "Group 1" in text and "Group 2" in text
    # 15 in a zone is more than the largest group (14): two groups each, none mixing the zones.
    assert "4 groups for 30 learners; sizes 6-9; 100.0% of groups within 2 hours; 0 left without a group." in text


def test_the_command_refuses_to_form_twice_or_without_learners(next_cohort, later_cohort):
    enroll(next_cohort, 8)
    call_command("form_groups", next_cohort.slug, stdout=StringIO())
    with pytest.raises(CommandError, match="has groups already. Use --reform"):
        call_command("form_groups", next_cohort.slug, stdout=StringIO())
    with pytest.raises(CommandError, match="no confirmed learner who wants a group: nothing changed"):
        call_command("form_groups", later_cohort.slug, stdout=StringIO())
    with pytest.raises(CommandError, match="no cohort with the slug"):
        call_command("form_groups", "nope", stdout=StringIO())


def test_the_beat_job_forms_groups_on_the_formation_date_once(next_cohort, later_cohort, today):
    next_cohort.groups_form_on = today
    next_cohort.save()
    enroll(next_cohort, 10)
    enroll(later_cohort, 10)  # its day has not come

    groups_form_due.apply()
    groups_form_due.apply()

    assert StudyGroup.objects.filter(cohort=next_cohort).count() == 1
    assert not StudyGroup.objects.filter(cohort=later_cohort).exists()


def test_by_default_groups_form_the_day_before_the_start(next_cohort, today):
    next_cohort.start_date = today + datetime.timedelta(days=1)
    next_cohort.save()
    enroll(next_cohort, 7)

    groups_form_due.apply()

    assert StudyGroup.objects.filter(cohort=next_cohort).count() == 1


# --- No group without a place to talk ---------------------------------------------------------------


def cohort_change(cohort, **changes) -> dict:
    """The cohort's admin form as it stands, with `changes`."""
    fields = ["name", "slug", "start_date", "capacity", "signup_opens_on", "signup_closes_on", "send_weekday", "send_time",
              "group_size_min", "group_size_target", "group_size_max", "groups_form_on", "discussion_url_pattern", "group_strategy"]
    data = {name: "" if getattr(cohort, name) is None else getattr(cohort, name) for name in fields}
    return data | {"course": cohort.course_id} | changes


def form_groups_from_the_admin(admin_client, cohort):
    response = admin_client.post(
        reverse("admin:cohorts_cohort_changelist"), {"action": "form_groups", ACTION_CHECKBOX_NAME: [cohort.pk]}, follow=True
    )
    return [(message.level, str(message)) for message in get_messages(response.wsgi_request)]


def test_forming_groups_with_nowhere_to_talk_warns_the_organizer(admin_client, next_cohort):
    enroll(next_cohort, 8)

    said = form_groups_from_the_admin(admin_client, next_cohort)

    assert StudyGroup.objects.filter(cohort=next_cohort).count() == 1  # a warning, not a refusal
    warnings = [text for level, text in said if level == messages.WARNING]
    assert warnings == [
        f"{next_cohort}: its study groups have no place to talk, because the round has no group discussion link "
        "and group mail is off (GROUP_MAIL_DOMAIN). "
        "Add one on the round's page (Study groups) and save: each group then gets its own link."
    ]


def test_forming_groups_with_a_discussion_link_does_not_warn(admin_client, next_cohort):
    next_cohort.discussion_url_pattern = "https://forum.example.org/c/{group}"
    next_cohort.save()
    enroll(next_cohort, 8)

    said = form_groups_from_the_admin(admin_client, next_cohort)

    assert [level for level, _ in said] == [messages.INFO]  # the quality report only
    assert StudyGroup.objects.get(cohort=next_cohort).discussion_url == f"https://forum.example.org/c/{next_cohort.slug}-g1"


def test_forming_groups_with_group_mail_on_does_not_warn(admin_client, next_cohort, settings):
    settings.GROUP_MAIL_DOMAIN = "groups.example.org"
    enroll(next_cohort, 8)

    said = form_groups_from_the_admin(admin_client, next_cohort)

    assert [level for level, _ in said] == [messages.INFO]  # each group has its own address: somewhere to talk


def test_the_beat_job_logs_a_warning_for_groups_with_nowhere_to_talk(next_cohort, later_cohort, today, caplog):
    for cohort, pattern in [(next_cohort, ""), (later_cohort, "https://forum.example.org/c/{group}")]:
        cohort.groups_form_on, cohort.discussion_url_pattern = today, pattern
        cohort.save()
        enroll(cohort, 8)

    with caplog.at_level(logging.WARNING, logger="signups.groups"):
        groups_form_due.apply()

    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert [record.getMessage() for record in warnings] == [
        f"{next_cohort}: its study groups have no place to talk, because the round has no group discussion link "
        "and group mail is off (GROUP_MAIL_DOMAIN). "
        "Add one on the round's page (Study groups) and save: each group then gets its own link."
    ]
    assert StudyGroup.objects.filter(cohort__in=[next_cohort, later_cohort]).count() == 2


def test_the_command_warns_too(next_cohort):
    enroll(next_cohort, 8)
    errors = StringIO()

    call_command("form_groups", next_cohort.slug, stdout=StringIO(), stderr=errors)

    assert "Warning: " in errors.getvalue() and "have no place to talk" in errors.getvalue()


def place_to_talk_warning(page: str) -> str | None:
    match = re.search(r'<ul class="messagelist" id="groups-place-to-talk-warning">\s*<li class="warning">(.*?)</li>', page, re.S)
    return match.group(1) if match else None


def test_the_cohorts_page_warns_before_and_after_formation_unless_the_round_is_over(admin_client, next_cohort, today):
    url = reverse("admin:cohorts_cohort_change", args=[next_cohort.pk])
    before = place_to_talk_warning(admin_client.get(url).content.decode())
    enroll(next_cohort, 8)
    form_groups_from_the_admin(admin_client, next_cohort)
    after = admin_client.get(url).content.decode()

    assert f"When its study groups are formed (due {next_cohort.groups_formation_date:%a %-d %b %Y})" in before
    assert "they will have no place to talk" in before
    assert "This round's study groups have no place to talk" in place_to_talk_warning(after)
    # Near the groups: after the Study groups fieldset, before the learners and their groups.
    assert after.index("Group discussion link") < after.index("groups-place-to-talk-warning") < after.index("Learners and study groups")

    # A finished round is past helping.
    finished = CohortFactory(course=next_cohort.course, start_date=today - datetime.timedelta(weeks=20))
    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[finished.pk])).content.decode()
    assert place_to_talk_warning(page) is None and "Finished" in page


def test_adding_the_link_later_gives_the_formed_groups_theirs_and_keeps_a_hand_set_one(admin_client, next_cohort):
    enroll(next_cohort, 20)
    form_groups_from_the_admin(admin_client, next_cohort)
    first, second = StudyGroup.objects.filter(cohort=next_cohort).order_by("number")
    second.discussion_url = "https://chat.example.org/our-own-room"
    second.save()
    url = reverse("admin:cohorts_cohort_change", args=[next_cohort.pk])

    response = admin_client.post(url, cohort_change(next_cohort, discussion_url_pattern="https://forum.example.org/c/{group}"), follow=True)

    assert response.redirect_chain, response.context["adminform"].form.errors
    assert f"{next_cohort.name}: discussion links given to 1 group." in [str(m) for m in get_messages(response.wsgi_request)]
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.discussion_url == f"https://forum.example.org/c/{first.slug}"
    assert second.discussion_url == "https://chat.example.org/our-own-room"
    assert place_to_talk_warning(admin_client.get(url).content.decode()) is None

    # Changed again: the groups that followed the old link follow the new one.
    admin_client.post(url, cohort_change(next_cohort, discussion_url_pattern="https://talk.example.org/{group}"))
    first.refresh_from_db()
    assert first.discussion_url == f"https://talk.example.org/{first.slug}"


def test_poor_groups_are_a_warning_with_the_reason_and_the_page_says_when_they_were_formed(admin_client, next_cohort, clock):
    for zone in ["Pacific/Auckland", "Asia/Tokyo", "Asia/Kolkata", "Europe/Berlin", "America/Sao_Paulo", "America/New_York",
                 "America/Los_Angeles", "Pacific/Honolulu"]:
        enroll(next_cohort, 1, zone)
    changelist = reverse("admin:cohorts_cohort_changelist")

    response = admin_client.post(changelist, {"action": "form_groups", ACTION_CHECKBOX_NAME: [next_cohort.pk]}, follow=True)

    [message] = [m for m in get_messages(response.wsgi_request) if "groups of" in m.message]
    assert message.level == messages.WARNING
    assert "Poor groups: only 0% of groups within 2 hours: the learners are spread across all time zones (8 UTC offsets" in message.message
    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[next_cohort.pk])).content.decode()
    assert f"groups formed {clock.now():%a %-d %b %Y %H:%M} UTC" in page
    assert "groups to be formed on" not in page


@pytest.mark.parametrize("minutes, label", [(0, "UTC+0"), (330, "UTC+5:30"), (-210, "UTC-3:30"), (-600, "UTC-10"), (345, "UTC+5:45")])
def test_time_zone_offsets_are_labelled_with_their_sign_on_hours_and_minutes(minutes, label):
    from signups.admin import utc_offset_label

    assert utc_offset_label(minutes) == label


def test_the_cohort_page_shows_a_negative_half_hour_offset_as_it_is(admin_client, next_cohort):
    enroll(next_cohort, 2, "America/St_Johns")  # UTC-3:30 in winter, UTC-2:30 in summer time

    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[next_cohort.pk])).content.decode()

    st_johns = datetime.datetime.combine(next_cohort.start_date, datetime.time(12), tzinfo=zoneinfo.ZoneInfo("America/St_Johns"))
    hours = -st_johns.utcoffset() // datetime.timedelta(hours=1)
    assert f"UTC-{hours}:30: 2" in page
