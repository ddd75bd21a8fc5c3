from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from cohorts.services import demo_load
from scheduler.demo import demo_history_make
from scheduler.services import email_templates_install_defaults
from scheduler.simulation import SimulationRefused
from scheduler.templating import TemplateProblem


class Command(BaseCommand):
    help = (
        "Install the demo course, A Gentle Introduction to Python, two cohorts of it and its default "
        "emails (every week, welcome, group introduction, course end). Safe to run again: changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--with-history", action="store_true",
            help="Development (the outbox) only: give the running round, once, learners, groups, the emails sent since "
            "it started and the provider's simulated events (scheduler/demo.py), so the admin has something to show.",
        )

    def handle(self, *args, with_history=False, **options):
        try:
            result = demo_load(today=timezone.now().date())
            emails_added = email_templates_install_defaults(result.course)
        except ValidationError as error:
            raise CommandError(f"The demo course file is invalid: {'; '.join(error.messages)}") from None
        except TemplateProblem as problem:
            raise CommandError(f"A default email does not compile: {problem}") from None
        course = result.course
        self.stdout.write(f"Course {course.title!r}: {'created' if result.course_created else 'already there, kept'}")
        for cohort in result.cohorts_created:
            self.stdout.write(f"Cohort {cohort.name!r} ({cohort.slug}): created, starts {cohort.start_date:%a %d %b %Y}")
        for cohort in result.cohorts_kept:
            self.stdout.write(f"Cohort {cohort.name!r} ({cohort.slug}): already there, kept")
        self.stdout.write(f"Emails: {emails_added} default templates added" if emails_added else "Emails: all there, kept")
        if with_history:
            self._history(result.cohorts_created + result.cohorts_kept)

    def _history(self, cohorts):
        running = [cohort for cohort in cohorts if cohort.start_date <= timezone.now().date()]
        for cohort in running:
            try:
                history = demo_history_make(cohort, timezone.now())
            except SimulationRefused as error:
                self.stdout.write(f"History of {cohort.slug}: not made, {error}")
                continue
            if history is None:
                self.stdout.write(f"History of {cohort.slug}: it has learners already, kept")
            else:
                self.stdout.write(
                    f"History of {cohort.slug}: {history.learners} learners, {history.emails} emails sent to the outbox, "
                    f"{history.events} simulated tracking events"
                )
