"""Verbs of the scheduler."""

import datetime

from scheduler.models import Heartbeat

WORKER_HEARTBEAT = "worker"


def heartbeat_record(now: datetime.datetime, name: str = WORKER_HEARTBEAT) -> Heartbeat:
    """Record that a periodic job reached a worker at `now`. Idempotent: one row per name."""
    heartbeat, _ = Heartbeat.objects.update_or_create(name=name, defaults={"seen_at": now})
    return heartbeat
