"""A 50,000-row learners import through the admin, on SQLite and on PostgreSQL.

What an organizer's import costs, end to end: the upload (a 2.6 MB CSV file posted to the
admin's import page: stored, checked for UTF-8 and its header, the preview queued), the
preview (a worker reads every row against the database, saving nothing), the Apply click,
and the apply (a worker saves the rows in batches of LEARNER_IMPORT_BATCH_SIZE, each its own
transaction, and mails each new address its confirmation link, rendered and handed to
Django's dummy email backend, so no network is timed). Tasks run in this process, as a worker
runs them, while two threads play the people around: the organizer's browser asking for the
import's page every half second (the page refreshes itself), and a visitor signing up every
half second (on SQLite, a signup that waits for the database's write lock for more than
20 seconds fails with "database is locked"). The file: 50,000 rows, of which 2,500 are
learners known already (updated), 500 refused (an invalid address, a repeated one).

Target: under 60 s from the upload to the last row applied, and no request over 1 s.
Each database runs in its own process; PostgreSQL is the server at BENCH_POSTGRES_URL.
"""

import threading
import time
import os
from pathlib import Path

from _common import django_on_throwaway_database, milliseconds, print_results, run_on_each_database

ROWS = 50_000
KNOWN = 2_500
REFUSED = 500
NAMES = ["Ada", "Grace", "Alan", "Hedy", "Linus", "Joan", "Katherine", "Edsger"]
ZONES = ["America/New_York", "Europe/London", "Asia/Kolkata", "America/Sao_Paulo", "Europe/Berlin", "Australia/Sydney"]


def learners_file() -> bytes:
    lines = ["email,first_name,timezone,experience,wants_group"]
    for n in range(ROWS):
        if n % 100 == 50:
            lines.append(f"learner{n}-at-example.org,Nobody,UTC,none,yes" if n % 200 == 50 else f"learner{n - 1}@example.org,Again,UTC,none,yes")
        else:
            lines.append(f"learner{n}@example.org,{NAMES[n % len(NAMES)]},{ZONES[n % len(ZONES)]},{('none', 'some', 'experienced')[n % 3]},{'yes' if n % 4 else 'no'}")
    return ("\n".join(lines) + "\n").encode()


class Poller(threading.Thread):
    """Calls `action` every `interval` seconds until stopped; keeps how long each call took."""

    def __init__(self, action, interval: float):
        super().__init__(daemon=True)
        self.action, self.interval = action, interval
        self.durations: list[float] = []
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self):
        from django.db import connection

        try:
            while not self._stop_event.wait(self.interval):
                started = time.perf_counter()
                try:
                    self.action()
                except Exception as error:  # noqa: BLE001 - reported in the results
                    self.errors.append(f"{type(error).__name__}: {error}")
                self.durations.append(time.perf_counter() - started)
        finally:
            connection.close()

    def stop(self):
        self._stop_event.set()
        self.join()


def measure(database: str) -> None:
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # not a line per admin login
    with django_on_throwaway_database(database):
        # Imported only now: Django must not read its settings before the environment is set.
        import datetime

        from django.conf import settings
        from django.contrib.auth.models import User
        from django.core.files.uploadedfile import SimpleUploadedFile
        from django.db import connection
        from django.test import Client
        from django.utils import timezone

        from cohorts.models import Cohort, Course
        from signups import tasks
        from signups.models import Enrollment, Learner, LearnerImport
        from signups.services import Signup, learner_signup

        settings.EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
        from signups import imports

        mailing = [0.0]
        send = imports.signup_email_send

        def timed_send(learner, enrollment):
            started = time.perf_counter()
            send(learner, enrollment)
            mailing[0] += time.perf_counter() - started

        imports.signup_email_send = timed_send  # how much of the apply the confirmations take
        queued: list[tuple[str, int]] = []
        for name in ("learner_import_preview", "learner_import_apply"):
            # Recorded, and run below in this process as a worker would run them.
            getattr(tasks, name).apply_async = lambda args, queue, name=name: queued.append((name, args[0]))

        today = timezone.localdate()
        course = Course.objects.create(title="Bench course", slug="bench", week_count=8)
        cohort = Cohort.objects.create(
            course=course, name="Bench round", slug="bench-round", start_date=today + datetime.timedelta(days=10),
            signup_opens_on=today - datetime.timedelta(days=7), signup_closes_on=today + datetime.timedelta(days=16),
        )
        Learner.objects.bulk_create(
            [Learner(email=f"learner{n}@example.org", timezone="UTC", experience="some") for n in range(0, ROWS, ROWS // KNOWN)]
        )
        organizer = User.objects.create_superuser("organizer", "organizer@example.org", "bench-only-password")
        browser = Client()
        browser.force_login(organizer)
        data = learners_file()
        requests: dict[str, list[float]] = {"upload": [], "apply": [], "page": []}

        def timed_request(kind, call):
            started = time.perf_counter()
            response = call()
            requests[kind].append(time.perf_counter() - started)
            if response.status_code not in (200, 302):
                raise SystemExit(f"bench_import: {kind} answered {response.status_code}")
            return response

        def run_queued() -> float:
            started = time.perf_counter()
            while queued:
                name, job_id = queued.pop(0)
                getattr(tasks, name).run(job_id)
            return time.perf_counter() - started

        page_client = Client()
        page_client.force_login(organizer)
        signups = iter(range(10**6))

        def sign_up():
            learner_signup(
                Signup(email=f"visitor{next(signups)}@example.org", first_name="V", timezone="UTC", experience="none",
                       wants_group=True, course=course, cohort=cohort),
                now=timezone.now(),
            )

        started = time.perf_counter()
        upload = timed_request("upload", lambda: browser.post(
            "/admin/signups/learner/import/",
            {"cohort": cohort.pk, "csv_file": SimpleUploadedFile("learners.csv", data, content_type="text/csv")},
        ))
        job_url = upload.url
        page = Poller(lambda: timed_request("page", lambda: page_client.get(job_url)), 0.5)
        visitor = Poller(sign_up, 0.5)
        page.start()
        visitor.start()
        preview_seconds = run_queued()
        job = LearnerImport.objects.get()
        previewed = (job.status, job.added, job.updated, job.refused)
        timed_request("apply", lambda: browser.post(f"{job_url}apply/"))
        apply_seconds = run_queued()
        total = time.perf_counter() - started
        page.stop()
        visitor.stop()

        job = LearnerImport.objects.get()
        if job.status != "applied":
            raise SystemExit(f"bench_import: the import ended {job.status}: {job.error}")
        enrolled = Enrollment.objects.filter(cohort=cohort, learner__email__startswith="learner").count()
        every_request = [seconds for durations in requests.values() for seconds in durations]
        vendor = connection.vendor

    longest_page = max(requests["page"], default=0)
    print_results(
        f"learner import on {vendor}: {ROWS:,} rows ({len(data) / 1024 / 1024:.1f} MB), batches of {settings.LEARNER_IMPORT_BATCH_SIZE}",
        [
            ("upload request", milliseconds(requests["upload"][0]), "ms (store the file, check UTF-8 and the header, queue the preview)"),
            ("preview", f"{preview_seconds:.1f}", f"s in the worker ({previewed[1]:,} to add, {previewed[2]:,} to update, {previewed[3]:,} refused)"),
            ("apply request", milliseconds(requests["apply"][0]), "ms (queue the apply)"),
            ("apply", f"{apply_seconds:.1f}", f"s in the worker ({job.added:,} added, {job.updated:,} updated, {job.refused:,} refused)"),
            ("of which mailing", f"{mailing[0]:.1f}", f"s: {job.added:,} confirmation emails rendered and sent, one by one (signup_email_send)"),
            ("end to end", f"{total:.1f}", "s from the upload to the last row applied (target: under 60 s)"),
            ("progress page", milliseconds(longest_page), f"ms at the longest, of {len(requests['page'])} refreshes while it ran"),
            ("longest request", milliseconds(max(every_request)), "ms of all the above (target: under 1,000 ms)"),
            ("signups meanwhile", str(len(visitor.durations)), f"one every 0.5 s; longest {milliseconds(max(visitor.durations, default=0))} ms; {len(visitor.errors)} failed"),
            ("enrolled", f"{enrolled:,}", "learners of the file in the cohort"),
        ],
    )
    for error in visitor.errors[:3] + page.errors[:3]:
        print(f"  error: {error}")


def main() -> None:
    run_on_each_database(str(Path(__file__).resolve()), "learner import", measure)


if __name__ == "__main__":
    main()
