from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from cohorts.models import Cohort
from scheduler.simulation import Rates, SimulationRefused, tracking_events_simulate


def _share(text: str) -> float:
    return float(text)


class Command(BaseCommand):
    help = (
        "Development only (the outbox): make up the provider's tracking events for the course emails the outbox "
        "received (delivered, opened, clicked, a few soft and hard bounces), post them through the Postmark "
        "tracking webhook and apply them. Deterministic for a seed; running it again adds only what is new."
    )

    def add_arguments(self, parser):
        defaults = Rates()
        parser.add_argument("--cohort", metavar="SLUG", help="Only this cohort's emails (default: every cohort's).")
        parser.add_argument("--seed", type=int, default=1, help="Another seed makes up other events (default: 1).")
        parser.add_argument("--opened", type=_share, default=defaults.opened, help=f"Share of the emails opened (default: {defaults.opened}).")
        parser.add_argument("--clicked", type=_share, default=defaults.clicked, help=f"Share clicked, opened too (default: {defaults.clicked}).")
        parser.add_argument("--bounced", type=_share, default=defaults.bounced, help=f"Share bounced, never delivered (default: {defaults.bounced}).")
        parser.add_argument("--hard", type=_share, default=defaults.hard, help=f"Of the bounces, the share that are hard (default: {defaults.hard}).")

    def handle(self, *args, cohort=None, seed=1, opened, clicked, bounced, hard, **options):
        cohort_ids = None
        if cohort is not None:
            found = Cohort.objects.filter(slug=cohort).values_list("pk", flat=True).first()
            if found is None:
                raise CommandError(f"No cohort {cohort!r}.")
            cohort_ids = [found]
        try:
            report = tracking_events_simulate(
                timezone.now(), cohort_ids, seed=seed, rates=Rates(opened=opened, clicked=clicked, bounced=bounced, hard=hard)
            )
        except (SimulationRefused, ValueError) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"Emails in the outbox: {report.emails}; events posted to /anymail/postmark/tracking/: {report.posted}, "
            f"new: {report.stored}, applied: {report.applied}"
        )
        if report.not_yet:
            self.stdout.write(f"Still to come: {report.not_yet} events (opens and clicks of recent emails); run it again later.")
        if report.refused:
            raise CommandError(f"The webhook view refused {report.refused} events: see its log lines above.")
