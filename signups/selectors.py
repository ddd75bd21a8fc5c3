"""Questions about learners; nothing here writes."""

import datetime
import enum
import uuid
import zoneinfo
from collections import Counter
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

from django.db.models import BooleanField, Count, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from cohorts.models import Cohort, Course
from cohorts.selectors import (
    cohort_by_id, cohort_has_groups, cohort_next_weekly_email, cohort_week_number, cohorts_open_for_signup,
)
from signups.models import (
    Enrollment, Learner, LearnerBulkAction, LearnerEmail, LearnerImport, Suppression, email_digest, email_normalize,
)
from signups.suppressions import address_fix_problem
from signups.tokens import (
    CONFIRMATION_MAX_AGE, TokenInvalid, address_change_token_read, confirmation_token_read, learner_token_read,
    waitlist_invitation_token_read,
)


def learner_from_token(token: str) -> Learner:
    """The learner a manage/unsubscribe link names. Raises TokenInvalid (also once erased)."""
    public_id = learner_token_read(token)
    learner = Learner.objects.filter(public_id=public_id).first()
    if learner is None:
        raise TokenInvalid
    return learner


def enrollment_from_confirmation_token(token: str) -> Enrollment:
    """The enrollment a confirmation link names, read only (the page that asks to confirm).

    Raises TokenExpired or TokenInvalid (also when the enrollment has since been replaced or
    erased), as `services.enrollment_confirm` does for the same link.
    """
    enrollment_id = confirmation_token_read(token)
    enrollment = Enrollment.objects.select_related("learner", "course", "cohort").filter(pk=enrollment_id).first()
    if enrollment is None or enrollment.status not in Enrollment.CURRENT:
        raise TokenInvalid
    return enrollment


def enrollment_current(learner: Learner, course: Course | None = None) -> Enrollment | None:
    """The learner's current (pending, active or paused) enrollment, in `course` if given."""
    enrollments = learner.enrollments.filter(status__in=Enrollment.CURRENT).select_related("course", "cohort", "group")
    if course is not None:
        enrollments = enrollments.filter(course=course)
    return enrollments.order_by("-created_at").first()


def _holds_a_seat(now: datetime.datetime, prefix: str = "") -> Q:
    """Who holds a seat in a round: a learner in it (active or paused), or one still able to
    confirm (pending, with a confirmation link sent within its lifetime). A typo or a bot that
    never confirms gives its seat back when its link expires."""
    return Q(**{f"{prefix}status__in": Enrollment.GROUPED}) | Q(
        **{f"{prefix}status": Enrollment.Status.PENDING, f"{prefix}learner__confirmation_sent_at__gte": now - CONFIRMATION_MAX_AGE}
    )


def cohort_seats_taken(cohort: Cohort, now: datetime.datetime) -> int:
    """How many of the cohort's seats are held as of `now` (see _holds_a_seat)."""
    return Enrollment.objects.filter(_holds_a_seat(now), cohort=cohort).count()


def cohorts_open_with_room(now: datetime.datetime, course: Course | None = None) -> QuerySet[Cohort]:
    """Cohorts open for signup on `now`'s date that are not full. A hint for the form only:
    the seat itself is taken under the cohort's lock (signups.services)."""
    taken = Count("enrollments", filter=_holds_a_seat(now, prefix="enrollments__"))
    return (
        cohorts_open_for_signup(now.date(), course=course)
        .annotate(taken=taken)
        .filter(Q(capacity__isnull=True) | Q(taken__lt=F("capacity")))
    )


def cohorts_to_switch_to(enrollment: Enrollment, now: datetime.datetime) -> QuerySet[Cohort]:
    """Open cohorts with room, of the enrollment's course, that start later than its cohort."""
    cohorts = cohorts_open_with_room(now, course=enrollment.course)
    if enrollment.cohort is not None:
        cohorts = cohorts.filter(start_date__gt=enrollment.cohort.start_date)
    return cohorts


# --- The waitlist --------------------------------------------------------------------------------

# A waiting learner who may be invited to a round: confirmed (an unconfirmed one confirms first)
# and in one of these; a paused learner is invited too, and joins paused.
WAITLIST_INVITED_STATUSES = (Enrollment.Status.ACTIVE, Enrollment.Status.PAUSED)


def waitlist_not_invited_to(cohort: Cohort) -> Q:
    """Enrollments invited neither to `cohort` nor to a round of its course that starts after it
    (or on the same day and was created after it).

    Each round invites once. With two rounds open at once, a learner invited to the later one
    is not invited back to the earlier one, which would take the invitation back and forth at
    every run. Only the enrollment's own column and a subquery, no join: the claim's UPDATE
    re-checks this on each row it changes (see services.waitlist_invite).
    """
    earlier = Cohort.objects.filter(course_id=cohort.course_id).filter(
        Q(start_date__lt=cohort.start_date) | Q(start_date=cohort.start_date, pk__lt=cohort.pk)
    )
    return Q(invited_to__isnull=True) | Q(invited_to__in=earlier.values("pk"))


def enrollments_to_invite(cohort: Cohort) -> QuerySet[Enrollment]:
    """Who waits on the waitlist of the cohort's course and is still to be invited to join it:
    current enrollments in no round (active or paused) of confirmed, subscribed learners, not
    invited to this round or a later one yet. Learner loaded; in the order they joined."""
    return (
        Enrollment.objects.filter(
            waitlist_not_invited_to(cohort),
            course_id=cohort.course_id,
            cohort__isnull=True,
            status__in=WAITLIST_INVITED_STATUSES,
            learner__confirmed_at__isnull=False,
            learner__unsubscribed_at__isnull=True,
        )
        .select_related("learner")
        .order_by("pk")
    )


def cohorts_with_waitlist_to_invite(now: datetime.datetime) -> list[Cohort]:
    """Rounds open for signup on `now`'s date, with room, whose course's waitlist holds learners
    still to be invited to them (see enrollments_to_invite); earliest start first, so that the
    earlier of two rounds opening together invites first. One query per open round (a handful)."""
    cohorts = cohorts_open_with_room(now).order_by("start_date", "pk")
    return [cohort for cohort in cohorts if enrollments_to_invite(cohort).exists()]


def courses_with_waitlist_size(courses: QuerySet[Course]) -> QuerySet[Course]:
    """`courses`, each annotated with `waitlist_size`: how many learners wait on its waitlist
    now (current enrollments in no round, confirmed or not). A subquery per row of the same
    query, so a list of courses costs one query however long it is."""
    waiting = (
        Enrollment.objects.filter(course=OuterRef("pk"), cohort__isnull=True, status__in=Enrollment.CURRENT)
        .order_by()
        .values("course")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return courses.annotate(waitlist_size=Coalesce(Subquery(waiting), 0))


class WaitlistProblem(enum.StrEnum):
    """Why a learner cannot take up an invitation from the waitlist; the join page words each."""

    UNSUBSCRIBED = "unsubscribed"  # they unsubscribed since
    LEFT = "left"  # the invited enrollment has ended: they left the course
    ELSEWHERE = "elsewhere"  # they are in another round of the course by now
    CLOSED = "closed"  # the round's signup is not open (closed, as a rule)
    FULL = "full"  # the round has no seat left


@dataclass(frozen=True)
class WaitlistInvitation:
    """Where an invitation to join `cohort` from the waitlist stands for its learner."""

    learner: Learner
    cohort: Cohort
    current: Enrollment | None  # the learner's current enrollment in the course
    problem: WaitlistProblem | None  # None: they may join, or have joined

    @property
    def joined(self) -> bool:
        """They are in the round already (through this invitation or otherwise)."""
        return self.current is not None and self.current.cohort_id == self.cohort.pk


def waitlist_invitation_read(learner: Learner, enrollment_id: int, cohort: Cohort, now: datetime.datetime) -> WaitlistInvitation:
    """Where the invitation of enrollment `enrollment_id` to `cohort` stands, as read now (read
    under the learner's lock when the caller holds it). Seats are not counted here: the caller
    takes one under the cohort's lock, or counts them for a hint."""
    current = enrollment_current(learner, cohort.course)
    today = now.date()
    problem = None
    if current is not None and current.cohort_id == cohort.pk:
        pass  # joined already: taking the invitation up again changes nothing
    elif learner.is_unsubscribed:
        problem = WaitlistProblem.UNSUBSCRIBED
    elif current is not None and current.cohort_id is not None:
        problem = WaitlistProblem.ELSEWHERE  # moved or switched since, maybe more than once
    elif current is None or current.pk != enrollment_id:
        problem = WaitlistProblem.LEFT  # a later signup of theirs waits to be confirmed, if any
    elif not cohort.signup_opens_on <= today <= cohort.signup_closes_on:
        problem = WaitlistProblem.CLOSED
    return WaitlistInvitation(learner, cohort, current, problem)


def waitlist_invitation_from_token(token: str, now: datetime.datetime) -> WaitlistInvitation:
    """The invitation a waitlist link names, read only (the page that asks to join); FULL when
    the round looks full now. Raises TokenInvalid, also when the learner (erased) or the round
    is gone."""
    enrollment_id, cohort_id = waitlist_invitation_token_read(token)
    enrollment = Enrollment.objects.select_related("learner").filter(pk=enrollment_id).first()
    cohort = cohort_by_id(cohort_id)
    if enrollment is None or cohort is None or cohort.course_id != enrollment.course_id:
        raise TokenInvalid
    invitation = waitlist_invitation_read(enrollment.learner, enrollment_id, cohort, now)
    if invitation.problem is None and not invitation.joined and cohort.capacity is not None:
        if cohort_seats_taken(cohort, now) >= cohort.capacity:
            return replace(invitation, problem=WaitlistProblem.FULL)
    return invitation


def enrollments_mailable(cohort: Cohort) -> QuerySet[Enrollment]:
    """The enrollments of a cohort that may be grouped and mailed: confirmed, subscribed, active."""
    return Enrollment.objects.filter(
        cohort=cohort,
        status=Enrollment.Status.ACTIVE,
        learner__confirmed_at__isnull=False,
        learner__unsubscribed_at__isnull=True,
    ).select_related("learner")


def learner_ids_with_email(address: str) -> list[int]:
    """The learner with this address, as its normalized spelling is stored (an indexed lookup)."""
    return list(Learner.objects.filter(email=email_normalize(address)).values_list("pk", flat=True))


def enrollment_learner_email(enrollment_id: int) -> str:
    """The address an enrollment belongs to ("" when it is gone), to prefill a resend form."""
    return Enrollment.objects.filter(pk=enrollment_id).values_list("learner__email", flat=True).first() or ""


def cohort_enrollment_counts(cohort: Cohort) -> dict[str, int]:
    """How many of the cohort's enrollments are in each status (confirmed or not)."""
    rows = Enrollment.objects.filter(cohort=cohort).values("status").annotate(count=Count("pk"))
    return {row["status"]: row["count"] for row in rows}


GROUPS_PER_PAGE = 50  # groups listed per page of the cohort's admin page


class MemberCount(NamedTuple):
    group_id: int | None
    timezone: str
    experience: str
    groupable: bool  # wants a group and is subscribed
    count: int


def cohort_member_counts(cohort: Cohort) -> list[MemberCount]:
    """The cohort's confirmed members (active or paused) counted per group, time zone,
    experience and whether they are groupable: one query, a few rows per group, from which
    the cohort's page takes every figure it shows (signups.groups.cohort_groups_quality too)."""
    rows = (
        Enrollment.objects.filter(cohort=cohort, status__in=Enrollment.GROUPED, learner__confirmed_at__isnull=False)
        .annotate(groupable=ExpressionWrapper(Q(wants_group=True, learner__unsubscribed_at__isnull=True), output_field=BooleanField()))
        .values_list("group_id", "learner__timezone", "learner__experience", "groupable")
        .annotate(count=Count("pk")).order_by()
    )
    return [MemberCount(*row) for row in rows]


def cohort_members_overview(cohort: Cohort, counts: list[MemberCount], group_search: str = "", group_page: int | str = 1) -> dict:
    """The cohort's members for its admin page, at any size: their spread over UTC offsets and
    experience levels (from `counts`: cohort_member_counts), and one page of its groups (whose
    name or slug contains `group_search`) with their members (first name, time zone). A fixed
    number of queries; the members of other groups are never read."""
    from django.core.paginator import Paginator

    from cohorts.grouping import utc_offset_minutes
    from cohorts.selectors import study_groups_of

    offsets: Counter = Counter()
    experience: Counter = Counter()
    for row in counts:
        offsets[utc_offset_minutes(row.timezone, cohort.start_date)] += row.count
        experience[row.experience] += row.count
    groups = study_groups_of(cohort)
    if group_search:
        groups = groups.filter(Q(name__icontains=group_search) | Q(slug__icontains=group_search))
    page = Paginator(groups, GROUPS_PER_PAGE).get_page(group_page)
    listed = group_members([group.pk for group in page])
    return {
        "offsets": sorted(offsets.items()),
        "experience": dict(sorted(experience.items())),
        "groups": [(group, listed[group.pk]) for group in page],
        "groups_page": page,
        "without_group": sum(row.count for row in counts if row.group_id is None),
    }


def group_members(group_ids) -> dict[int, list[dict]]:
    """The current members of groups, in one query: group id -> [{enrollment, first_name, timezone}]."""
    members: dict[int, list[dict]] = {group_id: [] for group_id in group_ids}
    rows = (
        Enrollment.objects.filter(group__in=list(members), status__in=Enrollment.GROUPED, learner__confirmed_at__isnull=False)
        .order_by("learner__first_name", "pk")
        .values_list("group_id", "pk", "learner__first_name", "learner__timezone")
    )
    for group_id, enrollment_id, first_name, timezone_name in rows:
        members[group_id].append({"enrollment": enrollment_id, "first_name": first_name or "A classmate", "timezone": timezone_name})
    return members


def group_member_counts(group_ids) -> dict[int, int]:
    """How many current members each of these groups has, in one query: group id -> count."""
    counts = (
        Enrollment.objects.filter(group__in=list(group_ids), status__in=Enrollment.GROUPED, learner__confirmed_at__isnull=False)
        .values("group_id").annotate(count=Count("pk")).order_by()
    )
    return {row["group_id"]: row["count"] for row in counts}


class GroupMailMember(NamedTuple):
    learner_id: int
    email: str
    first_name: str
    timezone: str
    # Whether the group's mail may reach them now: active (not paused), confirmed, not stopped.
    receives: bool


def group_mail_members_of(group_ids) -> dict[int, list[GroupMailMember]]:
    """Groups' current members, for their mail, in one query: who may write to a group (any
    member, a paused one too) and who receives its mail (`receives`)."""
    members: dict[int, list[GroupMailMember]] = {group_id: [] for group_id in group_ids}
    rows = (
        Enrollment.objects.filter(group_id__in=list(members), status__in=Enrollment.GROUPED, learner__confirmed_at__isnull=False)
        .order_by("learner__first_name", "pk")
        .values_list("group_id", "learner_id", "learner__email", "learner__first_name", "learner__timezone", "status",
                     "learner__unsubscribed_at")
    )
    for group_id, learner_id, email, first_name, timezone_name, status, stopped_at in rows:
        receives = status == Enrollment.Status.ACTIVE and stopped_at is None
        members[group_id].append(GroupMailMember(learner_id, email, first_name, timezone_name, receives))
    return members


def group_mail_members(group_id: int) -> list[GroupMailMember]:
    return group_mail_members_of([group_id])[group_id]


def address_suppressed(address: str) -> bool:
    """Whether nobody may mail this address (its owner said no, or it refused our mail)."""
    return Suppression.objects.filter(email_digest=email_digest(address)).exists()


def enrollment_sample(cohort: Cohort) -> Enrollment | None:
    """A confirmed learner of the cohort to preview its emails with (one in a group, if any)."""
    enrollments = Enrollment.objects.filter(
        cohort=cohort, status__in=Enrollment.GROUPED, learner__confirmed_at__isnull=False
    ).select_related("learner", "group", "cohort__course", "switched_from")
    return enrollments.filter(group__isnull=False).order_by("pk").first() or enrollments.order_by("pk").first()


def enrollments_current_of(learner_ids, cohort_ids) -> dict[tuple[int, int], Enrollment]:
    """The current enrollments of these learners in these cohorts, with learner and group
    loaded, in one query: (learner id, cohort id) -> enrollment."""
    enrollments = Enrollment.objects.filter(
        learner__in=learner_ids, cohort__in=cohort_ids, status__in=Enrollment.CURRENT
    ).select_related("learner", "group", "switched_from")
    return {(enrollment.learner_id, enrollment.cohort_id): enrollment for enrollment in enrollments}


# --- The learner's own page: where they stand -------------------------------------------------------


def learner_today(learner: Learner, now: datetime.datetime) -> datetime.date:
    """The date on the learner's own calendar: their weeks begin, and their emails arrive, by it."""
    try:
        zone = zoneinfo.ZoneInfo(learner.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = datetime.UTC  # a name we no longer know (an old import, say): UTC is never far wrong
    return now.astimezone(zone).date()


@dataclass(frozen=True)
class MailStop:
    """Why we send a learner nothing, as plain data for their own page.

    kind: "unsubscribed" (they, or their mail provider for them, unsubscribed), "address_failed"
    (the address refused or bounced our mail: `email` bounced on `stopped_on`), "complained"
    (they marked one of our emails as spam). For "address_failed": `fixed_on`, the day they said
    the address works again (or confirmed a new one), since it failed; `confirming`, a new
    address we mailed a link to and that they have not confirmed yet.
    """

    kind: Literal["unsubscribed", "address_failed", "complained"]
    email: str
    stopped_on: datetime.date
    fixed_on: datetime.date | None = None
    confirming: str = ""


def learner_mail_stop_overview(learner: Learner) -> MailStop | None:
    """Why mail to the learner stopped (dates on their own calendar), or None when it has not."""
    if learner.unsubscribed_at is None:
        return None
    stopped_on = learner_today(learner, learner.unsubscribed_at)
    reason = learner.unsubscribed_reason
    if reason == Suppression.Reason.COMPLAINED:
        return MailStop("complained", learner.email, stopped_on)
    if reason not in Suppression.LIFTABLE:
        return MailStop("unsubscribed", learner.email, stopped_on)
    fixed = learner.address_fixed_at is not None and learner.address_fixed_at >= learner.unsubscribed_at
    if fixed:
        return MailStop("address_failed", learner.email, stopped_on, fixed_on=learner_today(learner, learner.address_fixed_at))
    confirming = (
        LearnerEmail.objects.filter(learner=learner, template="address_confirm", created_at__gte=learner.unsubscribed_at)
        .exclude(status=LearnerEmail.Status.FAILED)
        .order_by("-created_at")
        .values_list("to_email", flat=True)
        .first()
    )
    return MailStop("address_failed", learner.email, stopped_on, confirming=confirming or "")


@dataclass(frozen=True)
class AddressChangeRequest:
    """What an address change link asks, as its page shows it before the button is pressed."""

    learner: Learner
    new_email: str
    already: bool  # the learner has this address already (the link was followed)
    problem: str | None  # why it cannot be done (address_fix_problem), or None


def address_change_from_token(token: str) -> AddressChangeRequest:
    """The request an address change link names. Raises AddressChangeExpired or TokenInvalid
    (also once the learner is erased, or their address changed since the link was sent)."""
    change = address_change_token_read(token)
    learner = Learner.objects.filter(public_id=change.learner_public_id).first()
    if learner is None:
        raise TokenInvalid
    new_email = email_normalize(change.new_email)
    if learner.email == new_email:
        return AddressChangeRequest(learner, new_email, already=True, problem=None)
    if email_digest(learner.email) != change.old_digest:
        raise TokenInvalid
    return AddressChangeRequest(learner, new_email, already=False, problem=address_fix_problem(learner))


@dataclass(frozen=True)
class GroupOverview:
    name: str
    slug: str  # the group's page is under the learner's own: me/<token>/group/<slug>/ (groupmail)
    discussion_url: str  # "" when the group has no place of its own to talk
    members: list[dict]  # the learner's group mates (not themself): first_name, timezone


@dataclass(frozen=True)
class NextEmail:
    week_number: int
    due_on: datetime.date
    is_today: bool


@dataclass(frozen=True)
class EnrollmentOverview:
    """Where a learner stands in their round, as plain data for their own page.

    stage: "waitlist" (no round yet), "before" (the round starts later), "running", "finished".
    group_state: "grouped" (see `group`), "on_their_own" (they want no group), "after_confirming"
    (grouped once they confirm), "to_be_formed" (on `groups_formed_on`), "forming" (its day has
    come), "placing" (the round's groups are formed: they are placed shortly), "in_their_round"
    (waitlisted: a group comes with the round), "none" (the round is over and they had none).
    next_step: "confirm", "wait_for_round", "resume", "week_email" (see `next_email`),
    "last_week" (every email has come; the round ends on `end_date`), "over".
    """

    stage: Literal["waitlist", "before", "running", "finished"]
    cohort_name: str = ""
    start_date: datetime.date | None = None
    end_date: datetime.date | None = None
    week_number: int | None = None
    week_count: int | None = None
    group_state: Literal[
        "grouped", "on_their_own", "after_confirming", "to_be_formed", "forming", "placing", "in_their_round", "none"
    ] = "in_their_round"
    group: GroupOverview | None = None
    groups_formed_on: datetime.date | None = None
    next_step: Literal["confirm", "wait_for_round", "resume", "week_email", "last_week", "over"] = "wait_for_round"
    next_email: NextEmail | None = None


def enrollment_overview(enrollment: Enrollment, today: datetime.date) -> EnrollmentOverview:
    """Where the enrollment stands on `today` (the learner's own date, see learner_today): its
    round's stage and week, the learner's group (its name, discussion link and the other
    members) or when they will have one, and what comes next.

    `enrollment` comes with its cohort and group loaded (enrollment_current). At most one
    query: the group's members, or whether the round's groups are formed.
    """
    pending = enrollment.status == Enrollment.Status.PENDING
    cohort = enrollment.cohort
    if cohort is None:
        group_state = "in_their_round" if enrollment.wants_group else "on_their_own"
        return EnrollmentOverview(stage="waitlist", group_state=group_state, next_step="confirm" if pending else "wait_for_round")
    if today < cohort.start_date:
        stage = "before"
    elif today > cohort.end_date:
        stage = "finished"
    else:
        stage = "running"
    group_state, group = _group_of(enrollment, cohort, stage, today)
    next_email = None
    if pending:
        next_step = "confirm"
    elif stage == "finished":
        next_step = "over"  # paused or not: nothing is left to resume
    elif enrollment.status == Enrollment.Status.PAUSED:
        next_step = "resume"
    elif (due := cohort_next_weekly_email(cohort, today)) is not None:
        next_step, next_email = "week_email", NextEmail(week_number=due[0], due_on=due[1], is_today=due[1] == today)
    else:
        next_step = "last_week"
    return EnrollmentOverview(
        stage=stage, cohort_name=cohort.name, start_date=cohort.start_date, end_date=cohort.end_date,
        week_number=cohort_week_number(cohort, today) if stage == "running" else None, week_count=cohort.week_count,
        group_state=group_state, group=group,
        groups_formed_on=cohort.groups_formation_date if group_state == "to_be_formed" else None,
        next_step=next_step, next_email=next_email,
    )


def _group_of(enrollment: Enrollment, cohort: Cohort, stage: str, today: datetime.date) -> tuple[str, GroupOverview | None]:
    """The learner's group_state and group (see EnrollmentOverview); at most one query."""
    if not enrollment.wants_group:
        return "on_their_own", None
    group = enrollment.group
    # A group merged away by re-forming, or one of a round they left, is not theirs any more.
    if group is not None and group.dissolved_at is None and group.cohort_id == cohort.pk:
        others = [
            {"first_name": member["first_name"], "timezone": member["timezone"]}
            for member in group_members([group.pk])[group.pk] if member["enrollment"] != enrollment.pk
        ]
        return "grouped", GroupOverview(name=group.name, slug=group.slug, discussion_url=group.discussion_url, members=others)
    if stage == "finished":
        return "none", None
    if enrollment.status == Enrollment.Status.PENDING:
        return "after_confirming", None
    # Whoever comes after formation is placed at once; formation itself runs on its day (the beat job).
    if cohort_has_groups(cohort):
        return "placing", None
    return ("forming" if cohort.groups_formation_date <= today else "to_be_formed"), None


# --- Organizers' imports and bulk actions ---------------------------------------------------------


def learner_import_for_page(import_id: int) -> LearnerImport | None:
    """An import as its page shows it: without its file (up to LEARNER_IMPORT_MAX_BYTES), which
    the page, refreshed every few seconds, never needs."""
    return LearnerImport.objects.defer("content").select_related("cohort__course", "started_by").filter(pk=import_id).first()


def learner_imports_recent(limit: int = 20) -> list[LearnerImport]:
    return list(LearnerImport.objects.defer("content", "refusals").select_related("cohort__course", "started_by")[:limit])


def learner_bulk_action_for_page(job_id: int) -> LearnerBulkAction | None:
    """A bulk action as its page shows it: without its list of learner ids."""
    return LearnerBulkAction.objects.defer("learner_ids").select_related("cohort__course", "started_by").filter(pk=job_id).first()


def learners_by_public_id_or_email(public_ids, emails) -> list[tuple[int, str, str]]:
    """(id, public id as text, address) of the learners with any of these public ids (text, as
    emails' metadata carries them) or addresses (normalized here). One query."""
    valid_ids = []
    for value in public_ids:
        try:
            valid_ids.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    addresses = {email_normalize(address) for address in emails if address}
    if not valid_ids and not addresses:
        return []
    rows = Learner.objects.filter(Q(public_id__in=valid_ids) | Q(email__in=addresses)).values_list("pk", "public_id", "email")
    return [(pk, str(public_id), email) for pk, public_id, email in rows]


def learner_email_digests(learner_ids) -> dict[int, str]:
    """The digest of each learner's current address (to tell whether an event is about it)."""
    return {pk: email_digest(email) for pk, email in Learner.objects.filter(pk__in=learner_ids).values_list("pk", "email")}
