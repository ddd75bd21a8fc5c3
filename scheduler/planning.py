"""What is due: the dispatch pass that puts each email that fell due in the ledger, and queues it.

The course has no teacher: this is the teacher, so it must never skip a week, never send one
twice, and never mail someone who left. Dispatch (`deliveries_dispatch`, every minute from beat,
or `manage.py send_due`) finds for every cohort the emails that fell due and have no ledger row
yet, and inserts the rows in bulk. The unique (learner, cohort, kind, week) constraint makes a
second insert a no-op, so two dispatchers at once create each row once. Ready PENDING rows are
then queued in chunks, oldest due first, for scheduler/sending.py; every change of a row after
that is one of scheduler/ledger.py's guarded UPDATEs.

Catch-up: rows that became due while nothing ran are sent, oldest first, unless due more than
DELIVERY_CATCH_UP_LIMIT ago: those are SKIPPED (when planned, and again when claimed), unless an
organizer sends the week on purpose. A week with no template yet is planned all the same and
waits for it (sending.py) until the same limit, so every time zone is treated alike.
"""

import datetime
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce

from cohorts.models import Cohort
from cohorts.models import week_begins
from scheduler.due import cohort_week_due
from scheduler.ledger import Reason, catch_up_cutoff, rows_ready, rows_reclaim, rows_send_again, too_late_detail
from scheduler.models import CohortPlanning, Delivery, EmailKind
from signups.selectors import enrollments_mailable

logger = logging.getLogger(__name__)

PLAN_BATCH = 5000  # ledger rows planned, inserted or marked queued per statement


# --- What is due ---------------------------------------------------------------------------------


@dataclass
class DispatchReport:
    planned: Counter = field(default_factory=Counter)  # (cohort slug, kind, week, status) -> rows
    ready: Counter = field(default_factory=Counter)  # (cohort slug, kind, week) -> pending rows ready to send
    chunks: list[list[int]] = field(default_factory=list)
    returned_to_pending: int = 0
    ambiguous: int = 0
    overdue: int = 0
    forecast: list = field(default_factory=list)  # dry run: scheduler.forecast.ForecastLine, what each row would do


def _learners_with_row(cohort: Cohort, kind: str, week_number: int, among: list[int] | None = None) -> set[int]:
    """Learners (of `among`, when given) who have this email's row already: one scan of the
    ledger's (cohort, kind, week) index.

    Dispatch takes the difference in Python rather than with NOT EXISTS: on a ledger that
    just grew by a whole cohort, before PostgreSQL has fresh statistics, the planner may
    compare every enrollment with every row (seen: minutes for 100,000 learners).
    """
    rows = Delivery.objects.filter(cohort=cohort, kind=kind, week_number=week_number)
    if among is not None:
        if not among:
            return set()
        if connection.vendor == "postgresql":
            # One array parameter: Django builds `IN (%s, %s, ...)` one parameter at a time, and a
            # batch of 5,000 learners cost about 90 ms of CPU before PostgreSQL saw the query.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT learner_id FROM {Delivery._meta.db_table}"
                    " WHERE cohort_id = %s AND kind = %s AND week_number = %s AND learner_id = ANY(%s::bigint[])",
                    [cohort.pk, kind, week_number, list(among)],
                )
                return {learner_id for (learner_id,) in cursor.fetchall()}
        rows = rows.filter(learner_id__in=among)
    return set(rows.values_list("learner_id", flat=True).iterator(chunk_size=PLAN_BATCH))


def _emails_in_window(cohort: Cohort, now: datetime.datetime) -> list[tuple[str, int]]:
    """The (kind, week) emails of a cohort that may fall due around now, for some time zone."""
    today = now.date()
    oldest = today - settings.DELIVERY_CATCH_UP_LIMIT - datetime.timedelta(days=8)
    emails = []
    for number in range(1, cohort.week_count + 2):  # the week after the last: the course's end
        begins = week_begins(cohort.start_date, number)
        if begins - datetime.timedelta(days=1) <= today and begins + datetime.timedelta(days=7) >= oldest:
            emails.append((EmailKind.WEEK, number) if number <= cohort.week_count else (EmailKind.COURSE_END, 0))
    return emails


class PlannedRow(NamedTuple):
    learner_id: int
    kind: str
    week_number: int
    status: str
    due_at: datetime.datetime
    reason_code: str
    reason: str


def _ledger_insert(cohort: Cohort, rows: list[PlannedRow], now: datetime.datetime) -> None:
    """Insert rows planned at `now`; a row that exists already is left alone (the unique constraint).

    On PostgreSQL one INSERT ... SELECT FROM unnest(...) per batch: building a model instance
    per row for bulk_create cost most of a 100,000-learner dispatch.
    """
    if connection.vendor != "postgresql":
        Delivery.objects.bulk_create(
            [Delivery(cohort=cohort, created_at=now, **row._asdict()) for row in rows], batch_size=1000, ignore_conflicts=True
        )
        return
    columns = list(zip(*rows))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Delivery._meta.db_table} (learner_id, cohort_id, kind, week_number, status, due_at,"
            " reason_code, reason, attempts, provider_message_id, created_at, updated_at)"
            " SELECT planned.learner_id, %s, planned.kind, planned.week_number, planned.status, planned.due_at,"
            " planned.reason_code, planned.reason, 0, '', %s, %s"
            " FROM unnest(%s::bigint[], %s::text[], %s::integer[], %s::text[], %s::timestamptz[], %s::text[], %s::text[])"
            " AS planned(learner_id, kind, week_number, status, due_at, reason_code, reason)"
            " ON CONFLICT DO NOTHING",
            [cohort.pk, now, now, *[list(column) for column in columns]],
        )


def _planned_rows(cohort: Cohort, now: datetime.datetime, since: datetime.datetime | None = None,
                  timezones: list[str] = ()) -> Iterator[PlannedRow]:
    """The ledger rows a cohort is missing as of `now`: due and not yet in the ledger.

    A week is due for a learner at the later of its own moment (their time zone) and the
    moment they became mailable in this round (confirmed, moved in, resumed): who joins on
    Thursday of week 1 gets week 1 at once. A week that ended (the next week's moment came)
    before they became mailable is not theirs: its row is SKIPPED as JOINED_LATER, so it is
    settled and never looked at again.

    With `since` (the cohort was planned through that moment), only what changed is looked
    at: learners of the `timezones` whose moment for an email came after `since`, learners
    who became mailable or were grouped after it. Without, every mailable learner. A
    generator over streamed queries: a cohort of any size is planned in bounded memory.
    """
    cutoff = catch_up_cutoff(now)
    recent = cutoff - datetime.timedelta(days=1)
    emails = _emails_in_window(cohort, now)
    mailable = enrollments_mailable(cohort)

    def row(learner_id, kind, week_number, due_at):
        # Whether the email has a template yet is the sender's question (it waits for one).
        if due_at < cutoff:
            return PlannedRow(learner_id, kind, week_number, Delivery.Status.SKIPPED, due_at, Reason.TOO_LATE, too_late_detail(Reason.TOO_LATE))
        return PlannedRow(learner_id, kind, week_number, Delivery.Status.PENDING, due_at, Reason.NONE, "")

    def weekly_rows(kind, week_number, learners, among=None):
        moment_week = week_number or cohort.week_count + 1
        done = _learners_with_row(cohort, kind, week_number, among)
        for learner_id, timezone_name, became_mailable in learners:
            if learner_id in done:
                continue
            due_at = cohort_week_due(cohort, moment_week, timezone_name)
            if became_mailable is not None and became_mailable > due_at:
                if kind == EmailKind.WEEK and became_mailable >= cohort_week_due(cohort, moment_week + 1, timezone_name):
                    yield PlannedRow(learner_id, kind, week_number, Delivery.Status.SKIPPED, became_mailable, Reason.JOINED_LATER,
                                     "this week ended before the learner joined the round (or resumed their emails)")
                    continue
                due_at = became_mailable
            if due_at <= now:
                yield row(learner_id, kind, week_number, due_at)

    def once_rows(kind, learners):
        done = _learners_with_row(cohort, kind, 0, among=None if since is None else [learner_id for learner_id, _ in learners])
        for learner_id, due_at in learners:
            if learner_id not in done and due_at <= now:
                yield row(learner_id, kind, 0, due_at)

    columns = ("learner_id", "learner__timezone", "mailable_since")
    # Welcome when the learner becomes mailable in this round (each new round they join gets
    # its own), and the group introduction once they have a group.
    became_mailable = Coalesce("mailable_since", "learner__confirmed_at")
    if since is None:
        for kind, week_number in emails:
            yield from weekly_rows(kind, week_number, mailable.values_list(*columns).iterator(chunk_size=PLAN_BATCH))
        for kind, moment in [(EmailKind.WELCOME, became_mailable), (EmailKind.GROUP_INTRO, F("grouped_at"))]:
            learners = mailable.annotate(moment=moment).filter(moment__gte=recent).values_list("learner_id", "moment")
            yield from once_rows(kind, learners.iterator(chunk_size=PLAN_BATCH))
        return
    newcomers = list(mailable.filter(mailable_since__gt=since).values_list(*columns))
    newcomer_ids = {learner_id for learner_id, _, _ in newcomers}
    for kind, week_number in emails:
        moment_week = week_number or cohort.week_count + 1
        zones = [zone for zone in timezones if since < cohort_week_due(cohort, moment_week, zone) <= now]
        if zones:  # this email's moment came for these zones: their learners, in bounded batches
            learners = mailable.filter(learner__timezone__in=zones).values_list(*columns)
            batch = []
            for learner in learners.iterator(chunk_size=PLAN_BATCH):
                if learner[0] in newcomer_ids:
                    continue  # planned with the newcomers below
                batch.append(learner)
                if len(batch) >= PLAN_BATCH:
                    yield from weekly_rows(kind, week_number, batch, among=[learner_id for learner_id, _, _ in batch])
                    batch = []
            yield from weekly_rows(kind, week_number, batch, among=[learner_id for learner_id, _, _ in batch])
        yield from weekly_rows(kind, week_number, newcomers, among=list(newcomer_ids))
    yield from once_rows(EmailKind.WELCOME, [(learner_id, moment) for learner_id, _, moment in newcomers])
    grouped = mailable.filter(grouped_at__gt=since).values_list("learner_id", "grouped_at")
    yield from once_rows(EmailKind.GROUP_INTRO, list(grouped))


# A pass plans what changed since the last one, minus this overlap: a learner confirmed in a
# transaction that committed just after the last pass read the enrollments is still seen.
PLANNING_OVERLAP = datetime.timedelta(minutes=5)


def _planning_key(cohort: Cohort) -> str:
    """The cohort's timing: when it changes (an organizer edits it), plan it all again."""
    return f"{cohort.start_date}|{cohort.send_weekday}|{cohort.send_time}|{cohort.week_count}"


def _full_pass_due(mark: CohortPlanning | None, cohort: Cohort, now: datetime.datetime) -> bool:
    return (
        mark is None
        or now < mark.planned_through  # a clock set back (send_due --now): plan it all
        or now - mark.full_pass_at >= datetime.timedelta(minutes=settings.DISPATCH_FULL_PASS_MINUTES)
        or mark.settings_key != _planning_key(cohort)
    )


def cohort_rows_missing(cohort: Cohort, mark: CohortPlanning | None, now: datetime.datetime) -> tuple[bool, Iterator[PlannedRow]]:
    """The rows a pass at `now` puts in the ledger for this cohort (all of them, or what changed
    since its mark), and whether that is a full pass. The dispatch and its forecast
    (scheduler/forecast.py) both plan with this."""
    full = _full_pass_due(mark, cohort, now)
    since = None if full else mark.planned_through - PLANNING_OVERLAP
    timezones = [] if full else mark.timezones
    return full, _planned_rows(cohort, now, since=since, timezones=timezones)


def cohort_rows_due_between(cohort: Cohort, after: datetime.datetime, until: datetime.datetime) -> Iterator[PlannedRow]:
    """The rows missing from the ledger that fall due after `after` and by `until`, as the pass
    at `until` plans them (the forecast's week ahead, scheduler/forecast.py).

    Planned as an incremental pass since `after` over every time zone of the cohort's mailable
    learners: only learners whose email's moment comes in between are read. No other row can
    fall due then, since a learner becomes mailable or is grouped at the moment it happens,
    never later (and one who did after `after` is planned with the newcomers anyway). A full
    plan read every learner once per email in the catch-up window (bench/bench_forecast.py:
    the forecast of a 100,000-learner round took 3.7 s with it, 2.1 s with this).
    """
    zones = sorted(set(enrollments_mailable(cohort).values_list("learner__timezone", flat=True).order_by().distinct()))
    return _planned_rows(cohort, until, since=after, timezones=zones)


def rows_to_queue(now: datetime.datetime):
    """The ready rows a pass at `now` queues: never queued, or queued so long ago the message may be lost."""
    return rows_ready(now).filter(Q(queued_at__isnull=True) | Q(queued_at__lt=now - queue_again_after()))


def _cohort_plan(cohort: Cohort, mark: CohortPlanning | None, now: datetime.datetime, report: DispatchReport) -> None:
    """Plan one cohort: the rows it is missing go into the ledger, and its mark moves to `now`."""
    full, planned_rows = cohort_rows_missing(cohort, mark, now)
    since = None if full else mark.planned_through - PLANNING_OVERLAP
    batch: list[PlannedRow] = []
    for planned in planned_rows:
        report.planned[(cohort.slug, planned.kind, planned.week_number, planned.status)] += 1
        batch.append(planned)
        if len(batch) >= PLAN_BATCH:
            _ledger_insert(cohort, batch, now)
            batch = []
    if batch:
        _ledger_insert(cohort, batch, now)
    mailable = enrollments_mailable(cohort)
    if full:
        zones = sorted(set(mailable.values_list("learner__timezone", flat=True).order_by().distinct()))
        CohortPlanning.objects.update_or_create(
            cohort=cohort, defaults={"planned_through": now, "full_pass_at": now, "timezones": zones, "settings_key": _planning_key(cohort)}
        )
        return
    new_zones = set(mailable.filter(mailable_since__gt=since).values_list("learner__timezone", flat=True)) - set(mark.timezones)
    CohortPlanning.objects.filter(pk=mark.pk).update(
        planned_through=now, **({"timezones": sorted(set(mark.timezones) | new_zones)} if new_zones else {})
    )


def queue_again_after() -> datetime.timedelta:
    """How long a queued row waits before its chunk is queued again. A chunk waiting behind a long
    drain is still in the broker, which re-delivers a message no worker finished within its
    visibility timeout: only past that (plus a margin) can the message be lost (a broker that
    restarted without its data). Queuing it sooner only duplicates tasks."""
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    return datetime.timedelta(seconds=visibility) + datetime.timedelta(minutes=15)


def cohorts_sending(now: datetime.datetime):
    """Cohorts whose emails may be due: not long finished, not paused. Cohorts yet to start
    count too: their welcome and group introductions go out before week 1."""
    today = now.date()
    return Cohort.objects.filter(sending_paused=False, start_date__gte=today - datetime.timedelta(weeks=60)).select_related("course")


def deliveries_overdue(now: datetime.datetime) -> int:
    """Emails due more than an hour ago and still not sent, not counting rows put in the ledger
    in the last hour (a catch-up under way): a stuck worker, or no dispatch at all, shows here."""
    hour_ago = now - datetime.timedelta(hours=1)
    return Delivery.objects.filter(
        status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING], due_at__lt=hour_ago, created_at__lt=hour_ago
    ).count()


def deliveries_dispatch(now: datetime.datetime, dry_run: bool = False, overdue_check: bool = True) -> DispatchReport:
    """One dispatch pass: reclaim, insert what fell due, and pick the ready rows in chunks.

    Idempotent and safe to run concurrently (the ledger's unique constraint). With dry_run,
    reports what it would do and changes nothing: `ready` then counts only the rows the
    sender would send (scheduler/forecast.py, which also says why the others would not go),
    and `forecast` has the pass's every outcome. The caller queues (or sends) the chunks.
    Without overdue_check the caller, which sends the chunks itself (send_due), checks what
    is overdue after sending them (deliveries_overdue_check): not before, while they wait.
    """
    if dry_run:
        from scheduler.forecast import deliveries_forecast  # the forecast plans with this module

        return _dry_run_report(deliveries_forecast(now))
    report = DispatchReport()
    report.returned_to_pending, report.ambiguous = rows_reclaim(now)
    if report.ambiguous:
        logger.warning("%d deliveries were interrupted during the provider call and need an organizer's look", report.ambiguous)
    cohorts = list(cohorts_sending(now))
    marks = {mark.cohort_id: mark for mark in CohortPlanning.objects.filter(cohort__in=cohorts)}
    for cohort in cohorts:
        _cohort_plan(cohort, marks.get(cohort.pk), now, report)
    ready = rows_to_queue(now)
    for group in ready.order_by().values("cohort__slug", "kind", "week_number").annotate(count=Count("pk")):
        report.ready[(group["cohort__slug"], group["kind"], group["week_number"])] += group["count"]
    ids = list(ready.order_by("due_at", "pk").values_list("pk", flat=True))
    size = settings.DELIVERY_CHUNK_SIZE
    report.chunks = [ids[start : start + size] for start in range(0, len(ids), size)]
    for start in range(0, len(ids), PLAN_BATCH):
        Delivery.objects.filter(pk__in=ids[start : start + PLAN_BATCH]).update(queued_at=now)
    if overdue_check:
        report.overdue = deliveries_overdue_check(now)
    return report


def _dry_run_report(rows) -> DispatchReport:
    from scheduler.forecast import SEND, forecast_lines

    report = DispatchReport(forecast=forecast_lines(rows))
    for row in rows:
        if row.outcome == SEND:
            report.ready[(row.cohort_slug, row.kind, row.week_number)] += 1
        if row.planned_status:
            report.planned[(row.cohort_slug, row.kind, row.week_number, row.planned_status)] += 1
    return report


def deliveries_overdue_check(now: datetime.datetime) -> int:
    """How many emails are overdue (deliveries_overdue), logged when that changes."""
    overdue = deliveries_overdue(now)
    _overdue_log(overdue)
    return overdue


def _overdue_log(overdue: int) -> None:
    """Warn when emails become overdue and say when they are caught up: once per change, not
    every minute while rows wait (a log that repeats itself every minute gets ignored)."""
    was_overdue = cache.get(_OVERDUE_STATE, False)
    if overdue and not was_overdue:
        logger.warning("Overdue: %d emails were due more than an hour ago and are not sent", overdue)
    elif was_overdue and not overdue:
        logger.info("Caught up: no email is overdue any more")
    if bool(overdue) != was_overdue:
        cache.set(_OVERDUE_STATE, bool(overdue), timeout=None)


_OVERDUE_STATE = "scheduler:overdue"


# --- Organizers ----------------------------------------------------------------------------------


def deliveries_resend_failed(cohort: Cohort, kind: str, week_number: int, now: datetime.datetime) -> int:
    """Send a cohort's email again to those it failed for (an organizer's decision). Returns how many."""
    failed = Delivery.objects.filter(cohort=cohort, kind=kind, week_number=week_number, status=Delivery.Status.FAILED)
    return rows_send_again(failed, now, "re-sent by an organizer")


def deliveries_send_week_now(cohort: Cohort, week_number: int, now: datetime.datetime) -> int:
    """An organizer sends a week on purpose, now: to everyone mailable who has not had it,
    including rows skipped as too late or for lack of a template. Returns how many are queued."""
    with transaction.atomic():
        skipped = Delivery.objects.filter(
            cohort=cohort, kind=EmailKind.WEEK, week_number=week_number, status=Delivery.Status.SKIPPED,
            reason_code__in=[Reason.TOO_LATE, Reason.NO_TEMPLATE, Reason.JOINED_LATER],
        )
        revived = rows_send_again(skipped, now, "sent now by an organizer")
        done = _learners_with_row(cohort, EmailKind.WEEK, week_number)
        missing = [learner_id for learner_id in enrollments_mailable(cohort).values_list("learner_id", flat=True) if learner_id not in done]
        rows = [Delivery(learner_id=learner_id, cohort=cohort, kind=EmailKind.WEEK, week_number=week_number, due_at=now,
                         created_at=now, reason_code=Reason.ORGANIZER, reason="sent now by an organizer") for learner_id in missing]
        Delivery.objects.bulk_create(rows, batch_size=5000, ignore_conflicts=True)
    return revived + len(rows)


def deliveries_queue(ids: list[int], now: datetime.datetime) -> None:
    """Queue ledger rows for sending at once, in chunks, once the caller's transaction commits
    (rows that must not wait for the next dispatch pass, such as a group message's copies).
    Rows the broker did not take are left unqueued, for the next pass to queue."""
    if not ids:
        return
    from scheduler.tasks import deliveries_send_chunk

    Delivery.objects.filter(pk__in=ids).update(queued_at=now)
    size = settings.DELIVERY_CHUNK_SIZE
    chunks = [ids[start : start + size] for start in range(0, len(ids), size)]

    def queue():
        for chunk in chunks:
            try:
                deliveries_send_chunk.apply_async(args=[chunk], queue=settings.DELIVERY_QUEUE)
            except Exception as error:  # the broker is down: dispatch queues them within a minute of its return
                logger.warning("Could not queue %d deliveries: %s", len(chunk), error)
                Delivery.objects.filter(pk__in=chunk, status=Delivery.Status.PENDING).update(queued_at=None)

    transaction.on_commit(queue)
