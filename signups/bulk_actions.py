"""The learner admin's actions over many learners, run by a worker (signups.models.LearnerBulkAction).

Up to INLINE_LIMIT selected learners an action runs in the request, as it always did; over
that (a whole filtered list, "select all"), the request only records which learners were
selected and queues the work, and the action's page shows how far it got.

Each action is the same service the request would call, per learner in a transaction of its
own, and idempotent per learner (moving someone already there skips them; unsubscribing twice
changes nothing; a confirmation is re-sent at most once per CONFIRMATION_RESEND_INTERVAL). The
job advances `done` after each batch with a conditional UPDATE, so a rerun after a crash goes on
from the last batch recorded and redoes at most one batch, harmlessly.
"""

import datetime
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from cohorts.models import Cohort
from signups import services
from signups.models import Learner, LearnerBulkAction

logger = logging.getLogger(__name__)

Kind = LearnerBulkAction.Kind
Status = LearnerBulkAction.Status
# More learners than this selected: the action runs as a job (a page of the admin's list is 100).
INLINE_LIMIT = 100
BATCH_SIZE = 200


def learner_bulk_action_start(kind: str, learners: QuerySet[Learner], *, cohort: Cohort | None, user, now: datetime.datetime) -> LearnerBulkAction:
    """Record an action over the learners selected now (by id: later signups are not in it)
    and queue it (after commit). One query reads the ids; nothing else is loaded."""
    learner_ids = list(learners.order_by().values_list("pk", flat=True).distinct())
    learner_ids.sort()
    job = LearnerBulkAction.objects.create(
        kind=kind, cohort=cohort, learner_ids=learner_ids, total=len(learner_ids), started_by=user, progress_at=now
    )
    from signups.tasks import learner_bulk_action_run  # tasks call this module

    transaction.on_commit(lambda: learner_bulk_action_run.apply_async(args=[job.pk], queue=settings.DELIVERY_QUEUE))
    return job


def learner_bulk_action_run(job_id: int, now: datetime.datetime) -> None:
    """Carry out a queued (or interrupted) bulk action, batch by batch, from the first batch
    not recorded yet. An unexpected error (logged) fails the job; never raises."""
    claimed = LearnerBulkAction.objects.filter(pk=job_id, status__in=[Status.QUEUED, Status.RUNNING]).update(
        status=Status.RUNNING, progress_at=now
    )
    if not claimed:
        return
    job = LearnerBulkAction.objects.select_related("cohort__course").get(pk=job_id)
    done = job.done
    try:
        while done < job.total:
            batch = job.learner_ids[done : done + BATCH_SIZE]
            changed, skipped, full = _batch_run(job, batch, now)
            advanced = LearnerBulkAction.objects.filter(pk=job.pk, status=Status.RUNNING, done=done).update(
                done=done + len(batch), changed=F("changed") + changed, skipped=F("skipped") + skipped,
                full=F("full") + full, progress_at=timezone.now(),
            )
            if not advanced:
                return  # another run recorded this batch: it carries on
            done += len(batch)
    except Exception:
        logger.exception("Bulk action %s failed", job.pk)
        LearnerBulkAction.objects.filter(pk=job.pk, status=Status.RUNNING).update(
            status=Status.FAILED, error=f"An unexpected error stopped it after {done:,} learners (the worker's log says which)."
        )
        return
    LearnerBulkAction.objects.filter(pk=job.pk, status=Status.RUNNING, done=job.total).update(status=Status.DONE, finished_at=timezone.now())


def _batch_run(job: LearnerBulkAction, learner_ids: list[int], now: datetime.datetime) -> tuple[int, int, int]:
    """(changed, skipped, full) for one batch; a learner erased since the selection is skipped."""
    learners = Learner.objects.filter(pk__in=learner_ids).order_by("pk")
    if job.kind == Kind.MOVE:
        report = services.learners_move_to_cohort(learners, job.cohort, now=now)
        return report.moved, len(learner_ids) - report.moved - report.full, report.full
    if job.kind == Kind.RESEND_CONFIRMATION:
        sent = services.learners_confirmation_resend(learners, now=now)
        return sent, len(learner_ids) - sent, 0
    if job.kind == Kind.UNSUBSCRIBE:
        changed = sum(services.learner_unsubscribe(learner, now=now) for learner in learners)
        return changed, len(learner_ids) - changed, 0
    raise ValueError(f"unknown bulk action {job.kind!r}")
