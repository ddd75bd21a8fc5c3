from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from cohorts.selectors import cohort_by_slug
from signups.imports import ImportFileError, learners_import


class Command(BaseCommand):
    help = (
        "Import learners into a cohort from a CSV file with the columns "
        "email, first_name, timezone, experience, wants_group. Imported learners confirm by email "
        "unless --confirmed says the file's new addresses have already opted in."
    )

    def add_arguments(self, parser):
        parser.add_argument("cohort_slug")
        parser.add_argument("csv_file", type=Path)
        parser.add_argument("--confirmed", action="store_true", help="The new addresses in the file have already opted in.")
        parser.add_argument("--dry-run", action="store_true", help="Check every row and report, but save nothing.")

    def handle(self, *args, cohort_slug, csv_file, confirmed, dry_run, **options):
        cohort = cohort_by_slug(cohort_slug)
        if cohort is None:
            raise CommandError(f"There is no cohort with the slug {cohort_slug!r}.")
        try:
            text = csv_file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"Cannot read {csv_file}: {error}") from None
        try:
            report = learners_import(cohort, text, confirmed=confirmed, now=timezone.now(), dry_run=dry_run)
        except ImportFileError as error:
            raise CommandError(str(error)) from None
        prefix = "Dry run, nothing saved: " if dry_run else ""
        self.stdout.write(f"{prefix}{report.added} added, {report.updated} updated, {len(report.refused)} refused.")
        for number, email, reason in report.refused:
            self.stdout.write(f"  row {number} ({email or 'no email'}): {reason}")
