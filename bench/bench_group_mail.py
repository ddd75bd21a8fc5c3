"""Group mail end to end: members' messages through Postmark's inbound webhook to the ledger rows
of every other member, then those copies sent.

The production path on PostgreSQL and Redis: `gunicorn mooc.wsgi` (DEBUG off, the WEBHOOK_SECRET
basic auth, the whole middleware stack) stores each message (groupmail/inbound.py) and queues its
screening through Redis; SCREEN_WORKERS real `celery worker --pool solo` processes on the
default queue screen them (groupmail/services.py): a GroupMessage and one ledger row per other
member, queued for sending. Setup, not timed: one running round of the demo course with GROUPS
groups of 14 confirmed, active members, and the payloads: MESSAGES_PER_GROUP messages to each
group, each from a different member (within the hourly limits), as Postmark posts them (its
parsed JSON, one message per request), in a shuffled order.

1. Received: the clock runs from the first POST until every message's 13 ledger rows exist and
   no message waits to be screened (every one relayed: checked after the clock stops). The
   copies' chunks wait meanwhile in a queue nothing reads yet.
2. Sent: two `celery worker --pool solo` processes then read that queue, as the weekly send's
   two do (bench_weekly_send.py), and send the copies through Anymail's test backend that keeps
   nothing (DiscardingAnymailBackend), no send-rate limit; the clock runs from the workers being
   ready until no copy is pending or sending. A screening batch's copies are queued together, in
   chunks of up to DELIVERY_CHUNK_SIZE (200, as the weekly send's); how many chunks is printed.

Printed: messages per second end to end (target: at least 100 to groups of 14), requests
accepted per second, latency, CPU per message (gunicorn and the screening workers; another
engineer may share the machine, so CPU says more than the rate), copies sent per second and CPU
per copy, against the weekly send's target (over 330 emails per second, bench_weekly_send.py).

Needs PostgreSQL at BENCH_POSTGRES_URL (a throwaway database mooc_inbound_bench_<pid>, see
_common.py) and Redis at BENCH_GROUP_MAIL_REDIS_URL (default redis://127.0.0.1:6379/7, the
cache) and BENCH_GROUP_MAIL_BROKER_URL (default redis://127.0.0.1:6379/8, the broker): both are
emptied at the start, so give it ones nothing else uses. Without either it prints why it skipped.
"""

import base64
import datetime
import json
import os
import random
import sys
import time
import uuid

from _common import (
    Gunicorn, cpu_seconds, django_on_throwaway_database, free_port, latency_rows, postgres_unavailable, posts_send, print_results,
    redis_unavailable,
)

GROUPS = int(os.environ.get("BENCH_GROUP_MAIL_GROUPS", "200"))
MEMBERS = 14
MESSAGES_PER_GROUP = int(os.environ.get("BENCH_GROUP_MAIL_MESSAGES_PER_GROUP", "10"))  # each from another member
CLIENTS = int(os.environ.get("BENCH_GROUP_MAIL_CLIENTS", "6"))
SCREEN_WORKERS = int(os.environ.get("BENCH_GROUP_MAIL_SCREEN_WORKERS", "2"))
SEND_WORKERS = 2  # as the weekly send's benchmark
# 0: Postmark's parsed fields only (its default), which Anymail builds a message from field by
# field, costing the web process about twice the CPU of the raw email it is given with "1".
RAW_EMAIL = os.environ.get("BENCH_GROUP_MAIL_RAW_EMAIL", "1") == "1"
TARGET = 100  # messages per second end to end, at least
WEEKLY_SEND_TARGET = 330  # emails per second (bench_weekly_send.py)
DOMAIN = "groups.bench.invalid"
SECRET = "bench-inbound:bench-secret"
CACHE_URL = os.environ.get("BENCH_GROUP_MAIL_REDIS_URL", "redis://127.0.0.1:6379/7")
BROKER_URL = os.environ.get("BENCH_GROUP_MAIL_BROKER_URL", "redis://127.0.0.1:6379/8")
SEND_QUEUE = f"bench-group-mail-{os.getpid()}"  # where the copies wait until step 2
STALLED_AFTER_SECONDS = 120


def _seed() -> list[tuple[str, str, str]]:
    """The round and its groups; returns [(group slug, member's name, member's address)] of the senders."""
    from django.db import connection
    from django.utils import timezone

    from cohorts.models import Cohort, StudyGroup
    from cohorts.services import DEMO_COURSE_FILE, course_create_from_definition, course_definition_read
    from signups.models import Enrollment, Learner

    course, _ = course_create_from_definition(course_definition_read(DEMO_COURSE_FILE))
    now = timezone.now()
    start = now.date() - datetime.timedelta(days=3)
    cohort = Cohort.objects.create(
        course=course, name="Bench", slug="bench", start_date=start,
        signup_opens_on=start - datetime.timedelta(weeks=4), signup_closes_on=start,
    )
    groups = StudyGroup.objects.bulk_create(
        [StudyGroup(cohort=cohort, number=n, name=f"Group {n}", slug=f"bench-g{n}", utc_offset_minutes=0) for n in range(1, GROUPS + 1)]
    )
    learners = Learner.objects.bulk_create(
        [Learner(email=f"member-{g}-{m}@bench.invalid", first_name=f"Member{m}", timezone="UTC", experience="some",
                 confirmed_at=now - datetime.timedelta(days=30)) for g in range(GROUPS) for m in range(MEMBERS)],
        batch_size=5000,
    )
    Enrollment.objects.bulk_create(
        [Enrollment(learner=learner, course=course, cohort=cohort, status="active", group=groups[n // MEMBERS],
                    grouped_at=now - datetime.timedelta(days=3)) for n, learner in enumerate(learners)],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would keep them
    return [
        (groups[g].slug, learners[g * MEMBERS + m].first_name, learners[g * MEMBERS + m].email)
        for g in range(GROUPS) for m in range(MESSAGES_PER_GROUP)
    ]


def _raw_email(name: str, address: str, group_address: str, message_id: str, text: str, html: str) -> str:
    """The message as the member's mail program wrote it: what Postmark's RawEmail carries."""
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"] = f"{name} <{address}>", group_address
    message["Subject"], message["Date"] = "A question about this week's exercise", "Wed, 2 Dec 2026 12:00:00 +0000"
    message["Message-ID"] = message_id
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message.as_string()


def _payloads(senders) -> list[bytes]:
    """Postmark's inbound JSON for each sender's message, shuffled: its parsed fields and, as the
    README recommends ("Include raw email content in JSON payload"), the RawEmail."""
    bodies = []
    for slug, name, address in senders:
        group_address = f"{slug}@{DOMAIN}"
        message_id = f"<{uuid.uuid4().hex}@mail.bench.invalid>"
        text = "Hi all,\n\nDid anyone get the second exercise to pass? Mine fails on the empty list.\n\n" + name + "\n"
        html = "<p>Hi all,</p><p>Did anyone get the second exercise to pass? Mine fails on the empty list.</p><p>" + name + "</p>"
        raw = {"RawEmail": _raw_email(name, address, group_address, message_id, text, html)} if RAW_EMAIL else {}
        bodies.append(raw | {
            "FromName": name, "MessageStream": "inbound", "From": address,
            "FromFull": {"Email": address, "Name": name, "MailboxHash": ""},
            "To": group_address, "ToFull": [{"Email": group_address, "Name": "", "MailboxHash": ""}],
            "Cc": "", "CcFull": [], "Bcc": "", "BccFull": [], "OriginalRecipient": group_address,
            "Subject": "A question about this week's exercise", "MessageID": str(uuid.uuid4()),
            "ReplyTo": "", "MailboxHash": "", "Date": "Wed, 2 Dec 2026 12:00:00 +0000",
            "TextBody": text, "HtmlBody": html,
            "StrippedTextReply": "", "Tag": "",
            "Headers": [
                {"Name": "Return-Path", "Value": f"<{address}>"},
                {"Name": "Received", "Value": "from mail.bench.invalid by inbound.postmarkapp.com ..."},
                {"Name": "X-Spam-Status", "Value": "No"}, {"Name": "X-Spam-Score", "Value": "-0.1"},
                {"Name": "MIME-Version", "Value": "1.0"},
                {"Name": "Message-ID", "Value": message_id},
            ],
            "Attachments": [],
        })
    random.Random(15).shuffle(bodies)
    return [json.dumps(body).encode() for body in bodies]


def _post_all(port: int, bodies: list[bytes]) -> tuple[list[float], list[int], float, float]:
    """POST every body from CLIENTS threads; (latencies, non-200 statuses, first POST moment, last answer moment)."""
    headers = {"Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(SECRET.encode()).decode()}
    shares = [[("/anymail/postmark/inbound/", body) for body in bodies[n::CLIENTS]] for n in range(CLIENTS)]
    return posts_send(port, shares, headers, lambda status, _: status == 200)


def _wait(done, describe, workers) -> float:
    """Poll until done() is true; the moment it was. Stops when nothing moves for a while."""
    last, last_progress = None, time.perf_counter()
    while True:
        if done():
            return time.perf_counter()
        state = describe()
        if state != last:
            last, last_progress = state, time.perf_counter()
        elif time.perf_counter() - last_progress > STALLED_AFTER_SECONDS or all(w.process.poll() is not None for w in workers):
            logs = "\n".join(line for worker in workers for line in worker.last_lines)
            raise SystemExit(f"bench_group_mail: no progress ({state}); the workers said:\n{logs}")
        time.sleep(0.05)


def measure() -> None:
    import redis

    for url in (CACHE_URL, BROKER_URL):
        redis.Redis.from_url(url).flushdb()
    os.environ |= {
        "REDIS_URL": CACHE_URL, "CELERY_BROKER_URL": BROKER_URL, "ALLOW_LOCAL_CACHE": "false",
        "ANYMAIL_WEBHOOK_SECRET": SECRET, "EMAIL_BACKEND": "mooc.testing.providers.DiscardingAnymailBackend",
        "EMAIL_SEND_RATE_PER_SECOND": "0", "GROUP_MAIL_DOMAIN": DOMAIN, "DELIVERY_QUEUE": SEND_QUEUE,
    }
    with django_on_throwaway_database("postgresql", name=f"mooc_inbound_bench_{os.getpid()}"):
        from bench_weekly_send import Worker
        from django.db.models import Count

        from groupmail.models import InboundMessage
        from scheduler.models import Delivery, EmailKind

        bodies = _payloads(_seed())
        messages, copies = len(bodies), len(bodies) * (MEMBERS - 1)
        port = free_port()
        os.environ["ALLOWED_HOSTS"] = "127.0.0.1"  # what gunicorn's requests name (read by its processes)
        gunicorn = Gunicorn(port, "bench_group_mail")
        screeners = [Worker("celery", n) for n in range(SCREEN_WORKERS)]
        rows = Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE)
        waiting = InboundMessage.objects.filter(status=InboundMessage.Status.RECEIVED)
        try:
            gunicorn.wait_ready()
            for worker in screeners:
                if not worker.ready.wait(timeout=60):
                    raise SystemExit("bench_group_mail: a worker was not ready in 60 s; it said:\n" + "\n".join(worker.last_lines))
            cpu_before = cpu_seconds(gunicorn.process.pid), sum(cpu_seconds(w.process.pid) for w in screeners)
            latencies, failures, first, last_answer = _post_all(port, bodies)
            received = _wait(
                lambda: rows.count() >= copies and InboundMessage.objects.count() >= messages and not waiting.exists(),
                lambda: (InboundMessage.objects.count(), waiting.count(), rows.count()), screeners,
            )
            cpu_web = cpu_seconds(gunicorn.process.pid) - cpu_before[0]
            cpu_screen = sum(cpu_seconds(w.process.pid) for w in screeners) - cpu_before[1]
        finally:
            gunicorn.stop()
            for worker in screeners:
                worker.stop()
        statuses = dict(InboundMessage.objects.values_list("status").annotate(n=Count("pk")))
        chunks = redis.Redis.from_url(BROKER_URL).llen(SEND_QUEUE)  # the copies' send tasks, waiting

        senders = [Worker(SEND_QUEUE, 10 + n) for n in range(SEND_WORKERS)]
        unfinished = rows.filter(status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING])
        try:
            for worker in senders:
                if not worker.ready.wait(timeout=60):
                    raise SystemExit("bench_group_mail: a sending worker was not ready in 60 s; it said:\n" + "\n".join(worker.last_lines))
            send_started = time.perf_counter()
            cpu_before_send = sum(cpu_seconds(w.process.pid) for w in senders)
            sent_moment = _wait(lambda: not unfinished.exists(), lambda: unfinished.count(), senders)
            cpu_send = sum(cpu_seconds(w.process.pid) for w in senders) - cpu_before_send
        finally:
            for worker in senders:
                worker.stop()
        sent = rows.filter(status=Delivery.Status.SENT).count()

    if failures:
        raise SystemExit(f"bench_group_mail: {len(failures)} POSTs not answered 200 (e.g. {failures[:5]})")
    if statuses != {InboundMessage.Status.RELAYED: messages}:
        raise SystemExit(f"bench_group_mail: not every message was relayed: {statuses}")
    total = received - first
    rate = messages / total
    send_seconds = sent_moment - send_started
    copies_rate = sent / send_seconds
    problems = [line for worker in screeners + senders for line in worker.problems]
    print_results(
        f"group mail on PostgreSQL + Redis: {messages:,} Postmark inbound messages ({'with' if RAW_EMAIL else 'without'} RawEmail) to {GROUPS:,} groups of {MEMBERS}, gunicorn, "
        f"{SCREEN_WORKERS} screening workers, {CLIENTS} keep-alive clients; then {SEND_WORKERS} sending workers",
        [
            ("accepted", f"{messages / (last_answer - first):,.0f}", f"requests/s ({messages:,} POSTs answered 200 in {last_answer - first:.1f} s)"),
            ("end to end", f"{rate:,.0f}", f"messages/s, first POST to every message's {MEMBERS - 1} ledger rows ({total:.1f} s; target: at least {TARGET})"),
            *latency_rows(latencies),
            ("CPU per message", f"{(cpu_web + cpu_screen) / messages * 1000:.2f}",
             f"ms: {cpu_web / messages * 1000:.2f} in gunicorn, {cpu_screen / messages * 1000:.2f} screening "
             f"(load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"),
            ("screening tail", f"{received - last_answer:.1f}", "s from the last answer to the last message's rows"),
            ("ledger", f"{copies:,}", f"rows for {messages:,} messages, every one relayed"),
            ("copies sent", f"{copies_rate:,.0f}", f"copies/s, {sent:,} sent by {SEND_WORKERS} workers in {send_seconds:.1f} s, in {chunks:,} chunks "
             f"(weekly send target: over {WEEKLY_SEND_TARGET} emails/s in chunks of 200)"),
            ("CPU per copy", f"{cpu_send / max(sent, 1) * 1000:.2f}", "ms in the sending workers"),
            ("worker log", str(len(problems)), "lines at WARNING or above"),
        ],
    )
    for line in problems[:10]:
        print(f"  worker said: {line}")
    if rate < TARGET:
        print(f"  below the target of {TARGET} messages/s\n")


def main() -> None:
    if reason := postgres_unavailable() or redis_unavailable(CACHE_URL, BROKER_URL):
        print(f"group mail: skipped, {reason}\n")
        return
    measure()


if __name__ == "__main__":
    sys.exit(main())
