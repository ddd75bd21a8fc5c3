"""The provider's send rate, shared by every worker on every machine: a token bucket in Redis.

GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp): each send moves a
"theoretical arrival time" on by 1/rate seconds; a send may go when that time is at most
`burst - 1` intervals ahead of now. One Lua script reads Redis's own clock (TIME), so machines
whose clocks disagree still share one rate, and sends are spaced evenly: no burst at each
second's boundary, no worker waking all at once. Without REDIS_URL (development, a single
machine) the same bucket lives in the process; if Redis cannot be reached, each process falls
back to its own bucket with a logged warning (the provider's 429s are retried anyway).
"""

import logging
import threading
import time

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

KEY = "scheduler:provider-rate"

# Returns 0 when the send may go now (and takes its place), else the microseconds to wait.
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - tolerance > now then return tat - tolerance - now end
local next_tat = tat + interval
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return 0
"""


class LocalBucket:
    """The same bucket in one process (no Redis): its own clock, shared by its threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tat = 0.0

    def wait_needed(self, interval: float, tolerance: float) -> float:
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat, now)
            if tat - tolerance > now:
                return tat - tolerance - now
            self._tat = tat + interval
            return 0.0


_local = LocalBucket()
_script = None


def _redis_script():
    global _script
    if _script is None:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT, socket_timeout=settings.REDIS_SOCKET_TIMEOUT
        )
        _script = client.register_script(_GCRA)
    return _script


def send_slot_wait_needed(rate: float, burst: int) -> float:
    """Take a send slot if there is one now (0.0), else say how many seconds until there may be."""
    interval = 1.0 / rate
    tolerance = interval * (burst - 1)
    if not settings.REDIS_URL:
        return _local.wait_needed(interval, tolerance)
    try:
        microseconds = _redis_script()(keys=[KEY], args=[round(interval * 1_000_000), round(tolerance * 1_000_000)])
    except (redis.RedisError, OSError) as error:
        logger.warning("The shared send rate is unreachable, this process limits itself alone: %s", error)
        return _local.wait_needed(interval, tolerance)
    return int(microseconds) / 1_000_000


def provider_rate_wait() -> None:
    """Wait until this worker may call the provider under EMAIL_SEND_RATE_PER_SECOND (0: no
    limit), EMAIL_SEND_BURST at most at once."""
    rate = settings.EMAIL_SEND_RATE_PER_SECOND
    if not rate:
        return
    while wait := send_slot_wait_needed(rate, settings.EMAIL_SEND_BURST):
        time.sleep(wait)
