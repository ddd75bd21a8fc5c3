"""Putting a cohort's learners into study groups: formation, late joiners, re-forming, the report.

The algorithm lives in cohorts.grouping and knows nothing of the database; these services
feed it the cohort's groupable learners, write its answer in bulk and keep the rules:
- only confirmed, subscribed learners with an active (or paused) enrollment who want a
  group are grouped;
- forming twice is refused (re-form instead); a learner confirmed after formation is placed
  at once, so nobody is left without a group;
- groups are formed by the cohort's strategy (cohorts.models.GroupStrategy), or in an
  experiment each arm by its own; every group keeps the strategy it was formed by, and late
  joiners and re-forming follow it: an experiment's arms never mix;
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

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from cohorts.grouping import (
    FORMING_BY_STRATEGY,
    GOOD_SPREAD_MINUTES,
    Candidate,
    FormationQuality,
    GroupQuality,
    circular_spread,
    experiment_arm_of,
    experiment_split,
    experiment_stratum,
    formation_quality,
    group_centre_offset,
    group_for_late_joiner,
    group_for_late_joiner_at_random,
    groups_form_by,
    groups_reform_by_strategy,
    utc_offset_minutes,
)
from cohorts.models import Cohort, GroupStrategy, StudyGroup
from cohorts.selectors import (
    cohort_groups_have_place_to_talk, cohort_has_groups, cohorts_due_for_group_formation, cohorts_reforming_by_activity,
    study_groups_of,
)
from cohorts.services import cohort_lock, cohort_seed_record, study_groups_create, study_groups_dissolve
from signups.group_checkins import (
    GroupMoveOutcome, group_move_destination, group_move_offers_due, groups_checkins, judged_weeks,
)
from signups.models import Enrollment
from signups.tokens import group_move_token

GROUPED_STATUSES = Enrollment.GROUPED
ASSIGN_BATCH = 50_000  # (enrollment, group) pairs per statement

logger = logging.getLogger(__name__)


class GroupsExist(Exception):
    """The cohort has groups already: re-form them instead of forming again."""


class NoLearnersToGroup(Exception):
    """The cohort has no confirmed learner who wants a group."""


class ExperimentNotSet(Exception):
    """The cohort runs an experiment that does not name two different strategies (set them on its page)."""


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


def _strategy_arms(cohort: Cohort, candidates: list[Candidate], seed: int) -> list[tuple[str, list[Candidate]]]:
    """Who forms groups by which strategy: everyone by the cohort's, or in an experiment each
    arm by its own (the split balanced within each band of the clock and experience level)."""
    if cohort.group_strategy != GroupStrategy.EXPERIMENT:
        return [(cohort.group_strategy, candidates)]
    by_key = {candidate.key: candidate for candidate in candidates}
    split = experiment_split(by_key, seed, strata={candidate.key: experiment_stratum(candidate) for candidate in candidates})
    return [(strategy, [by_key[key] for key in keys]) for strategy, keys in zip(cohort.experiment_strategies, split)]


def _experiment_check(cohort: Cohort) -> None:
    chosen = cohort.experiment_strategies
    if cohort.group_strategy == GroupStrategy.EXPERIMENT and (
        not isinstance(chosen, list) or len(chosen) != 2 or len(set(chosen)) != 2 or not set(chosen) <= set(FORMING_BY_STRATEGY)
    ):
        raise ExperimentNotSet(f"{cohort} runs an experiment without two different strategies to compare: choose them on its page.")


def cohort_groups_form(cohort: Cohort, now: datetime.datetime, seed: int | None = None) -> FormationQuality:
    """Form the cohort's study groups as of `now` and return the formation's quality report.

    By the cohort's strategy; in an experiment, its learners are split at random between its
    two strategies (cohorts.grouping.experiment_split), each arm forming its own groups. Each
    group stores its strategy; the seed (default: the cohort's id) is recorded on the cohort,
    and the same seed forms the same groups. Transactional, with the cohort locked. Raises
    GroupsExist when the cohort has groups, NoLearnersToGroup when nobody is groupable,
    ExperimentNotSet for an experiment without its two strategies; then nothing changes.
    """
    with transaction.atomic():
        cohort = cohort_lock(cohort.pk)
        if cohort_has_groups(cohort):
            raise GroupsExist(f"{cohort} has groups already: re-form them instead.")
        _experiment_check(cohort)
        candidates = _candidates(_groupable(cohort), cohort.start_date)
        if not candidates:
            raise NoLearnersToGroup(f"{cohort} has no confirmed learner who wants a group.")
        seed = cohort.pk if seed is None else seed
        formed = [
            (strategy, members)
            for strategy, arm in _strategy_arms(cohort, candidates, seed)
            for members in groups_form_by(strategy, arm, cohort.group_size_target, cohort.group_size_min, cohort.group_size_max, seed=seed)
        ]
        groups = study_groups_create(
            cohort, [group_centre_offset([m.utc_offset for m in members]) for _, members in formed], [strategy for strategy, _ in formed]
        )
        _assign({group.pk: [member.key for member in members] for group, (_, members) in zip(groups, formed)}, now)
        cohort_seed_record(cohort, seed)
    return formation_quality(
        {group: members for group, (_, members) in zip(groups, formed)}, learners=len(candidates),
        strategies={group: group.strategy for group in groups}, seed=seed,
    )


def _formation_seed(cohort: Cohort) -> int:
    # Groups formed before seeds were recorded were formed with the default, the cohort's id.
    return cohort.pk if cohort.experiment_seed is None else cohort.experiment_seed


def _late_joiner_strategy(cohort: Cohort, enrollment_id: int) -> str:
    """The strategy whose groups a learner joining after formation goes to: the cohort's, or in an
    experiment an arm drawn from the recorded seed and their enrollment (the same every time)."""
    if cohort.group_strategy != GroupStrategy.EXPERIMENT:
        return cohort.group_strategy
    return cohort.experiment_strategies[experiment_arm_of(enrollment_id, _formation_seed(cohort))]


def enrollment_group_place(enrollment: Enrollment, now: datetime.datetime) -> StudyGroup | None:
    """Put a learner who arrives after formation (at `now`) into a group: never leave them without one.

    Among the groups of their strategy (_late_joiner_strategy): for "random", any group with
    room, drawn by their enrollment; otherwise the group of their time band that has room. A
    new group of that strategy when none has. Nothing when
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
        strategy = _late_joiner_strategy(cohort, current.pk)
        members, _ = _members_by_group(cohort)
        strategies = _group_strategies(cohort)
        alike = {key: group for key, group in members.items() if strategies.get(key) == strategy}
        if strategy == GroupStrategy.RANDOM:
            target = group_for_late_joiner_at_random(
                current.pk, {key: len(group) for key, group in alike.items()}, cohort.group_size_max, seed=_formation_seed(cohort)
            )
        else:
            target = group_for_late_joiner(offset, {key: [m.utc_offset for m in group] for key, group in alike.items()}, cohort.group_size_max)
        group = StudyGroup.objects.get(pk=target) if target else study_groups_create(cohort, [offset], [strategy])[0]
        Enrollment.objects.filter(pk=current.pk).update(group=group, grouped_at=now)
    enrollment.group = group
    return group


def _group_strategies(cohort: Cohort) -> dict[int, str]:
    """How each of the cohort's current groups was formed: group id -> strategy."""
    return dict(study_groups_of(cohort).values_list("pk", "strategy"))


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
    their band, among the groups of their own strategy (an experiment's arms never mix).
    Quiet learners (`quiet_learner_ids`, by default cohort_quiet_learner_ids) do
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
        strategies = {key: group.strategy for key, group in groups.items()}
        moves, dissolved = groups_reform_by_strategy(members, strategies, cohort.group_size_min, cohort.group_size_max, quiet=quiet)
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

    # The groups' ids, names and strategies only: a round of 100,000 learners has 10,000 of them.
    groups, strategies = {}, {}
    for pk, name, strategy in study_groups_of(cohort).values_list("pk", "name", "strategy"):
        groups[pk], strategies[pk] = GroupName(pk, name), strategy
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
                     experience=dict(experience[group_id]), strategy=strategies[group_id])
        for group_id, size in sizes.items()
    ]
    return FormationQuality(groups=quality, learners=learners, ungrouped=learners - sum(sizes.values()), seed=cohort.experiment_seed)


def groups_without_place_to_talk_warning(cohort: Cohort) -> str:
    """What formation says when the cohort's groups got nowhere to talk (see
    cohorts.selectors.cohort_groups_have_place_to_talk)."""
    return (
        f"{cohort}: its study groups have no place to talk, because the round has no group discussion link "
        "and group mail is off (GROUP_MAIL_DOMAIN). "
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
        except (GroupsExist, NoLearnersToGroup, ExperimentNotSet) as reason:
            results[cohort] = str(reason)
        else:
            if not cohort_groups_have_place_to_talk(cohort):
                logger.warning("%s", groups_without_place_to_talk_warning(cohort))
    return results


# --- Re-forming by activity (Cohort.reform_by_activity) ----------------------------------------
# From week 3, a learner who did each of the last two weeks while their group went quiet is
# offered, once per round, a move into an active group of their band and strategy
# (signups.group_checkins has the rule). The move itself waits for the learner's click.


@dataclass(frozen=True)
class GroupMove:
    outcome: GroupMoveOutcome
    enrollment: Enrollment | None
    group: StudyGroup | None = None  # their group after the call


def group_move_url(enrollment_id: int, group_id: int) -> str:
    return f"{settings.SITE_URL}/group/{group_move_token(enrollment_id, group_id)}/move/"


def enrollment_group_move_to_active(enrollment_id: int, leaving_group_id: int, now: datetime.datetime) -> GroupMove:
    """Move a learner, at their own request, out of group `leaving_group_id` into an active group
    of their time band and strategy with room (group_checkins.group_move_destination).

    Transactional, with the cohort locked (as every change to its groups). Idempotent: a learner
    no longer in that group gets ALREADY_MOVED and nothing changes. The move is marked
    (group_moved_at/from) so that the next weekly email tells them, once, as re-forming does.
    NO_GROUP when no group fits now; NOT_IN_ROUND when they are no longer an active or paused
    member of a running round. Never raises for those.
    """
    found = Enrollment.objects.filter(pk=enrollment_id).values_list("cohort_id", flat=True).first()
    if found is None:
        return GroupMove(GroupMoveOutcome.NOT_IN_ROUND, None)
    with transaction.atomic():
        cohort = cohort_lock(found)
        enrollment = Enrollment.objects.select_related("learner", "group", "cohort__course").get(pk=enrollment_id)
        today = timezone.localdate(now)
        if enrollment.group_id != leaving_group_id:
            return GroupMove(GroupMoveOutcome.ALREADY_MOVED, enrollment, enrollment.group)
        if enrollment.status not in GROUPED_STATUSES or enrollment.group is None or today > cohort.end_date:
            return GroupMove(GroupMoveOutcome.NOT_IN_ROUND, enrollment, enrollment.group)
        _, groups = groups_checkins(cohort, today)
        leaving = next((group for group in groups if group.group_id == leaving_group_id), None)
        offset = utc_offset_minutes(enrollment.learner.timezone, cohort.start_date)
        destination = group_move_destination(
            groups, leaving, offset, enrollment.group.strategy, cohort.group_size_max, judged_weeks(cohort, today),
        )
        if destination is None:
            return GroupMove(GroupMoveOutcome.NO_GROUP, enrollment, enrollment.group)
        moved_from = enrollment.group.name
        Enrollment.objects.filter(pk=enrollment.pk, group_id=leaving_group_id).update(
            group_id=destination.group_id, grouped_at=now, group_moved_at=now, group_moved_from=moved_from,
        )
    enrollment.refresh_from_db()
    return GroupMove(GroupMoveOutcome.MOVED, enrollment, enrollment.group)


def cohort_group_move_offers_send(cohort: Cohort, now: datetime.datetime) -> int:
    """Offer a move to each learner of the round group_checkins.group_move_offers_due names: an
    email each through the outbox (signups/emails.py), with a one-click link.

    Once per learner and round: each offer is claimed with one conditional UPDATE
    (group_move_offered_at still empty) in the transaction that writes its email, so a rerun or
    a run at the same moment mails nobody twice. Returns how many offers were queued."""
    from signups.emails import learner_email_queue
    from signups.services import learner_email_headers  # the services use this module

    offers = group_move_offers_due(cohort, timezone.localdate(now))
    sent = 0
    for offer in offers:
        enrollment = offer.enrollment
        with transaction.atomic():
            claimed = Enrollment.objects.filter(pk=enrollment.pk, group_id=offer.leaving.group_id, group_move_offered_at__isnull=True)
            if not claimed.update(group_move_offered_at=now):
                continue
            context = {
                "cohort": cohort, "group_name": offer.leaving.name,
                "move_url": group_move_url(enrollment.pk, offer.leaving.group_id),
            }
            learner_email_queue(enrollment.learner, "group_move_offer", context, learner_email_headers(enrollment.learner), now)
        sent += 1
    return sent


def cohorts_group_move_offers_send(now: datetime.datetime) -> dict[Cohort, int]:
    """Beat: the offers of every running round that re-forms by activity. Safe to run at any
    time and as often as wanted (each learner is offered once per round)."""
    return {cohort: cohort_group_move_offers_send(cohort, now) for cohort in cohorts_reforming_by_activity(timezone.localdate(now))}


# Below this share of groups within GOOD_SPREAD_MINUTES, a formation is reported as a warning.
POOR_SPREAD_SHARE = 0.5


def formation_quality_problem(cohort: Cohort, quality: FormationQuality, counts: list | None = None) -> str | None:
    """Why a formation is poor, as a sentence for the organizer, or None when it is not: too few
    groups keep their members' clocks within 2 hours, and the reason (the learners' own spread,
    from their counts per time zone: one query unless given)."""
    from signups.selectors import cohort_member_counts

    share = quality.share_within_good_spread
    if not quality.groups or share >= POOR_SPREAD_SHARE:
        return None
    offsets = {
        utc_offset_minutes(row.timezone, cohort.start_date)
        for row in (cohort_member_counts(cohort) if counts is None else counts) if row.groupable
    }
    span = circular_spread(offsets) / 60
    good = GOOD_SPREAD_MINUTES // 60
    head = f"only {share:.0%} of groups within {good} hours"
    if span >= 12:
        return (f"{head}: the learners are spread across all time zones ({len(offsets)} UTC offsets, "
                f"{span:.0f} hours apart), too few in each part of the world to fill groups of {cohort.group_size_min} or more.")
    if cohort.group_strategy not in (GroupStrategy.TIMEZONE, GroupStrategy.TIMEZONE_EXPERIENCE):
        return f"{head}: this round's groups are formed by “{GroupStrategy(cohort.group_strategy).label}”, not by time zone alone."
    return f"{head}: the learners' clocks are {span:.0f} hours apart, and groups of at least {cohort.group_size_min} cannot keep closer."
