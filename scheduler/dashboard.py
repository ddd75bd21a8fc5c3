"""The organizer dashboard: how a round is going, and how the course's rounds compare.

Selectors only (nothing here writes). Every number is counted in the database, a fixed number
of queries whatever the round's size (tests pin it):

- **The funnel**: signed up -> confirmed -> grouped -> week 1 delivered -> week 1 opened -> ...
  -> week N opened -> course end delivered. Learners per step (an email's ledger row is one per
  learner), each as a share of those who signed up. "Delivered" and "opened" are the first
  moments the provider's tracking events set on the ledger row (scheduler/events.py). A round
  whose provider reported no delivery at all (the development outbox before events are
  simulated, an ESP without delivery webhooks) counts "sent" instead and says so
  (`delivered_reported`), never silently.
- **Per week**: the week's email (sent, delivered, bounced, opened, clicked) and what learners did
  during the week (unsubscribed, dropped back, left), by the round's own week boundaries
  (cohorts.models.week_begins), with a row before week 1 and one after the last week.
- **The quietest groups**: the lowest share of members who opened any of the last three weekly
  emails sent.
- **Suppressions by reason** of the round's learners, and the tracking events nobody could place
  (orphaned) over the last 30 days, site-wide: an orphan has no round.

Exports (`*_csv_rows`) are the same tables as rows of plain values, and the learners' list,
streamed. Erased learners are deleted rows: no query here can find them.
"""

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Count, F, FilteredRelation, Max, Q
from django.utils import timezone

from cohorts.models import Cohort, Course, week_begins
from scheduler.models import Delivery, EmailKind, TrackingEvent
from signups.models import Enrollment, Erasure, Learner, Suppression

QUIET_GROUPS = 10
QUIET_WEEKS = 3  # a group is quiet when few of its members opened any of the last this many weekly emails sent
ORPHANED_DAYS = 30


def _percent_text(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.1f}%"


# --- What the pages show --------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelStep:
    key: str  # signed_up, confirmed, grouped, week_<n>_delivered, week_<n>_opened, course_end
    label: str
    count: int
    share: float | None  # of those who signed up; None when nobody did

    @property
    def percent(self) -> str:
        return _percent_text(self.share)


@dataclass(frozen=True)
class WeekRow:
    week: int  # 0: before week 1; week_count + 1: after the last week
    label: str
    sent: int | None  # None on the rows before and after the weeks: no weekly email belongs to them
    delivered: int | None
    bounced: int | None
    opened: int | None
    clicked: int | None
    unsubscribed: int
    dropped_back: int
    left: int

    @property
    def email_counts(self) -> list[int | None]:
        return [self.sent, self.delivered, self.bounced, self.opened, self.clicked]


@dataclass(frozen=True)
class QuietGroup:
    group_id: int
    name: str
    members: int
    opened: int  # members who opened any of the quiet weeks' emails
    share: float
    last_opened_week: int | None

    @property
    def percent(self) -> str:
        return _percent_text(self.share)


@dataclass(frozen=True)
class SuppressionCount:
    reason: str
    label: str
    count: int


@dataclass
class CohortDashboard:
    cohort: Cohort
    funnel: list[FunnelStep]
    delivered_reported: bool  # False: the funnel counts "sent" where it would say "delivered"
    weeks: list[WeekRow]
    quiet_weeks: list[int]  # the weekly emails the quiet groups are judged on
    quiet_groups: list[QuietGroup]
    suppressions: list[SuppressionCount]
    erased: int  # learners of the round who erased their data: only a count remains
    orphaned_events: int
    orphaned_since: datetime.datetime


@dataclass
class CourseDashboard:
    course: Course
    rounds: list[tuple[Cohort, list[FunnelStep], bool]] = field(default_factory=list)  # (round, funnel, delivered_reported)


# --- Counting ---------------------------------------------------------------------------------


def _week_boundaries(cohort: Cohort) -> list[datetime.datetime]:
    """The first moment of week 1, 2, ... N and of the day after the last week, at midnight in
    the site's time zone: the round's weeks as cohorts.models.week_begins defines them."""
    zone = timezone.get_default_timezone()
    return [
        datetime.datetime.combine(week_begins(cohort.start_date, number), datetime.time(), tzinfo=zone)
        for number in range(1, cohort.week_count + 2)
    ]


def _in_period(field_name: str, boundaries: list[datetime.datetime], period: int) -> Q:
    """`field_name` falls in period `period`: 0 before week 1, n in week n, N+1 after the last."""
    condition = Q()
    if period > 0:
        condition &= Q(**{f"{field_name}__gte": boundaries[period - 1]})
    if period < len(boundaries):
        condition &= Q(**{f"{field_name}__lt": boundaries[period]})
    return condition


# A learner whose mail stopped (unsubscribed, complained, their address bounced: Learner.unsubscribed_at)
# while in this round counts as unsubscribed, in the week it stopped. Unsubscribing ends the
# learner's current enrollments as LEFT at that moment or later (signups.services,
# signups.suppressions; a bounce leaves them as they are): those count as unsubscribed, not left.
# Left is leaving by choice, before any unsubscribe.
_STOPPED = Q(learner__unsubscribed_at__isnull=False) & (Q(ended_at__isnull=True) | Q(ended_at__gte=F("learner__unsubscribed_at")))
_LEFT = Q(status=Enrollment.Status.LEFT) & (Q(learner__unsubscribed_at__isnull=True) | Q(ended_at__lt=F("learner__unsubscribed_at")))
_DROPPED_BACK = Q(status=Enrollment.Status.SWITCHED)
# Kept when the enrollment ends (history); only confirmed learners are ever grouped.
_GROUPED = Q(group__isnull=False) | Q(grouped_at__isnull=False)


def _learner_counts(cohort: Cohort) -> dict[str, int]:
    """The funnel's first steps, and the week of each unsubscribe, drop-back and leaving. Two
    queries: the week counts look only at the few enrollments that ended or whose learner's
    mail stopped, so their many conditions are not evaluated for every learner."""
    enrollments = Enrollment.objects.filter(cohort=cohort)
    counts = enrollments.aggregate(
        signed_up=Count("learner", distinct=True),
        confirmed=Count("learner", distinct=True, filter=Q(learner__confirmed_at__isnull=False)),
        grouped=Count("learner", distinct=True, filter=_GROUPED),
    )
    boundaries = _week_boundaries(cohort)
    per_week = {}
    for period in range(cohort.week_count + 2):
        per_week[f"unsubscribed_{period}"] = Count("pk", filter=_STOPPED & _in_period("learner__unsubscribed_at", boundaries, period))
        per_week[f"dropped_back_{period}"] = Count("pk", filter=_DROPPED_BACK & _in_period("ended_at", boundaries, period))
        per_week[f"left_{period}"] = Count("pk", filter=_LEFT & _in_period("ended_at", boundaries, period))
    ended_or_stopped = Q(status__in=[Enrollment.Status.LEFT, Enrollment.Status.SWITCHED]) | Q(learner__unsubscribed_at__isnull=False)
    return {**counts, **enrollments.filter(ended_or_stopped).aggregate(**per_week)}


_EMAIL_COUNTS = {
    # Only columns of the index delivery_cohort_counts (not even the id): PostgreSQL counts a
    # round's million rows from the index alone. COUNT(column) counts the rows where it is set:
    # cheaper per row than a FILTER.
    "sent": Count("status", filter=Q(status=Delivery.Status.SENT)),
    "delivered": Count("delivered_at"),
    "bounced": Count("bounced_at"),
    "opened": Count("opened_at"),
    "clicked": Count("clicked_at"),
}
# The emails the dashboard shows: the weeks and the course's end (not welcome, group introduction).
_FUNNEL_KINDS = [EmailKind.WEEK, EmailKind.COURSE_END]


def _email_counts(cohorts) -> dict[tuple[int, str, int], dict[str, int]]:
    """Per (round, kind, week) of the weekly and course end emails: sent, delivered, bounced,
    opened, clicked. One query."""
    rows = (
        Delivery.objects.filter(cohort__in=cohorts, kind__in=_FUNNEL_KINDS).values("cohort_id", "kind", "week_number")
        .annotate(**_EMAIL_COUNTS).order_by()
    )
    return {(row.pop("cohort_id"), row.pop("kind"), row.pop("week_number")): row for row in rows}


def _share(count: int, whole: int) -> float | None:
    return count / whole if whole else None


def _funnel(cohort: Cohort, learners: dict[str, int], emails: dict[tuple[int, str, int], dict[str, int]]) -> tuple[list[FunnelStep], bool]:
    own = {(kind, week): counts for (cohort_id, kind, week), counts in emails.items() if cohort_id == cohort.pk}
    delivered_reported = any(counts["delivered"] for counts in own.values())
    reached = "delivered" if delivered_reported else "sent"
    signed_up = learners["signed_up"]

    def step(key, label, count):
        return FunnelStep(key, label, count, _share(count, signed_up))

    none = dict.fromkeys(_EMAIL_COUNTS, 0)
    steps = [
        step("signed_up", "Signed up", signed_up),
        step("confirmed", "Confirmed", learners["confirmed"]),
        step("grouped", "Grouped", learners["grouped"]),
    ]
    for number in range(1, cohort.week_count + 1):
        counts = own.get((EmailKind.WEEK, number), none)
        steps.append(step(f"week_{number}_{reached}", f"Week {number} {reached}", counts[reached]))
        steps.append(step(f"week_{number}_opened", f"Week {number} opened", counts["opened"]))
    steps.append(step("course_end", f"Course end {reached}", own.get((EmailKind.COURSE_END, 0), none)[reached]))
    return steps, delivered_reported


def _week_rows(cohort: Cohort, learners: dict[str, int], emails: dict[tuple[int, str, int], dict[str, int]]) -> list[WeekRow]:
    rows = []
    last = cohort.week_count + 1
    for period in range(last + 1):
        counts = emails.get((cohort.pk, EmailKind.WEEK, period)) or dict.fromkeys(_EMAIL_COUNTS, 0)
        in_weeks = 0 < period < last
        label = "Before week 1" if period == 0 else "After the last week" if period == last else f"Week {period}"
        rows.append(WeekRow(
            period, label, *(counts[name] if in_weeks else None for name in _EMAIL_COUNTS),
            unsubscribed=learners[f"unsubscribed_{period}"], dropped_back=learners[f"dropped_back_{period}"], left=learners[f"left_{period}"],
        ))
    return rows


def _quiet_weeks(cohort: Cohort, emails: dict[tuple[int, str, int], dict[str, int]]) -> list[int]:
    """The last QUIET_WEEKS weekly emails of the round that went out to anyone."""
    sent = sorted(week for (cohort_id, kind, week), counts in emails.items() if cohort_id == cohort.pk and kind == EmailKind.WEEK and counts["sent"])
    return sent[-QUIET_WEEKS:]


def _quiet_groups(cohort: Cohort, quiet_weeks: list[int]) -> list[QuietGroup]:
    """The QUIET_GROUPS groups with the lowest share of members (active or paused: confirmed) who
    opened any of `quiet_weeks`' emails. One query.

    SQL of its own: each member's last opened week is aggregated once, in learner order from the
    partial index delivery_opened_week, then joined to the members; the ORM would write a
    subquery per member (100,000 index probes). Whoever opened a later week opened one of the
    last weeks sent, so the last opened week answers both columns.
    """
    if not quiet_weeks:
        return []
    enrollment, delivery = Enrollment._meta.db_table, Delivery._meta.db_table
    group = Enrollment._meta.get_field("group").related_model._meta.db_table
    sql = f"""
        SELECT g.id, g.name, COUNT(*) AS members,
               SUM(CASE WHEN o.last_week >= %s THEN 1 ELSE 0 END) AS opened, MAX(o.last_week) AS last_opened
        FROM {enrollment} e
        JOIN {group} g ON g.id = e.group_id AND g.dissolved_at IS NULL
        LEFT JOIN (
            SELECT learner_id, MAX(week_number) AS last_week FROM {delivery}
            WHERE cohort_id = %s AND kind = %s AND opened_at IS NOT NULL GROUP BY learner_id
        ) o ON o.learner_id = e.learner_id
        WHERE e.cohort_id = %s AND e.status IN (%s, %s)
        GROUP BY g.id, g.name, g.number
        ORDER BY SUM(CASE WHEN o.last_week >= %s THEN 1 ELSE 0 END) * 1.0 / COUNT(*), MAX(o.last_week), g.number
        LIMIT %s
    """
    threshold = min(quiet_weeks)
    params = [threshold, cohort.pk, EmailKind.WEEK, cohort.pk, *Enrollment.GROUPED, threshold, QUIET_GROUPS]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        QuietGroup(group_id, name, members, int(opened), int(opened) / members, last_opened)
        for group_id, name, members, opened, last_opened in rows
    ]


def _suppressions(cohort: Cohort) -> list[SuppressionCount]:
    """The round's learners whose mail is stopped, by why (Learner.unsubscribed_reason). One query."""
    rows = (
        Learner.objects.filter(unsubscribed_at__isnull=False, enrollments__cohort=cohort)
        .values_list("unsubscribed_reason").annotate(count=Count("pk", distinct=True)).order_by()
    )
    counts: dict[str, int] = {}
    for reason, count in rows:
        # No reason recorded: a plain unsubscribe, as signups' 0009 backfilled them.
        reason = reason or Suppression.Reason.UNSUBSCRIBED
        counts[reason] = counts.get(reason, 0) + count
    labels = dict(Suppression.Reason.choices)
    return [
        SuppressionCount(reason, labels.get(reason, reason), counts.get(reason, 0))
        for reason in [*Suppression.Reason.values, *sorted(set(counts) - set(Suppression.Reason.values))]
        if reason != Suppression.Reason.ERASED  # erased learners are gone: counted apart, from Erasure
    ]


def orphaned_events_count(since: datetime.datetime) -> int:
    """Tracking events received since `since` that found neither an email nor a learner of ours.
    One query, on the partial index tracking_event_orphaned."""
    return TrackingEvent.objects.filter(learner__isnull=True, applied_at__isnull=False, received_at__gte=since).count()


def cohort_dashboard(cohort: Cohort, now: datetime.datetime) -> CohortDashboard:
    """Everything the round's dashboard shows. Seven queries, whatever the round's size."""
    learners = _learner_counts(cohort)
    emails = _email_counts([cohort.pk])
    funnel, delivered_reported = _funnel(cohort, learners, emails)
    quiet_weeks = _quiet_weeks(cohort, emails)
    since = now - datetime.timedelta(days=ORPHANED_DAYS)
    return CohortDashboard(
        cohort=cohort,
        funnel=funnel,
        delivered_reported=delivered_reported,
        weeks=_week_rows(cohort, learners, emails),
        quiet_weeks=quiet_weeks,
        quiet_groups=_quiet_groups(cohort, quiet_weeks),
        suppressions=_suppressions(cohort),
        erased=Erasure.objects.filter(cohort=cohort).count(),
        orphaned_events=orphaned_events_count(since),
        orphaned_since=since,
    )


def course_dashboard(course: Course) -> CourseDashboard:
    """The funnel of each of the course's rounds, earliest first. Three queries, whatever the
    number of rounds or learners."""
    cohorts = list(Cohort.objects.filter(course=course).order_by("start_date", "name"))
    rows = (
        Enrollment.objects.filter(cohort__in=cohorts).values("cohort_id")
        .annotate(
            signed_up=Count("learner", distinct=True),
            confirmed=Count("learner", distinct=True, filter=Q(learner__confirmed_at__isnull=False)),
            grouped=Count("learner", distinct=True, filter=_GROUPED),
        ).order_by()
    )
    learners = {row.pop("cohort_id"): row for row in rows}
    emails = _email_counts(cohorts)
    dashboard = CourseDashboard(course)
    for cohort in cohorts:
        funnel, reported = _funnel(cohort, learners.get(cohort.pk, {"signed_up": 0, "confirmed": 0, "grouped": 0}), emails)
        dashboard.rounds.append((cohort, funnel, reported))
    return dashboard


# --- Exports ----------------------------------------------------------------------------------


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.1f}"


def funnel_csv_rows(dashboard: CohortDashboard) -> Iterator[list]:
    yield ["step", "learners", "percent of signed up"]
    for step in dashboard.funnel:
        yield [step.label, step.count, _percent(step.share)]


def weeks_csv_rows(dashboard: CohortDashboard) -> Iterator[list]:
    yield ["week", "sent", "delivered", "bounced", "opened", "clicked", "unsubscribed", "dropped back", "left"]
    for row in dashboard.weeks:
        yield [row.label, *("" if value is None else value for value in row.email_counts), row.unsubscribed, row.dropped_back, row.left]


def quiet_groups_csv_rows(dashboard: CohortDashboard) -> Iterator[list]:
    yield ["group", "members", "opened any of weeks " + ", ".join(map(str, dashboard.quiet_weeks)), "percent opened", "last opened week"]
    for group in dashboard.quiet_groups:
        yield [group.name, group.members, group.opened, _percent(group.share), group.last_opened_week or ""]


def suppressions_csv_rows(dashboard: CohortDashboard) -> Iterator[list]:
    yield ["reason", "learners"]
    for row in dashboard.suppressions:
        yield [row.label, row.count]
    yield ["Erased their data (a count only)", dashboard.erased]


def course_funnel_csv_rows(dashboard: CourseDashboard) -> Iterator[list]:
    yield ["round", "start date", "step", "learners", "percent of signed up"]
    for cohort, funnel, _ in dashboard.rounds:
        for step in funnel:
            yield [cohort.name, cohort.start_date.isoformat(), step.label, step.count, _percent(step.share)]


LEARNERS_CSV_HEADER = [
    "email", "first name", "time zone", "status", "group", "confirmed", "last delivered week", "last opened week", "last clicked week",
]


def learners_csv_rows(cohort: Cohort) -> Iterator[list]:
    """The round's learners (one row per enrollment in it, whatever its status), by address,
    with the last weekly email each one had delivered, opened and clicked. One query, read in
    chunks (a server-side cursor on PostgreSQL), so 100,000 learners never sit in memory at once."""
    yield LEARNERS_CSV_HEADER
    statuses = dict(Enrollment.Status.choices)
    rows = (
        Enrollment.objects.filter(cohort=cohort)
        .annotate(week_email=FilteredRelation(
            "learner__deliveries", condition=Q(learner__deliveries__cohort=cohort, learner__deliveries__kind=EmailKind.WEEK),
        ))
        .values("pk", "learner__email", "learner__first_name", "learner__timezone", "status", "group__name", "learner__confirmed_at")
        .annotate(
            last_delivered=Max("week_email__week_number", filter=Q(week_email__delivered_at__isnull=False)),
            last_opened=Max("week_email__week_number", filter=Q(week_email__opened_at__isnull=False)),
            last_clicked=Max("week_email__week_number", filter=Q(week_email__clicked_at__isnull=False)),
        )
        .order_by("learner__email", "pk")
    )
    for row in rows.iterator(chunk_size=2000):
        confirmed = row["learner__confirmed_at"]
        yield [
            row["learner__email"], row["learner__first_name"], row["learner__timezone"], statuses.get(row["status"], row["status"]),
            row["group__name"] or "", confirmed.isoformat() if confirmed else "",
            row["last_delivered"] or "", row["last_opened"] or "", row["last_clicked"] or "",
        ]
