from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from cohorts.services import demo_load
from scheduler.services import email_templates_install_defaults
from scheduler.templating import TemplateProblem


class Command(BaseCommand):
    help = (
        "Install the demo course, A Gentle Introduction to Python, two cohorts of it and its default "
        "emails (every week, welcome, group introduction, course end). Safe to run again: changes nothing."
    )

    def handle(self, *args, **options):
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
