import logging

from celery import shared_task
from django.utils import timezone

from cohorts.selectors import cohort_by_id
from signups import bulk_actions, emails, import_jobs
from signups.email_rows import SEND_TIME_LIMIT
from signups.groups import cohorts_group_move_offers_send, cohorts_groups_form_due
from signups.selectors import cohorts_with_waitlist_to_invite
from signups.services import waitlist_invite

logger = logging.getLogger(__name__)


@shared_task
def groups_form_due() -> None:
    for cohort, outcome in cohorts_groups_form_due(timezone.now()).items():
        if isinstance(outcome, str):
            logger.info("Groups not formed for %s: %s", cohort, outcome)
        else:
            logger.info("Formed %d groups for %s (%d learners)", len(outcome.groups), cohort, outcome.learners)


@shared_task
def group_move_offers_due() -> None:
    """Beat: offer learners in quiet groups a move (rounds that re-form by activity); each once per round."""
    for cohort, offered in cohorts_group_move_offers_send(timezone.now()).items():
        if offered:
            logger.info("Offered %d learners of %s a move out of a quiet group", offered, cohort)


@shared_task
def waitlist_invite_due() -> None:
    """Beat: for each round open for signup with learners of its course's waitlist still to
    invite, queue their invitations on the mail queue (CELERY_TASK_ROUTES)."""
    for cohort in cohorts_with_waitlist_to_invite(timezone.now()):
        waitlist_invite_cohort.delay(cohort.pk)


@shared_task
def waitlist_invite_cohort(cohort_id: int) -> None:
    """Safe to run twice, or beside another run: each learner is invited once per round."""
    cohort = cohort_by_id(cohort_id)
    if cohort is not None:
        logger.info("Invited %d learners from the waitlist to %s", waitlist_invite(cohort, timezone.now()), cohort)


@shared_task(time_limit=SEND_TIME_LIMIT.total_seconds(), soft_time_limit=SEND_TIME_LIMIT.total_seconds() - 15)
def learner_email_send(email_id: int) -> None:
    """One learner email from the outbox (TRANSACTIONAL_QUEUE); after a failure, queued again for
    when its backoff ends (a message that arrives early, or twice, changes nothing)."""
    outcome = emails.learner_email_send(email_id, now=timezone.now())
    if outcome.retry_at is not None:
        emails.learner_email_enqueue(email_id, eta=outcome.retry_at)


@shared_task
def learner_emails_requeue() -> None:
    """Beat, every minute: queue again the learner emails whose message was lost or never left."""
    emails.learner_emails_requeue(timezone.now())


# --- Organizers' imports and bulk actions (on the mail queue: CELERY_TASK_ROUTES) ---------------


@shared_task
def learner_import_preview(import_id: int) -> None:
    """Safe to run twice: a preview saves nothing, and starts over."""
    import_jobs.learner_import_preview(import_id, now=timezone.now())


@shared_task
def learner_import_apply(import_id: int) -> None:
    """Safe to run twice, or again after a crash: it goes on from the last batch saved."""
    import_jobs.learner_import_apply(import_id, now=timezone.now())


@shared_task
def learner_bulk_action_run(job_id: int) -> None:
    """Safe to run twice: every action is idempotent per learner, and it goes on from the last batch done."""
    bulk_actions.learner_bulk_action_run(job_id, now=timezone.now())
