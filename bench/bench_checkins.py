"""Check-in POSTs per second end to end: learners pressing the button of a weekly email's check-in
link, through gunicorn, on PostgreSQL (issue 16: a week's emails for 100,000 learners bring a
burst on Monday morning; target: at least 300 per second).

The production path: `gunicorn mooc.wsgi` (DEBUG off, the whole middleware stack) runs
signups.views.checkin for each POST: the signed link read, the learner's enrollment (with round
and group) and their answer so far read, the answer written (one INSERT ... ON CONFLICT), and the
page that answers rendered (for "behind", with the next round to drop back to). Nothing is queued:
no worker, no Redis (the view touches no cache).

No CSRF token: the check-in POST is exempt, like the one-click unsubscribe, because the signed
link in its URL is the credential (signups/views.py says why). So the client needs no GET first;
it posts what a browser posts when the button is pressed.

Setup, not timed: one running round of the demo course with LEARNERS learners in groups of ten,
a later round open for signup (the "behind" page offers it), and each learner's week 1 link.
Each learner presses one answer (done 60 %, behind 25 %, stuck 15 %), and CHANGED of them change
it afterwards, in a shuffled order. The clock runs from the first POST to the last answer; the
stored answers are checked afterwards against the last one each learner gave. The client is
CLIENTS threads in this process, each with its own keep-alive connection, sharing the two cores
with gunicorn and PostgreSQL, as a load balancer would not.

Needs PostgreSQL at BENCH_POSTGRES_URL (a throwaway database named BENCH_CHECKINS_DATABASE,
default mooc_checkins_bench, dropped at the end); without it, prints why it was skipped.
"""

import datetime
import os
import random

from _common import (
    GUNICORN_THREADS, GUNICORN_WORKER_CLASS, GUNICORN_WORKERS, Gunicorn, cpu_seconds, django_on_throwaway_database, free_port,
    latency_rows, postgres_unavailable, posts_send, print_results,
)

LEARNERS = int(os.environ.get("BENCH_CHECKINS_LEARNERS", "20000"))
CHANGED = 0.1  # of the learners press a second answer afterwards
CLIENTS = int(os.environ.get("BENCH_CHECKINS_CLIENTS", "6"))
DATABASE = os.environ.get("BENCH_CHECKINS_DATABASE", "mooc_checkins_bench")
TARGET = 300  # check-in POSTs per second, at least
ANSWERS = [("done", 0.60), ("behind", 0.25), ("stuck", 0.15)]


def _seed(size: int) -> list[tuple[int, str]]:
    """A running round with `size` learners in groups of ten, and a later round open; each
    learner's (id, week 1 check-in token)."""
    from django.db import connection
    from django.utils import timezone

    from cohorts.models import Cohort, StudyGroup
    from cohorts.services import DEMO_COURSE_FILE, course_create_from_definition, course_definition_read
    from signups.models import Enrollment, Learner
    from signups.tokens import checkin_token

    course, _ = course_create_from_definition(course_definition_read(DEMO_COURSE_FILE))
    now = timezone.now()
    start = now.date() - datetime.timedelta(days=2)
    # Week 1's email went out at midnight on the first day: every learner (UTC) may answer now.
    cohort = Cohort.objects.create(
        course=course, name="Bench", slug="bench", start_date=start, send_weekday=start.weekday(),
        send_time=datetime.time(0, 0), signup_opens_on=start - datetime.timedelta(weeks=4), signup_closes_on=start,
    )
    later = start + datetime.timedelta(weeks=4)
    Cohort.objects.create(course=course, name="Bench, next", slug="bench-next", start_date=later,
                          signup_opens_on=now.date() - datetime.timedelta(days=7), signup_closes_on=later)
    groups = StudyGroup.objects.bulk_create(
        [StudyGroup(cohort=cohort, number=n + 1, name=f"Group {n + 1}", slug=f"bench-{n + 1}", utc_offset_minutes=0)
         for n in range((size + 9) // 10)],
        batch_size=5000,
    )
    learners = Learner.objects.bulk_create(
        [Learner(email=f"checkin-{n}@bench.invalid", first_name="Ada", timezone="UTC", experience="some",
                 confirmed_at=now - datetime.timedelta(days=30)) for n in range(size)],
        batch_size=5000,
    )
    Enrollment.objects.bulk_create(
        [Enrollment(learner=learner, course=course, cohort=cohort, status="active", group=groups[n // 10], grouped_at=now)
         for n, learner in enumerate(learners)],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would keep them
    return [(learner.pk, checkin_token(learner.public_id, cohort.pk, 1)) for learner in learners]


def _presses(learners: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], dict[int, str]]:
    """The POSTs, (learner id, path), shuffled (a fixed seed), and the answer each learner should
    end with. A learner's change comes after their first answer (the second half of the run)."""
    draw = random.Random(16)
    names, weights = zip(*ANSWERS)
    first, second, expected = [], [], {}
    for learner_id, token in learners:
        answer = draw.choices(names, weights)[0]
        first.append((learner_id, f"/checkin/{token}/{answer}/"))
        expected[learner_id] = answer
        if draw.random() < CHANGED:
            changed = draw.choice([name for name in names if name != answer])
            second.append((learner_id, f"/checkin/{token}/{changed}/"))
            expected[learner_id] = changed
    draw.shuffle(first)
    draw.shuffle(second)
    return first + second, expected


def _post_all(port: int, presses: list[tuple[int, str]]) -> tuple[list[float], list[int], float]:
    """POST every path from CLIENTS threads, each learner's from one thread in order (their change
    after their first answer, as one person presses); (latencies, failures, seconds from the
    first POST to the last answer)."""
    # What a browser sends when the button is pressed: an empty form.
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "0"}
    shares: list[list[tuple[str, bytes]]] = [[] for _ in range(CLIENTS)]
    for learner_id, path in presses:
        shares[learner_id % CLIENTS].append((path, b""))
    latencies, failures, first, last = posts_send(port, shares, headers, lambda status, body: status == 200 and b"Recorded:" in body)
    return latencies, failures, last - first


def _check(expected: dict[int, str]) -> int:
    from signups.models import CheckIn

    stored = dict(CheckIn.objects.filter(week_number=1).values_list("learner_id", "answer"))
    wrong = sum(1 for learner_id, answer in expected.items() if stored.get(learner_id) != answer)
    if wrong or len(stored) != len(expected):
        raise SystemExit(f"bench_checkins: {wrong:,} answers differ from the last one given ({len(stored):,} stored)")
    return len(stored)


def measure() -> None:

    with django_on_throwaway_database("postgresql", name=DATABASE):
        learners = _seed(LEARNERS)
        paths, expected = _presses(learners)
        port = free_port()
        os.environ["ALLOWED_HOSTS"] = "127.0.0.1"  # what gunicorn's requests name (read by its processes)
        gunicorn = Gunicorn(port, "bench_checkins")
        try:
            gunicorn.wait_ready()
            cpu_before = cpu_seconds(gunicorn.process.pid)
            latencies, failures, seconds = _post_all(port, paths)
            cpu_web = cpu_seconds(gunicorn.process.pid) - cpu_before
        finally:
            gunicorn.stop()
        stored = _check(expected)

    if failures:
        raise SystemExit(f"bench_checkins: {len(failures)} POSTs not answered 200 with the answer recorded (e.g. {failures[:5]})")
    rate = len(paths) / seconds
    print_results(
        f"check-ins on PostgreSQL: {len(paths):,} POSTs by {LEARNERS:,} learners, gunicorn "
        f"({GUNICORN_WORKERS} {GUNICORN_WORKER_CLASS} workers x {GUNICORN_THREADS} threads), {CLIENTS} keep-alive clients",
        [
            ("recorded", f"{rate:,.0f}", f"check-ins/s end to end ({len(paths):,} POSTs answered in {seconds:.1f} s; target: at least {TARGET})"),
            *latency_rows(latencies),
            ("CPU per POST", f"{cpu_web / len(paths) * 1000:.2f}", f"ms in gunicorn (the machine's load average at the end: "
             f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"),
            ("stored", f"{stored:,}", "answers, each the last one its learner gave"),
        ],
    )
    if rate < TARGET:
        print(f"  below the target of {TARGET} check-ins/s\n")


def main() -> None:
    if reason := postgres_unavailable():
        print(f"check-ins: skipped, {reason}\n")
        return
    measure()


if __name__ == "__main__":
    main()
