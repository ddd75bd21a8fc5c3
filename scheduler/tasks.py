import logging
import time

from anymail.exceptions import AnymailRecipientsRefused, AnymailWebhookValidationFailure
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from jinja2 import TemplateError

from cohorts.models import Cohort
from scheduler.events import APPLY_BATCH, ORPHANS_KEPT, tracking_events_apply_started, tracking_orphans_delete
from scheduler.events import tracking_events_apply as events_apply
from scheduler.models import EmailTemplateVersion
from scheduler.planning import deliveries_dispatch
from scheduler.sending import deliveries_send
from scheduler.services import email_test_send as test_email_send
from scheduler.services import heartbeat_record
from scheduler.sns import subscription_confirm

logger = logging.getLogger(__name__)


@shared_task
def heartbeat(queue: str | None = None) -> None:
    """Beat sends one to each worker queue, naming it (mooc/celery.py): its worker records it.
    (None: one queued by the beat schedule from before the queues had one each.)"""
    heartbeat_record(now=timezone.now(), queue=queue or settings.CELERY_TASK_DEFAULT_QUEUE)


@shared_task
def deliveries_dispatch_due() -> None:
    """Beat, every minute: put what fell due in the ledger and queue it in chunks."""
    report = deliveries_dispatch(timezone.now())
    queue = settings.DELIVERY_QUEUE
    for chunk in report.chunks:
        transaction.on_commit(lambda chunk=chunk: deliveries_send_chunk.apply_async(args=[chunk], queue=queue))
    if report.chunks:
        logger.info("Queued %d deliveries in %d chunks", sum(map(len, report.chunks)), len(report.chunks))


@shared_task
def deliveries_send_chunk(delivery_ids: list[int]) -> None:
    report = deliveries_send(delivery_ids)
    logger.info("Chunk of %d: %s", len(delivery_ids), report)


@shared_task(bind=True, max_retries=4)
def email_test_send(self, version_id: int, cohort_id: int | None, to_email: str) -> None:
    """A staff member's test send (TRANSACTIONAL_QUEUE). A provider failure is retried after 30 s,
    2, 8 and 32 minutes; a template that no longer renders, or a refused address, is not."""
    version = EmailTemplateVersion.objects.select_related("template__course").filter(pk=version_id).first()
    if version is None:
        logger.warning("Test send of template version %s: the version no longer exists", version_id)
        return
    cohort = Cohort.objects.filter(pk=cohort_id).first() if cohort_id else None
    try:
        test_email_send(version, cohort, to_email)
    except (TemplateError, AnymailRecipientsRefused) as error:
        logger.warning("Test send of %s version %d not sent: %s", version.template, version.number, error)
    except Exception as error:
        raise self.retry(exc=error, countdown=30 * 4**self.request.retries)


# A task applies batches for at most this long, then leaves the rest to the next one (beat's,
# or one a webhook queues): a flood of events never holds a worker for good.
TRACKING_APPLY_SECONDS = 50


@shared_task
def tracking_events_apply() -> None:
    """Queued by the tracking webhooks (at most one per few seconds) and by beat every minute."""
    tracking_events_apply_started()
    started = time.monotonic()
    total = 0
    while time.monotonic() - started < TRACKING_APPLY_SECONDS:
        report = events_apply(timezone.now())
        total += report.events
        if report.events < APPLY_BATCH:
            break
    if total:
        logger.info("Applied %d tracking events", total)
    if deleted := tracking_orphans_delete(timezone.now()):
        logger.info("Deleted %d orphaned tracking events older than %s", deleted, ORPHANS_KEPT)


@shared_task(bind=True, max_retries=6)
def sns_subscription_confirm(self, message: dict) -> None:
    """Queued by the Amazon SES webhook for a verified SNS SubscriptionConfirmation. AWS's own
    refusal (an expired or unknown token: a 4xx other than throttling) is logged, not retried;
    anything else is retried after 1, 2, 4 ... 32 minutes (the token is good for three days)."""
    from botocore.exceptions import BotoCoreError, ClientError  # boto3 is installed only where SES is used

    topic = message.get("TopicArn")
    try:
        subscription_confirm(message)
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
        code = error.response.get("Error", {}).get("Code", "")
        if status < 500 and "Throttl" not in code:
            logger.error("SNS subscription to %s not confirmed, AWS refused: %s (confirm by hand: %s)", topic, error, message.get("SubscribeURL"))
            return
        raise self.retry(exc=error, countdown=60 * 2**self.request.retries)
    except BotoCoreError as error:
        raise self.retry(exc=error, countdown=60 * 2**self.request.retries)
    except AnymailWebhookValidationFailure as error:  # WEBHOOK_SECRET unset since it was queued
        logger.error("SNS subscription to %s not confirmed: %s", topic, error)
        return
    logger.info("SNS subscription to %s confirmed", topic)


@shared_task
def tracking_events_simulate(cohort_ids: list[int], seed: int = 1) -> None:
    """The cohort admin's "Simulate tracking events" (development outbox only)."""
    from scheduler.simulation import SimulationRefused
    from scheduler.simulation import tracking_events_simulate as simulate

    try:
        report = simulate(timezone.now(), cohort_ids, seed=seed)
    except SimulationRefused as error:
        logger.warning("Simulated tracking events refused: %s", error)
        return
    logger.info("Simulated tracking events: %s", report)
