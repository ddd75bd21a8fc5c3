"""Importing learners into a cohort from a CSV file (admin page and `manage.py import_learners`).

Columns: email, first_name, timezone, experience, wants_group (a header row names them;
only email, timezone and experience are required). Every row is checked; a refused row
is reported with its number and reason and changes nothing.

Consent: an imported address is mailed a confirmation link, like a signup, unless the
organizer marks the file as already confirmed; that vouches only for addresses new to us.
An existing learner with no current enrollment in the course gets a pending one and a
confirmation link: a person who left, unsubscribed or erased their data is never put back
into the course by an organizer.
"""

import csv
import datetime
import io
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from cohorts.models import Cohort
from cohorts.selectors import cohort_has_groups
from signups.models import Enrollment, Experience, Learner, Suppression, email_digest, email_normalize, timezone_names
from cohorts.services import cohort_lock
from signups.groups import enrollment_group_place
from signups.selectors import cohort_seats_taken
from signups.services import signup_email_send

COLUMNS = ("email", "first_name", "timezone", "experience", "wants_group")
REQUIRED_COLUMNS = {"email", "timezone", "experience"}
WANTS_GROUP_VALUES = {"": True, "yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False, "0": False}


class ImportFileError(Exception):
    """The file as a whole cannot be read (not CSV, or required columns missing)."""


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # (row number, email, reason)
    dry_run: bool = False

    @property
    def total(self) -> int:
        return self.added + self.updated + len(self.refused)


def learner_rows_read(text: str) -> list[tuple[int, dict[str, str]]]:
    """The rows of a learners CSV, numbered as a spreadsheet shows them (the header is row 1)."""
    text = text.lstrip("\ufeff")  # spreadsheets often start their CSV with a byte-order mark
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = [name.strip().lower() for name in reader.fieldnames or []]
    except csv.Error as error:
        raise ImportFileError(f"This is not a CSV file we can read: {error}") from None
    missing = REQUIRED_COLUMNS - set(header)
    if missing:
        raise ImportFileError(
            f"The header row must name the columns {', '.join(COLUMNS)}; missing: {', '.join(sorted(missing))}."
        )
    reader.fieldnames = header
    try:
        return [
            (number, {column: (row.get(column) or "").strip() for column in COLUMNS})
            for number, row in enumerate(reader, start=2)
        ]
    except csv.Error as error:
        raise ImportFileError(f"Row {reader.line_num} is not valid CSV: {error}") from None


def _row_problem(row: dict[str, str]) -> str | None:
    try:
        validate_email(row["email"])
    except ValidationError:
        return f"{row['email']!r} is not a valid email address" if row["email"] else "the email is empty"
    if row["timezone"] not in timezone_names():
        return f"{row['timezone']!r} is not a time zone (use an IANA name like Europe/Lisbon)" if row["timezone"] else "the time zone is empty"
    if row["experience"].lower() not in Experience.values:
        return f"experience must be one of {', '.join(Experience.values)}, not {row['experience']!r}"
    if row["wants_group"].lower() not in WANTS_GROUP_VALUES:
        return f"wants_group must be yes or no, not {row['wants_group']!r}"
    return None


def learners_import(cohort: Cohort, text: str, confirmed: bool, now: datetime.datetime, dry_run: bool = False) -> ImportReport:
    """Import learners from CSV text into `cohort`; return what was added, updated and refused.

    Transactional: all accepted rows are saved together, or (dry_run) none at all; the
    report is the same either way, which is what the admin's preview shows. Confirmation
    emails go out after the commit, never in a dry run. Raises ImportFileError.
    """
    rows = learner_rows_read(text)
    report = ImportReport(dry_run=dry_run)
    emails = {email_normalize(row["email"]) for _, row in rows}
    to_confirm: list[tuple[Learner, Enrollment]] = []
    seen: dict[str, int] = {}
    with transaction.atomic():
        # Everything the import decides on is read here, under the learners' locks (taken in
        # id order, so two imports never wait for each other): an unsubscribe, a pause or an
        # erasure that lands during a long import waits for it, or is seen by it; never undone.
        known = {
            learner.email: learner
            for learner in Learner.objects.select_for_update().filter(email__in=emails).order_by("pk")
        }
        current = {
            enrollment.learner_id: enrollment
            for enrollment in Enrollment.objects.filter(
                learner__in=list(known.values()), course_id=cohort.course_id, status__in=Enrollment.CURRENT
            ).select_related("cohort")
        }
        suppressed = set(
            Suppression.objects.filter(email_digest__in=[email_digest(email) for email in emails]).values_list(
                "email_digest", flat=True
            )
        )
        cohort = cohort_lock(cohort.pk)  # after the learners: the lock order (signups.services)
        seats_left = None if cohort.capacity is None else max(0, cohort.capacity - cohort_seats_taken(cohort, now))
        groups_formed = cohort_has_groups(cohort)
        for number, row in rows:
            email = email_normalize(row["email"])
            problem = _row_problem(row)
            if problem is None and email in seen:
                problem = f"the same address is on row {seen[email]}"
            if problem is None and email_digest(email) in suppressed:
                problem = "this address unsubscribed or deleted its data: only its owner can sign up again"
            enrollment = current.get(known[email].pk) if email in known else None
            if problem is None and enrollment is not None and enrollment.cohort_id != cohort.pk:
                where = enrollment.cohort.name if enrollment.cohort else "the waitlist"
                problem = f"already enrolled in {where}: use the admin action 'move to cohort' instead"
            if problem is None and enrollment is None and seats_left == 0:
                problem = f"{cohort.name} is full (capacity {cohort.capacity})"
            if problem:
                report.refused.append((number, row["email"], problem))
                continue
            seen[email] = number
            if enrollment is None and seats_left is not None:
                seats_left -= 1
            learner, enrollment, added = _row_save(cohort, email, row, known.get(email), enrollment, confirmed, now)
            report.added += added
            report.updated += not added
            if enrollment.status == Enrollment.Status.PENDING and learner.confirmation_sent_at == now:
                to_confirm.append((learner, enrollment))
            elif enrollment.status == Enrollment.Status.ACTIVE and groups_formed:
                enrollment_group_place(enrollment, now)  # when the cohort's groups are formed already
        if dry_run:
            transaction.set_rollback(True)
    if not dry_run:
        for learner, enrollment in to_confirm:
            signup_email_send(learner, enrollment)
    return report


def _row_save(cohort, email, row, learner, enrollment, confirmed, now) -> tuple[Learner, Enrollment, bool]:
    added = learner is None
    if added:
        learner = Learner(email=email)
    learner.first_name = row["first_name"] or learner.first_name
    learner.timezone = row["timezone"]
    learner.experience = row["experience"].lower()
    wants_group = WANTS_GROUP_VALUES[row["wants_group"].lower()]
    # The organizer vouches for addresses that never confirmed with us: new ones, or ones
    # whose confirmation is still pending. Never for someone who confirmed once and left.
    vouched = confirmed and not learner.is_confirmed
    if vouched:
        learner.confirmed_at = now
    if enrollment is None:
        status = Enrollment.Status.ACTIVE if vouched else Enrollment.Status.PENDING
        if status == Enrollment.Status.PENDING:
            learner.confirmation_sent_at = now
        learner.save()
        enrollment = Enrollment.objects.create(
            learner=learner, course=cohort.course, cohort=cohort, status=status, wants_group=wants_group,
            mailable_since=now if status == Enrollment.Status.ACTIVE else None,
        )
    else:
        learner.save()
        enrollment.wants_group = wants_group
        if vouched and enrollment.status == Enrollment.Status.PENDING:
            enrollment.status = Enrollment.Status.ACTIVE
            enrollment.mailable_since = now
        enrollment.save(update_fields=["wants_group", "status", "mailable_since", "updated_at"])
    return learner, enrollment, added
