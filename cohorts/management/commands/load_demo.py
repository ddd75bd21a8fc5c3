from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from cohorts.services import demo_load


class Command(BaseCommand):
    help = "Install the demo course, A Gentle Introduction to Python, and two cohorts of it. Safe to run again."

    def handle(self, *args, **options):
        try:
            result = demo_load(today=timezone.now().date())
        except ValidationError as error:
            raise CommandError(f"The demo course file is invalid: {'; '.join(error.messages)}") from None
        course = result.course
        self.stdout.write(f"Course {course.title!r}: {'created' if result.course_created else 'already there, kept'}")
        for cohort in result.cohorts_created:
            self.stdout.write(f"Cohort {cohort.name!r} ({cohort.slug}): created, starts {cohort.start_date:%a %d %b %Y}")
        for cohort in result.cohorts_kept:
            self.stdout.write(f"Cohort {cohort.name!r} ({cohort.slug}): already there, kept")
