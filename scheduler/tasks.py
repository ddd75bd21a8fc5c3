from celery import shared_task
from django.utils import timezone

from scheduler.services import heartbeat_record


@shared_task
def heartbeat() -> None:
    heartbeat_record(now=timezone.now())
