import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from scheduler.planning import deliveries_dispatch
from scheduler.sending import deliveries_send


class Command(BaseCommand):
    help = (
        "One whole pass of the scheduler in this process, no worker needed: put what fell due in the "
        "ledger, then send it. Safe beside the workers or another send_due: each email goes once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", help="Act as if it were this moment (ISO 8601, e.g. 2026-11-30T09:00:00+00:00).")
        parser.add_argument("--dry-run", action="store_true", help="Print what would be sent, per cohort, week and email; change nothing.")

    def handle(self, *args, now=None, dry_run=False, **options):
        moment = self._moment(now)
        report = deliveries_dispatch(moment, dry_run=dry_run)
        prefix = "Would send" if dry_run else "To send"
        for (slug, kind, week_number), count in sorted(report.ready.items()):
            self.stdout.write(f"{prefix}: {slug} {self._what(kind, week_number)}: {count}")
        for (slug, kind, week_number, status), count in sorted(report.planned.items()):
            if status == "skipped":
                self.stdout.write(f"{'Would skip' if dry_run else 'Skipped'}: {slug} {self._what(kind, week_number)}: {count}")
        if not report.ready and not any(status == "skipped" for *_, status in report.planned):
            self.stdout.write("Nothing is due.")
        if dry_run:
            return
        totals = {"sent": 0, "failed": 0, "skipped": 0, "retrying": 0, "released": 0}
        for chunk in report.chunks:
            result = deliveries_send(chunk, now=moment)
            for name in totals:
                totals[name] += getattr(result, name)
        # "waiting": given back unsent, for a template still missing or a fault that paused sending.
        labels = {"released": "waiting"}
        self.stdout.write(", ".join(f"{count} {labels.get(name, name)}" for name, count in totals.items()) + ".")
        if report.ambiguous:
            self.stdout.write(f"{report.ambiguous} interrupted during the provider call: see the cohort's failed rows.")

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
