import logging

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from scheduler.planning import deliveries_dispatch
from scheduler.sending import deliveries_send
from scheduler.services import heartbeat_record

logger = logging.getLogger(__name__)


@shared_task
def heartbeat() -> None:
    heartbeat_record(now=timezone.now())


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
