"""Signups per second while the email provider takes 5 s per message: requests must not slow down.

The production path on PostgreSQL and Redis: each signup POST goes through Django's full stack,
writes the learner, the enrollment and the confirmation's outbox row, and publishes the send
task to Redis after the commit; one real `celery worker` on the transactional queue sends the
confirmations through a provider that answers after FAKE_PROVIDER_DELAY seconds
(mooc.testing.providers.FileProviderBackend). Measured: signups per second and the slowest
request, with the provider answering at once and in 5 s, each in its own process and
database; and how many confirmations the worker had sent by the end (the provider's pace,
not the site's). Needs BENCH_POSTGRES_URL's server and Redis at BENCH_REDIS_URL
(default redis://127.0.0.1:6379/3); prints why when it is skipped.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import django_on_throwaway_database, postgres_unavailable, print_results  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
SIGNUPS = 200


def measure(delay: str) -> None:
    import redis
    from bench_weekly_send import Worker

    queue = f"bench-signup-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    outbox = Path(tempfile.mkdtemp(prefix="mooc-bench-outbox-"))
    os.environ |= {
        "CELERY_BROKER_URL": REDIS_URL, "TRANSACTIONAL_QUEUE": queue, "EMAIL_OUTBOX_DIR": str(outbox),
        "EMAIL_BACKEND": "mooc.testing.providers.FileProviderBackend", "FAKE_PROVIDER_DELAY": delay,
        "SIGNUP_LIMIT_PER_IP_PER_HOUR": "100000",
    }
    with django_on_throwaway_database("postgresql"):
        import datetime

        from django.test import Client
        from django.utils import timezone

        from cohorts.models import Cohort, Course
        from signups.models import LearnerEmail

        today = timezone.now().date()
        course = Course.objects.create(title="Bench course", slug="bench", week_count=8)
        Cohort.objects.create(course=course, name="Round 1", slug="round-1", start_date=today + datetime.timedelta(days=10),
                              signup_opens_on=today - datetime.timedelta(days=1), signup_closes_on=today + datetime.timedelta(days=16))
        worker = Worker(queue, 1)
        try:
            assert worker.ready.wait(60), "the worker did not start"
            client = Client(REMOTE_ADDR="203.0.113.9")

            def sign_up(number: int) -> float:
                started = time.perf_counter()
                response = client.post("/signup/", {"email": f"l{number}@bench.invalid", "first_name": "Ada", "timezone": "Europe/London",
                                                    "experience": "some", "wants_group": "yes", "consent": "on", "cohort": "round-1"})
                assert response.status_code == 302, response.status_code
                return time.perf_counter() - started

            for number in range(10):
                sign_up(-1 - number)
            started = time.perf_counter()
            seconds = [sign_up(number) for number in range(SIGNUPS)]
            elapsed = time.perf_counter() - started
            sent = LearnerEmail.objects.filter(status="sent").count()
        finally:
            worker.stop()
            keys = list(redis.Redis.from_url(REDIS_URL).scan_iter(match=f"*{queue}*"))
            if keys:  # the confirmations not yet sent, and the queue's bindings
                redis.Redis.from_url(REDIS_URL).delete(*keys)
    print_results(
        f"signups with the provider answering in {delay} s (PostgreSQL, Redis, one transactional worker)",
        [
            ("signups", f"{SIGNUPS / elapsed:.1f}", "per second, one client"),
            ("request", f"{statistics.median(seconds) * 1000:.1f}", f"ms median (slowest {max(seconds) * 1000:.1f} ms)"),
            ("sent meanwhile", f"{sent}", f"of {SIGNUPS + 10} confirmations (the provider's pace; the rest follow)"),
        ],
    )


def main() -> None:
    if len(sys.argv) == 2:
        measure(sys.argv[1])
        return
    if reason := postgres_unavailable():
        print(f"signups with a slow provider: skipped, {reason}\n")
        return
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as error:  # noqa: BLE001 - reported as the reason to skip
        print(f"signups with a slow provider: skipped, no Redis at {REDIS_URL} ({error})\n")
        return
    for delay in ("0", "5"):
        subprocess.run([sys.executable, str(Path(__file__).resolve()), delay], check=True)


if __name__ == "__main__":
    main()
