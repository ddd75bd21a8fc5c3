import logging
import time

from celery import shared_task
from django.utils import timezone

from groupmail import services
from groupmail.inbound import inbound_screen_started

logger = logging.getLogger(__name__)


# A task screens batches for at most this long, then leaves the rest to the next one (beat's, or
# one a new message queues): a flood of messages never holds a worker for good.
SCREEN_SECONDS = 50


def _screen_waiting() -> int:
    started, screened = time.monotonic(), 0
    while time.monotonic() - started < SCREEN_SECONDS:
        report = services.inbound_screen_batch(timezone.now())
        screened += report.screened
        if report.screened < services.SCREEN_BATCH:
            break
    return screened


@shared_task
def inbound_screen_due() -> None:
    """Queued when messages arrive (groupmail/inbound.py, at most one waiting at a time): relay,
    hold or refuse every message waiting."""
    inbound_screen_started()
    if screened := _screen_waiting():
        logger.info("Group mail: screened %d messages", screened)


@shared_task
def inbound_screen_waiting() -> None:
    """Beat, every minute: screen what a lost task left waiting; forget old envelopes."""
    screened = _screen_waiting()
    forgotten = services.inbound_forget_old(timezone.now())
    if screened or forgotten:
        logger.info("Group mail: screened %d waiting messages, forgot %d old ones", screened, forgotten)


@shared_task(bind=True, max_retries=4)
def sender_notice_send(self, notice: dict) -> None:
    """A short explanation to someone whose message was not relayed (TRANSACTIONAL_QUEUE)."""
    try:
        services.sender_notice_deliver(notice)
    except services.NoticeNotSent as error:
        logger.warning("Group mail notice not sent: %s", error)
    except Exception as error:
        raise self.retry(exc=error, countdown=30 * 4**self.request.retries)
