"""Questions the scheduler answers; nothing here writes."""

import datetime

from django.conf import settings

from scheduler.models import Heartbeat
from scheduler.services import WORKER_HEARTBEAT


def heartbeat_status(now: datetime.datetime, name: str = WORKER_HEARTBEAT) -> dict:
    """How long ago the heartbeat last arrived, and whether that is recent enough."""
    seen_at = Heartbeat.objects.filter(name=name).values_list("seen_at", flat=True).first()
    if seen_at is None:
        return {"ok": False, "last_seen": None, "seconds_ago": None}
    seconds_ago = max(0, int((now - seen_at).total_seconds()))
    return {
        "ok": seconds_ago <= settings.WORKER_HEARTBEAT_STALE_AFTER,
        "last_seen": seen_at.isoformat(),
        "seconds_ago": seconds_ago,
    }
