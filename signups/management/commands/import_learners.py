from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from cohorts.selectors import cohort_by_slug
from signups.imports import (
    BatchOutcome, ImportFileError, import_file_decode, import_file_size_check, import_rows_count, learners_import,
)


class Command(BaseCommand):
    help = (
        "Import learners into a cohort from a CSV file with the columns "
        "email, first_name, timezone, experience, wants_group. Imported learners confirm by email "
        "unless --confirmed says the file's new addresses have already opted in. Rows are saved in "
        "batches (LEARNER_IMPORT_BATCH_SIZE), each its own transaction; the progress goes to stderr."
    )

    def add_arguments(self, parser):
        parser.add_argument("cohort_slug")
        parser.add_argument("csv_file", type=Path)
        parser.add_argument("--confirmed", action="store_true", help="The new addresses in the file have already opted in.")
        parser.add_argument("--dry-run", action="store_true", help="Check every row and report, but save nothing.")

    def handle(self, *args, cohort_slug, csv_file, confirmed, dry_run, verbosity, **options):
        cohort = cohort_by_slug(cohort_slug)
        if cohort is None:
            raise CommandError(f"There is no cohort with the slug {cohort_slug!r}.")
        try:
            import_file_size_check(csv_file.stat().st_size)
            text = import_file_decode(csv_file.read_bytes())
            total = import_rows_count(text)
        except OSError as error:
            raise CommandError(f"Cannot read {csv_file}: {error}") from None
        except ImportFileError as error:
            raise CommandError(f"{csv_file}: {error}") from None
        with tqdm(
            total=total, unit="row", desc="Checking" if dry_run else "Importing", file=_Unended(self.stderr),
            disable=verbosity == 0, dynamic_ncols=True,
        ) as bar:
            report = learners_import(cohort, text, confirmed=confirmed, now=timezone.now(), dry_run=dry_run, progress=_Bar(bar))
        prefix = "Dry run, nothing saved: " if dry_run else ""
        self.stdout.write(f"{prefix}{report.added} added, {report.updated} updated, {len(report.refused)} refused.")
        for number, email, reason in report.refused:
            self.stdout.write(f"  row {number} ({email or 'no email'}): {reason}")


class _Bar:
    """The progress bar follows the import batch by batch (signups.imports.ImportProgress)."""

    def __init__(self, bar: tqdm):
        self.bar = bar
        self.added = self.updated = self.refused = 0

    def batch_claim(self, rows_before: int) -> bool:
        return True

    def batch_done(self, rows_done: int, outcome: BatchOutcome) -> None:
        self.added += outcome.added
        self.updated += outcome.updated
        self.refused += len(outcome.refused)
        self.bar.set_postfix({"added": self.added, "updated": self.updated, "refused": self.refused}, refresh=False)
        self.bar.update(outcome.rows)


class _Unended:
    """A stream for tqdm over the command's stderr: tqdm redraws its line with carriage returns,
    which OutputWrapper would end with a newline each."""

    def __init__(self, wrapper):
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, ending="")

    def flush(self) -> None:
        self.wrapper.flush()
