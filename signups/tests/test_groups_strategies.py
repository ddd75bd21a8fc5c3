"""Forming, placing and re-forming a cohort's groups by its strategy, and experiments between two."""

from io import StringIO

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.urls import reverse

from cohorts.grouping import (
    Candidate, experiment_arm_of, experiment_split, experiment_stratum, group_for_late_joiner_at_random, utc_offset_minutes,
)
from cohorts.models import GroupStrategy, StudyGroup
from signups.groups import ExperimentNotSet, cohort_groups_form, cohort_groups_quality, cohort_groups_reform, enrollment_group_place
from signups.models import Enrollment
from signups.services import enrollment_leave
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db


def enroll(cohort, count, timezone_name="Europe/Lisbon", experience="some", **fields):
    return EnrollmentFactory.create_batch(
        count, cohort=cohort, learner__timezone=timezone_name, learner__experience=experience, **fields
    )


def mixed_learners(cohort):
    """Sixty learners in three time zones and three experience levels."""
    for timezone_name in ("America/Chicago", "Europe/Berlin", "Asia/Tokyo"):
        for experience in ("none", "none", "some", "experienced"):
            enroll(cohort, 5, timezone_name, experience)


def set_strategy(cohort, strategy, experiment=()):
    cohort.group_strategy, cohort.experiment_strategies = strategy, list(experiment)
    cohort.full_clean()
    cohort.save()


def strategy_of_members(cohort) -> dict[int, str]:
    """Each grouped enrollment's group's strategy."""
    return dict(Enrollment.objects.filter(cohort=cohort, group__isnull=False).values_list("pk", "group__strategy"))


@pytest.mark.parametrize("strategy", ["timezone_experience", "timezone", "random"])
def test_groups_are_formed_by_the_cohorts_strategy_and_keep_it(next_cohort, clock, strategy):
    set_strategy(next_cohort, strategy)
    mixed_learners(next_cohort)

    quality = cohort_groups_form(next_cohort, now=clock.now())

    assert set(StudyGroup.objects.values_list("strategy", flat=True)) == {strategy}
    assert quality.ungrouped == 0 and all(6 <= row.size <= 14 for row in quality.groups)
    assert list(quality.per_strategy()) == [strategy]
    next_cohort.refresh_from_db()
    assert next_cohort.experiment_seed == next_cohort.pk == quality.seed  # the default seed, recorded
    if strategy == "random":
        assert quality.share_within_good_spread < 0.5  # three zones 7 and 8 hours apart, mixed at random
    else:
        assert quality.share_within_good_spread == 1.0


def test_a_given_seed_is_recorded_and_forms_the_same_random_groups(next_cohort, later_cohort, clock):
    for cohort in (next_cohort, later_cohort):
        set_strategy(cohort, "random")
        mixed_learners(cohort)

    cohort_groups_form(next_cohort, now=clock.now(), seed=42)
    cohort_groups_form(later_cohort, now=clock.now(), seed=42)

    next_cohort.refresh_from_db()
    assert next_cohort.experiment_seed == 42

    def groups_by_position(cohort):
        # Enrollments in creation order: the n-th learner of each cohort stands for the same person.
        order = {pk: index for index, pk in enumerate(Enrollment.objects.filter(cohort=cohort).order_by("pk").values_list("pk", flat=True))}
        return sorted(sorted(order[pk] for pk in Enrollment.objects.filter(group=group).values_list("pk", flat=True))
                      for group in StudyGroup.objects.filter(cohort=cohort))

    # Keys differ between the cohorts, but the same shuffle of the same sorted keys makes the same groups.
    assert groups_by_position(next_cohort) == groups_by_position(later_cohort)


def test_an_experiment_splits_its_learners_reproducibly_from_the_recorded_seed(next_cohort, clock):
    set_strategy(next_cohort, "experiment", ["timezone_experience", "random"])
    mixed_learners(next_cohort)
    enroll(next_cohort, 1, "Australia/Sydney")  # 61: the arms differ by one

    quality = cohort_groups_form(next_cohort, now=clock.now(), seed=2026)

    next_cohort.refresh_from_db()
    assert next_cohort.experiment_seed == 2026 == quality.seed
    members = strategy_of_members(next_cohort)
    assert len(members) == 61 and set(members.values()) == {"timezone_experience", "random"}
    in_arm = {strategy: sorted(pk for pk, of in members.items() if of == strategy) for strategy in ("timezone_experience", "random")}
    assert abs(len(in_arm["timezone_experience"]) - len(in_arm["random"])) == 1
    # Anyone can recompute the split from the seed and the learners as they were at formation.
    rows = Enrollment.objects.filter(cohort=next_cohort).values_list("pk", "learner__timezone", "learner__experience")
    strata = {
        pk: experiment_stratum(Candidate(pk, utc_offset_minutes(timezone_name, next_cohort.start_date), experience))
        for pk, timezone_name, experience in rows
    }
    assert experiment_split(list(strata), 2026, strata=strata) == (in_arm["timezone_experience"], in_arm["random"])
    # The report per strategy: each arm's groups, within the size bounds.
    parts = quality.per_strategy()
    assert sorted(parts) == ["random", "timezone_experience"]
    assert {part.learners for part in parts.values()} == {30, 31}
    assert all(6 <= row.size <= 14 for row in quality.groups)
    assert parts["timezone_experience"].share_within_good_spread == 1.0


def test_an_experiment_without_two_strategies_is_refused_and_nothing_changes(next_cohort, clock):
    enroll(next_cohort, 10)
    next_cohort.group_strategy, next_cohort.experiment_strategies = "experiment", ["random", "random"]
    next_cohort.save()  # past the form's check, as a shell would

    with pytest.raises(ExperimentNotSet, match="without two different strategies"):
        cohort_groups_form(next_cohort, now=clock.now())

    assert not StudyGroup.objects.exists()
    next_cohort.refresh_from_db()
    assert next_cohort.experiment_seed is None


# --- Late joiners ------------------------------------------------------------------------------------


def test_a_late_joiner_to_random_groups_joins_one_with_room_whatever_their_time_zone(next_cohort, clock):
    set_strategy(next_cohort, "random")
    enroll(next_cohort, 20, "Europe/Lisbon")
    cohort_groups_form(next_cohort, now=clock.now())
    sizes = {group.pk: group.enrollments.count() for group in StudyGroup.objects.all()}
    late = enroll(next_cohort, 1, "Asia/Tokyo")[0]  # far from everyone: time zone strategies would start a group

    group = enrollment_group_place(late, now=clock.now())

    assert group.pk == group_for_late_joiner_at_random(late.pk, sizes, maximum=14, seed=next_cohort.pk)
    assert StudyGroup.objects.count() == 2 and group.strategy == "random"
    assert enrollment_group_place(late, now=clock.now()) == group  # idempotent


def test_late_joiners_to_an_experiment_go_to_their_arms_groups(next_cohort, clock):
    set_strategy(next_cohort, "experiment", ["timezone", "random"])
    enroll(next_cohort, 24, "Europe/Lisbon")
    cohort_groups_form(next_cohort, now=clock.now(), seed=7)  # one group of 12 in each arm

    late = enroll(next_cohort, 12, "Europe/Lisbon")
    placed = {enrollment.pk: enrollment_group_place(enrollment, now=clock.now()) for enrollment in late}

    arms = {pk: ["timezone", "random"][experiment_arm_of(pk, seed=7)] for pk in placed}
    assert set(arms.values()) == {"timezone", "random"}  # both arms get some of them
    assert all(group.strategy == arms[pk] for pk, group in placed.items())
    # Each arm's first group filled up to 14 before the arm started another.
    for strategy in ("timezone", "random"):
        first, *others = StudyGroup.objects.filter(strategy=strategy).order_by("number")
        assert first.enrollments.count() == (14 if others else 12 + list(arms.values()).count(strategy))


def test_a_late_joiner_to_an_experiment_far_from_their_arms_groups_starts_one_of_their_arm(next_cohort, clock):
    set_strategy(next_cohort, "experiment", ["timezone_experience", "timezone"])
    enroll(next_cohort, 24, "Europe/Lisbon")
    cohort_groups_form(next_cohort, now=clock.now(), seed=7)
    late = enroll(next_cohort, 1, "Asia/Tokyo")[0]

    group = enrollment_group_place(late, now=clock.now())

    assert group.strategy == ["timezone_experience", "timezone"][experiment_arm_of(late.pk, seed=7)]
    assert group.number == StudyGroup.objects.count()  # a new one


# --- Re-forming ------------------------------------------------------------------------------------


def test_re_forming_an_experiment_never_mixes_its_arms(next_cohort, clock):
    set_strategy(next_cohort, "experiment", ["timezone_experience", "timezone"])
    enroll(next_cohort, 40, "Europe/Lisbon")  # one time zone: only the arms keep groups apart
    cohort_groups_form(next_cohort, now=clock.now(), seed=3)
    before = strategy_of_members(next_cohort)
    shrinking = StudyGroup.objects.filter(strategy="timezone").order_by("number").first()
    for enrollment in list(Enrollment.objects.filter(group=shrinking))[:6]:
        enrollment_leave(enrollment, now=clock.now())

    reform = cohort_groups_reform(next_cohort, now=clock.now(), quiet_learner_ids=set())

    assert reform.moved > 0 and reform.dissolved == [shrinking.name]
    after = strategy_of_members(next_cohort)
    assert all(after[pk] == before[pk] for pk in after)
    assert {row.strategy for row in cohort_groups_quality(next_cohort).groups} == {"timezone_experience", "timezone"}


# --- The command and the admin ----------------------------------------------------------------------


def test_the_command_prints_the_report_per_strategy_and_the_seed(next_cohort):
    set_strategy(next_cohort, "experiment", ["timezone_experience", "random"])
    mixed_learners(next_cohort)
    output = StringIO()

    call_command("form_groups", next_cohort.slug, "--seed", "11", stdout=output)

    text = output.getvalue()
    assert "Time zone and experience: " in text and "Random (the 2013 baseline): " in text
    assert "groups for 30 learners" in text and "mixing experience levels" in text
    assert "0 left without a group." in text
    assert text.rstrip().endswith("Seed: 11.")


def test_the_command_refuses_an_experiment_without_its_strategies(next_cohort):
    enroll(next_cohort, 8)
    next_cohort.group_strategy, next_cohort.experiment_strategies = "experiment", []
    next_cohort.save()
    with pytest.raises(CommandError, match="without two different strategies .* Nothing changed"):
        call_command("form_groups", next_cohort.slug, stdout=StringIO())


def test_forming_from_the_admin_reports_each_arm_and_the_page_shows_each_groups_strategy(admin_client, next_cohort):
    set_strategy(next_cohort, "experiment", ["timezone", "random"])
    mixed_learners(next_cohort)

    response = admin_client.post(
        reverse("admin:cohorts_cohort_changelist"), {"action": "form_groups", ACTION_CHECKBOX_NAME: [next_cohort.pk]}, follow=True
    )

    said = [str(message) for message in get_messages(response.wsgi_request)]
    assert any("Time zone only: " in text and "Random (the 2013 baseline): " in text and f"Seed {next_cohort.pk}." in text for text in said), said
    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[next_cohort.pk])).content.decode()
    assert "<th>Strategy</th>" in page
    assert page.count("<td>Time zone only</td>") == StudyGroup.objects.filter(strategy="timezone").count() > 0
    assert page.count("<td>Random (the 2013 baseline)</td>") == StudyGroup.objects.filter(strategy="random").count() > 0
    assert f"By strategy</strong> (seed {next_cohort.pk})" in page
    assert GroupStrategy.RANDOM.label in admin_client.get(reverse("admin:cohorts_studygroup_changelist")).content.decode()
