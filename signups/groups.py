"""Putting a cohort's learners into study groups: formation, late joiners, re-forming, the report.

The algorithm lives in cohorts.grouping and knows nothing of the database; these services
feed it the cohort's groupable learners, write its answer in bulk and keep the rules:
- only confirmed, subscribed learners with an active (or paused) enrollment who want a
  group are grouped;
- forming twice is refused (re-form instead); a learner confirmed after formation is placed
  at once, so nobody is left without a group;
- every change to a cohort's groups happens with the cohort's row locked, one writer at a time.

Re-forming counts only a group's *active* members when it decides the group is too small:
quiet learners (README, "Quiet learners") keep their seat but do not count. Who is quiet is
the scheduler's to say (its ledger knows what the provider reported), and signups never
imports the scheduler: the scheduler registers its answer in QUIET_LEARNERS at start-up
(scheduler/apps.py), and a caller may pass its own set instead.
"""

import datetime
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from cohorts.grouping import (
    Candidate,
    FormationQuality,
    GroupQuality,
    circular_spread,
    formation_quality,
    group_centre_offset,
    group_for_late_joiner,
    groups_form,
    groups_reform,
    utc_offset_minutes,
)
from cohorts.models import Cohort, StudyGroup
from cohorts.selectors import (
    cohort_groups_have_place_to_talk, cohort_has_groups, cohorts_due_for_group_formation, study_groups_of,
)
from cohorts.services import cohort_lock, study_groups_create, study_groups_dissolve
from signups.models import Enrollment

GROUPED_STATUSES = Enrollment.GROUPED
ASSIGN_BATCH = 50_000  # (enrollment, group) pairs per statement

logger = logging.getLogger(__name__)


class GroupsExist(Exception):
    """The cohort has groups already: re-form them instead of forming again."""


class NoLearnersToGroup(Exception):
    """The cohort has no confirmed learner who wants a group."""


def _groupable(cohort: Cohort):
    return Enrollment.objects.filter(
        cohort=cohort,
        status__in=GROUPED_STATUSES,
        wants_group=True,
        learner__confirmed_at__isnull=False,
        learner__unsubscribed_at__isnull=True,
    )


def _candidates(enrollments, start_date: datetime.date) -> list[Candidate]:
    rows = enrollments.values_list("pk", "learner__timezone", "learner__experience")
    return [Candidate(pk, utc_offset_minutes(timezone_name, start_date), experience) for pk, timezone_name, experience in rows]


def _members_by_group(cohort: Cohort, quiet_learner_ids: Collection[int] = ()) -> tuple[dict[int, list[Candidate]], set[int]]:
    """The current members of each of the cohort's groups, and the keys of those among them who
    are quiet (their learner id in `quiet_learner_ids`)."""
    members: dict[int, list[Candidate]] = {group.pk: [] for group in study_groups_of(cohort)}
    quiet_learner_ids = set(quiet_learner_ids)
    quiet: set[int] = set()
    rows = _groupable(cohort).filter(group__in=list(members)).values_list(
        "pk", "group_id", "learner_id", "learner__timezone", "learner__experience"
    )
    for pk, group_id, learner_id, timezone_name, experience in rows:
        members[group_id].append(Candidate(pk, utc_offset_minutes(timezone_name, cohort.start_date), experience))
        if learner_id in quiet_learner_ids:
            quiet.add(pk)
    return members, quiet


def _assign(enrollment_ids_by_group: dict[int, list[int]], now: datetime.datetime) -> None:
    """Write memberships in bulk: a few statements for the whole cohort, never one per learner.

    PostgreSQL and SQLite join the enrollments to the (id, group) pairs sent as one
    parameter; other databases get one UPDATE per group.
    """
    pairs = [(enrollment_id, group_id) for group_id, ids in enrollment_ids_by_group.items() for enrollment_id in ids]
    table = Enrollment._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(pairs), ASSIGN_BATCH):
            batch = pairs[start : start + ASSIGN_BATCH]
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"UPDATE {table} AS e SET group_id = pair.group_id, grouped_at = %s"
                    " FROM unnest(%s::bigint[], %s::bigint[]) AS pair(id, group_id) WHERE e.id = pair.id",
                    [now, [enrollment_id for enrollment_id, _ in batch], [group_id for _, group_id in batch]],
                )
            elif connection.vendor == "sqlite":
                cursor.execute(
                    f"UPDATE {table} SET group_id = pair.group_id, grouped_at = %s FROM ("
                    " SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS group_id FROM json_each(%s)"
                    f") AS pair WHERE {table}.id = pair.id",
                    [now, json.dumps(batch)],
                )
            else:
                for group_id, ids in enrollment_ids_by_group.items():
                    Enrollment.objects.filter(pk__in=ids).update(group_id=group_id, grouped_at=now)
                return


def cohort_groups_form(cohort: Cohort, now: datetime.datetime, seed: int | None = None) -> FormationQuality:
    """Form the cohort's study groups as of `now` and return the formation's quality report.

    Transactional, with the cohort locked. Deterministic for a seed (default: the cohort's
    id). Raises GroupsExist when the cohort has groups, NoLearnersToGroup when nobody is
    groupable; either way nothing changes.
    """
    with transaction.atomic():
        cohort = cohort_lock(cohort.pk)
        if cohort_has_groups(cohort):
            raise GroupsExist(f"{cohort} has groups already: re-form them instead.")
        candidates = _candidates(_groupable(cohort), cohort.start_date)
        if not candidates:
            raise NoLearnersToGroup(f"{cohort} has no confirmed learner who wants a group.")
        formed = groups_form(
            candidates, cohort.group_size_target, cohort.group_size_min, cohort.group_size_max,
            seed=cohort.pk if seed is None else seed,
        )
        groups = study_groups_create(cohort, [group_centre_offset([m.utc_offset for m in members]) for members in formed])
        _assign({group.pk: [member.key for member in members] for group, members in zip(groups, formed)}, now)
    return formation_quality({group: members for group, members in zip(groups, formed)}, learners=len(candidates))


def enrollment_group_place(enrollment: Enrollment, now: datetime.datetime) -> StudyGroup | None:
    """Put a learner who arrives after formation (at `now`) into a group: never leave them without one.

    The group of their time band that has room, or a new group when none has. Nothing when
    the cohort's groups are not formed yet (formation will take them), when they want no
    group, or when they are in one of the cohort's groups already. Idempotent; locks the cohort.
    """
    if enrollment.cohort_id is None or not enrollment.wants_group or enrollment.status not in GROUPED_STATUSES:
        return None
    with transaction.atomic():
        cohort = cohort_lock(enrollment.cohort_id)
        current = Enrollment.objects.select_related("learner", "group").get(pk=enrollment.pk)
        if current.group is not None and current.group.cohort_id == cohort.pk and current.group.dissolved_at is None:
            return current.group
        if not cohort_has_groups(cohort):
            return None
        offset = utc_offset_minutes(current.learner.timezone, cohort.start_date)
        members, _ = _members_by_group(cohort)
        target = group_for_late_joiner(offset, {key: [m.utc_offset for m in group] for key, group in members.items()}, cohort.group_size_max)
        group = StudyGroup.objects.get(pk=target) if target else study_groups_create(cohort, [offset])[0]
        Enrollment.objects.filter(pk=current.pk).update(group=group, grouped_at=now)
    enrollment.group = group
    return group


# Who is quiet in a cohort, as learner ids: filled at start-up by the app that knows (the
# scheduler registers scheduler.selectors.learners_quiet in its AppConfig.ready). Several
# sources: a learner quiet by any of them is quiet.
QUIET_LEARNERS: list[Callable[[Cohort], Collection[int]]] = []


def cohort_quiet_learner_ids(cohort: Cohort) -> set[int]:
    """The cohort's quiet learners by every registered source (none registered: nobody)."""
    return set().union(*(source(cohort) for source in QUIET_LEARNERS))


@dataclass
class Reform:
    moved: int
    dissolved: list[str]
    quiet: int = 0  # grouped learners who did not count as active


def cohort_groups_reform(cohort: Cohort, now: datetime.datetime, quiet_learner_ids: Collection[int] | None = None) -> Reform:
    """Merge groups whose current active members fell below the minimum into neighbours of
    their band. Quiet learners (`quiet_learner_ids`, by default cohort_quiet_learner_ids) do
    not count as active, but keep their seat and move with their group.

    Everyone else stays where they are. Moved learners are marked (group_moved_at/from) so
    that their next weekly email tells them. Also places groupable learners who have no
    group yet. Transactional, with the cohort locked.
    """
    if quiet_learner_ids is None:
        quiet_learner_ids = cohort_quiet_learner_ids(cohort)  # reads the ledger: before the lock
    with transaction.atomic():
        cohort = cohort_lock(cohort.pk)
        groups = {group.pk: group for group in study_groups_of(cohort)}
        members, quiet = _members_by_group(cohort, quiet_learner_ids)
        moves, dissolved = groups_reform(members, cohort.group_size_min, cohort.group_size_max, quiet=quiet)
        by_target: dict[tuple[int, int], list[int]] = defaultdict(list)
        previous = dict(Enrollment.objects.filter(pk__in=list(moves)).values_list("pk", "group_id"))
        for enrollment_id, target in moves.items():
            by_target[(target, previous[enrollment_id])].append(enrollment_id)
        for (target, source), enrollment_ids in by_target.items():
            Enrollment.objects.filter(pk__in=enrollment_ids).update(
                group_id=target, grouped_at=now, group_moved_at=now, group_moved_from=groups[source].name
            )
        study_groups_dissolve(dissolved, now)
        ungrouped = _groupable(cohort).exclude(group__in=[key for key in groups if key not in dissolved])
        for enrollment in ungrouped.select_related("learner"):
            enrollment_group_place(enrollment, now)
    return Reform(moved=len(moves), dissolved=sorted(groups[key].name for key in dissolved), quiet=len(quiet))


class GroupName(NamedTuple):
    """What a quality report's row says of its group (`GroupQuality.key`)."""

    pk: int
    name: str


def cohort_groups_quality(cohort: Cohort, counts: list | None = None) -> FormationQuality:
    """The quality report of the cohort's groups as they are now (groupable learners only).

    From the members counted per group, time zone and experience (signups.selectors.
    cohort_member_counts, read here unless given): a round of 100,000 learners costs two
    queries and no learner rows. A group's spread depends only on which offsets it has."""
    from signups.selectors import cohort_member_counts

    # The groups' ids and names only: a round of 100,000 learners has 10,000 of them.
    groups = {pk: GroupName(pk, name) for pk, name in study_groups_of(cohort).values_list("pk", "name")}
    sizes: Counter = Counter()
    offsets: dict[int, set[int]] = defaultdict(set)
    experience: dict[int, Counter] = defaultdict(Counter)
    learners = 0
    for row in cohort_member_counts(cohort) if counts is None else counts:
        if not row.groupable:
            continue
        learners += row.count
        if row.group_id in groups:
            sizes[row.group_id] += row.count
            offsets[row.group_id].add(utc_offset_minutes(row.timezone, cohort.start_date))
            experience[row.group_id][row.experience] += row.count
    quality = [
        GroupQuality(key=groups[group_id], size=size, spread_hours=circular_spread(offsets[group_id]) / 60,
                     experience=dict(experience[group_id]))
        for group_id, size in sizes.items()
    ]
    return FormationQuality(groups=quality, learners=learners, ungrouped=learners - sum(sizes.values()))


def groups_without_place_to_talk_warning(cohort: Cohort) -> str:
    """What formation says when the cohort's groups got nowhere to talk (see
    cohorts.selectors.cohort_groups_have_place_to_talk)."""
    return (
        f"{cohort}: its study groups have no place to talk, because the round has no group discussion link. "
        "Add one on the round's page (Study groups) and save: each group then gets its own link."
    )


def cohorts_groups_form_due(now: datetime.datetime) -> dict[Cohort, FormationQuality | str]:
    """Form the groups of every cohort whose formation date has come by `now` and that has none yet.

    Safe to run again at any time (a cohort with groups is no longer due). Returns, per
    cohort tried, its quality report or why nothing was formed. Logs a warning for each
    cohort whose new groups have no place to talk: nobody watches this run, and the organizer
    can still add a link before the first weekly email.
    """
    results: dict[Cohort, FormationQuality | str] = {}
    for cohort in cohorts_due_for_group_formation(timezone.localdate(now)):
        try:
            results[cohort] = cohort_groups_form(cohort, now)
        except (GroupsExist, NoLearnersToGroup) as reason:
            results[cohort] = str(reason)
        else:
            if not cohort_groups_have_place_to_talk(cohort):
                logger.warning("%s", groups_without_place_to_talk_warning(cohort))
    return results
