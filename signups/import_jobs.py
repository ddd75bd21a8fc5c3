"""Imports as background jobs: an organizer's file is stored, previewed by a worker, then applied
by a worker, while the import's admin page shows how far it got (signups.models.LearnerImport).

No request reads the rows: the upload checks only what is cheap (size, UTF-8, the header) and
stores the file; "Apply" queues the apply on the stored file, which never travels back
through the page. Each status change is one conditional UPDATE here, so a late or duplicate
worker changes nothing it should not:

    queued -> previewing -> previewed -> applying -> applied
    any of them -> failed; failed -> queued (preview again) or applying (resume the apply)

Applying is resumable. Each batch (signups.imports) claims its rows inside its own
transaction with `UPDATE ... SET rows_done ... WHERE rows_done = <where it starts>`, and records
its counts in the same transaction: a batch is saved once, and the counts say exactly what was
saved, whether a worker crashes (its message is delivered again: CELERY_TASK_ACKS_LATE), two
runs overlap, or an organizer resumes a job that seemed stuck. The import's row is the first
lock a batch takes; only imports take it, so the lock order of signups.services still holds.
"""

import datetime
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from signups.imports import (
    SUPPRESSED, BatchOutcome, ImportFileError, import_file_check, import_file_decode, import_rows_count, learners_import,
)
from signups.models import LearnerImport

logger = logging.getLogger(__name__)

Status = LearnerImport.Status
# A job that showed no sign of life for this long may be resumed by an organizer: its worker
# may have died (a duplicate run is harmless: see the module's docstring), or it may still wait
# behind a week's emails on the mail queue (then resuming only queues it once more).
STALLED_AFTER = datetime.timedelta(minutes=5)


def learner_import_start(*, cohort, data: bytes, file_name: str, confirmed: bool, user, now: datetime.datetime) -> LearnerImport:
    """Store an uploaded file as an import into `cohort` and queue its preview (after commit).

    Reads no row: checks the size, that the file is UTF-8, and its header. Raises
    ImportFileError, and then stores nothing.
    """
    import_file_check(import_file_decode(data))
    job = LearnerImport.objects.create(
        cohort=cohort, file_name=file_name[:255], file_size=len(data), content=data, confirmed=confirmed,
        started_by=user, progress_at=now,
    )
    _queue("learner_import_preview", job.pk)
    return job


def _queue(task_name: str, import_id: int) -> None:
    from signups import tasks  # tasks call this module

    task = getattr(tasks, task_name)
    transaction.on_commit(lambda: task.apply_async(args=[import_id], queue=settings.DELIVERY_QUEUE))


def learner_import_preview(import_id: int, now: datetime.datetime) -> None:
    """Check every row of a queued import against the database, batch by batch, saving nothing
    and locking nothing; the counts and the first refusals are written as it goes.

    Starts over when run again (a preview saves nothing). Nothing when the import is past
    its preview. A file that cannot be read, or an unexpected error (logged), fails the
    import with a message for the organizer; never raises.
    """
    claimed = LearnerImport.objects.filter(pk=import_id, status__in=[Status.QUEUED, Status.PREVIEWING]).update(
        status=Status.PREVIEWING, rows_done=0, added=0, updated=0, refused=0, refusals=[], error="", progress_at=now
    )
    if not claimed:
        return
    job = LearnerImport.objects.select_related("cohort__course").get(pk=import_id)
    try:
        text = import_file_decode(bytes(job.content))
        LearnerImport.objects.filter(pk=job.pk).update(rows_total=import_rows_count(text))
        report = learners_import(job.cohort, text, job.confirmed, now, dry_run=True, progress=_Progress(job, Status.PREVIEWING))
    except ImportFileError as error:
        _fail(job, Status.PREVIEWING, str(error))
        return
    except Exception:
        logger.exception("The preview of learner import %s failed", job.pk)
        _fail(job, Status.PREVIEWING, _unexpected(job))
        return
    if not report.stopped:
        LearnerImport.objects.filter(pk=job.pk, status=Status.PREVIEWING).update(status=Status.PREVIEWED, progress_at=now)


def learner_import_apply_request(job: LearnerImport, now: datetime.datetime) -> bool:
    """An organizer asks to apply a previewed import: its counts start again from zero and
    the apply is queued (after commit). False, and nothing queued, when it is not previewed
    (being applied or applied already: a second click changes nothing)."""
    changed = LearnerImport.objects.filter(pk=job.pk, status=Status.PREVIEWED).update(
        status=Status.APPLYING, rows_done=0, added=0, updated=0, refused=0, refusals=[], apply_started_at=now, progress_at=now
    )
    if changed:
        _queue("learner_import_apply", job.pk)
    return bool(changed)


def learner_import_apply(import_id: int, now: datetime.datetime) -> None:
    """Save the rows of an import being applied, batch by batch, from the first not saved yet.

    Resumable and safe to run twice (see the module's docstring): nobody is added twice.
    Confirmation emails go out after each batch commits. Empties the stored file once every
    row is done. Nothing when the import is not being applied. An unexpected error (logged,
    Celery's soft time limit too) fails the import, which an organizer may resume; never raises.
    """
    job = LearnerImport.objects.select_related("cohort__course").filter(pk=import_id, status=Status.APPLYING).first()
    if job is None:
        return
    try:
        text = import_file_decode(bytes(job.content))
        progress = _Progress(job, Status.APPLYING)
        report = learners_import(job.cohort, text, job.confirmed, now, skip_rows=job.rows_done, progress=progress)
    except Exception:
        logger.exception("Applying learner import %s failed", job.pk)
        _fail(job, Status.APPLYING, _unexpected(job))
        return
    if not report.stopped:
        LearnerImport.objects.filter(pk=job.pk, status=Status.APPLYING, rows_done=progress.rows_done).update(
            status=Status.APPLIED, finished_at=now, progress_at=now, content=b""
        )


def learner_import_resume(job: LearnerImport, now: datetime.datetime) -> bool:
    """Queue again an import that failed, or that showed no progress for STALLED_AFTER: a
    failed apply goes on from its last saved batch, a failed preview starts over. A run still
    alive meanwhile is harmless (its next batch finds its rows claimed, and stops). False
    when there is nothing to resume."""
    if job.status == Status.FAILED:
        target = Status.APPLYING if job.apply_started_at else Status.QUEUED
        if not LearnerImport.objects.filter(pk=job.pk, status=Status.FAILED).update(status=target, error="", progress_at=now):
            return False
    elif not learner_import_is_stalled(job, now):
        return False
    else:
        target = job.status
    _queue("learner_import_apply" if target == Status.APPLYING else "learner_import_preview", job.pk)
    return True


def learner_import_is_stalled(job: LearnerImport, now: datetime.datetime) -> bool:
    return job.is_running and (job.progress_at is None or now - job.progress_at > STALLED_AFTER)


class _Progress:
    """Writes an import's progress to its row, batch by batch (signups.imports.ImportProgress).

    Each batch's claim is a conditional UPDATE of `rows_done`: applying, inside the batch's
    transaction, it is what makes the import resumable (the row stays locked until the batch
    commits); previewing, it stops a run that a restarted preview has replaced.
    """

    def __init__(self, job: LearnerImport, phase: str):
        self.job_id = job.pk
        self.phase = phase
        self.rows_done = job.rows_done if phase == Status.APPLYING else 0
        self.refusals = list(job.refusals) if phase == Status.APPLYING else []

    def batch_claim(self, rows_before: int) -> bool:
        rows = LearnerImport.objects.filter(pk=self.job_id, status=self.phase, rows_done=rows_before)
        return bool(rows.update(progress_at=timezone.now()))

    def batch_done(self, rows_done: int, outcome: BatchOutcome) -> None:
        changes = {
            "rows_done": rows_done, "added": F("added") + outcome.added, "updated": F("updated") + outcome.updated,
            "refused": F("refused") + len(outcome.refused), "progress_at": timezone.now(),
        }
        room = LearnerImport.REFUSALS_KEPT - len(self.refusals)
        if outcome.refused and room > 0:
            # Never kept (None): the address of someone who unsubscribed or erased their data
            # (the organizer has the file; the row's number finds it).
            self.refusals.extend(
                [number, None if reason == SUPPRESSED else email, reason] for number, email, reason in outcome.refused[:room]
            )
            changes["refusals"] = self.refusals
        # Conditional, like the claim: of two previews running at once (one resumed as stalled),
        # each batch is counted once. (Applying, the claim's lock makes this always true.)
        rows_before = rows_done - outcome.rows
        LearnerImport.objects.filter(pk=self.job_id, status=self.phase, rows_done=rows_before).update(**changes)
        self.rows_done = rows_done


def _fail(job: LearnerImport, phase: str, message: str) -> None:
    LearnerImport.objects.filter(pk=job.pk, status=phase).update(status=Status.FAILED, error=message)


def _unexpected(job: LearnerImport) -> str:
    # Never the exception's text: a database error may quote a row, and this page is shown
    # to staff who may not see learners. The worker's log has it all.
    done = LearnerImport.objects.filter(pk=job.pk).values_list("rows_done", flat=True).first() or 0
    return f"An unexpected error stopped it after {done:,} rows (the worker's log says which). Resume to go on from there."
