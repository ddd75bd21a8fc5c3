"""Importing learners into a cohort from a CSV file (admin page and `manage.py import_learners`).

Columns: email, first_name, timezone, experience, wants_group (a header row names them;
only email, timezone and experience are required). Every row is checked; a refused row
is reported with its number and reason and changes nothing. A file that cannot be read as
a whole (too large, not UTF-8, empty, no header naming the columns) is refused whole.

Consent: an imported address is mailed a confirmation link, like a signup, unless the
organizer marks the file as already confirmed; that vouches only for addresses new to us.
An existing learner with no current enrollment in the course gets a pending one and a
confirmation link: a person who left, unsubscribed or erased their data is never put back
into the course by an organizer.

Scale: the rows are read as a stream and saved in batches (LEARNER_IMPORT_BATCH_SIZE), each
batch in a transaction of its own, so a file of 50,000 rows never holds the learners' or the
cohort's locks (on SQLite: the database's write lock) for longer than one batch: signups go
on meanwhile. A batch takes its locks in the order signups.services documents (learner
rows, then the cohort, then enrollments) and re-reads the cohort's seats under its lock.
Confirmation emails for a batch go out once it has committed (a worker that dies in between
leaves those learners pending and unmailed: "Re-send the confirmation email" reaches them).
Whether a row is a repeat of an earlier one depends on the file alone, so an import resumed
half-way (import_jobs.py) decides every row as the whole run would have.
"""

import csv
import datetime
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from cohorts.models import Cohort
from cohorts.selectors import cohort_has_groups
from cohorts.services import cohort_lock
from signups.groups import enrollment_group_place
from signups.models import Enrollment, Experience, Learner, Suppression, email_digest, email_normalize, timezone_names
from signups.selectors import cohort_seats_taken
from signups.services import signup_email_send

COLUMNS = ("email", "first_name", "timezone", "experience", "wants_group")
REQUIRED_COLUMNS = {"email", "timezone", "experience"}
WANTS_GROUP_VALUES = {"": True, "yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False, "0": False}
# C0 controls but tab, DEL and C1 controls: nothing a name, an address or a time zone contains,
# and NUL is more: PostgreSQL refuses it in text.
CONTROL_CHARACTER = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
SUPPRESSED = "this address unsubscribed or deleted its data: only its owner can sign up again"
# A batch that met a concurrent signup's new address (a unique email) is tried again this often.
BATCH_ATTEMPTS = 3


class ImportFileError(Exception):
    """The file as a whole cannot be read (too large, not UTF-8, empty, not CSV, required
    columns missing); the message says so, for the organizer."""


@dataclass(frozen=True)
class ImportRow:
    """One row of the file, with what is wrong with it on its own (before the database is asked)."""

    number: int  # as a spreadsheet shows it: the header is row 1
    values: dict[str, str]
    email: str  # normalized
    problem: str | None


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # (row number, email, reason)
    dry_run: bool = False
    rows: int = 0  # rows read, this run (a resumed run skips those saved before)
    stopped: bool = False  # another run took over (import_jobs.py): this one stopped before the end

    @property
    def total(self) -> int:
        return self.added + self.updated + len(self.refused)


@dataclass
class BatchOutcome:
    """What one batch did (or, in a dry run, would do)."""

    rows: int
    added: int = 0
    updated: int = 0
    refused: list[tuple[int, str, str]] = field(default_factory=list)
    to_confirm: list[tuple[Learner, Enrollment]] = field(default_factory=list)


class ImportProgress(Protocol):
    """Who follows an import batch by batch: the command's progress bar, a job's row (import_jobs.py)."""

    def batch_claim(self, rows_before: int) -> bool:
        """Before a batch (inside its transaction, first, when it saves): False stops the import
        there, with nothing of that batch saved. `rows_before` rows of the file are done."""

    def batch_done(self, rows_done: int, outcome: BatchOutcome) -> None:
        """After a batch (inside its transaction, last, when it saves)."""


# --- Reading the file -------------------------------------------------------------------------


def import_file_decode(data: bytes) -> str:
    """The text of a learners file as uploaded. Raises ImportFileError when it is larger than
    LEARNER_IMPORT_MAX_BYTES, empty, or not UTF-8 (a byte-order mark, which spreadsheets often
    write, is allowed)."""
    import_file_size_check(len(data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportFileError(
            f"The file is not UTF-8 text (byte {error.start + 1} is not). Save it as “CSV UTF-8” and try again."
        ) from None
    if not text.strip():
        raise ImportFileError("The file is empty.")
    return text


def import_file_size_check(size: int) -> None:
    """Refuse a file larger than LEARNER_IMPORT_MAX_BYTES (before reading it, when its size is known)."""
    limit = settings.LEARNER_IMPORT_MAX_BYTES
    if size > limit:
        raise ImportFileError(f"The file is {_size(size)}; the largest accepted is {_size(limit)}. Split it in parts.")


def _size(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{size:,} bytes"


def import_file_check(text: str) -> None:
    """Refuse at once what can be known of the whole file cheaply: a header row that names
    the required columns, and at least one row after it. Reads two rows, not the file.
    Raises ImportFileError."""
    records = _records(text)
    _columns(records)
    if next(records, None) is None:
        raise ImportFileError("The file has a header row but no learners.")


def import_rows(text: str) -> Iterator[ImportRow]:
    """The file's rows, in order, each with its own problem or None: a control character, an
    invalid address, time zone, experience or wants_group, or an address on an earlier row.
    Rows with nothing in them are left out. Raises ImportFileError (the header)."""
    records = _records(text)
    columns = _columns(records)
    first_row_of: dict[str, int] = {}
    for number, record in records:
        if isinstance(record, csv.Error):
            yield ImportRow(number, {}, "", f"the row is not valid CSV: {record}")
            continue
        values = {
            column: record[index].strip() if index is not None and index < len(record) else "" for column, index in columns.items()
        }
        email = email_normalize(values["email"])
        problem = _control_character_problem(record, columns) or _row_problem(values)
        if problem is None:
            # The file alone decides which row of an address counts (its first valid one):
            # a resumed import decides as the whole run did.
            if email in first_row_of:
                problem = f"the same address is on row {first_row_of[email]}"
            else:
                first_row_of[email] = number
        yield ImportRow(number, values, email, problem)


def import_rows_count(text: str) -> int:
    """How many rows import_rows yields, read quicker (nothing is checked)."""
    records = _records(text)
    _columns(records)
    return sum(1 for _ in records)


def _records(text: str) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """(row number, fields or the CSV error of that row) of every row with something in it."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))  # spreadsheets often start their CSV with a byte-order mark
    number = 0
    while True:
        number += 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # the reader goes on with the next row
            yield number, error
            continue
        if any(value.strip() for value in record):
            yield number, record


def _columns(records: Iterator) -> dict[str, int | None]:
    """The position of each column in the header row (the file's first row with something in
    it); None for an optional column it does not name."""
    _, header = next(records, (1, []))
    if isinstance(header, csv.Error):
        raise ImportFileError(f"The header row is not valid CSV: {header}")
    names = [name.strip().lower() for name in header]
    missing = REQUIRED_COLUMNS - set(names)
    if missing:
        raise ImportFileError(
            f"The header row must name the columns {', '.join(COLUMNS)}; missing: {', '.join(sorted(missing))}."
        )
    return {column: names.index(column) if column in names else None for column in COLUMNS}


def _control_character_problem(record: list[str], columns: dict[str, int | None]) -> str | None:
    names = {index: column for column, index in columns.items() if index is not None}
    for index, value in enumerate(record):
        if found := CONTROL_CHARACTER.search(value):
            where = f"the {names[index]} column" if index in names else f"column {index + 1}"
            character = "a NUL byte (U+0000)" if found.group() == "\x00" else f"a control character (U+{ord(found.group()):04X})"
            return f"{where} contains {character}: remove it"
    return None


def _row_problem(values: dict[str, str]) -> str | None:
    # Reasons never quote the address: they are shown to staff who may not see learners.
    try:
        validate_email(values["email"])
    except ValidationError:
        return "not a valid email address" if values["email"] else "the email is empty"
    if values["timezone"] not in timezone_names():
        return f"{_quoted(values['timezone'])} is not a time zone (use an IANA name like Europe/Lisbon)" if values["timezone"] else "the time zone is empty"
    if values["experience"].lower() not in Experience.values:
        return f"experience must be one of {', '.join(Experience.values)}, not {_quoted(values['experience'])}"
    if values["wants_group"].lower() not in WANTS_GROUP_VALUES:
        return f"wants_group must be yes or no, not {_quoted(values['wants_group'])}"
    return None


def _quoted(value: str, limit: int = 40) -> str:
    # A reason is shown and stored for each refused row: a runaway cell is cut short.
    return repr(value if len(value) <= limit else value[:limit] + "…")


def shown_email(row: ImportRow) -> str:
    """The address as the file spells it, fit to show and to store: control characters written
    out (\\x00), and no longer than an address can be."""
    text = CONTROL_CHARACTER.sub(lambda found: f"\\x{ord(found.group()):02x}", row.values.get("email", ""))
    return text if len(text) <= 254 else text[:253] + "…"


# --- Importing ----------------------------------------------------------------------------------


def learners_import(
    cohort: Cohort, text: str, confirmed: bool, now: datetime.datetime, dry_run: bool = False,
    *, skip_rows: int = 0, progress: ImportProgress | None = None,
) -> ImportReport:
    """Import learners from CSV text into `cohort`; return what was added, updated and refused.

    In batches of LEARNER_IMPORT_BATCH_SIZE rows, each batch saved in a transaction of its own
    (all of its accepted rows, or none), its confirmation emails sent once it has committed.
    A dry run saves nothing, takes no lock and sends nothing, and reports what the import
    would do now (the admin's preview). `skip_rows` resumes after that many rows saved
    before; `progress` is told of each batch and may stop the import (ImportProgress).
    Idempotent by address: a row whose learner exists updates it, never adds a second one.
    Raises ImportFileError.
    """
    report = ImportReport(dry_run=dry_run)
    seats = _DryRunSeats(cohort, now) if dry_run else None
    rows_done = skip_rows
    for batch in _batches(import_rows(text), skip_rows, settings.LEARNER_IMPORT_BATCH_SIZE):
        if dry_run:
            if progress is not None and not progress.batch_claim(rows_done):
                report.stopped = True
                break
            outcome = _batch_check(cohort, batch, seats)
            rows_done += len(batch)
            if progress is not None:
                progress.batch_done(rows_done, outcome)
        else:
            outcome = _batch_save_attempts(cohort, batch, confirmed, now, progress, rows_done)
            if outcome is None:
                report.stopped = True
                break
            rows_done += len(batch)
            for learner, enrollment in outcome.to_confirm:
                signup_email_send(learner, enrollment)
        report.rows += outcome.rows
        report.added += outcome.added
        report.updated += outcome.updated
        report.refused.extend(outcome.refused)
    return report


def _batches(rows: Iterator[ImportRow], skip: int, size: int) -> Iterator[list[ImportRow]]:
    batch: list[ImportRow] = []
    for index, row in enumerate(rows):
        if index < skip:
            continue  # read all the same: which row of an address counts depends on those before
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class _Known:
    """What the database says about a batch's addresses."""

    learners: dict[str, Learner]  # by address
    current: dict[int, Enrollment]  # by learner id: their current enrollment in the cohort's course
    suppressed: set[str]  # digests


def _known(cohort: Cohort, rows: list[ImportRow], lock: bool) -> _Known:
    emails = {row.email for row in rows if row.problem is None}
    learners = Learner.objects.filter(email__in=emails).order_by("pk")
    if lock:
        # Everything a batch decides on is read under the learners' locks (taken in id order,
        # so two imports never wait for each other): an unsubscribe, a pause or an erasure
        # that lands during the batch waits for it, or is seen by it; never undone.
        learners = learners.select_for_update()
    known = {learner.email: learner for learner in learners}
    current = {
        enrollment.learner_id: enrollment
        for enrollment in Enrollment.objects.filter(
            learner__in=list(known.values()), course_id=cohort.course_id, status__in=Enrollment.CURRENT
        ).select_related("cohort")
    }
    suppressed = set(
        Suppression.objects.filter(email_digest__in=[email_digest(email) for email in emails]).values_list("email_digest", flat=True)
    )
    return _Known(known, current, suppressed)


def _refusal(row: ImportRow, known: _Known, cohort: Cohort) -> str | None:
    """Why the database refuses a row of its own making (the cohort's seats aside), or None."""
    if row.problem:
        return row.problem
    if email_digest(row.email) in known.suppressed:
        return SUPPRESSED
    learner = known.learners.get(row.email)
    enrollment = known.current.get(learner.pk) if learner else None
    if enrollment is not None and enrollment.cohort_id != cohort.pk:
        where = enrollment.cohort.name if enrollment.cohort else "the waitlist"
        return f"already enrolled in {where}: use the admin action 'move to cohort' instead"
    return None


def _full(cohort: Cohort) -> str:
    return f"{cohort.name} is full (capacity {cohort.capacity})"


class _DryRunSeats:
    """The cohort's free seats through a dry run, which takes none: counted down in memory."""

    def __init__(self, cohort: Cohort, now: datetime.datetime):
        self.left = None if cohort.capacity is None else max(0, cohort.capacity - cohort_seats_taken(cohort, now))

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left == 0:
            return False
        self.left -= 1
        return True


def _batch_check(cohort: Cohort, rows: list[ImportRow], seats: _DryRunSeats) -> BatchOutcome:
    """What saving the batch would do now; reads only (no transaction, no lock)."""
    known = _known(cohort, rows, lock=False)
    outcome = BatchOutcome(rows=len(rows))
    for row in rows:
        problem = _refusal(row, known, cohort)
        learner = known.learners.get(row.email)
        needs_seat = problem is None and (learner is None or learner.pk not in known.current)
        if needs_seat and not seats.take():
            problem = _full(cohort)
        if problem:
            outcome.refused.append((row.number, shown_email(row), problem))
        elif learner is None:
            outcome.added += 1
        else:
            outcome.updated += 1
    return outcome


def _batch_save_attempts(cohort, rows, confirmed, now, progress, rows_before) -> BatchOutcome | None:
    """Save one batch in its own transaction; None when `progress` stopped it. A batch that
    met a unique address inserted by a concurrent signup is rolled back and tried again: it
    then finds that learner and updates it."""
    attempt = 1
    while True:
        try:
            with transaction.atomic():
                if progress is not None and not progress.batch_claim(rows_before):
                    return None
                outcome = _batch_save(cohort, rows, confirmed, now)
                if progress is not None:
                    progress.batch_done(rows_before + len(rows), outcome)
                return outcome
        except IntegrityError:
            if attempt == BATCH_ATTEMPTS:
                raise
            attempt += 1


def _batch_save(cohort: Cohort, rows: list[ImportRow], confirmed: bool, now: datetime.datetime) -> BatchOutcome:
    """Save a batch's accepted rows; the caller holds the transaction. Set-based: a fixed
    number of queries per batch, whatever its size (but for each learner made active in a
    cohort whose groups are formed already: they are placed in one)."""
    outcome = BatchOutcome(rows=len(rows))
    # 1. Learner rows: the batch's known learners are locked (_known); the new ones are inserted
    #    in address order, so two imports inserting the same new addresses never deadlock.
    known = _known(cohort, rows, lock=True)
    problems = {row.number: _refusal(row, known, cohort) for row in rows}
    new_rows = sorted(
        (row for row in rows if problems[row.number] is None and row.email not in known.learners), key=lambda row: row.email
    )
    inserted = {learner.email: learner for learner in Learner.objects.bulk_create([_learner_new(row, confirmed, now) for row in new_rows])}
    # 2. The cohort, after the learners: the lock order (signups.services). Its seats are
    #    counted under its lock: a signup meanwhile waits for this batch, or is counted.
    cohort = cohort_lock(cohort.pk)
    seats_left = None if cohort.capacity is None else max(0, cohort.capacity - cohort_seats_taken(cohort, now))
    groups_formed = cohort_has_groups(cohort)
    # 3. Enrollments.
    changed_learners: list[Learner] = []
    new_enrollments: list[Enrollment] = []
    changed_enrollments: list[Enrollment] = []
    unused: list[int] = []  # learners inserted above for rows that the full cohort then refused
    for row in rows:
        problem = problems[row.number]
        learner = known.learners.get(row.email) or inserted.get(row.email)
        enrollment = known.current.get(learner.pk) if row.email in known.learners else None
        if problem is None and enrollment is None and seats_left is not None:
            if seats_left == 0:
                problem = _full(cohort)
                if row.email in inserted:
                    unused.append(inserted[row.email].pk)
            else:
                seats_left -= 1
        if problem:
            outcome.refused.append((row.number, shown_email(row), problem))
            continue
        if row.email in inserted:
            outcome.added += 1
            enrollment = _enrollment_new(cohort, learner, row, vouched=confirmed, now=now)
            new_enrollments.append(enrollment)
        else:
            outcome.updated += 1
            vouched = _learner_update(learner, row, confirmed, now)
            changed_learners.append(learner)
            if enrollment is None:
                enrollment = _enrollment_new(cohort, learner, row, vouched=vouched, now=now)
                if enrollment.status == Enrollment.Status.PENDING:
                    learner.confirmation_sent_at = now
                new_enrollments.append(enrollment)
            else:
                _enrollment_update(enrollment, row, vouched, now)
                changed_enrollments.append(enrollment)
        if enrollment.status == Enrollment.Status.PENDING and learner.confirmation_sent_at == now:
            outcome.to_confirm.append((learner, enrollment))
    if unused:
        Learner.objects.filter(pk__in=unused).delete()  # never seen outside this transaction
    Learner.objects.bulk_update(changed_learners, LEARNER_FIELDS)
    Enrollment.objects.bulk_create(new_enrollments)
    Enrollment.objects.bulk_update(changed_enrollments, ENROLLMENT_FIELDS)
    if groups_formed:  # a learner active in a cohort whose groups are formed gets one at once
        for enrollment in [*new_enrollments, *changed_enrollments]:
            if enrollment.status == Enrollment.Status.ACTIVE:
                enrollment_group_place(enrollment, now)
    return outcome


LEARNER_FIELDS = ["first_name", "timezone", "experience", "confirmed_at", "confirmation_sent_at", "updated_at"]
ENROLLMENT_FIELDS = ["wants_group", "status", "mailable_since", "updated_at"]


def _learner_new(row: ImportRow, confirmed: bool, now: datetime.datetime) -> Learner:
    """A learner new to us, from its row: the organizer vouches for it (confirmed), or it is
    mailed a confirmation link once the batch commits."""
    return Learner(
        email=row.email, first_name=row.values["first_name"], timezone=row.values["timezone"],
        experience=row.values["experience"].lower(),
        confirmed_at=now if confirmed else None, confirmation_sent_at=None if confirmed else now,
    )


def _learner_update(learner: Learner, row: ImportRow, confirmed: bool, now: datetime.datetime) -> bool:
    """Update a known learner from its row; whether the organizer vouches for their address:
    only for one that never confirmed with us, never for someone who confirmed once and left."""
    learner.first_name = row.values["first_name"] or learner.first_name
    learner.timezone = row.values["timezone"]
    learner.experience = row.values["experience"].lower()
    learner.updated_at = now
    vouched = confirmed and not learner.is_confirmed
    if vouched:
        learner.confirmed_at = now
    return vouched


def _enrollment_new(cohort: Cohort, learner: Learner, row: ImportRow, vouched: bool, now: datetime.datetime) -> Enrollment:
    status = Enrollment.Status.ACTIVE if vouched else Enrollment.Status.PENDING
    return Enrollment(
        learner=learner, course=cohort.course, cohort=cohort, status=status,
        wants_group=WANTS_GROUP_VALUES[row.values["wants_group"].lower()],
        mailable_since=now if status == Enrollment.Status.ACTIVE else None,
    )


def _enrollment_update(enrollment: Enrollment, row: ImportRow, vouched: bool, now: datetime.datetime) -> None:
    enrollment.wants_group = WANTS_GROUP_VALUES[row.values["wants_group"].lower()]
    enrollment.updated_at = now
    if vouched and enrollment.status == Enrollment.Status.PENDING:
        enrollment.status = Enrollment.Status.ACTIVE
        enrollment.mailable_since = now
