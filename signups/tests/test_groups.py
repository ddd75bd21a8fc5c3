"""Study groups for a cohort's learners: formation, late joiners, switching, re-forming."""

import datetime

import pytest
from django.core import mail

from cohorts.models import StudyGroup
from cohorts.tests.factories import CohortFactory
from signups.groups import GroupsExist, NoLearnersToGroup, cohort_groups_form, cohort_groups_quality, cohort_groups_reform
from signups.models import Enrollment
from signups.services import enrollment_confirm, enrollment_leave, enrollment_switch_cohort
from signups.tests.factories import EnrollmentFactory
from signups.tokens import confirmation_token

pytestmark = pytest.mark.django_db


def enroll(cohort, count, timezone_name="Europe/Lisbon", experience="some", **fields):
    return [
        EnrollmentFactory(cohort=cohort, learner__timezone=timezone_name, learner__experience=experience, **fields)
        for _ in range(count)
    ]


def test_only_confirmed_learners_who_want_a_group_are_grouped(next_cohort, clock):
    grouped = enroll(next_cohort, 12)
    enroll(next_cohort, 2, wants_group=False)
    enroll(next_cohort, 2, status="pending", learner__confirmed_at=None)
    enroll(next_cohort, 1, status="left")

    quality = cohort_groups_form(next_cohort, now=clock.now())

    assert quality.ungrouped == 0 and quality.learners == 12
    in_groups = set(Enrollment.objects.filter(group__isnull=False).values_list("pk", flat=True))
    assert in_groups == {enrollment.pk for enrollment in grouped}


def test_groups_get_numbers_names_links_and_unique_slugs(next_cohort, clock):
    next_cohort.discussion_url_pattern = "https://forum.example.org/c/{group}"
    next_cohort.save()
    enroll(next_cohort, 25, "America/New_York")
    enroll(next_cohort, 25, "Asia/Tokyo")

    quality = cohort_groups_form(next_cohort, now=clock.now())

    groups = list(StudyGroup.objects.order_by("number"))
    assert [group.number for group in groups] == list(range(1, len(groups) + 1))
    assert groups[0].name == "Group 1"
    assert groups[0].slug == f"{next_cohort.slug}-g1"
    assert groups[0].discussion_url == f"https://forum.example.org/c/{next_cohort.slug}-g1"
    assert all(6 <= row.size <= 14 for row in quality.groups)
    assert quality.share_within_good_spread == 1.0


def test_forming_twice_refuses_and_changes_nothing(next_cohort, clock):
    enroll(next_cohort, 10)
    cohort_groups_form(next_cohort, now=clock.now())
    before = list(Enrollment.objects.values_list("pk", "group_id"))

    with pytest.raises(GroupsExist):
        cohort_groups_form(next_cohort, now=clock.now())

    assert list(Enrollment.objects.values_list("pk", "group_id")) == before


def test_forming_without_learners_says_so(next_cohort, clock):
    enroll(next_cohort, 3, status="pending", learner__confirmed_at=None)
    with pytest.raises(NoLearnersToGroup):
        cohort_groups_form(next_cohort, now=clock.now())
    assert not StudyGroup.objects.exists()


@pytest.mark.clock("2026-03-20T12:00:00Z")  # during signup, before Europe's clocks change
def test_offsets_are_taken_at_the_start_even_the_week_clocks_change(clock):
    # Europe changes clocks on Sunday 29 March 2026; this cohort starts the next day.
    cohort = CohortFactory(start_date=datetime.date(2026, 3, 30), signup_opens_on=datetime.date(2026, 3, 1))
    enroll(cohort, 7, "Europe/London")  # UTC+1 from 29 March (UTC+0 the week before)
    enroll(cohort, 7, "Africa/Lagos")  # UTC+1 all year

    quality = cohort_groups_form(cohort, now=clock.now())

    assert [row.size for row in quality.groups] == [14]
    assert quality.groups[0].spread_hours == 0


def test_a_learner_confirming_after_formation_gets_a_group_at_once(next_cohort, clock):
    enroll(next_cohort, 10, "Europe/Lisbon")
    cohort_groups_form(next_cohort, now=clock.now())
    late = EnrollmentFactory(
        cohort=next_cohort, status="pending", learner__confirmed_at=None, learner__timezone="Europe/London"
    )

    enrollment_confirm(confirmation_token(late.pk), now=clock.now())

    late.refresh_from_db()
    assert late.group == StudyGroup.objects.get()  # same band, room below 14


def test_a_late_joiner_far_from_every_group_starts_a_new_one(next_cohort, clock):
    enroll(next_cohort, 10, "Europe/Lisbon")
    cohort_groups_form(next_cohort, now=clock.now())
    late = EnrollmentFactory(cohort=next_cohort, status="pending", learner__confirmed_at=None, learner__timezone="Asia/Tokyo")

    enrollment_confirm(confirmation_token(late.pk), now=clock.now())

    late.refresh_from_db()
    assert late.group is not None and late.group.number == 2
    assert cohort_groups_quality(next_cohort).ungrouped == 0


def test_a_full_group_takes_no_more(next_cohort, clock):
    enroll(next_cohort, 14, "Europe/Lisbon")
    cohort_groups_form(next_cohort, now=clock.now())
    late = EnrollmentFactory(cohort=next_cohort, status="pending", learner__confirmed_at=None, learner__timezone="Europe/Lisbon")

    enrollment_confirm(confirmation_token(late.pk), now=clock.now())

    late.refresh_from_db()
    assert late.group.number == 2


def test_switching_cohort_leaves_the_old_group_and_joins_one_in_the_new_cohort(running_cohort, next_cohort, clock):
    enroll(running_cohort, 10)
    enroll(next_cohort, 10)
    cohort_groups_form(running_cohort, now=clock.now())
    cohort_groups_form(next_cohort, now=clock.now())
    mover = Enrollment.objects.filter(cohort=running_cohort).first()

    moved = enrollment_switch_cohort(mover, next_cohort, today=clock.today(), now=clock.now())

    moved.refresh_from_db()
    assert moved.group.cohort == next_cohort
    old_group = Enrollment.objects.get(pk=mover.pk).group
    assert mover.pk not in old_group.enrollments.filter(status__in=["active", "paused"]).values_list("pk", flat=True)


def test_reforming_merges_shrunken_groups_and_tells_the_moved(next_cohort, clock):
    enroll(next_cohort, 10, "Europe/Lisbon")
    enroll(next_cohort, 10, "Europe/Lisbon", experience="none")
    cohort_groups_form(next_cohort, now=clock.now())
    first, second = StudyGroup.objects.order_by("number")
    leavers = list(Enrollment.objects.filter(group=second))[:6]
    for enrollment in leavers:
        enrollment_leave(enrollment, now=clock.now())
    stayers = set(Enrollment.objects.filter(group=first).values_list("pk", flat=True))

    reform = cohort_groups_reform(next_cohort, now=clock.now())

    assert reform.moved == 4 and reform.dissolved == ["Group 2"]
    assert set(Enrollment.objects.filter(group=first).values_list("pk", flat=True)) >= stayers
    moved = Enrollment.objects.filter(group=first, group_moved_at__isnull=False)
    assert moved.count() == 4 and {e.group_moved_from for e in moved} == {"Group 2"}
    second.refresh_from_db()
    assert second.dissolved_at is not None
    quality = cohort_groups_quality(next_cohort)
    assert [row.size for row in quality.groups] == [14] and quality.ungrouped == 0


def test_reforming_does_not_count_quiet_learners_as_active(next_cohort, clock):
    enroll(next_cohort, 20, "Europe/Lisbon")
    cohort_groups_form(next_cohort, now=clock.now())
    next_cohort.group_size_max = 20  # room for everyone in one group
    next_cohort.save()
    first, second = StudyGroup.objects.order_by("number")
    second_members = list(Enrollment.objects.filter(group=second).order_by("pk"))
    quiet = {enrollment.learner_id for enrollment in second_members[:5]}
    assert len(second_members) == 10

    assert cohort_groups_reform(next_cohort, now=clock.now(), quiet_learner_ids=set()).moved == 0  # all ten count

    reform = cohort_groups_reform(next_cohort, now=clock.now(), quiet_learner_ids=quiet)

    # Five active members are below the minimum (6): the group is merged away, quiet ones too.
    assert (reform.moved, reform.dissolved, reform.quiet) == (10, ["Group 2"], 5)
    assert Enrollment.objects.filter(group=first).count() == 20


def test_with_no_source_of_quiet_learners_nobody_is_quiet(next_cohort, monkeypatch):
    from signups import groups

    monkeypatch.setattr(groups, "QUIET_LEARNERS", [])
    assert groups.cohort_quiet_learner_ids(next_cohort) == set()
    monkeypatch.setattr(groups, "QUIET_LEARNERS", [lambda cohort: {1, 2}, lambda cohort: [2, 3]])
    assert groups.cohort_quiet_learner_ids(next_cohort) == {1, 2, 3}


def test_the_import_of_confirmed_learners_places_them_when_groups_exist(next_cohort, clock):
    from signups.imports import learners_import

    enroll(next_cohort, 10, "Europe/Lisbon")
    cohort_groups_form(next_cohort, now=clock.now())

    learners_import(next_cohort, "email,timezone,experience\nlate@example.org,Europe/Lisbon,none\n", confirmed=True, now=clock.now())

    assert Enrollment.objects.get(learner__email="late@example.org").group is not None
    assert not mail.outbox


def test_formation_costs_the_same_queries_for_30_or_90_learners(next_cohort, later_cohort, clock):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    enroll(next_cohort, 30)
    enroll(later_cohort, 90)
    with CaptureQueriesContext(connection) as small:
        cohort_groups_form(next_cohort, now=clock.now())
    with CaptureQueriesContext(connection) as large:
        cohort_groups_form(later_cohort, now=clock.now())

    assert len(small) == len(large)
