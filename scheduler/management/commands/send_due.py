import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from scheduler.forecast import OUTCOME_LABELS, SEND, SKIP, WAIT
from scheduler.planning import deliveries_dispatch, deliveries_overdue_check
from scheduler.sending import deliveries_send


class Command(BaseCommand):
    help = (
        "One whole pass of the scheduler in this process, no worker needed: put what fell due in the "
        "ledger, then send it. Safe beside the workers or another send_due: each email goes once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", help="Act as if it were this moment (ISO 8601, e.g. 2026-11-30T09:00:00+00:00).")
        parser.add_argument("--dry-run", action="store_true", help="Print what the pass would do, per cohort and email: send, skip (and why) or wait for a template; change nothing.")

    def handle(self, *args, now=None, dry_run=False, **options):
        moment = self._moment(now)
        if dry_run:
            self._forecast(moment)
            return
        report = deliveries_dispatch(moment, overdue_check=False)
        for (slug, kind, week_number), count in sorted(report.ready.items()):
            self.stdout.write(f"To send: {slug} {self._what(kind, week_number)}: {count}")
        planned_skipped = 0
        for (slug, kind, week_number, status), count in sorted(report.planned.items()):
            if status == "skipped":
                planned_skipped += count
                self.stdout.write(f"Skipped: {slug} {self._what(kind, week_number)}: {count}")
        if not report.ready and not planned_skipped:
            self.stdout.write("Nothing is due.")
        # Skipped as planned count with those the sender skips: the total is every row skipped.
        totals = {"sent": 0, "failed": 0, "skipped": planned_skipped, "retrying": 0, "released": 0}
        for chunk in report.chunks:
            result = deliveries_send(chunk, now=moment)
            for name in totals:
                totals[name] += getattr(result, name)
        # "waiting": given back unsent, for a template still missing or a fault that paused sending.
        labels = {"released": "waiting"}
        self.stdout.write(", ".join(f"{count} {labels.get(name, name)}" for name, count in totals.items()) + ".")
        if report.ambiguous:
            self.stdout.write(f"{report.ambiguous} interrupted during the provider call: see the cohort's failed rows.")
        # Checked once this pass has sent what it could: rows it just sent are not overdue.
        deliveries_overdue_check(moment)

    def _forecast(self, moment):
        """The dry run: the forecast of this pass (scheduler/forecast.py), one line per email,
        outcome and reason, then the totals."""
        lines = deliveries_dispatch(moment, dry_run=True).forecast
        totals = dict.fromkeys(OUTCOME_LABELS, 0)
        for line in sorted(lines, key=lambda line: (line.cohort_slug, line.outcome, line.kind, line.week_number, line.reason)):
            because = f" ({line.reason})" if line.outcome != SEND and line.reason else ""
            self.stdout.write(f"{OUTCOME_LABELS[line.outcome]}: {line.cohort_slug} {line.email}: {line.count}{because}")
            totals[line.outcome] += line.count
        if not lines:
            self.stdout.write("Nothing is due.")
            return
        self.stdout.write(f"Would send {totals[SEND]}, skip {totals[SKIP]}, wait {totals[WAIT]} (for a template).")

    @staticmethod
    def _what(kind: str, week_number: int) -> str:
        return f"week {week_number}" if kind == "week" else kind.replace("_", " ")

    @staticmethod
    def _moment(value: str | None) -> datetime.datetime:
        if not value:
            return timezone.now()
        moment = parse_datetime(value)
        if moment is None:
            raise CommandError(f"--now must be an ISO 8601 moment like 2026-11-30T09:00:00+00:00, not {value!r}.")
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, datetime.UTC)
        return moment
