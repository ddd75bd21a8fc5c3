"""What the scheduler will do: `send_due --dry-run` (the pass at `now`) and the cohort page's
"due in the next 7 days" (that pass, then each email at its own moment until the horizon).

Both are the pass's own code, not a copy of its rules: the rows are those dispatch would put in
the ledger (planning.cohort_rows_missing) and those it would queue (planning.rows_to_queue), and
each row's outcome is what the sender decides before it calls the provider, in its order:
too late for the catch-up window (ledger.rows_skip_too_late), no longer mailable
(sending.eligibility_problem), no template yet (scheduler.selectors.email_template_for, the row
waits). What the provider will answer is the one thing no forecast knows: "send" means handed
to the provider.
"""

import datetime
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cohorts.models import Cohort
from scheduler.ledger import Reason, catch_up_cutoff, too_late_detail
from scheduler.models import CohortPlanning, Delivery
from scheduler.planning import cohort_rows_due_between, cohort_rows_missing, cohorts_sending, rows_to_queue
from scheduler.selectors import email_template_for
from scheduler.sending import RELAYED_EMAIL_BUILDERS, eligibility_problem
from signups.selectors import enrollments_current_of

SEND, SKIP, WAIT = "send", "skip", "wait"
OUTCOME_LABELS = {SEND: "Would send", SKIP: "Would skip", WAIT: "Would wait"}
WAITING_REASON = "no email template for this email yet: waits for one"


@dataclass(frozen=True)
class ForecastRow:
    """One ledger row, and what the pass that reaches it will do with it."""

    cohort_slug: str
    learner_id: int
    kind: str
    week_number: int
    due_at: datetime.datetime
    outcome: str  # SEND, SKIP or WAIT
    reason_code: str
    reason: str
    planned_status: str = ""  # the status dispatch inserts it with; "" for a row in the ledger already


@dataclass(frozen=True)
class ForecastLine:
    """Rows of one email with the same outcome and reason, counted, with their first and last due moment."""

    cohort_slug: str
    kind: str
    week_number: int
    outcome: str
    reason_code: str
    reason: str
    count: int
    first_due: datetime.datetime
    last_due: datetime.datetime

    @property
    def email(self) -> str:
        return f"week {self.week_number}" if self.kind == "week" else self.kind.replace("_", " ")


class _Templates:
    """Whether each (cohort, kind, week) has a template in force: asked once per email."""

    def __init__(self):
        self._known: dict[tuple, bool] = {}

    def missing(self, cohort: Cohort, kind: str, week_number: int) -> bool:
        if kind in RELAYED_EMAIL_BUILDERS:
            return False  # copies of a member's message: no template
        key = (cohort.pk, kind, week_number)
        if key not in self._known:
            self._known[key] = email_template_for(cohort, kind, week_number) is None
        return self._known[key]


def _planned_outcome(cohort: Cohort, planned, templates: _Templates, moment: datetime.datetime) -> ForecastRow:
    """A row dispatch inserts at `moment`: skipped as planned, else (its learner is mailable: the
    rows are planned from enrollments_mailable) sent or waiting for its template."""
    row = dict(cohort_slug=cohort.slug, learner_id=planned.learner_id, kind=planned.kind, week_number=planned.week_number,
               due_at=planned.due_at, planned_status=planned.status)
    if planned.status == Delivery.Status.SKIPPED:
        return ForecastRow(**row, outcome=SKIP, reason_code=planned.reason_code, reason=planned.reason)
    if templates.missing(cohort, planned.kind, planned.week_number):
        return ForecastRow(**row, outcome=WAIT, reason_code=Reason.WAITING_FOR_TEMPLATE, reason=WAITING_REASON)
    return ForecastRow(**row, outcome=SEND, reason_code=planned.reason_code, reason=planned.reason)


def _ledger_outcomes(rows: list[Delivery], templates: _Templates, moment: datetime.datetime | None) -> Iterator[ForecastRow]:
    """Rows in the ledger already that a pass at `moment` (None: each row's next attempt) sends:
    the sender's checks, in its order."""
    enrollments = enrollments_current_of({row.learner_id for row in rows}, {row.cohort_id for row in rows})
    for row in rows:
        cutoff = catch_up_cutoff(moment or row.next_attempt_at)
        common = dict(cohort_slug=row.cohort.slug, learner_id=row.learner_id, kind=row.kind, week_number=row.week_number, due_at=row.due_at)
        if row.due_at < cutoff:
            code = Reason.NO_TEMPLATE if row.reason_code == Reason.WAITING_FOR_TEMPLATE else Reason.TOO_LATE
            yield ForecastRow(**common, outcome=SKIP, reason_code=code, reason=too_late_detail(code))
        elif problem := eligibility_problem(enrollments.get((row.learner_id, row.cohort_id))):
            yield ForecastRow(**common, outcome=SKIP, reason_code=Reason.NOT_MAILABLE, reason=problem)
        elif templates.missing(row.cohort, row.kind, row.week_number):
            yield ForecastRow(**common, outcome=WAIT, reason_code=Reason.WAITING_FOR_TEMPLATE, reason=WAITING_REASON)
        else:
            yield ForecastRow(**common, outcome=SEND, reason_code=row.reason_code, reason=row.reason)


def deliveries_forecast(now: datetime.datetime, until: datetime.datetime | None = None,
                        cohorts: Iterable[Cohort] | None = None) -> list[ForecastRow]:
    """Every row the pass at `now` would touch, with what it would do; with `until`, also the
    rows whose moment comes after `now` and by `until`, as the pass at that moment would find
    them (a template added meanwhile, or a learner who leaves, changes that). Reads only.

    `cohorts`: those whose emails to forecast (default: every cohort that is sending); a
    paused cohort sends nothing, so has no forecast.
    """
    sending = list(cohorts_sending(now))
    if cohorts is not None:
        wanted = {cohort.pk for cohort in cohorts}
        sending = [cohort for cohort in sending if cohort.pk in wanted]
    marks = {mark.cohort_id: mark for mark in CohortPlanning.objects.filter(cohort__in=sending)}
    templates = _Templates()
    forecast: list[ForecastRow] = []
    for cohort in sending:
        _, planned_rows = cohort_rows_missing(cohort, marks.get(cohort.pk), now)
        forecast.extend(_planned_outcome(cohort, planned, templates, now) for planned in planned_rows)
    in_ledger = list(rows_to_queue(now).filter(cohort__in=sending).select_related("cohort"))
    forecast.extend(_ledger_outcomes(in_ledger, templates, now))
    if until is not None and until > now:
        forecast.extend(_later(sending, now, until, {(row.cohort_slug, row.learner_id, row.kind, row.week_number) for row in forecast}, templates))
    forecast.sort(key=lambda row: (row.due_at, row.cohort_slug, row.kind, row.week_number, row.learner_id))
    return forecast


def _later(cohorts: list[Cohort], now, until, seen: set, templates: _Templates) -> Iterator[ForecastRow]:
    """Rows whose moment comes after `now`, by `until`: each as the pass at its moment plans it
    (on time, so never too late; planned at `until` only to find them)."""
    for cohort in cohorts:
        for planned in cohort_rows_due_between(cohort, now, until):
            if planned.due_at <= now or (cohort.slug, planned.learner_id, planned.kind, planned.week_number) in seen:
                continue
            if planned.reason_code == Reason.TOO_LATE:  # late only as seen from `until`; at its moment, on time
                planned = planned._replace(status=Delivery.Status.PENDING, reason_code=Reason.NONE, reason="")
            yield _planned_outcome(cohort, planned, templates, planned.due_at)
    waiting = Delivery.objects.filter(
        cohort__in=cohorts, status=Delivery.Status.PENDING, next_attempt_at__gt=now, next_attempt_at__lte=until
    ).select_related("cohort")
    yield from _ledger_outcomes(list(waiting), templates, None)  # tried again in the window, each at its moment


def forecast_lines(rows: Iterable[ForecastRow]) -> list[ForecastLine]:
    """The rows counted per email, outcome and reason, in order of first due moment."""
    groups: dict[tuple, list[ForecastRow]] = {}
    for row in rows:
        groups.setdefault((row.cohort_slug, row.kind, row.week_number, row.outcome, row.reason_code, row.reason), []).append(row)
    lines = [
        ForecastLine(*key, count=len(members), first_due=min(r.due_at for r in members), last_due=max(r.due_at for r in members))
        for key, members in groups.items()
    ]
    return sorted(lines, key=lambda line: (line.first_due, line.cohort_slug, line.kind, line.week_number, line.outcome))


WEEK_AHEAD = datetime.timedelta(days=7)


def cohort_week_ahead(cohort: Cohort, now: datetime.datetime) -> dict:
    """The cohort page's forecast: what the pass at `now` would do ("due now") and what falls due
    after it within WEEK_AHEAD, per email, outcome and reason. Empty while sending is paused."""
    rows = deliveries_forecast(now, until=now + WEEK_AHEAD, cohorts=[cohort])
    return {
        "due_now": forecast_lines(row for row in rows if row.due_at <= now),
        "later": forecast_lines(row for row in rows if row.due_at > now),
        "until": now + WEEK_AHEAD,
    }
