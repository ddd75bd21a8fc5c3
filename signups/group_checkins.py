"""Each study group's weekly check-in rate, and which groups have gone quiet (issue 16).

Selectors only. Check-ins are signups' data, so the rule lives here, where both the cohort's
admin page (signups) and re-forming by activity (signups.groups) read it, and the scheduler's
outcome report may too; signups imports no scheduler.

**The quiet rule.** A group is judged on the round's last QUIET_WEEKS finished weeks (on
`today`, in week W of the round: weeks W-2 and W-1; a week's check-ins may still change
until the next week's email, so the week under way is shown but not judged). A group is
*quiet* when, in each of those weeks, fewer than QUIET_CHECKIN_SHARE of its current members
checked in (any answer: done, behind or stuck). With the usual 6 to 14 members that is: at most
one member (two, from 10 members) checked in, each of two weeks running. Until the round has
QUIET_WEEKS finished weeks (before week 3) no group is judged. A group that is not quiet is
*active*. Only check-ins count here, not opens: opening an email says little about the group.
"""

import datetime
import enum
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count
from django.utils import timezone

from cohorts.grouping import GOOD_SPREAD_MINUTES, MINUTES_PER_DAY, utc_offset_minutes
from cohorts.models import Cohort, StudyGroup
from cohorts.selectors import cohort_week_on
from signups.models import CheckIn, Enrollment

QUIET_WEEKS = 2
QUIET_CHECKIN_SHARE = 0.2


def judged_weeks(cohort: Cohort, today: datetime.date) -> list[int]:
    """The finished weeks a group is judged on today: the last QUIET_WEEKS weeks of the round
    before the current one; [] until that many have finished."""
    current = cohort_week_on(cohort, today)
    last_finished = min(current - 1, cohort.week_count)
    if last_finished < QUIET_WEEKS:
        return []
    return list(range(last_finished - QUIET_WEEKS + 1, last_finished + 1))


def shown_weeks(cohort: Cohort, today: datetime.date) -> list[int]:
    """The weeks the cohort's page shows: the judged ones and the week under way (or, before
    week 3, the weeks so far)."""
    current = cohort_week_on(cohort, today)
    last = min(current, cohort.week_count)
    return list(range(max(1, last - QUIET_WEEKS), last + 1))


def rate_is_quiet(checked_in: int, members: int) -> bool:
    """One week of a group is quiet: fewer than QUIET_CHECKIN_SHARE of its members checked in."""
    return checked_in < QUIET_CHECKIN_SHARE * members


@dataclass(frozen=True)
class GroupCheckIns:
    group_id: int
    number: int
    name: str
    strategy: str
    utc_offset_minutes: int
    members: int  # current members: confirmed, active or paused
    checked_in: dict[int, int]  # week -> members who checked in for it (any answer)
    quiet: bool

    def share(self, week: int) -> float | None:
        return self.checked_in.get(week, 0) / self.members if self.members else None

    def shares(self, weeks: list[int]) -> list[float | None]:
        return [self.share(week) for week in weeks]


def groups_checkins(cohort: Cohort, today: datetime.date) -> tuple[list[int], list[GroupCheckIns]]:
    """The weeks shown (shown_weeks) and every current group of the round with its members'
    check-ins in each, and whether it is quiet. One query, whatever the round's size: each
    member's check-ins are folded to one row per learner before they meet the groups."""
    weeks = shown_weeks(cohort, today)
    judged = judged_weeks(cohort, today)
    if not weeks:
        return [], []
    per_week = ", ".join(f"MAX(CASE WHEN week_number = %s THEN 1 ELSE 0 END) AS w{index}" for index in range(len(weeks)))
    sums = ", ".join(f"SUM(COALESCE(c.w{index}, 0))" for index in range(len(weeks)))
    statuses = ", ".join(["%s"] * len(Enrollment.GROUPED))
    sql = f"""
        SELECT g.id, g.number, g.name, g.strategy, g.utc_offset_minutes, COUNT(e.id), {sums}
        FROM {StudyGroup._meta.db_table} g
        LEFT JOIN {Enrollment._meta.db_table} e ON e.group_id = g.id AND e.cohort_id = g.cohort_id AND e.status IN ({statuses})
        LEFT JOIN (
            SELECT learner_id, {per_week} FROM {CheckIn._meta.db_table}
            WHERE cohort_id = %s AND week_number BETWEEN %s AND %s GROUP BY learner_id
        ) c ON c.learner_id = e.learner_id
        WHERE g.cohort_id = %s AND g.dissolved_at IS NULL
        GROUP BY g.id, g.number, g.name, g.strategy, g.utc_offset_minutes
        ORDER BY g.number
    """
    # In the order of the placeholders: the members' statuses, each week's CASE, the check-ins' round and weeks, the groups' round.
    params = [*Enrollment.GROUPED, *weeks, cohort.pk, weeks[0], weeks[-1], cohort.pk]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    groups = []
    for group_id, number, name, strategy, offset, members, *counts in rows:
        checked_in = {week: int(count or 0) for week, count in zip(weeks, counts)}
        quiet = bool(judged) and members > 0 and all(rate_is_quiet(checked_in[week], members) for week in judged)
        groups.append(GroupCheckIns(group_id, number, name, strategy, offset, members, checked_in, quiet))
    return weeks, groups


# --- Re-forming by activity: who is offered a move, and where to -----------------------------

# A group is in a learner's time band when its centre (StudyGroup.utc_offset_minutes) is at most
# this far from the learner's offset: half the spread formation calls good, so the group's
# spread stays about as good with them in it.
BAND_MINUTES = GOOD_SPREAD_MINUTES // 2


def _offset_distance(a: int, b: int) -> int:
    """Minutes between two UTC offsets around the clock (+13:00 and -11:00 are 0 apart)."""
    apart = abs(a - b) % MINUTES_PER_DAY
    return min(apart, MINUTES_PER_DAY - apart)


def group_move_destination(
    groups: list[GroupCheckIns], leaving: GroupCheckIns | None, learner_offset: int, strategy: str, maximum: int, judged: list[int],
) -> GroupCheckIns | None:
    """The active group to move a learner into, out of `leaving`: of the same strategy (an
    experiment's arms stay apart), in their time band, with room (fewer than `maximum` members),
    not quiet. The liveliest first (the share of members who checked in for the last judged
    week), then the nearest in time, the smallest, the lowest number. None when none fits."""
    last = judged[-1] if judged else None
    fitting = [
        group for group in groups
        if (leaving is None or group.group_id != leaving.group_id) and not group.quiet and group.strategy == strategy
        and group.members < maximum and _offset_distance(group.utc_offset_minutes, learner_offset) <= BAND_MINUTES
    ]
    if not fitting:
        return None
    return min(fitting, key=lambda group: (
        -(group.share(last) or 0) if last else 0, _offset_distance(group.utc_offset_minutes, learner_offset), group.members, group.number,
    ))


@dataclass(frozen=True)
class GroupMoveOffer:
    enrollment: Enrollment  # with its learner
    leaving: GroupCheckIns  # their quiet group
    destination: GroupCheckIns  # where a move would take them today


def group_move_offers_due(cohort: Cohort, today: datetime.date) -> list[GroupMoveOffer]:
    """The learners of the round to offer a move today: active (not paused), subscribed, never
    offered one in this round, who answered "I did this week" for each judged week, whose group
    is quiet, and for whom an active group of their band and strategy has room (no offer that
    could only end in "none found"). Nothing before the round's week 3 (no judged weeks) or
    when the round does not re-form by activity. Three queries."""
    judged = judged_weeks(cohort, today)
    if not cohort.reform_by_activity or not judged or cohort_week_on(cohort, today) > cohort.week_count:
        return []
    _, groups = groups_checkins(cohort, today)
    by_id = {group.group_id: group for group in groups}
    quiet = {group.group_id for group in groups if group.quiet}
    if not quiet:
        return []
    done_every_week = (
        CheckIn.objects.filter(cohort=cohort, week_number__in=judged, answer=CheckIn.Answer.DONE)
        .values("learner_id").annotate(weeks=Count("pk")).filter(weeks=len(judged)).values("learner_id")
    )
    candidates = (
        Enrollment.objects.filter(
            cohort=cohort, status=Enrollment.Status.ACTIVE, group__isnull=False, group_move_offered_at__isnull=True,
            learner__unsubscribed_at__isnull=True, learner__confirmed_at__isnull=False, learner_id__in=done_every_week,
        ).select_related("learner").order_by("pk")
    )
    offers = []
    for enrollment in candidates.iterator(chunk_size=2000):
        if enrollment.group_id not in quiet:
            continue
        leaving = by_id[enrollment.group_id]
        offset = utc_offset_minutes(enrollment.learner.timezone, cohort.start_date)
        destination = group_move_destination(groups, leaving, offset, leaving.strategy, cohort.group_size_max, judged)
        if destination is not None:
            offers.append(GroupMoveOffer(enrollment, leaving, destination))
    return offers


class GroupMoveOutcome(enum.Enum):
    MOVED = "moved"
    ALREADY_MOVED = "already_moved"  # no longer in the group the offer was about: nothing changed
    NO_GROUP = "no_group"  # no active group of their band and strategy has room now
    NOT_IN_ROUND = "not_in_round"  # left, paused, moved away, or the round is over


@dataclass(frozen=True)
class GroupMoveOfferState:
    """What the page of an offer's link shows: `outcome` None while the move can be taken up."""

    enrollment: Enrollment  # with its learner, group and round
    leaving_name: str  # the quiet group the offer was about
    outcome: GroupMoveOutcome | None
    group: StudyGroup | None  # the learner's group now

    @property
    def learner(self):
        return self.enrollment.learner

    @property
    def cohort(self) -> Cohort:
        return self.enrollment.cohort


def group_move_offer_read(enrollment_id: int, leaving_group_id: int, now: datetime.datetime) -> GroupMoveOfferState | None:
    """The offer a group move link names, as things stand; None when its enrollment or group is
    gone (an erased learner, a deleted round). Two queries."""
    enrollment = Enrollment.objects.select_related("learner", "group", "cohort__course").filter(pk=enrollment_id).first()
    leaving = StudyGroup.objects.filter(pk=leaving_group_id).values_list("name", flat=True).first()
    if enrollment is None or leaving is None or enrollment.cohort is None:
        return None
    outcome = None
    if enrollment.group_id != leaving_group_id:
        outcome = GroupMoveOutcome.ALREADY_MOVED
    elif enrollment.status not in Enrollment.GROUPED or timezone.localdate(now) > enrollment.cohort.end_date:
        outcome = GroupMoveOutcome.NOT_IN_ROUND
    return GroupMoveOfferState(enrollment, leaving, outcome, enrollment.group)
