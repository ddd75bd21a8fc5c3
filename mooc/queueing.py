"""Queueing a task that works through whatever is waiting (tracking events, group mail): at most
one such task waits in the broker at a time, however many requests ask for it.

A request marks the cache and queues the task only if the mark was not there; the task clears
the mark when it starts, so whatever arrives while it runs queues the next one. The mark expires
by itself after `seconds`, in case the task was lost. Neither the cache nor the broker being down
raises: the beat job that runs the same work every minute picks up what is left.
"""

import logging

from django.core.cache import cache

logger = logging.getLogger(__name__)

# Publishing to a broker that does not answer is tried twice, briefly: a web request must not wait on it.
ENQUEUE_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def task_queue_once(mark: str, seconds: int, task, *, queue: str, what: str) -> bool:
    """Queue `task` on `queue` unless one marked `mark` is queued and not started yet; True if queued."""
    try:
        if not cache.add(mark, 1, timeout=seconds):
            return False
    except Exception as error:  # noqa: BLE001 - the cache is down: queue anyway
        logger.warning("%s: the cache is unreachable (%s); queueing the task anyway", what, error)
    try:
        task.apply_async(queue=queue, retry_policy=ENQUEUE_RETRY_POLICY)
    except Exception as error:  # noqa: BLE001 - the broker is down: beat's job does it within a minute
        logger.warning("%s: not queued, the broker is unreachable (the periodic job will do it): %s", what, error)
        task_started(mark, what)  # nothing waits: the next request tries again
        return False
    return True


def task_started(mark: str, what: str) -> None:
    """The task marked `mark` started: the next request queues another."""
    try:
        cache.delete(mark)
    except Exception as error:  # noqa: BLE001
        logger.warning("%s: the cache is unreachable (%s)", what, error)
