"""Signups per second through the full stack, on SQLite and on PostgreSQL.

One signup is what a visitor's click costs the site: the form POST through Django's
handler (middleware, URL, the form's validation against the open cohorts, the rate-limit
counters in the cache), the learner and enrollment written in one transaction, the
confirmation email written to the outbox, and the redirect. Its task message is held
back rather than published (no broker is timed, and none reaches a developer's workers).
Then the worker's part, timed apart: each held email's task, run in this process, renders
it and hands it to the email backend (Django's in-memory one, so no network is timed). Every signup is a new address; a tenth
are repeats of earlier ones, which take the "one person is one learner" path.

Each database runs in its own process (Django reads its database once per process).
PostgreSQL is the server at BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432),
in a throwaway database; without one, that line says why it was skipped.
"""

import io
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import django_on_throwaway_database, milliseconds, percentile, postgres_unavailable, print_results, timed

WARMUP_SIGNUPS = 20
MEASURED_SIGNUPS = 400


def measure(database: str) -> None:
    with django_on_throwaway_database(database):
        # Imported only now: Django must not read its settings before the environment is set.
        from django.conf import settings
        from django.core import mail
        from django.core.management import call_command
        from django.test import Client
        from django.test.utils import CaptureQueriesContext, setup_test_environment
        from django.db import connection

        from signups import emails as learner_emails
        from signups.models import Learner
        from signups.tasks import learner_email_send

        setup_test_environment()  # the in-memory email backend: mail.outbox
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)  # not a line per email's task
        settings.SIGNUP_LIMIT_PER_IP_PER_HOUR = settings.SIGNUP_LIMIT_PER_ADDRESS_PER_HOUR = 10**9
        held: list[int] = []  # the emails' task messages, which a worker would receive
        learner_emails.learner_email_enqueue = lambda email_id, eta=None: held.append(email_id)
        call_command("load_demo", stdout=io.StringIO())
        client = Client()

        def sign_up(number: int) -> None:
            email = f"learner{number // 10 * 10 if number % 10 == 9 else number}@example.org"
            response = client.post(
                "/signup/",
                {"email": email, "first_name": "Ada", "timezone": "Europe/Lisbon", "experience": "some",
                 "wants_group": "yes", "consent": "on"},
            )
            if response.status_code != 302:
                raise SystemExit(f"bench_signup: POST /signup/ answered {response.status_code}")

        for number in range(WARMUP_SIGNUPS):
            sign_up(number)
        for email_id in held:
            learner_email_send.apply(args=[email_id])
        mail.outbox.clear()
        held.clear()
        started = time.perf_counter()
        durations = [timed(lambda n=n: sign_up(n)) for n in range(WARMUP_SIGNUPS, WARMUP_SIGNUPS + MEASURED_SIGNUPS)]
        total = time.perf_counter() - started
        sends = [timed(lambda email_id=email_id: learner_email_send.apply(args=[email_id])) for email_id in held]
        with CaptureQueriesContext(connection) as queries:
            sign_up(10**6)
        learners = Learner.objects.count()
        emails = len(mail.outbox)

    print_results(
        f"signup on {database} (POST /signup/ to confirmation email in the outbox; then the worker's send)",
        [
            ("signups", str(MEASURED_SIGNUPS), f"(after {WARMUP_SIGNUPS} to warm up; 1 in 10 a repeat address)"),
            ("throughput", f"{MEASURED_SIGNUPS / total:.1f}", "signups/s"),
            ("mean", milliseconds(statistics.mean(durations)), "ms per signup"),
            ("p95", milliseconds(percentile(durations, 95)), "ms per signup"),
            ("SQL queries", str(len(queries)), "per new signup"),
            ("learners", str(learners), f"(emails queued while timed: {len(sends)})"),
            ("worker", milliseconds(statistics.mean(sends)), f"ms per email sent (mean; {emails} sent)"),
        ],
    )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--database":
        measure(sys.argv[2])
        return
    for database in ("sqlite", "postgresql"):
        if database == "postgresql" and (reason := postgres_unavailable()):
            print(f"signup on postgresql: skipped, {reason}\n")
            continue
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--database", database], check=True)


if __name__ == "__main__":
    main()
